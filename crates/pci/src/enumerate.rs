//! Enumerating one host bridge: every function on bus 0 and, through PCI-to-PCI bridges, on
//! the buses behind them; each BAR sized; BARs given addresses from the bridge's windows when
//! nobody did (bridges' memory windows programmed to match), or firmware's addresses kept when
//! it did; memory decoding and bus mastering enabled on what can be used.

use crate::bar::{self, Allocator, Bar, BarError, BarKind, Window, WindowKind};
use crate::cap::{self, CapError, Capability};
use crate::config::{self, AccessError, Bdf, ConfigSpace};
use alloc::vec::Vec;
use core::fmt;

/// Bridges' memory windows have 1 MiB granularity.
const BRIDGE_ALIGN: u64 = 1 << 20;

/// One function found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Function<E> {
    pub at: Bdf,
    pub vendor: u16,
    pub device: u16,
    pub revision: u8,
    /// Base class, subclass and programming interface (24 bits).
    pub class: u32,
    /// Header layout (0 a device, 1 a PCI-to-PCI bridge).
    pub header: u8,
    /// Subsystem id (type 0 headers; virtio's legacy device id), else 0.
    pub subsystem: u16,
    pub bars: Vec<Bar>,
    pub caps: Vec<Capability>,
    /// A bridge's secondary bus.
    pub secondary: Option<u8>,
    /// Why the function is not usable (its decoding stays off), if it is not.
    pub problem: Option<PciError<E>>,
}

impl<E> Function<E> {
    pub fn is_bridge(&self) -> bool {
        self.header == config::HEADER_BRIDGE
    }

    /// The BAR numbered `index`, if implemented.
    pub fn bar(&self, index: u8) -> Option<&Bar> {
        self.bars.iter().find(|b| b.index == index)
    }
}

/// What went wrong with a function or bridge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PciError<E> {
    Access(AccessError<E>),
    Bar(BarError<E>),
    Cap(CapError<E>),
    /// A bridge names a secondary bus at or below its own, or one already scanned.
    BusLoop {
        bridge: Bdf,
        secondary: u8,
    },
    /// No bus number left for a bridge.
    NoBusNumber {
        bridge: Bdf,
    },
    /// An unknown header layout.
    Header {
        at: Bdf,
        header: u8,
    },
}

impl<E: fmt::Display> fmt::Display for PciError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PciError::Access(e) => e.fmt(f),
            PciError::Bar(e) => e.fmt(f),
            PciError::Cap(e) => e.fmt(f),
            PciError::BusLoop { bridge, secondary } => write!(
                f,
                "bridge {bridge}: secondary bus {secondary:#x} is not below it or was seen before"
            ),
            PciError::NoBusNumber { bridge } => {
                write!(f, "bridge {bridge}: no bus number left")
            }
            PciError::Header { at, header } => {
                write!(f, "{at}: unknown header type {header:#x}")
            }
        }
    }
}

impl<E> From<AccessError<E>> for PciError<E> {
    fn from(e: AccessError<E>) -> Self {
        PciError::Access(e)
    }
}
impl<E> From<BarError<E>> for PciError<E> {
    fn from(e: BarError<E>) -> Self {
        PciError::Bar(e)
    }
}
impl<E> From<CapError<E>> for PciError<E> {
    fn from(e: CapError<E>) -> Self {
        PciError::Cap(e)
    }
}

/// Who gives BARs their addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// Keep firmware's if any memory BAR holds an address, else assign.
    Auto,
    /// Keep what the BARs hold (firmware assigned them).
    Keep,
    /// Give every memory BAR an address from the windows.
    Assign,
}

/// A host bridge's functions, and what kept the walk from seeing everything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scan<E> {
    pub functions: Vec<Function<E>>,
    /// Failures outside any one function (a bus that could not be scanned).
    pub problems: Vec<PciError<E>>,
    /// Whether vioboot gave the BARs their addresses (else firmware's were kept).
    pub assigned: bool,
}

