//! virtio-blk (virtio 1.2, section 5.2) backed by a file or block device.
//!
//! rust-vmm's request parser (the `virtio-blk` crate of vm-virtio) is not published on
//! crates.io, so the few lines that read a request header live here, on `virtio-queue`'s
//! `Reader`/`Writer`.

use crate::device::{Device, Request};
use crate::stats::Stats;
use log::{debug, warn};
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;
use virtio_bindings::bindings::virtio_blk::{
    VIRTIO_BLK_F_BLK_SIZE, VIRTIO_BLK_F_FLUSH, VIRTIO_BLK_F_RO, VIRTIO_BLK_F_SEG_MAX,
    VIRTIO_BLK_F_SIZE_MAX,
};
use virtio_bindings::bindings::virtio_config::VIRTIO_F_VERSION_1;
use virtio_queue::{Reader, Writer};
use virtio_vio::blk::{
    self, HEADER_LEN, ID_BYTES, S_IOERR, S_OK, S_UNSUPP, T_FLUSH, T_GET_ID, T_IN, T_OUT,
};

/// Bytes in a virtio-blk sector (fixed by the spec, whatever `blk_size` says).
pub const SECTOR: u64 = 512;
/// Entries in the request queue.
pub const QUEUE_SIZE: u16 = 256;
/// Largest single buffer (`size_max`): one remote DMA frame.
pub const SIZE_MAX: u32 = 0x10_0000;
/// Most data buffers in one request (`seg_max`): the queue less header and status.
pub const SEG_MAX: u32 = QUEUE_SIZE as u32 - 2;
/// Bytes of config space offered: capacity, size_max, seg_max, geometry, blk_size.
pub const CONFIG_LEN: usize = 24;
/// Bytes moved between the backend and the mirror at a time.
const CHUNK: usize = 0x10_0000;

/// A virtio-blk device.
pub struct Blk {
    file: File,
    read_only: bool,
    /// Capacity in sectors.
    capacity: u64,
    /// Logical block size offered in `blk_size` (512 unless set): requests must be aligned
    /// to it, as on a disk with 4096-byte sectors.
    block_size: u32,
    serial: [u8; ID_BYTES],
    stats: Arc<Stats>,
}

impl Blk {
    /// Opens `path` (read/write unless `read_only`). The serial (GET_ID, at most 20 bytes) is
    /// `serial`, else the file's name.
    pub fn open(
        path: &Path,
        read_only: bool,
        serial: Option<&str>,
        stats: Arc<Stats>,
    ) -> io::Result<Blk> {
        let file = OpenOptions::new().read(true).write(!read_only).open(path)?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        Blk::new(file, read_only, serial.unwrap_or(&name).as_bytes(), stats)
    }

    /// A device on an open file. Its capacity is its size in whole sectors.
    pub fn new(
        mut file: File,
        read_only: bool,
        serial: &[u8],
        stats: Arc<Stats>,
    ) -> io::Result<Blk> {
        let bytes = file.seek(SeekFrom::End(0))?;
        let mut id = [0u8; ID_BYTES];
        let n = serial.len().min(id.len());
        id[..n].copy_from_slice(&serial[..n]);
        Ok(Blk {
            file,
            read_only,
            capacity: bytes / SECTOR,
            block_size: SECTOR as u32,
            serial: id,
            stats,
        })
    }

    /// Offers `bytes` (a power of two, 512..=65536) as the logical block size and refuses
    /// requests not aligned to it. The capacity shrinks to whole blocks.
    pub fn with_block_size(mut self, bytes: u32) -> Result<Blk, String> {
        if !bytes.is_power_of_two() || !(512..=65536).contains(&bytes) {
            return Err(format!(
                "block size {bytes} is not a power of two from 512 to 65536"
            ));
        }
        let per = u64::from(bytes) / SECTOR;
        self.capacity = self.capacity / per * per;
        self.block_size = bytes;
        Ok(self)
    }

    /// Capacity in 512-byte sectors.
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// Performs the request; returns the status byte.
    fn execute(&mut self, r: &mut Reader<'_>, w: &mut Writer<'_>) -> u8 {
        let mut hdr = [0u8; HEADER_LEN];
        if r.read_exact(&mut hdr).is_err() {
            warn!("virtio-blk: request header shorter than {HEADER_LEN} bytes");
            return S_IOERR;
        }
        let (kind, sector) = blk::parse_header(&hdr);
        let result = match kind {
            T_IN => self.read(sector, w),
            T_OUT => self.write(sector, r),
            T_FLUSH => self.file.sync_data().map_err(|e| format!("flush: {e}")),
            T_GET_ID => {
                let n = w.available_bytes().min(self.serial.len());
                w.write_all(&self.serial[..n])
                    .map_err(|e| format!("get-id: {e}"))
            }
            other => {
                debug!("virtio-blk: request type {other} unsupported");
                return S_UNSUPP;
            }
        };
        match result {
            Ok(()) => S_OK,
            Err(why) => {
                warn!("virtio-blk: {why}");
                S_IOERR
            }
        }
    }

    /// The byte offset of `len` bytes at `sector`, if they lie inside the disk.
    fn range(&self, sector: u64, len: usize) -> Result<u64, String> {
        let len = len as u64;
        let bad = || {
            format!(
                "sectors {sector}+{len} B outside the disk ({} sectors)",
                self.capacity
            )
        };
        let bs = u64::from(self.block_size);
        if !len.is_multiple_of(bs) {
            return Err(format!("data length {len} is not a multiple of {bs}"));
        }
        if !sector.is_multiple_of(bs / SECTOR) {
            return Err(format!(
                "sector {sector} is not aligned to the {bs}-byte block size"
            ));
        }
        let start = sector.checked_mul(SECTOR).ok_or_else(bad)?;
        let end = start.checked_add(len).ok_or_else(bad)?;
        if end > self.capacity * SECTOR {
            return Err(bad());
        }
        Ok(start)
    }

