//! The Open Firmware client interface (IEEE 1275), called from little-endian 64-bit code.
//!
//! Alive from entry (SLOF, VOF, PowerVM's partition firmware) until [`Of::quiesce`]. Every call
//! builds a big-endian argument block `{service, nargs, nret, args..., rets...}` on the stack and
//! enters OF through [`arch::call_be32`]; all addresses handed to OF must lie below 4 GiB.

mod flatten;

pub use flatten::{flatten, FlattenError};

use crate::arch;
use core::ffi::CStr;
use core::fmt;
use core::sync::atomic::{AtomicU64, Ordering};

/// Client-interface entry while OF is alive; 0 once quiesced or when booted without OF.
static ENTRY: AtomicU64 = AtomicU64::new(0);

/// A failed client-interface call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OfError {
    /// OF returned -1 from the call itself: it does not know the service.
    Unknown { service: &'static str },
    /// The service ran and reported failure (-1 or the documented failure value).
    Failed { service: &'static str },
    /// A buffer or string that OF would need to reach lies above 4 GiB.
    AddressTooHigh { service: &'static str, addr: u64 },
    /// Open Firmware is not (or no longer) there.
    Gone,
}

impl fmt::Display for OfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OfError::Unknown { service } => write!(f, "Open Firmware does not offer `{service}`"),
            OfError::Failed { service } => write!(f, "Open Firmware `{service}` failed"),
            OfError::AddressTooHigh { service, addr } => {
                write!(
                    f,
                    "`{service}`: address {addr:#x} is above 4 GiB, out of Open Firmware's reach"
                )
            }
            OfError::Gone => write!(f, "Open Firmware has been quiesced"),
        }
    }
}

/// A node handle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Phandle(pub u32);

/// An open-instance handle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ihandle(pub u32);

/// Size of the property-name buffer for [`Of::nextprop`].
pub const PROPNAME_BUF: usize = 256;

/// Most argument plus return cells of any call vioboot makes.
const MAX_CELLS: usize = 16;

/// A handle on the live client interface.
#[derive(Clone, Copy)]
pub struct Of {
    entry: u64,
}

fn addr32(service: &'static str, addr: u64) -> Result<u32, OfError> {
    u32::try_from(addr).map_err(|_| OfError::AddressTooHigh { service, addr })
}

fn cstr32(service: &'static str, s: &CStr) -> Result<u32, OfError> {
    addr32(service, s.as_ptr() as u64)
}

impl Of {
    /// Takes the client-interface entry that the firmware passed in r5.
    ///
    /// # Safety
    /// `entry` must be Open Firmware's client-interface entry point, callable as IEEE 1275 says.
    pub unsafe fn install(entry: u64) -> Of {
        ENTRY.store(entry, Ordering::SeqCst);
        Of { entry }
    }

    /// The client-interface entry, for a kernel that will call OF itself (0 when gone).
    pub fn entry_address() -> u64 {
        ENTRY.load(Ordering::SeqCst)
    }

    /// The client interface, if OF is alive.
    pub fn get() -> Option<Of> {
        match ENTRY.load(Ordering::SeqCst) {
            0 => None,
            entry => Some(Of { entry }),
        }
    }

    /// Makes one call; returns the return cells.
    fn call(
        &self,
        service: &'static CStr,
        args: &[u32],
        nret: usize,
    ) -> Result<[u32; MAX_CELLS], OfError> {
        let name = service.to_str().unwrap_or("?");
        if ENTRY.load(Ordering::SeqCst) == 0 {
            return Err(OfError::Gone);
        }
        assert!(
            args.len() + nret <= MAX_CELLS,
            "OF call `{name}` with too many cells"
        );
        let mut block = [0u32; 3 + MAX_CELLS];
        block[0] = cstr32(name, service)?.to_be();
        block[1] = (args.len() as u32).to_be();
        block[2] = (nret as u32).to_be();
        for (slot, a) in block[3..].iter_mut().zip(args) {
            *slot = a.to_be();
        }
        let at = addr32(name, block.as_ptr() as u64)?;
        // SAFETY: `entry` is the client interface (see `install`); the block and everything its
        // cells point to lie below 4 GiB (checked by the callers with addr32/cstr32) and live
        // across the call.
        let rc =
            arch::with_firmware_vectors(|| unsafe { arch::call_be32(self.entry, at.into(), 0) });
        if rc == -1 || rc as i32 == -1 {
            return Err(OfError::Unknown { service: name });
        }
        let mut rets = [0u32; MAX_CELLS];
        for (r, b) in rets
            .iter_mut()
            .zip(&block[3 + args.len()..3 + args.len() + nret])
        {
            *r = u32::from_be(*b);
        }
        Ok(rets)
    }