/// Walks the buses from `root`, sizes BARs, assigns or keeps addresses and enables decoding.
pub fn scan<C: ConfigSpace>(
    c: &mut C,
    root: u8,
    windows: &[Window],
    policy: Policy,
) -> Scan<C::Error> {
    let mut s = Scan {
        functions: Vec::new(),
        problems: Vec::new(),
        assigned: false,
    };
    let mut seen = [false; 256];
    let mut next_bus = root;
    discover(c, root, &mut seen, &mut next_bus, &mut s);
    let assign = match policy {
        Policy::Assign => true,
        Policy::Keep => false,
        Policy::Auto => !s
            .functions
            .iter()
            .flat_map(|f| &f.bars)
            .any(|b| b.kind.is_memory() && b.pci.is_some()),
    };
    s.assigned = assign;
    if assign {
        let mut mem = windows
            .iter()
            .find(|w| w.kind == WindowKind::Mem32)
            .map(|w| Allocator::new(*w));
        let mut mem64 = windows
            .iter()
            .find(|w| w.kind == WindowKind::Mem64)
            .map(|w| Allocator::new(*w));
        assign_bus(c, root, root, &mut mem, &mut mem64, &mut s);
    } else {
        for f in &mut s.functions {
            if f.problem.is_none() {
                if let Err(e) = keep(f, windows) {
                    f.problem = Some(e);
                }
            }
        }
    }
    for f in &mut s.functions {
        if f.problem.is_some() {
            continue;
        }
        if let Err(e) = enable(c, f) {
            f.problem = Some(e.into());
        }
    }
    s
}

/// Finds the functions on `bus` and behind its bridges.
fn discover<C: ConfigSpace>(
    c: &mut C,
    bus: u8,
    seen: &mut [bool; 256],
    next_bus: &mut u8,
    s: &mut Scan<C::Error>,
) {
    seen[usize::from(bus)] = true;
    for device in 0..32 {
        let mut functions = 1;
        let mut function = 0;
        while function < functions {
            let at = Bdf {
                bus,
                device,
                function,
            };
            function += 1;
            let id = match config::read(c, at, config::VENDOR_ID, 4) {
                Ok(v) => v,
                Err(e) => {
                    s.problems.push(e.into());
                    continue;
                }
            };
            if id as u16 == 0xffff || id as u16 == 0 {
                continue;
            }
            let header = match config::read(c, at, config::HEADER_TYPE, 1) {
                Ok(h) => h as u8,
                Err(e) => {
                    s.problems.push(e.into());
                    continue;
                }
            };
            if at.function == 0 && header & config::HEADER_MULTI_FUNCTION != 0 {
                functions = 8;
            }
            let mut f = function_at(c, at, id, header & 0x7f);
            let bridge = f.is_bridge() && f.problem.is_none();
            if bridge {
                match bridge_bus(c, at, bus, seen, next_bus) {
                    Ok(sec) => f.secondary = Some(sec),
                    Err(e) => f.problem = Some(e),
                }
            }
            let secondary = f.secondary;
            s.functions.push(f);
            if let Some(sec) = secondary {
                discover(c, sec, seen, next_bus, s);
                // The subordinate bus: the highest numbered behind the bridge.
                let last = *next_bus;
                let r = config::read(c, at, config::BUS_NUMBERS, 4).and_then(|v| {
                    config::write(
                        c,
                        at,
                        config::BUS_NUMBERS,
                        4,
                        (v & 0xff00_ffff) | u32::from(last) << 16,
                    )
                });
                if let Err(e) = r {
                    s.problems.push(e.into());
                }
            }
        }
    }
}

