//! GPT: the primary header at LBA 1 and, when it or its entry array is damaged, the backup
//! header at the last LBA. Both CRC-32s are checked; every field read from the disk is bounded
//! before use (header size, entry size and count, where the entry array lies, each partition's
//! extent), and partitions that overlap reject the table.

use crate::table::{Partition, PartitionKind, Table, TableKind};
use crate::Disk;
use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;
use gpt_disk_types::{GptHeader, GptPartitionEntry};

/// The smallest header (revision 1.0).
const HEADER_MIN: u32 = 92;
/// The size of one entry in revision 1.0; larger entries must be 128 * 2^n.
const ENTRY_MIN: u32 = 128;
const ENTRY_MAX: u32 = 4096;
/// Entries vioboot reads at most (128 is the usual, Linux accepts any count; 16,384 bounds the
/// array to 2 MiB at the smallest entry size).
pub const MAX_ENTRIES: u32 = 16 * 1024;
/// Bytes of entry array vioboot reads at most.
const ARRAY_MAX: u64 = 2 << 20;

/// Which way a GPT header is damaged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GptError {
    /// No `EFI PART` signature.
    Signature,
    HeaderSize(u32),
    HeaderCrc {
        stored: u32,
        computed: u32,
    },
    /// The header does not say it is where it was read.
    MyLba {
        stored: u64,
        expected: u64,
    },
    UsableRange {
        first: u64,
        last: u64,
    },
    EntrySize(u32),
    EntryCount(u32),
    /// The entry array lies outside the disk or inside the usable area.
    EntryArray {
        lba: u64,
        blocks: u64,
    },
    EntryArrayCrc {
        stored: u32,
        computed: u32,
    },
    /// A partition outside the usable area, or ending before it starts.
    PartitionRange {
        number: u32,
        first: u64,
        last: u64,
    },
    Overlap {
        a: u32,
        b: u32,
    },
}

impl fmt::Display for GptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            GptError::Signature => f.write_str("no EFI PART signature"),
            GptError::HeaderSize(s) => write!(f, "header size {s} out of range"),
            GptError::HeaderCrc { stored, computed } => {
                write!(f, "header CRC32 {stored:#010x}, computed {computed:#010x}")
            }
            GptError::MyLba { stored, expected } => {
                write!(f, "header says it is at LBA {stored}, read at {expected}")
            }
            GptError::UsableRange { first, last } => {
                write!(f, "usable LBAs {first}..={last} out of range")
            }
            GptError::EntrySize(s) => write!(f, "entry size {s} not 128 * 2^n up to {ENTRY_MAX}"),
            GptError::EntryCount(n) => write!(f, "{n} entries (at most {MAX_ENTRIES})"),
            GptError::EntryArray { lba, blocks } => {
                write!(f, "entry array at LBA {lba} ({blocks} blocks) outside the disk or in the usable area")
            }
            GptError::EntryArrayCrc { stored, computed } => {
                write!(
                    f,
                    "entry array CRC32 {stored:#010x}, computed {computed:#010x}"
                )
            }
            GptError::PartitionRange {
                number,
                first,
                last,
            } => {
                write!(
                    f,
                    "partition {number} at LBAs {first}..={last} outside the usable area"
                )
            }
            GptError::Overlap { a, b } => write!(f, "partitions {a} and {b} overlap"),
        }
    }
}

/// Why GPT could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadError<E> {
    Io(E),
    Damaged { primary: GptError, backup: GptError },
}

fn crc32(bytes: &[u8]) -> u32 {
    crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC).checksum(bytes)
}

/// Reads the primary GPT, else the backup.
pub fn read<D: Disk>(disk: &mut D) -> Result<Table, ReadError<D::Error>> {
    let last = disk.blocks() - 1;
    let primary = match read_one(disk, 1) {
        Ok(Ok((disk_guid, partitions))) => {
            return Ok(Table {
                kind: TableKind::Gpt {
                    disk_guid,
                    primary_damaged: None,
                },
                partitions,
            })
        }
        Ok(Err(e)) => e,
        Err(io) => return Err(ReadError::Io(io)),
    };
    match read_one(disk, last) {
        Ok(Ok((disk_guid, partitions))) => Ok(Table {
            kind: TableKind::Gpt {
                disk_guid,
                primary_damaged: Some(primary),
            },
            partitions,
        }),
        Ok(Err(backup)) => Err(ReadError::Damaged { primary, backup }),
        Err(io) => Err(ReadError::Io(io)),
    }
}

type Parsed = (gpt_disk_types::Guid, Vec<Partition>);

