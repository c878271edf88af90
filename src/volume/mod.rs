//! What a block device holds: its partition table (through the `disk` crate), each partition as
//! a confined [`BlockDevice`] ([`partition::Partition`]), what file system each holds, and ext4
//! partitions as a [`crate::dev::FileSystem`] ([`ext4::Ext4Fs`]). Written only against the
//! `dev` traits: it knows no bus, transport or virtio.

pub mod ext4;
pub mod fat;
pub mod partition;

use crate::dev::{BlockDevice, DeviceError};
use alloc::boxed::Box;
use alloc::rc::Rc;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::cell::RefCell;
use disk::probe::{self, FsKind};
use disk::{Confined, ReadAhead, Table, TableError};

/// One disk shared by its partitions (vioboot runs on one CPU, without interrupts).
pub type SharedDisk = Rc<RefCell<Box<dyn BlockDevice>>>;

/// A [`BlockDevice`] seen through the `disk` crate's reading trait.
pub struct Blocks<'a>(pub &'a mut dyn BlockDevice);

impl disk::Disk for Blocks<'_> {
    type Error = DeviceError;
    fn block_size(&self) -> usize {
        self.0.block_size()
    }
    fn blocks(&self) -> u64 {
        self.0.capacity()
    }
    fn read(&mut self, lba: u64, buf: &mut [u8]) -> Result<(), DeviceError> {
        self.0.read(lba, buf)
    }
}

/// A partition and what it holds.
pub struct Volume {
    pub part: disk::Partition,
    /// What the first bytes say (Unknown for a PReP partition, which is never probed).
    pub fs: FsKind,
    /// A read of the first bytes failed.
    pub probe_error: Option<DeviceError>,
}

impl Volume {
    /// How the report and the menu name it: `ext4 "boot"`, `PReP boot`.
    pub fn describe(&self) -> String {
        use core::fmt::Write;
        let mut s = String::new();
        let _ = write!(s, "{}", self.part.kind);
        if !matches!(self.fs, FsKind::Unknown) {
            let _ = write!(s, ", {}", self.fs);
        }
        if !self.part.name.is_empty() {
            let _ = write!(s, ", name \"{}\"", self.part.name);
        }
        s
    }
}

/// A disk's table and what each partition holds.
pub struct Layout {
    pub table: Result<Table, TableError<DeviceError>>,
    pub volumes: Vec<Volume>,
    pub block_size: usize,
    pub blocks: u64,
}

impl Layout {
    /// One line for the report: the table kind and each partition.
    pub fn summary(&self) -> String {
        use core::fmt::Write;
        let mut s = String::new();
        match &self.table {
            Err(e) => {
                let _ = write!(s, "{e}");
            }
            Ok(t) => {
                let n = t.partitions.len();
                let _ = write!(
                    s,
                    "{} ({} blocks of {} bytes), {n} partition{}",
                    t.kind_name(),
                    self.blocks,
                    self.block_size,
                    if n == 1 { "" } else { "s" }
                );
                if let disk::TableKind::Gpt {
                    primary_damaged: Some(why),
                    ..
                } = &t.kind
                {
                    let _ = write!(s, " (primary header damaged: {why}; the backup was used)");
                }
                for v in &self.volumes {
                    let mib = (v.part.blocks * self.block_size as u64) >> 20;
                    let _ = write!(s, "; {}: {mib} MiB {}", v.part.number, v.describe());
                    if let Some(e) = &v.probe_error {
                        let _ = write!(s, " (unreadable: {e})");
                    }
                }
            }
        }
        s
    }

    /// Whether the report should count this as a failure: a table that is there but damaged
    /// beyond use, or a disk that cannot be read. A disk with no table is not a failure.
    pub fn failed(&self) -> bool {
        matches!(
            self.table,
            Err(TableError::Io(_) | TableError::Gpt { .. } | TableError::Mbr(_))
        ) || self.volumes.iter().any(|v| v.probe_error.is_some())
    }
}

/// Reads `dev`'s partition table and probes each partition (never writes).
pub fn layout(dev: &mut dyn BlockDevice) -> Layout {
    let table = disk::read_table(&mut Blocks(&mut *dev));
    let mut volumes = Vec::new();
    if let Ok(t) = &table {
        for p in &t.partitions {
            let (fs, probe_error) = if p.kind.is_prep() {
                (FsKind::Unknown, None)
            } else {
                match first_bytes(dev, p) {
                    Ok(b) => (probe::probe(&b), None),
                    Err(e) => (FsKind::Unknown, Some(e)),
                }
            };
            volumes.push(Volume {
                part: p.clone(),
                fs,
                probe_error,
            });
        }
    }
    Layout {
        table,
        volumes,
        block_size: dev.block_size(),
        blocks: dev.capacity(),
    }
}

/// A disk shared by its partitions, and its layout.
pub struct Scan {
    pub disk: SharedDisk,
    pub layout: Layout,
}

/// Reads `dev`'s layout and keeps the disk to open its partitions.
pub fn scan(mut dev: Box<dyn BlockDevice>) -> Scan {
    let layout = layout(dev.as_mut());
    Scan {
        disk: Rc::new(RefCell::new(dev)),
        layout,
    }
}

/// The first [`probe::PROBE_BYTES`] of `p` (fewer if it is smaller).
fn first_bytes(d: &mut dyn BlockDevice, p: &disk::Partition) -> Result<Vec<u8>, DeviceError> {
    let bs = d.block_size();
    let mut ra = ReadAhead::new(Confined::new(p.first_lba, p.blocks), bs);
    let n = (probe::PROBE_BYTES as u64).min(ra.size()) as usize;
    let mut buf = vec![0u8; n];
    ra.read(&mut Blocks(&mut *d), 0, &mut buf)
        .map_err(|e| match e {
            disk::reader::ReadError::Io(e) => e,
            disk::reader::ReadError::OutOfRange { .. } => DeviceError::OutOfRange {
                device: String::from(d.name()),
                block: p.first_lba,
                blocks: p.blocks,
                capacity: d.capacity(),
            },
        })?;
    Ok(buf)
}