/// The secondary bus of the bridge at `at` on `bus`: the one it names if that is new and
/// above `bus`, else (if it names none) the next free number, written into the bridge.
fn bridge_bus<C: ConfigSpace>(
    c: &mut C,
    at: Bdf,
    bus: u8,
    seen: &[bool; 256],
    next_bus: &mut u8,
) -> Result<u8, PciError<C::Error>> {
    let v = config::read(c, at, config::BUS_NUMBERS, 4)?;
    let secondary = (v >> 8) as u8;
    if secondary != 0 {
        if secondary <= bus || seen[usize::from(secondary)] {
            return Err(PciError::BusLoop {
                bridge: at,
                secondary,
            });
        }
        *next_bus = (*next_bus).max(secondary);
        return Ok(secondary);
    }
    let n = next_bus
        .checked_add(1)
        .filter(|n| !seen[usize::from(*n)])
        .ok_or(PciError::NoBusNumber { bridge: at })?;
    *next_bus = n;
    config::write(
        c,
        at,
        config::BUS_NUMBERS,
        4,
        (v & 0xff00_0000) | 0xff << 16 | u32::from(n) << 8 | u32::from(bus),
    )?;
    Ok(n)
}

/// Reads one function: identity, BARs (decoding off while sizing), capabilities.
fn function_at<C: ConfigSpace>(c: &mut C, at: Bdf, id: u32, header: u8) -> Function<C::Error> {
    let mut f = Function {
        at,
        vendor: id as u16,
        device: (id >> 16) as u16,
        revision: 0,
        class: 0,
        header,
        subsystem: 0,
        bars: Vec::new(),
        caps: Vec::new(),
        secondary: None,
        problem: None,
    };
    if let Err(e) = read_function(c, &mut f) {
        f.problem = Some(e);
    }
    f
}

fn read_function<C: ConfigSpace>(
    c: &mut C,
    f: &mut Function<C::Error>,
) -> Result<(), PciError<C::Error>> {
    let at = f.at;
    let cr = config::read(c, at, config::CLASS_REVISION, 4)?;
    f.revision = cr as u8;
    f.class = cr >> 8;
    let count = match f.header {
        config::HEADER_NORMAL => {
            f.subsystem = config::read(c, at, config::SUBSYSTEM_ID, 2)? as u16;
            6
        }
        config::HEADER_BRIDGE => 2,
        header => return Err(PciError::Header { at, header }),
    };
    let cmd = config::read(c, at, config::COMMAND, 2)?;
    let off = cmd & !u32::from(config::CMD_IO | config::CMD_MEMORY);
    config::write(c, at, config::COMMAND, 2, off)?;
    let mut index = 0;
    while index < count {
        match bar::probe(c, at, index, count)? {
            Some((b, regs)) => {
                f.bars.push(b);
                index += regs;
            }
            None => index += 1,
        }
    }
    f.caps = cap::walk(c, at)?;
    Ok(())
}

/// Checks that firmware's addresses lie in a window and notes their processor addresses.
fn keep<E>(f: &mut Function<E>, windows: &[Window]) -> Result<(), PciError<E>> {
    for b in &mut f.bars {
        let Some(pci) = b.pci else { continue };
        let want = if b.kind.is_memory() {
            [WindowKind::Mem32, WindowKind::Mem64]
        } else {
            [WindowKind::Io, WindowKind::Io]
        };
        let cpu = windows
            .iter()
            .filter(|w| want.contains(&w.kind))
            .find_map(|w| w.to_cpu(pci, b.size));
        match cpu {
            Some(cpu) => b.cpu = Some(cpu),
            None => {
                return Err(BarError::OutsideWindow {
                    at: f.at,
                    index: b.index,
                    pci,
                    size: b.size,
                }
                .into())
            }
        }
    }
    Ok(())
}