/// Reads and checks the header at `lba` and its entry array.
fn read_one<D: Disk>(disk: &mut D, lba: u64) -> Result<Result<Parsed, GptError>, D::Error> {
    let bs = disk.block_size();
    let blocks = disk.blocks();
    let mut block = vec![0u8; bs];
    disk.read(lba, &mut block)?;
    let h: GptHeader = bytemuck::pod_read_unaligned(&block[..HEADER_MIN as usize]);
    if let Err(e) = check_header(&h, &block, lba, blocks) {
        return Ok(Err(e));
    }
    let size = h.size_of_partition_entry.to_u32();
    let count = h.number_of_partition_entries.to_u32();
    let array_bytes = u64::from(size) * u64::from(count);
    let array_blocks = array_bytes.div_ceil(bs as u64);
    let array_lba = h.partition_entry_lba.to_u64();
    // The array must lie on the disk, outside the usable area and not over the header.
    let first_usable = h.first_usable_lba.to_u64();
    let last_usable = h.last_usable_lba.to_u64();
    let array_end = array_lba.checked_add(array_blocks);
    let bad_array = GptError::EntryArray {
        lba: array_lba,
        blocks: array_blocks,
    };
    match array_end {
        Some(end) if array_lba >= 1 && end <= blocks => {
            let in_usable = array_lba <= last_usable && end > first_usable;
            let over_header = array_lba <= lba && end > lba;
            if in_usable || over_header {
                return Ok(Err(bad_array));
            }
        }
        _ => return Ok(Err(bad_array)),
    }
    let mut array = vec![0u8; (array_blocks as usize) * bs];
    disk.read(array_lba, &mut array)?;
    let array = &array[..array_bytes as usize];
    let computed = crc32(array);
    let stored = h.partition_entry_array_crc32.0.to_u32();
    if computed != stored {
        return Ok(Err(GptError::EntryArrayCrc { stored, computed }));
    }
    let mut parts = Vec::new();
    for (i, raw) in array.chunks_exact(size as usize).enumerate() {
        let e: GptPartitionEntry = bytemuck::pod_read_unaligned(&raw[..ENTRY_MIN as usize]);
        if !e.is_used() {
            continue;
        }
        let number = i as u32 + 1;
        let (first, last) = (e.starting_lba.to_u64(), e.ending_lba.to_u64());
        if first > last || first < first_usable || last > last_usable {
            return Ok(Err(GptError::PartitionRange {
                number,
                first,
                last,
            }));
        }
        parts.push(Partition {
            number,
            first_lba: first,
            blocks: last - first + 1,
            kind: PartitionKind::Gpt(e.partition_type_guid.0),
            name: name(&raw[56..128]),
            uuid: { e.unique_partition_guid }.to_string(),
        });
    }
    if let Some((a, b)) = overlap(&parts) {
        return Ok(Err(GptError::Overlap { a, b }));
    }
    Ok(Ok((h.disk_guid, parts)))
}

fn check_header(h: &GptHeader, block: &[u8], lba: u64, blocks: u64) -> Result<(), GptError> {
    if !h.is_signature_valid() {
        return Err(GptError::Signature);
    }
    let hsize = h.header_size.to_u32();
    if hsize < HEADER_MIN || hsize as usize > block.len() {
        return Err(GptError::HeaderSize(hsize));
    }
    let mut copy = block[..hsize as usize].to_vec();
    copy[16..20].fill(0);
    let computed = crc32(&copy);
    let stored = h.header_crc32.0.to_u32();
    if computed != stored {
        return Err(GptError::HeaderCrc { stored, computed });
    }
    let my = h.my_lba.to_u64();
    if my != lba {
        return Err(GptError::MyLba {
            stored: my,
            expected: lba,
        });
    }
    let (first, last) = (h.first_usable_lba.to_u64(), h.last_usable_lba.to_u64());
    if first < 2 || first > last || last >= blocks - 1 {
        return Err(GptError::UsableRange { first, last });
    }
    let size = h.size_of_partition_entry.to_u32();
    if !(ENTRY_MIN..=ENTRY_MAX).contains(&size) || !size.is_power_of_two() {
        return Err(GptError::EntrySize(size));
    }
    let count = h.number_of_partition_entries.to_u32();
    if count == 0 || count > MAX_ENTRIES || u64::from(count) * u64::from(size) > ARRAY_MAX {
        return Err(GptError::EntryCount(count));
    }
    Ok(())
}

/// The partition name: UTF-16LE up to the first NUL, unpaired surrogates replaced.
fn name(raw: &[u8]) -> String {
    let units = raw
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .take_while(|&u| u != 0);
    char::decode_utf16(units)
        .map(|c| c.unwrap_or(char::REPLACEMENT_CHARACTER))
        .collect()
}

/// The first two partitions (by number) whose extents overlap.
pub(crate) fn overlap(parts: &[Partition]) -> Option<(u32, u32)> {
    let mut sorted: Vec<&Partition> = parts.iter().collect();
    sorted.sort_by_key(|p| p.first_lba);
    sorted.windows(2).find_map(|w| {
        let end = w[0].first_lba + w[0].blocks;
        (w[1].first_lba < end).then(|| (w[0].number.min(w[1].number), w[0].number.max(w[1].number)))
    })
}
