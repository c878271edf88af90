//! The mirror: a local copy of the guest's DMA window, in which rust-vmm's `virtio-queue` works.
//!
//! `virtio-queue` and `vm-memory` expect to reach guest memory directly; a VIO server can only
//! reach it by remote DMA. So the server keeps one anonymous mapping as large as the window
//! (`GuestMemoryMmap` with one region whose guest addresses are the window's IOBAs; mapped
//! `MAP_NORESERVE`, so only pages the server touches take memory) and moves bytes explicitly:
//! [`Mirror::fetch`] copies guest bytes in before the queue code reads them (descriptor table,
//! available ring, driver-readable buffers), [`Mirror::flush`] copies bytes the device produced
//! back out (device-writable buffers, used elements, used index). Nothing else in the mirror is
//! trusted to match the guest.
//!
//! Every remote DMA of the server passes through here, so this is also where it is counted.

use crate::hcall::PartnerError;
use crate::partner::{Partner, Rdma, MAX_RDMA};
use crate::stats::Stats;
use std::fmt;
use std::sync::Arc;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

/// The guest memory type devices see: the mirror's.
pub type MirrorMemory = GuestMemoryMmap<()>;

/// Largest window the server mirrors (address space only; pages materialize when touched).
pub const MAX_WINDOW: u64 = 1 << 36;

/// Why a mirror could not be made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MirrorError {
    /// The window is empty, larger than [`MAX_WINDOW`] or wraps around.
    BadWindow { ioba: u64, size: u64 },
    /// The anonymous mapping failed.
    Map(String),
}

impl fmt::Display for MirrorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MirrorError::BadWindow { ioba, size } => {
                write!(
                    f,
                    "window {ioba:#x}+{size:#x} cannot be mirrored (max {MAX_WINDOW:#x})"
                )
            }
            MirrorError::Map(e) => write!(f, "cannot map the mirror: {e}"),
        }
    }
}

impl std::error::Error for MirrorError {}

/// Why a transfer between the guest and the mirror did not happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DmaError {
    /// The range is not inside the window (nothing was asked of the partner).
    OutsideWindow { ioba: u64, len: u64 },
    /// The partner refused: an `H_*` status.
    Refused { ioba: u64, len: u64, status: i64 },
    /// The connection is gone.
    Disconnected,
}

impl fmt::Display for DmaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DmaError::OutsideWindow { ioba, len } => {
                write!(f, "{ioba:#x}+{len:#x} is outside the window")
            }
            DmaError::Refused { ioba, len, status } => {
                write!(
                    f,
                    "{ioba:#x}+{len:#x} refused: {}",
                    PartnerError::Status(*status)
                )
            }
            DmaError::Disconnected => f.write_str("partner disconnected"),
        }
    }
}

/// The window's local copy.
pub struct Mirror {
    mem: MirrorMemory,
    base: u64,
    size: u64,
    stats: Arc<Stats>,
}

