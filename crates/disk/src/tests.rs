//! Partition tables built in memory, sound and hostile: bad CRCs, huge counts, overlaps,
//! truncation, loops, at 512 and 4096 bytes per block.

use crate::gpt::GptError;
use crate::mbr::MbrError;
use crate::read_table;
use crate::table::{guid, mbr_type, BootRole, PartitionKind, TableError, TableKind};
use crate::testdisk::MemDisk;
use alloc::string::ToString;
use alloc::vec;
use alloc::vec::Vec;
use gpt_disk_types::{
    guid as g, Crc32, GptHeader, GptPartitionEntry, GptPartitionName, GptPartitionType, LbaLe,
    U32Le,
};

fn crc32(b: &[u8]) -> u32 {
    crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC).checksum(b)
}

struct Spec<'a> {
    ty: gpt_disk_types::Guid,
    first: u64,
    last: u64,
    name: &'a str,
}

/// Writes a protective MBR, both headers and both entry arrays (128 entries of 128 bytes).
fn gpt_disk(bs: usize, blocks: u64, parts: &[Spec]) -> MemDisk {
    let mut d = MemDisk::zeroed(bs, blocks);
    protective_mbr(&mut d);
    let count = 128u32;
    let array_blocks = (count as u64 * 128).div_ceil(bs as u64);
    let mut array = vec![0u8; (array_blocks as usize) * bs];
    for (i, p) in parts.iter().enumerate() {
        let e = GptPartitionEntry {
            partition_type_guid: GptPartitionType(p.ty),
            unique_partition_guid: g!("01234567-89ab-cdef-0123-456789abcd00"),
            starting_lba: LbaLe::from_u64(p.first),
            ending_lba: LbaLe::from_u64(p.last),
            attributes: Default::default(),
            name: p.name.parse::<GptPartitionName>().unwrap(),
        };
        array[i * 128..(i + 1) * 128].copy_from_slice(bytemuck::bytes_of(&e));
    }
    let array_crc = crc32(&array[..count as usize * 128]);
    let last = blocks - 1;
    for (my, alt, arr) in [(1, last, 2), (last, 1, last - array_blocks)] {
        let mut h = GptHeader {
            my_lba: LbaLe::from_u64(my),
            alternate_lba: LbaLe::from_u64(alt),
            first_usable_lba: LbaLe::from_u64(2 + array_blocks),
            last_usable_lba: LbaLe::from_u64(last - array_blocks - 1),
            disk_guid: g!("11111111-2222-3333-4444-555555555555"),
            partition_entry_lba: LbaLe::from_u64(arr),
            number_of_partition_entries: U32Le::from_u32(count),
            partition_entry_array_crc32: Crc32(U32Le::from_u32(array_crc)),
            ..GptHeader::default()
        };
        h.update_header_crc32();
        d.block_mut(my)[..92].copy_from_slice(bytemuck::bytes_of(&h));
        let s = arr as usize * bs;
        d.bytes[s..s + array.len()].copy_from_slice(&array);
    }
    d
}

fn protective_mbr(d: &mut MemDisk) {
    let b = d.block_mut(0);
    b[446 + 4] = mbr_type::GPT_PROTECTIVE;
    b[446 + 8..446 + 12].copy_from_slice(&1u32.to_le_bytes());
    b[446 + 12..446 + 16].copy_from_slice(&u32::MAX.to_le_bytes());
    b[510] = 0x55;
    b[511] = 0xaa;
}

/// Rewrites the header at `lba` after `f` changes it, with a fresh CRC unless `keep_crc`.
fn edit_header(d: &mut MemDisk, lba: u64, keep_crc: bool, f: impl FnOnce(&mut GptHeader)) {
    let mut h: GptHeader = bytemuck::pod_read_unaligned(&d.block_mut(lba)[..92]);
    f(&mut h);
    if !keep_crc {
        h.update_header_crc32();
    }
    d.block_mut(lba)[..92].copy_from_slice(bytemuck::bytes_of(&h));
}

