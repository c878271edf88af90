//! The capability list of a function's conventional config space, walked with every pointer
//! bounded: a pointer into the header (below 0x40) or past the end, or one seen before (a
//! loop), ends the walk with a named error instead of a hang or a read outside config space.

use crate::config::{self, AccessError, Bdf, ConfigSpace, CONFIG_SIZE};
use alloc::vec::Vec;
use core::fmt;

/// Capability id of a vendor-specific capability (virtio-pci's).
pub const ID_VENDOR: u8 = 0x09;
/// Capability id of MSI-X.
pub const ID_MSIX: u8 = 0x11;
/// Capability id of PCI Express.
pub const ID_EXPRESS: u8 = 0x10;

/// First byte after the standard header: no capability may start below it.
const FIRST: u16 = 0x40;

/// One capability: where it is and its id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capability {
    pub offset: u8,
    pub id: u8,
}

/// Why a capability list could not be walked to its end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CapError<E> {
    /// A pointer (at `from`, 0x34 for the list head) to `to`, which is in the header or leaves
    /// no room for a capability header before the end of config space.
    OutOfBounds {
        at: Bdf,
        from: u8,
        to: u8,
    },
    /// The capability at `from` points back to `to`, already visited.
    Loop {
        at: Bdf,
        from: u8,
        to: u8,
    },
    Access(AccessError<E>),
}

impl<E: fmt::Display> fmt::Display for CapError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CapError::OutOfBounds { at, from, to } => write!(
                f,
                "{at}: capability pointer at {from:#x} points to {to:#x}, outside 0x40..0x100"
            ),
            CapError::Loop { at, from, to } => write!(
                f,
                "{at}: capability list loops (the capability at {from:#x} points back to {to:#x})"
            ),
            CapError::Access(e) => e.fmt(f),
        }
    }
}

impl<E> From<AccessError<E>> for CapError<E> {
    fn from(e: AccessError<E>) -> Self {
        CapError::Access(e)
    }
}

/// The capabilities of `at`, in list order; empty when its status register says it has none.
pub fn walk<C: ConfigSpace>(c: &mut C, at: Bdf) -> Result<Vec<Capability>, CapError<C::Error>> {
    let status = config::read(c, at, config::STATUS, 2)? as u16;
    let mut out = Vec::new();
    if status & config::STATUS_CAP_LIST == 0 {
        return Ok(out);
    }
    // A 256-byte space holds at most (256 - 64) / 4 capabilities: the visited set bounds the
    // walk even before the loop check fires.
    let mut seen = [false; (CONFIG_SIZE / 4) as usize];
    let mut from = config::CAPABILITIES as u8;
    let mut ptr = config::read(c, at, config::CAPABILITIES, 1)? as u8 & 0xfc;
    while ptr != 0 {
        if u16::from(ptr) < FIRST || u16::from(ptr) + 2 > CONFIG_SIZE {
            return Err(CapError::OutOfBounds { at, from, to: ptr });
        }
        let slot = &mut seen[usize::from(ptr / 4)];
        if *slot {
            return Err(CapError::Loop { at, from, to: ptr });
        }
        *slot = true;
        let head = config::read(c, at, u16::from(ptr), 2)?;
        out.push(Capability {
            offset: ptr,
            id: head as u8,
        });
        from = ptr;
        ptr = (head >> 8) as u8 & 0xfc;
    }
    Ok(out)
}
