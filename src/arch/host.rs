//! Host stand-ins for the processor, so the portable layers compile and unit-test on x86_64.
//! Hypervisor calls answer H_FUNCTION; calls into firmware are impossible.

use super::HcallRegs;
use core::sync::atomic::{AtomicU64, Ordering};

/// No hypervisor on the host: every call is H_FUNCTION (-2).
///
/// # Safety
/// Safe on the host; `unsafe` to match the real signature.
pub unsafe fn hcall(_opcode: u64, _args: &[u64]) -> HcallRegs {
    HcallRegs {
        status: -2,
        out: [0; 9],
    }
}

static TB: AtomicU64 = AtomicU64::new(0);

/// A counter that advances on every read.
pub fn timebase() -> u64 {
    TB.fetch_add(1, Ordering::Relaxed)
}

pub fn sync() {
    core::sync::atomic::fence(Ordering::SeqCst);
}

/// # Safety
/// Never callable on the host.
pub unsafe fn call_be32(_entry: u64, _r3: u64, _r4: u64) -> i64 {
    panic!("no firmware to call on the host")
}

pub fn image_bounds() -> (u64, u64, u64) {
    (0, 0, 0)
}

pub fn halt() -> ! {
    panic!("halt")
}

pub fn illegal_instruction() {
    panic!("illegal instruction")
}
