//! virtio-pci's vendor capabilities (virtio 1.2, 4.1.4): where in which BAR the common
//! configuration, notification, ISR and device-specific structures are. Each is checked to
//! lie inside an implemented memory BAR; a device missing one of the first three is refused.

use crate::bar::Bar;
use crate::cap::{self, Capability};
use crate::config::{self, AccessError, Bdf, ConfigSpace, CONFIG_SIZE};
use core::fmt;

/// PCI vendor id of virtio devices.
pub const VENDOR: u16 = 0x1af4;
/// Device ids of modern virtio devices: 0x1040 + the virtio device id.
pub const MODERN_BASE: u16 = 0x1040;
/// Transitional devices: 0x1000..0x103f (their virtio id is the subsystem id).
pub const TRANSITIONAL: core::ops::Range<u16> = 0x1000..0x1040;

pub const CAP_COMMON: u8 = 1;
pub const CAP_NOTIFY: u8 = 2;
pub const CAP_ISR: u8 = 3;
pub const CAP_DEVICE: u8 = 4;

/// The virtio device id of a PCI function, if it is a virtio device.
pub fn device_id(vendor: u16, device: u16, subsystem: u16) -> Option<u16> {
    if vendor != VENDOR {
        return None;
    }
    if TRANSITIONAL.contains(&device) {
        return Some(subsystem);
    }
    device.checked_sub(MODERN_BASE).filter(|&id| id < 0x40)
}

/// One structure: `length` bytes at `offset` in BAR `bar`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Region {
    pub bar: u8,
    pub offset: u32,
    pub length: u32,
}

impl fmt::Display for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BAR{}+{:#x}..+{:#x}", self.bar, self.offset, self.length)
    }
}

/// A modern virtio-pci device's structures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    pub common: Region,
    pub notify: Region,
    /// Queue `q`'s notify address is `notify.offset + queue_notify_off * multiplier`.
    pub notify_multiplier: u32,
    pub isr: Region,
    pub device: Option<Region>,
}

/// Why a device's virtio capabilities cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VirtioCapError<E> {
    /// No capability of this type (1 common, 2 notify, 3 ISR).
    Missing {
        at: Bdf,
        cfg_type: u8,
    },
    /// The capability at `cap` is shorter than its type needs, or runs past config space.
    Short {
        at: Bdf,
        cap: u8,
        len: u8,
    },
    /// The capability at `cap` names a BAR that is not an implemented memory BAR.
    NoSuchBar {
        at: Bdf,
        cap: u8,
        bar: u8,
    },
    /// The capability at `cap` reaches past the end of its BAR.
    OutsideBar {
        at: Bdf,
        cap: u8,
        bar: u8,
        offset: u32,
        length: u32,
        bar_size: u64,
    },
    Access(AccessError<E>),
}

impl<E: fmt::Display> fmt::Display for VirtioCapError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VirtioCapError::Missing { at, cfg_type } => {
                write!(f, "{at}: no virtio capability of type {cfg_type}")
            }
            VirtioCapError::Short { at, cap, len } => write!(
                f,
                "{at}: virtio capability at {cap:#x} has length {len}, too short or past config space"
            ),
            VirtioCapError::NoSuchBar { at, cap, bar } => write!(
                f,
                "{at}: virtio capability at {cap:#x} names BAR{bar}, which is no memory BAR"
            ),
            VirtioCapError::OutsideBar {
                at,
                cap,
                bar,
                offset,
                length,
                bar_size,
            } => write!(
                f,
                "{at}: virtio capability at {cap:#x}: {length:#x} bytes at {offset:#x} reach past BAR{bar}'s {bar_size:#x} bytes"
            ),
            VirtioCapError::Access(e) => e.fmt(f),
        }
    }
}

impl<E> From<AccessError<E>> for VirtioCapError<E> {
    fn from(e: AccessError<E>) -> Self {
        VirtioCapError::Access(e)
    }
}

/// Reads the virtio capabilities among `caps` (as [`cap::walk`] found them); the first of
/// each type wins, as the spec asks.
pub fn layout<C: ConfigSpace>(
    c: &mut C,
    at: Bdf,
    caps: &[Capability],
    bars: &[Bar],
) -> Result<Layout, VirtioCapError<C::Error>> {
    let mut common = None;
    let mut notify = None;
    let mut isr = None;
    let mut device = None;
    for k in caps.iter().filter(|k| k.id == cap::ID_VENDOR) {
        let o = u16::from(k.offset);
        let len = config::read(c, at, o + 2, 1)? as u8;
        let cfg_type = config::read(c, at, o + 3, 1)? as u8;
        let slot = match cfg_type {
            CAP_COMMON => &mut common,
            CAP_NOTIFY => &mut notify,
            CAP_ISR => &mut isr,
            CAP_DEVICE => &mut device,
            _ => continue,
        };
        if slot.is_some() {
            continue;
        }
        let need = if cfg_type == CAP_NOTIFY { 20 } else { 16 };
        if len < need || o + u16::from(len) > CONFIG_SIZE {
            return Err(VirtioCapError::Short {
                at,
                cap: k.offset,
                len,
            });
        }
        let bar = config::read(c, at, o + 4, 1)? as u8;
        let offset = config::read(c, at, o + 8, 4)?;
        let length = config::read(c, at, o + 12, 4)?;
        let Some(b) = bars.iter().find(|b| b.index == bar && b.kind.is_memory()) else {
            return Err(VirtioCapError::NoSuchBar {
                at,
                cap: k.offset,
                bar,
            });
        };
        if u64::from(offset) + u64::from(length) > b.size {
            return Err(VirtioCapError::OutsideBar {
                at,
                cap: k.offset,
                bar,
                offset,
                length,
                bar_size: b.size,
            });
        }
        let multiplier = if cfg_type == CAP_NOTIFY {
            config::read(c, at, o + 16, 4)?
        } else {
            0
        };
        *slot = Some((
            Region {
                bar,
                offset,
                length,
            },
            multiplier,
        ));
    }
    let need =
        |r: Option<(Region, u32)>, cfg_type| r.ok_or(VirtioCapError::Missing { at, cfg_type });
    let (notify, notify_multiplier) = need(notify, CAP_NOTIFY)?;
    Ok(Layout {
        common: need(common, CAP_COMMON)?.0,
        notify,
        notify_multiplier,
        isr: need(isr, CAP_ISR)?.0,
        device: device.map(|d| d.0),
    })
}
