//! A function's registers in one BAR, reached through H_LOGICAL_CI_LOAD/STORE: plain real-mode
//! loads reach BARs under TCG only, not under KVM or PowerVM. PCI registers are
//! little-endian and the hcalls load and store big-endian, so each value is byte-swapped;
//! every offset is checked against the region.

use crate::hcall::{self, HcallError, RealAddr};
use core::fmt;

/// A register access that could not be made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MmioError {
    /// `size` bytes at `offset` reach past the region's `len` bytes (or are misaligned).
    OutOfRange {
        offset: u64,
        size: u8,
        len: u64,
    },
    Hcall {
        addr: u64,
        error: HcallError,
    },
}

impl fmt::Display for MmioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MmioError::OutOfRange { offset, size, len } => write!(
                f,
                "register access of {size} bytes at {offset:#x} outside the {len:#x}-byte region"
            ),
            MmioError::Hcall { addr, error } => write!(f, "MMIO at {addr:#x}: {error}"),
        }
    }
}

/// `len` bytes of device registers at a processor address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mmio {
    base: u64,
    len: u64,
}

impl Mmio {
    /// # Safety
    /// `base..base + len` must be registers of a device whose memory decoding is on (part of
    /// one BAR, translated through its host bridge's window), not memory: stores go there.
    pub unsafe fn new(base: u64, len: u64) -> Mmio {
        Mmio { base, len }
    }

    /// A part of this region (`None` if it does not lie inside).
    pub fn sub(&self, offset: u64, len: u64) -> Option<Mmio> {
        (offset.checked_add(len)? <= self.len).then_some(Mmio {
            base: self.base + offset,
            len,
        })
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn at(&self, offset: u64, size: u8) -> Result<RealAddr, MmioError> {
        let s = u64::from(size);
        match offset.checked_add(s) {
            Some(end) if end <= self.len && offset.is_multiple_of(s) => {
                Ok(RealAddr(self.base + offset))
            }
            _ => Err(MmioError::OutOfRange {
                offset,
                size,
                len: self.len,
            }),
        }
    }

    fn load(&self, offset: u64, size: u8) -> Result<u64, MmioError> {
        let addr = self.at(offset, size)?;
        hcall::logical_ci_load(size.into(), addr).map_err(|error| MmioError::Hcall {
            addr: addr.0,
            error,
        })
    }

    fn store(&self, offset: u64, size: u8, value: u64) -> Result<(), MmioError> {
        let addr = self.at(offset, size)?;
        // SAFETY: `addr` lies inside the register region `new`'s caller vouched for.
        unsafe { hcall::logical_ci_store(size.into(), addr, value) }.map_err(|error| {
            MmioError::Hcall {
                addr: addr.0,
                error,
            }
        })
    }

    pub fn read8(&self, offset: u64) -> Result<u8, MmioError> {
        Ok(self.load(offset, 1)? as u8)
    }

    pub fn read16(&self, offset: u64) -> Result<u16, MmioError> {
        Ok((self.load(offset, 2)? as u16).swap_bytes())
    }

    pub fn read32(&self, offset: u64) -> Result<u32, MmioError> {
        Ok((self.load(offset, 4)? as u32).swap_bytes())
    }

    pub fn write8(&self, offset: u64, v: u8) -> Result<(), MmioError> {
        self.store(offset, 1, v.into())
    }

    pub fn write16(&self, offset: u64, v: u16) -> Result<(), MmioError> {
        self.store(offset, 2, v.swap_bytes().into())
    }

    pub fn write32(&self, offset: u64, v: u32) -> Result<(), MmioError> {
        self.store(offset, 4, v.swap_bytes().into())
    }

    /// A 64-bit register as two 32-bit accesses, low half first (virtio-pci allows no more).
    pub fn write64(&self, offset: u64, v: u64) -> Result<(), MmioError> {
        self.write32(offset, v as u32)?;
        self.write32(offset + 4, (v >> 32) as u32)
    }

    pub fn read64(&self, offset: u64) -> Result<u64, MmioError> {
        let lo = self.read32(offset)?;
        Ok(u64::from(self.read32(offset + 4)?) << 32 | u64::from(lo))
    }
}
