//! Base address registers: sizing one (write all ones, read back, restore), and giving it an
//! address from a host bridge's windows (the PHB's `ranges`), naturally aligned, never past
//! a window's end.

use crate::config::{self, AccessError, Bdf, ConfigSpace};
use core::fmt;

/// What a BAR decodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BarKind {
    Io,
    Mem32 {
        prefetchable: bool,
    },
    /// Takes this register and the next.
    Mem64 {
        prefetchable: bool,
    },
}

impl BarKind {
    pub fn is_memory(self) -> bool {
        !matches!(self, BarKind::Io)
    }
}

/// One implemented BAR.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bar {
    /// 0..5 (the register `0x10 + 4 * index`).
    pub index: u8,
    pub kind: BarKind,
    /// Bytes it decodes: a power of two.
    pub size: u64,
    /// Its PCI address once assigned (kept or given by vioboot).
    pub pci: Option<u64>,
    /// The processor's address of `pci`, through the window that holds it.
    pub cpu: Option<u64>,
}

impl fmt::Display for Bar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            BarKind::Io => "io",
            BarKind::Mem32 {
                prefetchable: false,
            } => "mem32",
            BarKind::Mem32 { prefetchable: true } => "mem32 pref",
            BarKind::Mem64 {
                prefetchable: false,
            } => "mem64",
            BarKind::Mem64 { prefetchable: true } => "mem64 pref",
        };
        write!(f, "BAR{} {kind} {:#x} bytes", self.index, self.size)?;
        match (self.pci, self.cpu) {
            (Some(p), Some(c)) => write!(f, " at {p:#x} (cpu {c:#x})"),
            _ => write!(f, " unassigned"),
        }
    }
}

/// Why a BAR cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BarError<E> {
    /// The read-back is no BAR: a reserved memory type, a size that is no power of two, or a
    /// 64-bit BAR in the last register.
    Malformed {
        at: Bdf,
        index: u8,
        probe: u64,
    },
    /// No window of the bridge has room for it.
    DoesNotFit {
        at: Bdf,
        index: u8,
        size: u64,
    },
    /// An address found in the BAR (assigned by firmware) lies outside every window.
    OutsideWindow {
        at: Bdf,
        index: u8,
        pci: u64,
        size: u64,
    },
    Access(AccessError<E>),
}

impl<E: fmt::Display> fmt::Display for BarError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BarError::Malformed { at, index, probe } => {
                write!(f, "{at} BAR{index}: read back {probe:#x}, not a BAR")
            }
            BarError::DoesNotFit { at, index, size } => write!(
                f,
                "{at} BAR{index}: {size:#x} bytes fit in no window of the host bridge"
            ),
            BarError::OutsideWindow {
                at,
                index,
                pci,
                size,
            } => write!(
                f,
                "{at} BAR{index}: {size:#x} bytes at {pci:#x} lie outside the host bridge's windows"
            ),
            BarError::Access(e) => e.fmt(f),
        }
    }
}

impl<E> From<AccessError<E>> for BarError<E> {
    fn from(e: AccessError<E>) -> Self {
        BarError::Access(e)
    }
}

