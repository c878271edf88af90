//! Interrupts vioboot takes on purpose: the decrementer fires into vioboot's own 0x900 vector
//! (boot/entry.S), which counts it and returns.

use crate::{arch, report, time};

/// How far ahead the decrementer is set.
const DEC_US: u64 = 1_000;
/// How long MSR[EE] stays on waiting for it (QEMU's TCG raises the interrupt from a host
/// timer: on a busy host it was seen more than 100 ms late).
const LIMIT_US: u64 = 1_000_000;

/// Runs the decrementer check where vioboot's vectors are live.
pub fn run() {
    if !arch::owns_vectors() {
        report::skip(
            "decrementer",
            "vioboot's vectors are not live with little-endian interrupts",
        );
        return;
    }
    let ticks = time::us_to_ticks(DEC_US).clamp(1, i32::MAX as u64) as u32;
    let before = arch::decrementer_count();
    let start = time::now_us();
    arch::set_decrementer(ticks);
    arch::external_interrupts(true);
    let mut fired_us = None;
    while time::now_us().saturating_sub(start) < LIMIT_US {
        if arch::decrementer_count() != before {
            fired_us = Some(time::now_us().saturating_sub(start));
            break;
        }
        core::hint::spin_loop();
    }
    arch::external_interrupts(false);
    arch::set_decrementer(i32::MAX as u32);
    let taken = arch::decrementer_count().wrapping_sub(before);
    match fired_us {
        Some(us) if us + 1 >= DEC_US / 2 => report::pass(
            "decrementer",
            format_args!(
                "set for {DEC_US} us ({ticks} ticks), taken at vector 0x900 after {us} us ({taken} interrupt)"
            ),
        ),
        Some(us) => report::fail(
            "decrementer",
            &alloc::format!("set for {DEC_US} us, the interrupt came after only {us} us"),
            &[],
        ),
        None => report::fail(
            "decrementer",
            &alloc::format!(
                "set for {DEC_US} us with MSR[EE] on, no interrupt within {} ms",
                LIMIT_US / 1000
            ),
            &[],
        ),
    }
}
