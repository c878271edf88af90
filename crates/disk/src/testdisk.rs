//! A disk in memory for the tests, recording which blocks were read.

use crate::Disk;
use alloc::vec;
use alloc::vec::Vec;

pub struct MemDisk {
    pub bs: usize,
    pub bytes: Vec<u8>,
    /// (first block, blocks) of every read.
    pub touched: Vec<(u64, u64)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutOfDisk;

impl core::fmt::Display for OutOfDisk {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("out of disk")
    }
}

impl MemDisk {
    pub fn zeroed(bs: usize, blocks: u64) -> MemDisk {
        MemDisk {
            bs,
            bytes: vec![0; bs * blocks as usize],
            touched: Vec::new(),
        }
    }

    /// Every byte different from its neighbours' positions.
    pub fn numbered(bs: usize, blocks: u64) -> MemDisk {
        let mut d = MemDisk::zeroed(bs, blocks);
        for (i, b) in d.bytes.iter_mut().enumerate() {
            *b = (i % 251) as u8;
        }
        d
    }

    pub fn block_mut(&mut self, lba: u64) -> &mut [u8] {
        let s = lba as usize * self.bs;
        &mut self.bytes[s..s + self.bs]
    }
}

impl Disk for MemDisk {
    type Error = OutOfDisk;
    fn block_size(&self) -> usize {
        self.bs
    }
    fn blocks(&self) -> u64 {
        (self.bytes.len() / self.bs) as u64
    }
    fn read(&mut self, lba: u64, buf: &mut [u8]) -> Result<(), OutOfDisk> {
        assert_eq!(buf.len() % self.bs, 0, "whole blocks only");
        let s = (lba as usize).checked_mul(self.bs).ok_or(OutOfDisk)?;
        let src = self.bytes.get(s..s + buf.len()).ok_or(OutOfDisk)?;
        buf.copy_from_slice(src);
        self.touched.push((lba, (buf.len() / self.bs) as u64));
        Ok(())
    }
}