    /// Whether OF offers a service (`test`).
    pub fn has(&self, service: &'static CStr) -> bool {
        let Ok(at) = cstr32("test", service) else {
            return false;
        };
        matches!(self.call(c"test", &[at], 1), Ok(r) if r[0] == 0)
    }

    pub fn finddevice(&self, path: &CStr) -> Result<Phandle, OfError> {
        let r = self.call(c"finddevice", &[cstr32("finddevice", path)?], 1)?;
        match r[0] {
            u32::MAX | 0 => Err(OfError::Failed {
                service: "finddevice",
            }),
            p => Ok(Phandle(p)),
        }
    }

    /// Length of a property, `None` if the node does not have it.
    pub fn getproplen(&self, node: Phandle, name: &CStr) -> Result<Option<usize>, OfError> {
        let r = self.call(c"getproplen", &[node.0, cstr32("getproplen", name)?], 1)?;
        Ok((r[0] as i32 >= 0).then_some(r[0] as usize))
    }

    /// Copies a property into `buf`; returns its full length (which may exceed `buf`).
    pub fn getprop(
        &self,
        node: Phandle,
        name: &CStr,
        buf: &mut [u8],
    ) -> Result<Option<usize>, OfError> {
        let at = addr32("getprop", buf.as_mut_ptr() as u64)?;
        let r = self.call(
            c"getprop",
            &[node.0, cstr32("getprop", name)?, at, buf.len() as u32],
            1,
        )?;
        Ok((r[0] as i32 >= 0).then_some(r[0] as usize))
    }

    /// A one-cell property.
    pub fn getprop_u32(&self, node: Phandle, name: &CStr) -> Result<Option<u32>, OfError> {
        let mut b = [0u8; 4];
        Ok(match self.getprop(node, name, &mut b)? {
            Some(4) => Some(u32::from_be_bytes(b)),
            _ => None,
        })
    }

    /// The property after `prev` ("" for the first); writes its NUL-terminated name into `buf`.
    /// IEEE 1275 says names fit 32 bytes, but real trees (QEMU's /rtas) have longer ones and OF
    /// writes them whole, so the buffer is [`PROPNAME_BUF`] bytes. Returns false at the end.
    pub fn nextprop(
        &self,
        node: Phandle,
        prev: &CStr,
        buf: &mut [u8; PROPNAME_BUF],
    ) -> Result<bool, OfError> {
        let at = addr32("nextprop", buf.as_mut_ptr() as u64)?;
        let r = self.call(c"nextprop", &[node.0, cstr32("nextprop", prev)?, at], 1)?;
        match r[0] as i32 {
            1 => Ok(true),
            0 => Ok(false),
            _ => Err(OfError::Failed {
                service: "nextprop",
            }),
        }
    }

    /// The next sibling (`peer`), or the root for `Phandle(0)`; `None` at the end.
    pub fn peer(&self, node: Phandle) -> Result<Option<Phandle>, OfError> {
        let r = self.call(c"peer", &[node.0], 1)?;
        Ok(match r[0] {
            0 | u32::MAX => None,
            p => Some(Phandle(p)),
        })
    }

    pub fn child(&self, node: Phandle) -> Result<Option<Phandle>, OfError> {
        let r = self.call(c"child", &[node.0], 1)?;
        Ok(match r[0] {
            0 | u32::MAX => None,
            p => Some(Phandle(p)),
        })
    }

    /// The full path of a node; returns its length (which may exceed `buf`).
    pub fn package_to_path(&self, node: Phandle, buf: &mut [u8]) -> Result<usize, OfError> {
        let at = addr32("package-to-path", buf.as_mut_ptr() as u64)?;
        let r = self.call(c"package-to-path", &[node.0, at, buf.len() as u32], 1)?;
        match r[0] as i32 {
            n if n >= 0 => Ok(n as usize),
            _ => Err(OfError::Failed {
                service: "package-to-path",
            }),
        }
    }

    pub fn instance_to_package(&self, ih: Ihandle) -> Result<Phandle, OfError> {
        let r = self.call(c"instance-to-package", &[ih.0], 1)?;
        match r[0] {
            0 | u32::MAX => Err(OfError::Failed {
                service: "instance-to-package",
            }),
            p => Ok(Phandle(p)),
        }
    }

    /// Claims `size` bytes of memory aligned to `align` (a power of two), wherever OF chooses.
    pub fn claim(&self, size: u64, align: u64) -> Result<u64, OfError> {
        let size = addr32("claim", size)?;
        let align = addr32("claim", align)?;
        let r = self.call(c"claim", &[0, size, align], 1)?;
        match r[0] {
            u32::MAX => Err(OfError::Failed { service: "claim" }),
            base => Ok(base.into()),
        }
    }