fn three(bs: usize, blocks: u64) -> MemDisk {
    // 1 MiB-aligned partitions in blocks of `bs`.
    let mib = (1 << 20) / bs as u64;
    gpt_disk(
        bs,
        blocks,
        &[
            Spec {
                ty: guid::PREP_BOOT,
                first: mib,
                last: 2 * mib - 1,
                name: "PReP",
            },
            Spec {
                ty: guid::XBOOTLDR,
                first: 2 * mib,
                last: 4 * mib - 1,
                name: "boot ✓",
            },
            Spec {
                ty: guid::LINUX_FS,
                first: 4 * mib,
                last: 6 * mib - 1,
                name: "root",
            },
        ],
    )
}

#[test]
fn gpt_at_512_and_4096() {
    for bs in [512usize, 4096] {
        let blocks = (8 << 20) / bs as u64;
        let mut d = three(bs, blocks);
        let t = read_table(&mut d).unwrap();
        assert_eq!(t.kind_name(), "GPT");
        assert!(matches!(
            t.kind,
            TableKind::Gpt {
                primary_damaged: None,
                ..
            }
        ));
        let names: Vec<&str> = t.partitions.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["PReP", "boot ✓", "root"]);
        assert!(t.partitions[0].kind.is_prep());
        assert_eq!(t.partitions[1].kind.name(), "Linux /boot (XBOOTLDR)");
        assert_eq!(t.partitions[1].kind.boot_role(), Some(BootRole::Xbootldr));
        assert_eq!(t.partitions[2].kind.name(), "Linux filesystem");
        assert_eq!(t.partitions[2].kind.boot_role(), None);
        assert_eq!(t.partitions[1].number, 2);
        assert_eq!(t.partitions[1].first_lba, 2 * (1 << 20) / bs as u64);
        assert_eq!(t.partitions[1].uuid, "01234567-89ab-cdef-0123-456789abcd00");
    }
}

#[test]
fn boot_loader_specification_roles() {
    for (kind, role) in [
        (PartitionKind::Gpt(guid::EFI_SYSTEM), Some(BootRole::Esp)),
        (
            PartitionKind::Mbr(mbr_type::EFI_SYSTEM),
            Some(BootRole::Esp),
        ),
        (PartitionKind::Gpt(guid::XBOOTLDR), Some(BootRole::Xbootldr)),
        (
            PartitionKind::Mbr(mbr_type::XBOOTLDR),
            Some(BootRole::Xbootldr),
        ),
        (PartitionKind::Gpt(guid::PREP_BOOT), None),
        (PartitionKind::Mbr(mbr_type::LINUX), None),
    ] {
        assert_eq!(kind.boot_role(), role, "{kind}");
    }
    assert_eq!(
        PartitionKind::Mbr(mbr_type::XBOOTLDR).to_string(),
        "Linux /boot (XBOOTLDR)"
    );
    assert_eq!(BootRole::Esp.partner(), BootRole::Xbootldr);
    assert_eq!(BootRole::Xbootldr.partner(), BootRole::Esp);
}

#[test]
fn damaged_primary_falls_back_to_the_backup() {
    let bs = 512;
    let blocks = (8 << 20) / bs as u64;
    // A flipped byte in the primary header: its CRC fails.
    let mut d = three(bs, blocks);
    d.block_mut(1)[40] ^= 0xff;
    let t = read_table(&mut d).unwrap();
    let TableKind::Gpt {
        primary_damaged: Some(GptError::HeaderCrc { .. }),
        ..
    } = t.kind
    else {
        panic!("{:?}", t.kind)
    };
    assert_eq!(t.partitions.len(), 3);
    // A damaged primary entry array: the array CRC fails, the backup's array is used.
    let mut d = three(bs, blocks);
    d.block_mut(2)[0] ^= 1;
    let t = read_table(&mut d).unwrap();
    assert!(matches!(
        t.kind,
        TableKind::Gpt {
            primary_damaged: Some(GptError::EntryArrayCrc { .. }),
            ..
        }
    ));
    assert_eq!(t.partitions[0].kind, PartitionKind::Gpt(guid::PREP_BOOT));
}

