//! A partition as something to read: [`Confined`] maps partition-relative blocks to the disk
//! and refuses anything outside the partition; [`ReadAhead`] serves byte-addressed reads (what
//! a file system library asks for) from a buffer filled a chunk at a time, so small sequential
//! reads become few large device reads.

use crate::Disk;
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

/// A range of a disk's blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Confined {
    pub first: u64,
    pub blocks: u64,
}

impl Confined {
    pub fn new(first: u64, blocks: u64) -> Confined {
        Confined { first, blocks }
    }

    /// The disk LBA of partition block `lba`, if all `count` blocks from it lie inside.
    pub fn absolute(&self, lba: u64, count: u64) -> Option<u64> {
        let end = lba.checked_add(count)?;
        (end <= self.blocks).then_some(self.first + lba)
    }
}

/// A byte read that failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadError<E> {
    /// The disk's own error.
    Io(E),
    /// Bytes `offset..offset+len` are not all inside the partition of `size` bytes.
    OutOfRange { offset: u64, len: u64, size: u64 },
}

impl<E: fmt::Display> fmt::Display for ReadError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadError::Io(e) => e.fmt(f),
            ReadError::OutOfRange { offset, len, size } => write!(
                f,
                "read of {len} bytes at {offset} outside the partition ({size} bytes)"
            ),
        }
    }
}

/// Bytes a chunk of read-ahead holds.
pub const CHUNK: usize = 256 << 10;

/// Byte reads of one partition through a read-ahead buffer.
pub struct ReadAhead {
    part: Confined,
    block_size: usize,
    buf: Vec<u8>,
    /// Partition block the buffer starts at, and how many blocks of it are valid.
    buf_lba: u64,
    buf_blocks: u64,
    /// Device reads issued and bytes they moved.
    pub device_reads: u64,
    pub device_bytes: u64,
}

impl ReadAhead {
    pub fn new(part: Confined, block_size: usize) -> ReadAhead {
        ReadAhead {
            part,
            block_size,
            buf: vec![0; CHUNK.max(block_size)],
            buf_lba: 0,
            buf_blocks: 0,
            device_reads: 0,
            device_bytes: 0,
        }
    }

    /// Partition size in bytes.
    pub fn size(&self) -> u64 {
        self.part.blocks.saturating_mul(self.block_size as u64)
    }

    /// Fills `dst` from partition byte `offset`, reading `disk` where the buffer does not
    /// already hold the bytes. A read of at least a chunk at a block boundary goes straight into
    /// `dst`.
    pub fn read<D: Disk + ?Sized>(
        &mut self,
        disk: &mut D,
        offset: u64,
        dst: &mut [u8],
    ) -> Result<(), ReadError<D::Error>> {
        let size = self.size();
        let len = dst.len() as u64;
        if offset.checked_add(len).is_none_or(|end| end > size) {
            return Err(ReadError::OutOfRange { offset, len, size });
        }
        let bs = self.block_size as u64;
        let mut pos = offset;
        let mut done = 0usize;
        while done < dst.len() {
            let lba = pos / bs;
            let within = (pos % bs) as usize;
            if lba >= self.buf_lba && lba < self.buf_lba + self.buf_blocks {
                let start = ((lba - self.buf_lba) * bs) as usize + within;
                let valid = (self.buf_blocks * bs) as usize;
                let n = (valid - start).min(dst.len() - done);
                dst[done..done + n].copy_from_slice(&self.buf[start..start + n]);
                done += n;
                pos += n as u64;
                continue;
            }
            let left = dst.len() - done;
            if within == 0 && left >= self.buf.len() {
                let n = left - left % self.block_size;
                let abs = self.part.absolute(lba, (n / self.block_size) as u64);
                let abs = abs.ok_or(ReadError::OutOfRange { offset, len, size })?;
                disk.read(abs, &mut dst[done..done + n])
                    .map_err(ReadError::Io)?;
                self.count(n);
                done += n;
                pos += n as u64;
                continue;
            }
            let want = (self.buf.len() / self.block_size) as u64;
            let n = want.min(self.part.blocks - lba);
            let abs = self.part.absolute(lba, n);
            let abs = abs.ok_or(ReadError::OutOfRange { offset, len, size })?;
            self.buf_blocks = 0;
            let bytes = (n * bs) as usize;
            disk.read(abs, &mut self.buf[..bytes])
                .map_err(ReadError::Io)?;
            self.count(bytes);
            self.buf_lba = lba;
            self.buf_blocks = n;
        }
        Ok(())
    }

    fn count(&mut self, bytes: usize) {
        self.device_reads += 1;
        self.device_bytes += bytes as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testdisk::MemDisk;

    #[test]
    fn confined_refuses_outside() {
        let c = Confined::new(100, 10);
        assert_eq!(c.absolute(0, 10), Some(100));
        assert_eq!(c.absolute(9, 1), Some(109));
        assert_eq!(c.absolute(9, 2), None);
        assert_eq!(c.absolute(u64::MAX, 2), None);
    }

    #[test]
    fn reads_stream_through_the_buffer_and_stay_inside() {
        for bs in [512usize, 4096] {
            let mut disk = MemDisk::numbered(bs, 2048);
            let part = Confined::new(16, 1024);
            let mut ra = ReadAhead::new(part, bs);
            let mut all = vec![0u8; 1024 * bs];
            // 1000-byte reads, unaligned, across block and chunk boundaries.
            let mut off = 0;
            while off < all.len() {
                let n = 1000.min(all.len() - off);
                ra.read(&mut disk, off as u64, &mut all[off..off + n])
                    .unwrap();
                off += n;
            }
            assert_eq!(all, disk.bytes[16 * bs..(16 + 1024) * bs]);
            let chunks = (1024 * bs).div_ceil(CHUNK) as u64;
            assert_eq!(ra.device_reads, chunks, "one device read a chunk (bs {bs})");
            // Nothing outside the partition was touched.
            assert!(disk
                .touched
                .iter()
                .all(|&(l, n)| l >= 16 && l + n <= 16 + 1024));
            // The end, and one past it.
            let mut b = [0u8; 1];
            ra.read(&mut disk, (1024 * bs - 1) as u64, &mut b).unwrap();
            assert!(matches!(
                ra.read(&mut disk, (1024 * bs) as u64, &mut b),
                Err(ReadError::OutOfRange { .. })
            ));
            assert!(matches!(
                ra.read(&mut disk, u64::MAX, &mut b),
                Err(ReadError::OutOfRange { .. })
            ));
        }
    }

    #[test]
    fn large_aligned_reads_go_direct() {
        let mut disk = MemDisk::numbered(512, 4096);
        let mut ra = ReadAhead::new(Confined::new(0, 4096), 512);
        let mut big = vec![0u8; 2 * CHUNK];
        ra.read(&mut disk, 0, &mut big).unwrap();
        assert_eq!(ra.device_reads, 1);
        assert_eq!(big, disk.bytes[..2 * CHUNK]);
    }
}