    /// Claims `size` bytes at exactly `at`.
    pub fn claim_at(&self, at: u64, size: u64) -> Result<u64, OfError> {
        let at32 = addr32("claim", at)?;
        let size = addr32("claim", size)?;
        let r = self.call(c"claim", &[at32, size, 0], 1)?;
        match r[0] {
            u32::MAX => Err(OfError::Failed { service: "claim" }),
            base => Ok(base.into()),
        }
    }

    /// Writes bytes to an instance (the console); returns how many were taken.
    pub fn write(&self, ih: Ihandle, bytes: &[u8]) -> Result<usize, OfError> {
        let at = addr32("write", bytes.as_ptr() as u64)?;
        let r = self.call(c"write", &[ih.0, at, bytes.len() as u32], 1)?;
        match r[0] as i32 {
            n if n >= 0 => Ok(n as usize),
            _ => Err(OfError::Failed { service: "write" }),
        }
    }

    /// Sets a property (to pass `/chosen/bootargs` to the kernel).
    pub fn setprop(&self, node: Phandle, name: &CStr, value: &[u8]) -> Result<(), OfError> {
        let at = addr32("setprop", value.as_ptr() as u64)?;
        let r = self.call(
            c"setprop",
            &[node.0, cstr32("setprop", name)?, at, value.len() as u32],
            1,
        )?;
        match r[0] as i32 {
            n if n >= 0 => Ok(()),
            _ => Err(OfError::Failed { service: "setprop" }),
        }
    }

    pub fn open(&self, path: &CStr) -> Result<Ihandle, OfError> {
        let r = self.call(c"open", &[cstr32("open", path)?], 1)?;
        match r[0] {
            0 | u32::MAX => Err(OfError::Failed { service: "open" }),
            ih => Ok(Ihandle(ih)),
        }
    }

    /// `call-method` with one argument and one result (enough for `instantiate-rtas`).
    pub fn call_method1(&self, method: &CStr, ih: Ihandle, arg: u32) -> Result<u32, OfError> {
        self.call_method(method, ih, &[arg])
    }

    /// `call-method` with `args` in the client interface's order (the argument the method
    /// finds on top of its stack first) and one result; a nonzero catch result (the method
    /// threw, or the instance has no such method) is a failure.
    pub fn call_method(&self, method: &CStr, ih: Ihandle, args: &[u32]) -> Result<u32, OfError> {
        let mut cells = [0u32; MAX_CELLS - 2];
        assert!(
            args.len() + 2 <= cells.len(),
            "call-method with too many arguments"
        );
        cells[0] = cstr32("call-method", method)?;
        cells[1] = ih.0;
        cells[2..2 + args.len()].copy_from_slice(args);
        let r = self.call(c"call-method", &cells[..2 + args.len()], 2)?;
        match r[0] {
            0 => Ok(r[1]),
            _ => Err(OfError::Failed {
                service: "call-method",
            }),
        }
    }

    /// Whether the package `node` has `method` (`test-method`; `Unknown` where OF does not
    /// offer that service, as QEMU's VOF).
    pub fn has_method(&self, node: Phandle, method: &CStr) -> Result<bool, OfError> {
        let r = self.call(c"test-method", &[node.0, cstr32("test-method", method)?], 1)?;
        Ok(r[0] == 0)
    }

    /// Closes an instance [`Of::open`] opened.
    pub fn close(&self, ih: Ihandle) -> Result<(), OfError> {
        self.call(c"close", &[ih.0], 0).map(|_| ())
    }

    /// Gives back memory [`Of::claim`] claimed.
    pub fn release(&self, at: u64, size: u64) -> Result<(), OfError> {
        let at = addr32("release", at)?;
        let size = addr32("release", size)?;
        self.call(c"release", &[at, size], 0).map(|_| ())
    }

    /// SLOF's `fdt-fetch`: copies the flattened tree into `buf`.
    pub fn fdt_fetch(&self, buf: &mut [u8]) -> Result<(), OfError> {
        let at = addr32("fdt-fetch", buf.as_mut_ptr() as u64)?;
        let r = self.call(c"fdt-fetch", &[at, buf.len() as u32], 1)?;
        match r[0] {
            0 => Ok(()),
            _ => Err(OfError::Failed {
                service: "fdt-fetch",
            }),
        }
    }

    /// Stops OF's devices and timers; OF is not called again afterwards.
    pub fn quiesce(self) -> Result<(), OfError> {
        let r = self.call(c"quiesce", &[], 0);
        ENTRY.store(0, Ordering::SeqCst);
        r.map(|_| ())
    }
}