#[test]
fn both_damaged_names_both() {
    let bs = 512;
    let blocks = (8 << 20) / bs as u64;
    let mut d = three(bs, blocks);
    d.block_mut(1)[0] = b'X';
    d.block_mut(blocks - 1)[40] ^= 1;
    match read_table(&mut d) {
        Err(TableError::Gpt {
            primary: GptError::Signature,
            backup: GptError::HeaderCrc { .. },
        }) => {}
        other => panic!("{other:?}"),
    }
}

#[test]
fn hostile_headers_are_refused_by_name() {
    let bs = 512;
    let blocks = (8 << 20) / bs as u64;
    type Case = (fn(&mut GptHeader), fn(&GptError) -> bool);
    let cases: Vec<Case> = vec![
        (
            |h| h.number_of_partition_entries = U32Le::from_u32(u32::MAX),
            |e| matches!(e, GptError::EntryCount(_)),
        ),
        (
            |h| h.number_of_partition_entries = U32Le::from_u32(0),
            |e| matches!(e, GptError::EntryCount(0)),
        ),
        (
            |h| h.size_of_partition_entry = U32Le::from_u32(100),
            |e| matches!(e, GptError::EntrySize(100)),
        ),
        (
            |h| h.size_of_partition_entry = U32Le::from_u32(1 << 30),
            |e| matches!(e, GptError::EntrySize(_)),
        ),
        (
            |h| h.header_size = U32Le::from_u32(10_000),
            |e| matches!(e, GptError::HeaderSize(10_000)),
        ),
        (
            |h| h.partition_entry_lba = LbaLe::from_u64(u64::MAX - 1),
            |e| matches!(e, GptError::EntryArray { .. }),
        ),
        (
            |h| h.partition_entry_lba = LbaLe::from_u64(5000),
            |e| matches!(e, GptError::EntryArray { .. }),
        ),
        (
            |h| h.last_usable_lba = LbaLe::from_u64(u64::MAX),
            |e| matches!(e, GptError::UsableRange { .. }),
        ),
        (
            |h| h.my_lba = LbaLe::from_u64(7),
            |e| {
                matches!(
                    e,
                    GptError::MyLba {
                        stored: 7,
                        expected: 1
                    }
                )
            },
        ),
    ];
    for (i, (edit, want)) in cases.into_iter().enumerate() {
        let mut d = three(bs, blocks);
        let last = blocks - 1;
        edit_header(&mut d, 1, false, edit);
        edit_header(&mut d, last, false, edit);
        match read_table(&mut d) {
            Err(TableError::Gpt { primary, backup }) => {
                assert!(want(&primary), "case {i}: primary {primary}");
                let _ = backup;
            }
            other => panic!("case {i}: {other:?}"),
        }
        // Every read stayed on the disk (MemDisk would have failed otherwise) and small.
        assert!(
            d.touched.iter().all(|&(_, n)| n <= 64),
            "case {i}: {:?}",
            d.touched
        );
    }
}

