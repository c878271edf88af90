//! What a partition table says, whichever kind it is: the partitions (number, extent, type,
//! name, unique id) and which table was read; and [`read_table`], which tells GPT from MBR.

use crate::{gpt, mbr, Disk};
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use gpt_disk_types::Guid;

/// GPT partition type GUIDs vioboot names.
pub mod guid {
    use gpt_disk_types::{guid, Guid};
    /// PowerPC PReP boot (where Open Firmware finds a boot loader on a GPT disk).
    pub const PREP_BOOT: Guid = guid!("9e1a2d38-c612-4316-aa26-8b49521e5a8b");
    pub const LINUX_FS: Guid = guid!("0fc63daf-8483-4772-8e79-3d69d8477de4");
    pub const EFI_SYSTEM: Guid = guid!("c12a7328-f81f-11d2-ba4b-00a0c93ec93b");
    /// Linux extended boot loader partition (XBOOTLDR, a separate /boot).
    pub const XBOOTLDR: Guid = guid!("bc13c2ff-59e6-4262-a352-b275fd6f7172");
    pub const LINUX_SWAP: Guid = guid!("0657fd6d-a4ab-43c4-84e5-0933c84b4f4f");
    pub const LINUX_LVM: Guid = guid!("e6d6d379-f507-44c2-a23c-238f2a3df928");
    /// Root partition for 64-bit PowerPC little-endian (Discoverable Partitions).
    pub const ROOT_PPC64LE: Guid = guid!("c31c45e6-3f39-412e-80fb-4809c4980599");
}

/// MBR partition types vioboot names.
pub mod mbr_type {
    pub const EMPTY: u8 = 0x00;
    pub const FAT32_LBA: u8 = 0x0c;
    pub const EXTENDED_CHS: u8 = 0x05;
    pub const EXTENDED_LBA: u8 = 0x0f;
    pub const EXTENDED_LINUX: u8 = 0x85;
    /// PowerPC PReP boot.
    pub const PREP: u8 = 0x41;
    pub const LINUX_SWAP: u8 = 0x82;
    pub const LINUX: u8 = 0x83;
    pub const LINUX_LVM: u8 = 0x8e;
    pub const EFI_SYSTEM: u8 = 0xef;
    /// The Boot Loader Specification's boot partition (its XBOOTLDR on an MBR disk).
    pub const XBOOTLDR: u8 = 0xea;
    /// A protective MBR: the disk holds a GPT.
    pub const GPT_PROTECTIVE: u8 = 0xee;
}

/// A partition's type, as its table gives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartitionKind {
    Gpt(Guid),
    Mbr(u8),
}

impl PartitionKind {
    /// What the type is called, or "" when vioboot does not know it.
    pub fn name(&self) -> &'static str {
        match *self {
            PartitionKind::Gpt(g) => match g {
                guid::PREP_BOOT => "PReP boot",
                guid::LINUX_FS => "Linux filesystem",
                guid::EFI_SYSTEM => "EFI system",
                guid::XBOOTLDR => "Linux /boot (XBOOTLDR)",
                guid::LINUX_SWAP => "Linux swap",
                guid::LINUX_LVM => "Linux LVM",
                guid::ROOT_PPC64LE => "Linux root (ppc64le)",
                _ => "",
            },
            PartitionKind::Mbr(t) => match t {
                mbr_type::PREP => "PReP boot",
                mbr_type::LINUX => "Linux",
                mbr_type::LINUX_SWAP => "Linux swap",
                mbr_type::LINUX_LVM => "Linux LVM",
                mbr_type::EFI_SYSTEM => "EFI system",
                mbr_type::XBOOTLDR => "Linux /boot (XBOOTLDR)",
                mbr_type::FAT32_LBA | 0x0b | 0x06 | 0x0e => "FAT",
                _ => "",
            },
        }
    }

    /// The part a partition plays in the Boot Loader Specification, if any: the EFI system
    /// partition (GPT, or MBR type 0xEF) or the extended boot loader partition (GPT
    /// XBOOTLDR, or MBR type 0xEA, the specification's single location on an MBR disk).
    pub fn boot_role(&self) -> Option<BootRole> {
        match *self {
            PartitionKind::Gpt(guid::EFI_SYSTEM) | PartitionKind::Mbr(mbr_type::EFI_SYSTEM) => {
                Some(BootRole::Esp)
            }
            PartitionKind::Gpt(guid::XBOOTLDR) | PartitionKind::Mbr(mbr_type::XBOOTLDR) => {
                Some(BootRole::Xbootldr)
            }
            _ => None,
        }
    }

    /// A PReP boot partition holds a raw boot program, never a file system.
    pub fn is_prep(&self) -> bool {
        matches!(
            *self,
            PartitionKind::Gpt(guid::PREP_BOOT) | PartitionKind::Mbr(mbr_type::PREP)
        )
    }
}

