//! MBR: four primary records at byte 446 and, in an extended partition, the chain of extended
//! boot records (EBRs) holding logical partitions. The chain is followed at most
//! [`MAX_LOGICAL`] links and never to an EBR already visited or outside the extended partition.

use crate::table::{mbr_type, Partition, PartitionKind, Table, TableKind};
use crate::Disk;
use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;
use gpt_disk_types::MbrPartitionRecord;

/// Extended boot records (so logical partitions) followed at most.
pub const MAX_LOGICAL: u32 = 128;

/// One record as read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record {
    pub kind: u8,
    pub first_lba: u32,
    pub blocks: u32,
}

/// Block 0 read as an MBR.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mbr {
    pub signature: u32,
    pub records: [Record; 4],
}

fn records(sector: &[u8]) -> [Record; 4] {
    core::array::from_fn(|i| {
        let off = 446 + 16 * i;
        let r: MbrPartitionRecord = bytemuck::pod_read_unaligned(&sector[off..off + 16]);
        Record {
            kind: r.os_indicator,
            first_lba: r.starting_lba.to_u32(),
            blocks: r.size_in_lba.to_u32(),
        }
    })
}

fn has_boot_signature(sector: &[u8]) -> bool {
    sector[510] == 0x55 && sector[511] == 0xaa
}

impl Mbr {
    /// `sector` is the first 512 bytes of block 0; None without the 0x55AA signature.
    pub fn parse(sector: &[u8]) -> Option<Mbr> {
        if sector.len() < 512 || !has_boot_signature(sector) {
            return None;
        }
        Some(Mbr {
            signature: u32::from_le_bytes([sector[440], sector[441], sector[442], sector[443]]),
            records: records(sector),
        })
    }
}

/// What is wrong with an MBR.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MbrError {
    /// A partition that does not fit on the disk (or inside its extended partition).
    Range {
        number: u32,
        first: u64,
        blocks: u64,
    },
    /// An EBR without the 0x55AA signature.
    EbrSignature {
        lba: u64,
    },
    /// The EBR chain comes back to an EBR already read.
    EbrLoop {
        lba: u64,
    },
    /// More than [`MAX_LOGICAL`] extended boot records in the chain.
    TooManyLogical,
    /// More than one extended partition.
    TwoExtended,
    Overlap {
        a: u32,
        b: u32,
    },
}

impl fmt::Display for MbrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            MbrError::Range {
                number,
                first,
                blocks,
            } => {
                write!(
                    f,
                    "partition {number} ({blocks} blocks at LBA {first}) outside the disk"
                )
            }
            MbrError::EbrSignature { lba } => {
                write!(f, "no 0x55AA signature in the EBR at LBA {lba}")
            }
            MbrError::EbrLoop { lba } => write!(f, "the EBR chain loops back to LBA {lba}"),
            MbrError::TooManyLogical => write!(f, "more than {MAX_LOGICAL} extended boot records"),
            MbrError::TwoExtended => f.write_str("more than one extended partition"),
            MbrError::Overlap { a, b } => write!(f, "partitions {a} and {b} overlap"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadError<E> {
    Io(E),
    Bad(MbrError),
}

fn is_extended(kind: u8) -> bool {
    matches!(
        kind,
        mbr_type::EXTENDED_CHS | mbr_type::EXTENDED_LBA | mbr_type::EXTENDED_LINUX
    )
}

fn part(number: u32, first: u64, blocks: u64, kind: u8, signature: u32) -> Partition {
    Partition {
        number,
        first_lba: first,
        blocks,
        kind: PartitionKind::Mbr(kind),
        name: String::new(),
        uuid: format!("{signature:08x}-{number:02x}"),
    }
}

/// The primary and logical partitions of `mbr` (read from block 0 of `disk`).
pub fn read<D: Disk>(disk: &mut D, mbr: &Mbr) -> Result<Table, ReadError<D::Error>> {
    let blocks = disk.blocks();
    let bad = |e| Err(ReadError::Bad(e));
    let mut parts = Vec::new();
    let mut extended = None;
    for (i, r) in mbr.records.iter().enumerate() {
        let number = i as u32 + 1;
        if r.kind == mbr_type::EMPTY || r.blocks == 0 {
            continue;
        }
        let (first, len) = (u64::from(r.first_lba), u64::from(r.blocks));
        if first == 0 || first + len > blocks {
            return bad(MbrError::Range {
                number,
                first,
                blocks: len,
            });
        }
        if is_extended(r.kind) {
            if extended.replace((first, len)).is_some() {
                return bad(MbrError::TwoExtended);
            }
        } else {
            parts.push(part(number, first, len, r.kind, mbr.signature));
        }
    }
    if let Some((ext_first, ext_len)) = extended {
        logical(disk, ext_first, ext_len, mbr.signature, &mut parts)?;
    }
    if let Some((a, b)) = crate::gpt::overlap(&parts) {
        return bad(MbrError::Overlap { a, b });
    }
    Ok(Table {
        kind: TableKind::Mbr {
            signature: mbr.signature,
        },
        partitions: parts,
    })
}

/// Follows the EBR chain of the extended partition at `ext_first` (`ext_len` blocks).
fn logical<D: Disk>(
    disk: &mut D,
    ext_first: u64,
    ext_len: u64,
    signature: u32,
    parts: &mut Vec<Partition>,
) -> Result<(), ReadError<D::Error>> {
    let ext_end = ext_first + ext_len;
    let mut block = vec![0u8; disk.block_size()];
    let mut visited: Vec<u64> = Vec::new();
    let mut ebr = ext_first;
    let mut number = 5;
    loop {
        if visited.contains(&ebr) {
            return Err(ReadError::Bad(MbrError::EbrLoop { lba: ebr }));
        }
        if visited.len() as u32 >= MAX_LOGICAL {
            return Err(ReadError::Bad(MbrError::TooManyLogical));
        }
        visited.push(ebr);
        disk.read(ebr, &mut block).map_err(ReadError::Io)?;
        if !has_boot_signature(&block[..512]) {
            return Err(ReadError::Bad(MbrError::EbrSignature { lba: ebr }));
        }
        let r = records(&block[..512]);
        if r[0].kind != mbr_type::EMPTY && r[0].blocks != 0 {
            let first = ebr + u64::from(r[0].first_lba);
            let len = u64::from(r[0].blocks);
            if r[0].first_lba == 0 || first + len > ext_end {
                return Err(ReadError::Bad(MbrError::Range {
                    number,
                    first,
                    blocks: len,
                }));
            }
            parts.push(part(number, first, len, r[0].kind, signature));
            number += 1;
        }
        if !is_extended(r[1].kind) || r[1].blocks == 0 {
            return Ok(());
        }
        let next = ext_first + u64::from(r[1].first_lba);
        if next >= ext_end {
            return Err(ReadError::Bad(MbrError::Range {
                number,
                first: next,
                blocks: u64::from(r[1].blocks),
            }));
        }
        ebr = next;
    }
}
