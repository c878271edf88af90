//! Disks without knowing devices: partition tables (GPT with its backup, MBR with its logical
//! chain), a partition as a confined reader with read-ahead, and naming the file system a
//! partition holds. Everything reads through [`Disk`]; every length, offset and count read from
//! a disk is checked before it is used.

#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod fat;
pub mod gpt;
pub mod mbr;
pub mod probe;
pub mod reader;
pub mod table;

pub use reader::{Confined, ReadAhead};
pub use table::{read_table, BootRole, Partition, PartitionKind, Table, TableError, TableKind};

/// What the parsers read through: whole logical blocks from 0.
pub trait Disk {
    type Error;
    /// Bytes per logical block (512 or 4096; any power of two from 512 is accepted).
    fn block_size(&self) -> usize;
    /// Logical blocks on the disk.
    fn blocks(&self) -> u64;
    /// Reads whole blocks from `lba` into `buf` (a multiple of the block size).
    fn read(&mut self, lba: u64, buf: &mut [u8]) -> Result<(), Self::Error>;
}

impl<D: Disk + ?Sized> Disk for &mut D {
    type Error = D::Error;
    fn block_size(&self) -> usize {
        (**self).block_size()
    }
    fn blocks(&self) -> u64 {
        (**self).blocks()
    }
    fn read(&mut self, lba: u64, buf: &mut [u8]) -> Result<(), Self::Error> {
        (**self).read(lba, buf)
    }
}

#[cfg(test)]
pub(crate) mod testdisk;
#[cfg(test)]
mod tests;
