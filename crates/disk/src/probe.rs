//! Naming what a partition holds from its first bytes: ext2/3/4 (with the superblock's label,
//! UUID and totals), XFS, btrfs, FAT and Linux swap, so a partition vioboot cannot read is
//! named rather than taken for garbage.

use alloc::format;
use alloc::string::String;
use core::fmt;

/// Bytes [`probe`] wants from the start of a partition (btrfs's superblock is at 64 KiB).
pub const PROBE_BYTES: usize = 0x10000 + 0x1000;

const EXT_SUPER: usize = 1024;
const EXT_MAGIC: u16 = 0xef53;
const BTRFS_SUPER: usize = 0x10000;

/// The parts of an ext2/3/4 superblock vioboot reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtSuper {
    /// 2, 3 or 4 (by its features: extents or 64-bit mean 4, a journal 3).
    pub version: u8,
    pub block_size: u32,
    pub blocks: u64,
    pub free_blocks: u64,
    pub inodes: u32,
    /// Blocks and inodes per block group, and the first data block (0, or 1 with 1 KiB
    /// blocks): what a reader sizes its group table by, so a reader must check them first.
    pub blocks_per_group: u32,
    pub inodes_per_group: u32,
    pub first_data_block: u32,
    pub label: String,
    pub uuid: String,
}

/// What a partition holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FsKind {
    Ext(ExtSuper),
    Xfs {
        label: String,
    },
    Btrfs {
        label: String,
    },
    /// `uuid`: the volume serial as Linux names it (`UUID=ABCD-1234`).
    Fat {
        fat32: bool,
        label: String,
        uuid: String,
    },
    Swap,
    Unknown,
}

impl FsKind {
    pub fn name(&self) -> &'static str {
        match self {
            FsKind::Ext(s) => match s.version {
                2 => "ext2",
                3 => "ext3",
                _ => "ext4",
            },
            FsKind::Xfs { .. } => "xfs",
            FsKind::Btrfs { .. } => "btrfs",
            FsKind::Fat { fat32: true, .. } => "vfat (FAT32)",
            FsKind::Fat { .. } => "vfat",
            FsKind::Swap => "swap",
            FsKind::Unknown => "unknown",
        }
    }

    pub fn label(&self) -> &str {
        match self {
            FsKind::Ext(s) => &s.label,
            FsKind::Xfs { label } | FsKind::Btrfs { label } | FsKind::Fat { label, .. } => label,
            _ => "",
        }
    }
}

impl fmt::Display for FsKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())?;
        if !self.label().is_empty() {
            write!(f, " \"{}\"", self.label())?;
        }
        Ok(())
    }
}

fn le16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}
fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Text of a NUL-padded label, invalid UTF-8 replaced.
fn text(b: &[u8]) -> String {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}

/// A UUID in the usual 8-4-4-4-12 lowercase form, bytes in order.
pub fn uuid_text(b: &[u8; 16]) -> String {
    format!(
        "{:02x}{:02x}{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}{:02x}{:02x}{:02x}{:02x}",
        b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]
    )
}

/// The ext superblock in `first` (a partition's first bytes), if there is a valid one.
pub fn ext_super(first: &[u8]) -> Option<ExtSuper> {
    let s = first.get(EXT_SUPER..EXT_SUPER + 1024)?;
    if le16(s, 0x38) != EXT_MAGIC {
        return None;
    }
    let log = le32(s, 0x18);
    if log > 6 {
        return None;
    }
    let incompat = le32(s, 0x60);
    let is64 = incompat & 0x80 != 0;
    let hi = |at| {
        if is64 {
            u64::from(le32(s, at)) << 32
        } else {
            0
        }
    };
    let version = if incompat & (0x40 | 0x80) != 0 {
        4
    } else if le32(s, 0x5c) & 0x4 != 0 {
        3
    } else {
        2
    };
    let mut uuid = [0u8; 16];
    uuid.copy_from_slice(&s[0x68..0x78]);
    Some(ExtSuper {
        version,
        block_size: 1024 << log,
        blocks: u64::from(le32(s, 0x04)) | hi(0x150),
        free_blocks: u64::from(le32(s, 0x0c)) | hi(0x158),
        inodes: le32(s, 0x00),
        blocks_per_group: le32(s, 0x20),
        inodes_per_group: le32(s, 0x28),
        first_data_block: le32(s, 0x14),
        label: text(&s[0x78..0x88]),
        uuid: uuid_text(&uuid),
    })
}

