//! The processor: the only place that knows whether vioboot runs on POWER or on the host.
//!
//! Callers use `arch::*` and never see a `cfg`.

// The real thing: boot assembly, `sc 1`, the timebase, calls into big-endian firmware.
#[cfg(target_arch = "powerpc64")]
mod ppc64;
#[cfg(target_arch = "powerpc64")]
pub use ppc64::*;

// Host stand-ins so the portable layers build and unit-test on x86_64.
#[cfg(not(target_arch = "powerpc64"))]
mod host;
#[cfg(not(target_arch = "powerpc64"))]
pub use host::*;

/// Registers returned by an hcall: r3 (status) and r4..r12.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HcallRegs {
    pub status: i64,
    pub out: [u64; 9],
}