#[test]
fn hostile_entries_are_refused() {
    let bs = 512;
    let blocks = (8 << 20) / bs as u64;
    let mib = (1 << 20) / bs as u64;
    let overlapping = gpt_disk(
        bs,
        blocks,
        &[
            Spec {
                ty: guid::LINUX_FS,
                first: mib,
                last: 3 * mib,
                name: "a",
            },
            Spec {
                ty: guid::LINUX_FS,
                first: 3 * mib,
                last: 4 * mib,
                name: "b",
            },
        ],
    );
    let past_end = gpt_disk(
        bs,
        blocks,
        &[Spec {
            ty: guid::LINUX_FS,
            first: mib,
            last: blocks + 100,
            name: "big",
        }],
    );
    let backwards = gpt_disk(
        bs,
        blocks,
        &[Spec {
            ty: guid::LINUX_FS,
            first: 3 * mib,
            last: mib,
            name: "x",
        }],
    );
    for (mut d, want) in [
        (overlapping, GptError::Overlap { a: 1, b: 2 }),
        (
            past_end,
            GptError::PartitionRange {
                number: 1,
                first: mib,
                last: blocks + 100,
            },
        ),
        (
            backwards,
            GptError::PartitionRange {
                number: 1,
                first: 3 * mib,
                last: mib,
            },
        ),
    ] {
        match read_table(&mut d) {
            Err(TableError::Gpt { primary, backup }) => {
                assert_eq!(primary, want);
                assert_eq!(backup, want);
            }
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn truncated_disk_has_no_backup() {
    let bs = 512;
    let blocks = (8 << 20) / bs as u64;
    let full = three(bs, blocks);
    // The first 4 MiB of the disk only: the primary is fine but says the disk is longer.
    let mut d = MemDisk {
        bs,
        bytes: full.bytes[..4 << 20].to_vec(),
        touched: Vec::new(),
    };
    match read_table(&mut d) {
        Err(TableError::Gpt {
            primary: GptError::UsableRange { .. },
            backup: GptError::Signature,
        }) => {}
        other => panic!("{other:?}"),
    }
    // Too small for any table.
    let mut tiny = MemDisk::zeroed(512, 2);
    assert!(matches!(
        read_table(&mut tiny),
        Err(TableError::Geometry { .. })
    ));
    let mut blank = MemDisk::zeroed(512, 100);
    assert_eq!(read_table(&mut blank), Err(TableError::NoTable));
}

fn mbr_record(b: &mut [u8], i: usize, kind: u8, first: u32, len: u32) {
    let o = 446 + 16 * i;
    b[o + 4] = kind;
    b[o + 8..o + 12].copy_from_slice(&first.to_le_bytes());
    b[o + 12..o + 16].copy_from_slice(&len.to_le_bytes());
    b[510] = 0x55;
    b[511] = 0xaa;
}

/// PReP (1), Linux (2), extended (3) holding two logical partitions (5, 6).
fn mbr_disk(bs: usize) -> MemDisk {
    let mut d = MemDisk::zeroed(bs, 4096);
    let b = d.block_mut(0);
    b[440..444].copy_from_slice(&0xdeadbeefu32.to_le_bytes());
    mbr_record(b, 0, mbr_type::PREP, 16, 16);
    mbr_record(b, 1, mbr_type::LINUX, 32, 1000);
    mbr_record(b, 2, mbr_type::EXTENDED_LBA, 2048, 2048);
    // EBR 1 at 2048: logical at +8 (500 blocks), next EBR at ext+1024.
    let e = d.block_mut(2048);
    mbr_record(e, 0, mbr_type::LINUX, 8, 500);
    mbr_record(e, 1, mbr_type::EXTENDED_CHS, 1024, 1024);
    let e = d.block_mut(3072);
    mbr_record(e, 0, mbr_type::LINUX_SWAP, 8, 100);
    d
}

#[test]
fn mbr_primary_and_logical() {
    for bs in [512usize, 4096] {
        let mut d = mbr_disk(bs);
        let t = read_table(&mut d).unwrap();
        assert_eq!(
            t.kind,
            TableKind::Mbr {
                signature: 0xdeadbeef
            }
        );
        let got: Vec<(u32, u64, u64, u8)> = t
            .partitions
            .iter()
            .map(|p| match p.kind {
                PartitionKind::Mbr(k) => (p.number, p.first_lba, p.blocks, k),
                _ => panic!(),
            })
            .collect();
        assert_eq!(
            got,
            [
                (1, 16, 16, 0x41),
                (2, 32, 1000, 0x83),
                (5, 2056, 500, 0x83),
                (6, 3080, 100, 0x82)
            ]
        );
        assert!(t.partitions[0].kind.is_prep());
        assert_eq!(t.partitions[1].uuid, "deadbeef-02");
    }
}

#[test]
fn mbr_hostile() {
    // The chain points back to the first EBR.
    let mut d = mbr_disk(512);
    mbr_record(d.block_mut(3072), 1, mbr_type::EXTENDED_CHS, 0, 1);
    assert_eq!(
        read_table(&mut d),
        Err(TableError::Mbr(MbrError::EbrLoop { lba: 2048 }))
    );
    // The chain leaves the extended partition.
    let mut d = mbr_disk(512);
    mbr_record(d.block_mut(3072), 1, mbr_type::EXTENDED_CHS, 4000, 1);
    assert!(matches!(
        read_table(&mut d),
        Err(TableError::Mbr(MbrError::Range { .. }))
    ));
    // A logical partition bigger than its extended partition.
    let mut d = mbr_disk(512);
    mbr_record(d.block_mut(3072), 0, mbr_type::LINUX, 8, u32::MAX);
    assert!(matches!(
        read_table(&mut d),
        Err(TableError::Mbr(MbrError::Range { number: 6, .. }))
    ));
    // A primary past the end of the disk.
    let mut d = mbr_disk(512);
    mbr_record(d.block_mut(0), 3, mbr_type::LINUX, u32::MAX, u32::MAX);
    assert!(matches!(
        read_table(&mut d),
        Err(TableError::Mbr(MbrError::Range { number: 4, .. }))
    ));
    // Overlapping primaries.
    let mut d = mbr_disk(512);
    mbr_record(d.block_mut(0), 3, mbr_type::LINUX, 100, 10);
    assert_eq!(
        read_table(&mut d),
        Err(TableError::Mbr(MbrError::Overlap { a: 2, b: 4 }))
    );
    // An EBR without its signature.
    let mut d = mbr_disk(512);
    d.block_mut(3072)[510] = 0;
    assert_eq!(
        read_table(&mut d),
        Err(TableError::Mbr(MbrError::EbrSignature { lba: 3072 }))
    );
    // A long chain (each EBR pointing at the next block) stops at the limit.
    let mut d = MemDisk::zeroed(512, 4096);
    mbr_record(d.block_mut(0), 0, mbr_type::EXTENDED_LBA, 1, 4000);
    for i in 0..3000u32 {
        let e = d.block_mut(1 + u64::from(i));
        mbr_record(e, 0, mbr_type::EMPTY, 0, 0);
        mbr_record(e, 1, mbr_type::EXTENDED_LBA, i + 1, 1);
    }
    assert_eq!(
        read_table(&mut d),
        Err(TableError::Mbr(MbrError::TooManyLogical))
    );
}

/// A small deterministic generator (xorshift), so the test needs no crate.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn random_damage_never_panics_or_reads_off_the_disk() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for bs in [512usize, 4096] {
        let blocks = (8 << 20) / bs as u64;
        let gpt = three(bs, blocks);
        let mbr = mbr_disk(bs);
        for round in 0..400 {
            let base = if round % 2 == 0 { &gpt } else { &mbr };
            let mut d = MemDisk {
                bs,
                bytes: base.bytes.clone(),
                touched: Vec::new(),
            };
            // Damage a few bytes where the tables live: block 0, the primary header and array,
            // the EBRs, the backup.
            let n = crate::Disk::blocks(&d);
            for _ in 0..1 + rng.next() % 8 {
                let areas = [0, 1, 2, 2048, 3072, n - 1, n - 33];
                let lba = areas[(rng.next() % areas.len() as u64) as usize];
                let at = (rng.next() % bs as u64) as usize;
                let v = rng.next() as u8;
                d.block_mut(lba.min(n - 1))[at] = v;
            }
            // The result does not matter; not panicking, and staying on the disk, does.
            let r = read_table(&mut d);
            if let Ok(t) = r {
                for p in &t.partitions {
                    assert!(p.first_lba + p.blocks <= n, "{p:?}");
                }
            }
            let total: u64 = d.touched.iter().map(|&(_, n)| n).sum();
            assert!(total <= 1024, "round {round}: {total} blocks read");
        }
    }
}