    fn read(&mut self, sector: u64, w: &mut Writer<'_>) -> Result<(), String> {
        let len = w.available_bytes();
        let mut at = self.range(sector, len)?;
        let mut buf = vec![0u8; len.min(CHUNK)];
        let mut left = len;
        while left > 0 {
            let n = left.min(CHUNK);
            self.file
                .read_exact_at(&mut buf[..n], at)
                .map_err(|e| format!("read at {at:#x}: {e}"))?;
            w.write_all(&buf[..n]).map_err(|e| format!("read: {e}"))?;
            at += n as u64;
            left -= n;
        }
        Stats::add(&self.stats.backend_read_bytes, len as u64);
        Ok(())
    }

    fn write(&mut self, sector: u64, r: &mut Reader<'_>) -> Result<(), String> {
        if self.read_only {
            return Err(format!("write to sector {sector} of a read-only disk"));
        }
        let len = r.available_bytes();
        let mut at = self.range(sector, len)?;
        let mut buf = vec![0u8; len.min(CHUNK)];
        let mut left = len;
        while left > 0 {
            let n = left.min(CHUNK);
            r.read_exact(&mut buf[..n])
                .map_err(|e| format!("write: {e}"))?;
            self.file
                .write_all_at(&buf[..n], at)
                .map_err(|e| format!("write at {at:#x}: {e}"))?;
            at += n as u64;
            left -= n;
        }
        Stats::add(&self.stats.backend_write_bytes, len as u64);
        Ok(())
    }
}

impl Device for Blk {
    fn name(&self) -> &str {
        "virtio-blk"
    }

    fn device_id(&self) -> u32 {
        virtio_vio::device_id::BLOCK
    }

    fn features(&self) -> u64 {
        let mut f = 1u64 << VIRTIO_F_VERSION_1
            | 1 << VIRTIO_BLK_F_SIZE_MAX
            | 1 << VIRTIO_BLK_F_SEG_MAX
            | 1 << VIRTIO_BLK_F_BLK_SIZE
            | 1 << VIRTIO_BLK_F_FLUSH;
        if self.read_only {
            f |= 1 << VIRTIO_BLK_F_RO;
        }
        f
    }

    fn queue_max_sizes(&self) -> Vec<u16> {
        vec![QUEUE_SIZE]
    }

    fn config(&self) -> Vec<u8> {
        // struct virtio_blk_config: capacity le64, size_max le32, seg_max le32,
        // geometry (cylinders le16, heads u8, sectors u8), blk_size le32.
        let mut c = Vec::with_capacity(CONFIG_LEN);
        c.extend_from_slice(&self.capacity.to_le_bytes());
        c.extend_from_slice(&SIZE_MAX.to_le_bytes());
        c.extend_from_slice(&SEG_MAX.to_le_bytes());
        c.extend_from_slice(&[0; 4]);
        c.extend_from_slice(&self.block_size.to_le_bytes());
        c
    }

    fn process(&mut self, req: Request<'_>) -> u32 {
        let Request {
            chain,
            mem,
            fetch_failed,
            ..
        } = req;
        let mut w = match chain.clone().writer(mem) {
            Ok(w) => w,
            Err(e) => {
                warn!("virtio-blk: no writer for the chain: {e}");
                return 0;
            }
        };
        let total = w.available_bytes();
        if total == 0 {
            warn!("virtio-blk: request without a device-writable status byte");
            return 0;
        }
        let Ok(mut status_w) = w.split_at(total - 1) else {
            return 0;
        };
        let status = if let Some(e) = fetch_failed {
            warn!("virtio-blk: request buffers unreadable: {e}");
            S_IOERR
        } else {
            match chain.reader(mem) {
                Ok(mut r) => self.execute(&mut r, &mut w),
                Err(e) => {
                    warn!("virtio-blk: no reader for the chain: {e}");
                    S_IOERR
                }
            }
        };
        if status_w.write_all(&[status]).is_err() {
            return 0;
        }
        // Everything before the status byte was written or is the model's zeros.
        total as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_4096_byte_block_size_is_offered_and_enforced() {
        let path = std::env::temp_dir().join(format!("vio-blk-4k-{}", std::process::id()));
        std::fs::write(&path, vec![0u8; 64 * 1024 + 512]).unwrap();
        let blk = Blk::open(&path, true, None, Arc::default()).unwrap();
        assert!(blk.with_block_size(1000).is_err());
        let blk = Blk::open(&path, true, None, Arc::default())
            .unwrap()
            .with_block_size(4096)
            .unwrap();
        let _ = std::fs::remove_file(&path);
        assert_eq!(blk.capacity(), 128, "whole 4 KiB blocks only");
        assert_eq!(&blk.config()[20..24], &4096u32.to_le_bytes());
        assert_eq!(blk.range(8, 4096), Ok(4096));
        assert!(blk.range(1, 4096).unwrap_err().contains("not aligned"));
        assert!(blk.range(8, 512).unwrap_err().contains("multiple of 4096"));
        assert!(blk.range(u64::MAX - 7, 4096).is_err());
    }
}
