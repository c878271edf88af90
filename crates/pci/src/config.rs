//! Config-space addresses and access: a function's bus/device/function, the register offsets
//! vioboot reads, and the [`ConfigSpace`] trait that RTAS (or a test) implements.

use core::fmt;

/// Bytes of a function's conventional config space (capabilities live here).
pub const CONFIG_SIZE: u16 = 256;
/// Bytes of PCI Express extended config space (registers RTAS can address).
pub const EXTENDED_CONFIG_SIZE: u16 = 4096;

pub const VENDOR_ID: u16 = 0x00;
pub const DEVICE_ID: u16 = 0x02;
pub const COMMAND: u16 = 0x04;
pub const STATUS: u16 = 0x06;
/// Revision (byte 0) and class code (bytes 1..3) in one dword.
pub const CLASS_REVISION: u16 = 0x08;
pub const HEADER_TYPE: u16 = 0x0e;
pub const BAR0: u16 = 0x10;
pub const SUBSYSTEM_ID: u16 = 0x2e;
pub const CAPABILITIES: u16 = 0x34;
/// Type 1 (bridge) header: primary, secondary and subordinate bus numbers (bytes 0..2).
pub const BUS_NUMBERS: u16 = 0x18;
/// Type 1 header: memory base and limit (16 bits each, 1 MiB granularity).
pub const MEMORY_BASE: u16 = 0x20;
/// Type 1 header: prefetchable memory base and limit, and their upper 32 bits.
pub const PREF_MEMORY_BASE: u16 = 0x24;
pub const PREF_BASE_UPPER: u16 = 0x28;
pub const PREF_LIMIT_UPPER: u16 = 0x2c;
/// Type 1 header: I/O base and limit (bytes 0..1).
pub const IO_BASE: u16 = 0x1c;

/// Command register: respond to I/O space accesses.
pub const CMD_IO: u16 = 1 << 0;
/// Command register: respond to memory space accesses.
pub const CMD_MEMORY: u16 = 1 << 1;
/// Command register: may master the bus (DMA).
pub const CMD_BUS_MASTER: u16 = 1 << 2;
/// Status register: the capability list at 0x34 is valid.
pub const STATUS_CAP_LIST: u16 = 1 << 4;

/// Header type: low 7 bits the layout, bit 7 a multi-function device.
pub const HEADER_MULTI_FUNCTION: u8 = 0x80;
pub const HEADER_NORMAL: u8 = 0;
pub const HEADER_BRIDGE: u8 = 1;

/// A function's address on its host bridge: bus, device (0..31), function (0..7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Bdf {
    pub bus: u8,
    pub device: u8,
    pub function: u8,
}

impl Bdf {
    /// Device and function, as in a config address (`devfn`).
    pub fn devfn(self) -> u8 {
        (self.device & 0x1f) << 3 | (self.function & 7)
    }

    /// The `cfg_addr` argument of RTAS `ibm,read-pci-config` / `ibm,write-pci-config`:
    /// bus << 16 | devfn << 8 | register bits 0..7, and register bits 8..11 in bits 28..31
    /// (extended config space). `None` for a register beyond extended config space.
    pub fn rtas_config_address(self, reg: u16) -> Option<u32> {
        if reg >= EXTENDED_CONFIG_SIZE {
            return None;
        }
        let reg = u32::from(reg);
        Some(
            u32::from(self.bus) << 16
                | u32::from(self.devfn()) << 8
                | (reg & 0xff)
                | ((reg >> 8) & 0xf) << 28,
        )
    }
}

impl fmt::Display for Bdf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02x}:{:02x}.{}", self.bus, self.device, self.function)
    }
}

/// Access to config space. `size` is 1, 2 or 4 and `reg` aligned to it (callers in this crate
/// keep to that); the value is a plain number, already in host order.
pub trait ConfigSpace {
    type Error: Clone + fmt::Debug + fmt::Display;
    fn read(&mut self, at: Bdf, reg: u16, size: u8) -> Result<u32, Self::Error>;
    fn write(&mut self, at: Bdf, reg: u16, size: u8, value: u32) -> Result<(), Self::Error>;
}

/// A config access that failed: where, and the accessor's own error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessError<E> {
    pub at: Bdf,
    pub reg: u16,
    pub write: bool,
    pub error: E,
}

impl<E: fmt::Display> fmt::Display for AccessError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = if self.write { "write" } else { "read" };
        write!(
            f,
            "config {what} of {} register {:#x}: {}",
            self.at, self.reg, self.error
        )
    }
}

/// Typed helpers over a [`ConfigSpace`] that name the access in their errors.
pub(crate) fn read<C: ConfigSpace>(
    c: &mut C,
    at: Bdf,
    reg: u16,
    size: u8,
) -> Result<u32, AccessError<C::Error>> {
    c.read(at, reg, size).map_err(|error| AccessError {
        at,
        reg,
        write: false,
        error,
    })
}

pub(crate) fn write<C: ConfigSpace>(
    c: &mut C,
    at: Bdf,
    reg: u16,
    size: u8,
    value: u32,
) -> Result<(), AccessError<C::Error>> {
    c.write(at, reg, size, value).map_err(|error| AccessError {
        at,
        reg,
        write: true,
        error,
    })
}