/// Sizes BAR `index` of `at` (memory decoding must be off). Returns the BAR (with its current
/// PCI address if it holds a nonzero one) and how many registers it takes (1 or 2), or `None`
/// for an unimplemented BAR. `count` is how many BAR registers the header has (6 or 2).
pub fn probe<C: ConfigSpace>(
    c: &mut C,
    at: Bdf,
    index: u8,
    count: u8,
) -> Result<Option<(Bar, u8)>, BarError<C::Error>> {
    let reg = config::BAR0 + 4 * u16::from(index);
    let orig = config::read(c, at, reg, 4)?;
    config::write(c, at, reg, 4, u32::MAX)?;
    let probe = config::read(c, at, reg, 4)?;
    config::write(c, at, reg, 4, orig)?;
    if probe == 0 {
        return Ok(None);
    }
    let malformed = |probe: u64| BarError::Malformed { at, index, probe };
    if probe & 1 == 1 {
        // I/O: the upper 16 bits may read as zero (16-bit decoding).
        let mut mask = probe & !3;
        if mask & 0xffff_0000 == 0 {
            mask |= 0xffff_0000;
        }
        let size = u64::from((!mask).wrapping_add(1));
        if !size.is_power_of_two() {
            return Err(malformed(probe.into()));
        }
        let addr = u64::from(orig & !3);
        let bar = Bar {
            index,
            kind: BarKind::Io,
            size,
            pci: (addr != 0).then_some(addr),
            cpu: None,
        };
        return Ok(Some((bar, 1)));
    }
    let prefetchable = probe & 8 != 0;
    let (kind, mask, addr, regs) = match (probe >> 1) & 3 {
        0 => (
            BarKind::Mem32 { prefetchable },
            u64::from(probe & !0xf) | 0xffff_ffff_0000_0000,
            u64::from(orig & !0xf),
            1,
        ),
        2 if index + 1 < count => {
            let hi_reg = reg + 4;
            let hi_orig = config::read(c, at, hi_reg, 4)?;
            config::write(c, at, hi_reg, 4, u32::MAX)?;
            let hi = config::read(c, at, hi_reg, 4)?;
            config::write(c, at, hi_reg, 4, hi_orig)?;
            (
                BarKind::Mem64 { prefetchable },
                u64::from(hi) << 32 | u64::from(probe & !0xf),
                u64::from(hi_orig) << 32 | u64::from(orig & !0xf),
                2,
            )
        }
        _ => return Err(malformed(probe.into())),
    };
    let size = (!mask).wrapping_add(1);
    if !size.is_power_of_two() {
        return Err(malformed(mask));
    }
    let bar = Bar {
        index,
        kind,
        size,
        pci: (addr != 0).then_some(addr),
        cpu: None,
    };
    Ok(Some((bar, regs)))
}

/// Writes `bar.pci` into the BAR register(s).
pub fn program<C: ConfigSpace>(c: &mut C, at: Bdf, bar: &Bar) -> Result<(), AccessError<C::Error>> {
    let reg = config::BAR0 + 4 * u16::from(bar.index);
    let addr = bar.pci.unwrap_or(0);
    config::write(c, at, reg, 4, addr as u32)?;
    if matches!(bar.kind, BarKind::Mem64 { .. }) {
        config::write(c, at, reg + 4, 4, (addr >> 32) as u32)?;
    }
    Ok(())
}

/// What a host bridge window carries (`ranges` space code).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowKind {
    Io,
    Mem32,
    Mem64,
}

/// One window of a host bridge: PCI addresses `pci..pci+size` appear to the processor at
/// `cpu..cpu+size`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub kind: WindowKind,
    pub pci: u64,
    pub cpu: u64,
    pub size: u64,
}

impl Window {
    /// Whether `pci..pci+size` lies inside the window.
    pub fn holds(&self, pci: u64, size: u64) -> bool {
        let Some(end) = pci.checked_add(size) else {
            return false;
        };
        pci >= self.pci && end <= self.pci.saturating_add(self.size)
    }

    /// The processor's address of `pci`, if the window holds it.
    pub fn to_cpu(&self, pci: u64, size: u64) -> Option<u64> {
        self.holds(pci, size)
            .then(|| self.cpu.checked_add(pci - self.pci))
            .flatten()
    }
}

/// Hands out naturally aligned PCI addresses from one window, upwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Allocator {
    pub window: Window,
    /// The next free PCI address.
    pub next: u64,
}

impl Allocator {
    pub fn new(window: Window) -> Allocator {
        Allocator {
            window,
            next: window.pci,
        }
    }

    /// Moves the cursor to a multiple of `align` (a power of two); false if that leaves the
    /// window.
    pub fn align(&mut self, align: u64) -> bool {
        match self.next.checked_next_multiple_of(align) {
            Some(n) if n <= self.window.pci.saturating_add(self.window.size) => {
                self.next = n;
                true
            }
            _ => false,
        }
    }

    /// `size` bytes (a power of two), aligned to their size; `None` if they do not fit.
    pub fn alloc(&mut self, size: u64) -> Option<u64> {
        if !size.is_power_of_two() {
            return None;
        }
        let start = self.next.checked_next_multiple_of(size)?;
        if !self.window.holds(start, size) {
            return None;
        }
        self.next = start + size;
        Some(start)
    }
}