/// Gives the memory BARs on `bus` (largest first) and behind its bridges addresses; a
/// bridge's memory window covers exactly what lies behind it.
fn assign_bus<C: ConfigSpace>(
    c: &mut C,
    bus: u8,
    root: u8,
    mem: &mut Option<Allocator>,
    mem64: &mut Option<Allocator>,
    s: &mut Scan<C::Error>,
) {
    let on_bus: Vec<usize> = (0..s.functions.len())
        .filter(|&i| s.functions[i].at.bus == bus)
        .collect();
    for &i in &on_bus {
        let f = &mut s.functions[i];
        if f.problem.is_some() {
            continue;
        }
        let mut order: Vec<usize> = (0..f.bars.len())
            .filter(|&j| f.bars[j].kind.is_memory())
            .collect();
        order.sort_by(|&a, &b| f.bars[b].size.cmp(&f.bars[a].size));
        for j in order {
            let b = &mut f.bars[j];
            let mut got = mem
                .as_mut()
                .and_then(|a| Some((a.alloc(b.size)?, a.window)));
            // A 64-bit BAR on the root bus may go above 4 GiB when the 32-bit window is full.
            if got.is_none() && matches!(b.kind, BarKind::Mem64 { .. }) && bus == root {
                got = mem64
                    .as_mut()
                    .and_then(|a| Some((a.alloc(b.size)?, a.window)));
            }
            match got {
                Some((pci, w)) => {
                    b.pci = Some(pci);
                    b.cpu = w.to_cpu(pci, b.size);
                }
                None => {
                    f.problem = Some(
                        BarError::DoesNotFit {
                            at: f.at,
                            index: b.index,
                            size: b.size,
                        }
                        .into(),
                    );
                    break;
                }
            }
        }
        let at = f.at;
        let bars = f.bars.clone();
        let mut r: Result<(), PciError<C::Error>> = Ok(());
        for b in bars.iter().filter(|b| b.kind.is_memory()) {
            if let Err(e) = bar::program(c, at, b) {
                r = Err(e.into());
                break;
            }
        }
        if let Err(e) = r {
            s.functions[i].problem = Some(e);
        }
    }
    for &i in &on_bus {
        let f = &s.functions[i];
        let (Some(sec), true, None) = (f.secondary, f.is_bridge(), &f.problem) else {
            continue;
        };
        let at = f.at;
        let start = mem
            .as_mut()
            .and_then(|a| a.align(BRIDGE_ALIGN).then_some(a.next));
        assign_bus(c, sec, root, mem, &mut None, s);
        let end = mem
            .as_mut()
            .and_then(|a| a.align(BRIDGE_ALIGN).then_some(a.next));
        let r = bridge_window(c, at, start, end);
        if let Err(e) = r {
            s.functions[i].problem = Some(e.into());
        }
    }
}

/// Programs a bridge's memory window to `start..end` (empty: closed) and closes its
/// prefetchable and I/O windows.
fn bridge_window<C: ConfigSpace>(
    c: &mut C,
    at: Bdf,
    start: Option<u64>,
    end: Option<u64>,
) -> Result<(), AccessError<C::Error>> {
    let mem = match (start, end) {
        (Some(s), Some(e)) if e > s && e <= 1 << 32 => {
            (((e - 1) >> 16) as u32 & 0xfff0) << 16 | (s >> 16) as u32 & 0xfff0
        }
        _ => 0x0000_fff0,
    };
    config::write(c, at, config::MEMORY_BASE, 4, mem)?;
    config::write(c, at, config::PREF_MEMORY_BASE, 4, 0x0000_fff0)?;
    config::write(c, at, config::PREF_BASE_UPPER, 4, 0)?;
    config::write(c, at, config::PREF_LIMIT_UPPER, 4, 0)?;
    config::write(c, at, config::IO_BASE, 2, 0x00f0)
}

/// Turns on memory decoding (if it has a memory BAR or is a bridge) and bus mastering.
fn enable<C: ConfigSpace>(c: &mut C, f: &Function<C::Error>) -> Result<(), AccessError<C::Error>> {
    let cmd = config::read(c, f.at, config::COMMAND, 2)? as u16;
    let mut new = cmd & !config::CMD_IO;
    if f.is_bridge() || f.bars.iter().any(|b| b.kind.is_memory() && b.cpu.is_some()) {
        new |= config::CMD_MEMORY | config::CMD_BUS_MASTER;
    }
    config::write(c, f.at, config::COMMAND, 2, new.into())
}