/// A FAT volume serial as Linux's `UUID=` shows it.
fn fat_serial(b: &[u8]) -> String {
    let v = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    format!("{:04X}-{:04X}", v >> 16, v & 0xffff)
}

/// Names what `first` (the first [`PROBE_BYTES`] of a partition, or fewer) holds.
pub fn probe(first: &[u8]) -> FsKind {
    if let Some(s) = ext_super(first) {
        return FsKind::Ext(s);
    }
    if first.starts_with(b"XFSB") && first.len() >= 120 {
        return FsKind::Xfs {
            label: text(&first[108..120]),
        };
    }
    if first.get(BTRFS_SUPER + 0x40..BTRFS_SUPER + 0x48) == Some(b"_BHRfS_M") {
        let label = first
            .get(BTRFS_SUPER + 0x12b..BTRFS_SUPER + 0x22b)
            .map_or(String::new(), text);
        return FsKind::Btrfs { label };
    }
    if first.len() >= 512 && first[510] == 0x55 && first[511] == 0xaa {
        if &first[82..87] == b"FAT32" {
            return FsKind::Fat {
                fat32: true,
                label: text(&first[71..82]).trim_end().into(),
                uuid: fat_serial(&first[67..71]),
            };
        }
        if &first[54..57] == b"FAT" {
            return FsKind::Fat {
                fat32: false,
                label: text(&first[43..54]).trim_end().into(),
                uuid: fat_serial(&first[39..43]),
            };
        }
    }
    // Linux swap ends its first page with this; ppc64 kernels use 64 KiB pages.
    for page in [4096usize, 65536] {
        if first.get(page - 10..page) == Some(b"SWAPSPACE2") {
            return FsKind::Swap;
        }
    }
    FsKind::Unknown
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    #[test]
    fn names_each_kind() {
        let mut b = vec![0u8; PROBE_BYTES];
        assert_eq!(probe(&b), FsKind::Unknown);
        // ext4: magic, 4 KiB blocks, extents, 64-bit counts.
        let s = EXT_SUPER;
        b[s + 0x38..s + 0x3a].copy_from_slice(&EXT_MAGIC.to_le_bytes());
        b[s + 0x18] = 2;
        b[s + 0x60] = 0xc0;
        b[s + 0x04..s + 0x08].copy_from_slice(&1000u32.to_le_bytes());
        b[s + 0x150..s + 0x154].copy_from_slice(&1u32.to_le_bytes());
        b[s + 0x78..s + 0x7c].copy_from_slice(b"boot");
        b[s + 0x68] = 0xab;
        let FsKind::Ext(e) = probe(&b) else { panic!() };
        assert_eq!(
            (e.version, e.block_size, e.blocks),
            (4, 4096, (1 << 32) + 1000)
        );
        assert_eq!(e.label, "boot");
        assert!(e.uuid.starts_with("ab000000-0000"));
        // A block size exponent out of range is not ext.
        b[s + 0x18] = 40;
        assert_eq!(probe(&b), FsKind::Unknown);

        let mut x = vec![0u8; 512];
        x[..4].copy_from_slice(b"XFSB");
        x[108..112].copy_from_slice(b"root");
        assert_eq!(
            probe(&x),
            FsKind::Xfs {
                label: "root".into()
            }
        );
        assert_eq!(probe(&x).name(), "xfs");

        let mut bt = vec![0u8; PROBE_BYTES];
        bt[BTRFS_SUPER + 0x40..BTRFS_SUPER + 0x48].copy_from_slice(b"_BHRfS_M");
        assert_eq!(probe(&bt).name(), "btrfs");
        assert_eq!(
            probe(&bt[..1000]),
            FsKind::Unknown,
            "short input is not read past"
        );

        let mut f = vec![0u8; 512];
        f[510] = 0x55;
        f[511] = 0xaa;
        f[82..87].copy_from_slice(b"FAT32");
        f[71..82].copy_from_slice(b"EFI        ");
        assert_eq!(
            probe(&f),
            FsKind::Fat {
                fat32: true,
                label: "EFI".into(),
                uuid: "0000-0000".into()
            }
        );

        let mut sw = vec![0u8; 4096];
        sw[4086..].copy_from_slice(b"SWAPSPACE2");
        assert_eq!(probe(&sw), FsKind::Swap);
    }
}
