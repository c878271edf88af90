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

/// RTAS for a kernel booted without firmware: big-endian code that passes the argument block
/// in r3 to QEMU's H_RTAS and returns (`mr r4,r3; lis r3,0; ori r3,r3,0xf000; sc 1; blr`).
/// Data on the host too: the loader writes it into memory for the kernel.
pub const RTAS_HCALL_FORWARDER: [u32; 5] = [
    0x7c64_1b78,
    0x3c60_0000,
    0x6063_f000,
    0x4400_0022,
    0x4e80_0020,
];