impl Mirror {
    /// An empty (all-zero) mirror of the window `[ioba, ioba+size)`.
    pub fn new(ioba: u64, size: u64, stats: Arc<Stats>) -> Result<Mirror, MirrorError> {
        if size == 0 || size > MAX_WINDOW || ioba.checked_add(size).is_none() {
            return Err(MirrorError::BadWindow { ioba, size });
        }
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(ioba), size as usize)])
            .map_err(|e| MirrorError::Map(e.to_string()))?;
        Ok(Mirror {
            mem,
            base: ioba,
            size,
            stats,
        })
    }

    /// The mirror as `vm-memory` guest memory (guest addresses are IOBAs).
    pub fn memory(&self) -> &MirrorMemory {
        &self.mem
    }

    /// First IOBA of the window.
    pub fn base(&self) -> u64 {
        self.base
    }

    /// Bytes in the window.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Whether `[ioba, ioba+len)` lies inside the window.
    pub fn contains(&self, ioba: u64, len: u64) -> bool {
        ioba >= self.base
            && ioba
                .checked_add(len)
                .is_some_and(|end| end <= self.base + self.size)
    }

    /// Copies the guest's `[ioba, ioba+len)` into the mirror.
    pub fn fetch<P: Partner + ?Sized>(
        &self,
        p: &mut P,
        ioba: u64,
        len: u64,
    ) -> Result<(), DmaError> {
        self.check(ioba, len)?;
        let mut buf = vec![0u8; (len as usize).min(MAX_RDMA)];
        let mut done = 0u64;
        while done < len {
            let n = ((len - done) as usize).min(MAX_RDMA);
            let at = ioba + done;
            self.rdma_read(p, at, &mut buf[..n])?;
            self.mem
                .write_slice(&buf[..n], GuestAddress(at))
                .map_err(|_| DmaError::OutsideWindow { ioba, len })?;
            done += n as u64;
        }
        Ok(())
    }

    /// Copies the mirror's `[ioba, ioba+len)` out to the guest.
    pub fn flush<P: Partner + ?Sized>(
        &self,
        p: &mut P,
        ioba: u64,
        len: u64,
    ) -> Result<(), DmaError> {
        self.check(ioba, len)?;
        let mut buf = vec![0u8; (len as usize).min(MAX_RDMA)];
        let mut done = 0u64;
        while done < len {
            let n = ((len - done) as usize).min(MAX_RDMA);
            let at = ioba + done;
            self.mem
                .read_slice(&mut buf[..n], GuestAddress(at))
                .map_err(|_| DmaError::OutsideWindow { ioba, len })?;
            self.rdma_write(p, at, &buf[..n])?;
            done += n as u64;
        }
        Ok(())
    }

    /// [`fetch`](Self::fetch) of several ranges in one batch of remote DMA (one round trip
    /// where the partner allows it); one result per range.
    pub fn fetch_many<P: Partner + ?Sized>(
        &self,
        p: &mut P,
        ranges: &[(u64, u64)],
    ) -> Vec<Result<(), DmaError>> {
        let mut results: Vec<Result<(), DmaError>> = ranges
            .iter()
            .map(|&(ioba, len)| self.check(ioba, len))
            .collect();
        let mut bufs: Vec<(usize, Vec<u8>)> = ranges
            .iter()
            .enumerate()
            .filter(|&(i, &(_, len))| results[i].is_ok() && len > 0)
            .map(|(i, &(_, len))| (i, vec![0u8; len as usize]))
            .collect();
        let mut ops: Vec<Rdma<'_>> = bufs
            .iter_mut()
            .map(|(i, buf)| Rdma::Read {
                ioba: ranges[*i].0,
                buf,
            })
            .collect();
        let done = p.rdma_batch(&mut ops);
        drop(ops);
        for ((i, buf), r) in bufs.iter().zip(done) {
            let (ioba, len) = ranges[*i];
            Stats::inc(&self.stats.rdma_reads);
            results[*i] = self.account(r, ioba, buf.len(), &self.stats.rdma_read_bytes);
            if results[*i].is_ok() && self.mem.write_slice(buf, GuestAddress(ioba)).is_err() {
                results[*i] = Err(DmaError::OutsideWindow { ioba, len });
            }
        }
        results
    }

    /// [`flush`](Self::flush) of several ranges in one batch of remote DMA, written in order;
    /// one result per range.
    pub fn flush_many<P: Partner + ?Sized>(
        &self,
        p: &mut P,
        ranges: &[(u64, u64)],
    ) -> Vec<Result<(), DmaError>> {
        let mut results: Vec<Result<(), DmaError>> = ranges
            .iter()
            .map(|&(ioba, len)| self.check(ioba, len))
            .collect();
        let mut bufs: Vec<(usize, Vec<u8>)> = Vec::new();
        for (i, &(ioba, len)) in ranges.iter().enumerate() {
            if results[i].is_err() || len == 0 {
                continue;
            }
            let mut buf = vec![0u8; len as usize];
            match self.mem.read_slice(&mut buf, GuestAddress(ioba)) {
                Ok(()) => bufs.push((i, buf)),
                Err(_) => results[i] = Err(DmaError::OutsideWindow { ioba, len }),
            }
        }
        let mut ops: Vec<Rdma<'_>> = bufs
            .iter()
            .map(|(i, data)| Rdma::Write {
                ioba: ranges[*i].0,
                data,
            })
            .collect();
        let done = p.rdma_batch(&mut ops);
        for ((i, data), r) in bufs.iter().zip(done) {
            Stats::inc(&self.stats.rdma_writes);
            results[*i] = self.account(r, ranges[*i].0, data.len(), &self.stats.rdma_write_bytes);
        }
        results
    }

    /// Zeroes the mirror's `[ioba, ioba+len)` (nothing goes to the guest).
    pub fn zero(&self, ioba: u64, len: u64) -> Result<(), DmaError> {
        self.check(ioba, len)?;
        let zeros = vec![0u8; (len as usize).min(MAX_RDMA)];
        let mut done = 0u64;
        while done < len {
            let n = ((len - done) as usize).min(MAX_RDMA);
            self.mem
                .write_slice(&zeros[..n], GuestAddress(ioba + done))
                .map_err(|_| DmaError::OutsideWindow { ioba, len })?;
            done += n as u64;
        }
        Ok(())
    }

    /// A remote DMA read straight into `buf` (not through the mirror), counted.
    pub fn rdma_read<P: Partner + ?Sized>(
        &self,
        p: &mut P,
        ioba: u64,
        buf: &mut [u8],
    ) -> Result<(), DmaError> {
        Stats::inc(&self.stats.rdma_reads);
        let r = p.rdma_read(ioba, buf);
        self.account(r, ioba, buf.len(), &self.stats.rdma_read_bytes)
    }

    /// A remote DMA write straight from `data` (not through the mirror), counted.
    pub fn rdma_write<P: Partner + ?Sized>(
        &self,
        p: &mut P,
        ioba: u64,
        data: &[u8],
    ) -> Result<(), DmaError> {
        Stats::inc(&self.stats.rdma_writes);
        let r = p.rdma_write(ioba, data);
        self.account(r, ioba, data.len(), &self.stats.rdma_write_bytes)
    }

    fn account(
        &self,
        r: Result<(), PartnerError>,
        ioba: u64,
        len: usize,
        bytes: &std::sync::atomic::AtomicU64,
    ) -> Result<(), DmaError> {
        match r {
            Ok(()) => {
                Stats::add(bytes, len as u64);
                Ok(())
            }
            Err(PartnerError::Status(status)) => {
                Stats::inc(&self.stats.rdma_refused);
                Err(DmaError::Refused {
                    ioba,
                    len: len as u64,
                    status,
                })
            }
            Err(PartnerError::Disconnected) => Err(DmaError::Disconnected),
        }
    }

    fn check(&self, ioba: u64, len: u64) -> Result<(), DmaError> {
        if self.contains(ioba, len) {
            Ok(())
        } else {
            Err(DmaError::OutsideWindow { ioba, len })
        }
    }
}