impl fmt::Display for PartitionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = self.name();
        match self {
            PartitionKind::Gpt(g) if name.is_empty() => write!(f, "type {g}"),
            PartitionKind::Mbr(t) if name.is_empty() => write!(f, "type {t:#04x}"),
            _ => f.write_str(name),
        }
    }
}

/// The two partitions the Boot Loader Specification reads entries from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BootRole {
    /// The EFI system partition.
    Esp,
    /// The extended boot loader partition (a separate `/boot`).
    Xbootldr,
}

impl BootRole {
    /// The partition the specification pairs with this one on the same disk.
    pub fn partner(self) -> BootRole {
        match self {
            BootRole::Esp => BootRole::Xbootldr,
            BootRole::Xbootldr => BootRole::Esp,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            BootRole::Esp => "ESP",
            BootRole::Xbootldr => "XBOOTLDR",
        }
    }
}

/// One partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    /// 1-based: the GPT entry's index + 1; MBR primaries 1..=4, logical partitions from 5.
    pub number: u32,
    pub first_lba: u64,
    pub blocks: u64,
    pub kind: PartitionKind,
    /// The GPT name (UTF-16 decoded); empty on MBR.
    pub name: String,
    /// The GPT unique partition GUID (lowercase), or on MBR Linux's `SSSSSSSS-NN` (disk
    /// signature, partition number): what `root=PARTUUID=` names.
    pub uuid: String,
}

/// Which table was read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TableKind {
    Gpt {
        disk_guid: Guid,
        /// The primary header or its entries were damaged (why) and the backup was used.
        primary_damaged: Option<gpt::GptError>,
    },
    Mbr {
        signature: u32,
    },
}

/// A disk's partitions, in table order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    pub kind: TableKind,
    pub partitions: Vec<Partition>,
}

impl Table {
    pub fn kind_name(&self) -> &'static str {
        match self.kind {
            TableKind::Gpt { .. } => "GPT",
            TableKind::Mbr { .. } => "MBR",
        }
    }
}

/// Why a disk's table could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TableError<E> {
    /// The disk failed a read: its own error.
    Io(E),
    /// A block size that is not a power of two from 512, or a disk too small for any table.
    Geometry {
        block_size: usize,
        blocks: u64,
    },
    /// Neither a GPT header nor an MBR signature.
    NoTable,
    /// Both GPT headers are damaged: why, for each.
    Gpt {
        primary: gpt::GptError,
        backup: gpt::GptError,
    },
    Mbr(mbr::MbrError),
}

impl<E: fmt::Display> fmt::Display for TableError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TableError::Io(e) => write!(f, "read failed: {e}"),
            TableError::Geometry { block_size, blocks } => {
                write!(
                    f,
                    "unusable geometry: {blocks} blocks of {block_size} bytes"
                )
            }
            TableError::NoTable => {
                f.write_str("no partition table (no GPT header, no MBR signature)")
            }
            TableError::Gpt { primary, backup } => {
                write!(
                    f,
                    "GPT damaged: primary header: {primary}; backup header: {backup}"
                )
            }
            TableError::Mbr(e) => write!(f, "MBR: {e}"),
        }
    }
}

/// Reads block 0 and decides: a protective MBR (type 0xEE) or a GPT header at LBA 1 means GPT;
/// else the boot signature 0x55AA means MBR.
pub fn read_table<D: Disk>(disk: &mut D) -> Result<Table, TableError<D::Error>> {
    let bs = disk.block_size();
    let blocks = disk.blocks();
    if bs < 512 || !bs.is_power_of_two() || bs > 64 * 1024 || blocks < 3 {
        return Err(TableError::Geometry {
            block_size: bs,
            blocks,
        });
    }
    let mut b0 = alloc::vec![0u8; bs];
    disk.read(0, &mut b0).map_err(TableError::Io)?;
    let mbr = mbr::Mbr::parse(&b0[..512]);
    let protective = mbr
        .as_ref()
        .is_some_and(|m| m.records.iter().any(|r| r.kind == mbr_type::GPT_PROTECTIVE));
    if protective || mbr.is_none() {
        match gpt::read(disk) {
            Ok(t) => return Ok(t),
            Err(gpt::ReadError::Io(e)) => return Err(TableError::Io(e)),
            Err(gpt::ReadError::Damaged { primary, backup }) => {
                if protective
                    || primary != gpt::GptError::Signature
                    || backup != gpt::GptError::Signature
                {
                    return Err(TableError::Gpt { primary, backup });
                }
            }
        }
    }
    match mbr {
        Some(m) => mbr::read(disk, &m).map_err(|e| match e {
            mbr::ReadError::Io(e) => TableError::Io(e),
            mbr::ReadError::Bad(e) => TableError::Mbr(e),
        }),
        None => Err(TableError::NoTable),
    }
}
