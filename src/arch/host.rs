//! Host stand-ins for the processor, so the portable layers compile and unit-test on x86_64.
//! Hypervisor calls go to a simulated hypervisor a test installs ([`set_hypervisor`]), else
//! answer H_FUNCTION; calls into firmware are impossible. "Real addresses" are host pointers.

use super::HcallRegs;
use core::sync::atomic::Ordering;
use std::boxed::Box;
use std::cell::RefCell;

/// A simulated hypervisor: gets the opcode and r4.., returns r3.. .
pub type Hypervisor = Box<dyn FnMut(u64, &[u64]) -> HcallRegs>;

std::thread_local! {
    static HYPERVISOR: RefCell<Option<Hypervisor>> = const { RefCell::new(None) };
}

/// Routes this thread's hcalls to `hv` (or back to H_FUNCTION with `None`).
pub fn set_hypervisor(hv: Option<Hypervisor>) {
    HYPERVISOR.with(|h| *h.borrow_mut() = hv);
}

/// Calls the simulated hypervisor, or answers H_FUNCTION (-2) when none is installed.
///
/// # Safety
/// Safe on the host; `unsafe` to match the real signature.
pub unsafe fn hcall(opcode: u64, args: &[u64]) -> HcallRegs {
    HYPERVISOR.with(|h| match h.borrow_mut().as_mut() {
        Some(hv) => hv(opcode, args),
        None => HcallRegs {
            status: -2,
            out: [0; 9],
        },
    })
}

/// A 512 MHz timebase (POWER's and QEMU's frequency) from the host's monotonic clock.
pub fn timebase() -> u64 {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    let ns = START
        .get_or_init(std::time::Instant::now)
        .elapsed()
        .as_nanos() as u64;
    ns * 512 / 1000
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

/// # Safety
/// Never callable on the host.
pub unsafe fn jump_to_kernel(_entry: u64, _r3: u64, _r4: u64, _r5: u64) -> ! {
    panic!("no kernel to enter on the host")
}

/// No vectors to own on the host.
pub fn own_vectors(_base: u64) -> bool {
    true
}

pub fn with_firmware_vectors<R>(f: impl FnOnce() -> R) -> R {
    f()
}

pub fn give_back_vectors() {}

/// No SPRG0 on the host: what a simulated hypervisor's H_SET_SPRG0 would have set is unknown.
pub fn sprg0() -> u64 {
    0
}

/// No exceptions are taken on the host.
pub fn on_exception(_handler: fn(u64, u64, u64, u64) -> !) {}

/// Vectors on the host are never live.
pub fn owns_vectors() -> bool {
    false
}

pub fn decrementer_count() -> u64 {
    0
}

pub fn set_decrementer(_ticks: u32) {}

pub fn external_interrupts(_on: bool) {}

/// No interrupts on the host: MSR[EE] reads as off.
pub fn external_interrupts_on() -> bool {
    false
}

pub fn pir() -> u32 {
    0
}

pub fn timebase_after() -> u64 {
    timebase()
}

/// No secondary threads on the host.
pub fn secondary_start() -> u64 {
    0
}

pub fn secondary_lost() -> u64 {
    0
}
