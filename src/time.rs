//! Time from the timebase: microseconds since boot, delays.

use crate::arch;
use core::sync::atomic::{AtomicU64, Ordering};

/// Ticks per second; QEMU's and POWER's usual value until the device tree says otherwise.
static TB_HZ: AtomicU64 = AtomicU64::new(512_000_000);
/// Timebase at vioboot's first Rust instruction.
static TB_START: AtomicU64 = AtomicU64::new(0);

/// Records the start of the boot; called once at entry.
pub fn mark_start() {
    TB_START.store(arch::timebase(), Ordering::Relaxed);
}

/// Sets the timebase frequency from `/cpus/*/timebase-frequency`.
pub fn set_frequency(hz: u64) {
    if hz != 0 {
        TB_HZ.store(hz, Ordering::Relaxed);
    }
}

/// Converts timebase ticks to microseconds.
pub fn ticks_to_us(ticks: u64) -> u64 {
    (u128::from(ticks) * 1_000_000 / u128::from(TB_HZ.load(Ordering::Relaxed))) as u64
}

/// Microseconds since entry.
pub fn now_us() -> u64 {
    ticks_to_us(arch::timebase().wrapping_sub(TB_START.load(Ordering::Relaxed)))
}

/// Busy-waits `us` microseconds.
pub fn delay_us(us: u64) {
    let end = now_us() + us;
    while now_us() < end {
        core::hint::spin_loop();
    }
}

/// Converts microseconds to timebase ticks.
pub fn us_to_ticks(us: u64) -> u64 {
    (u128::from(us) * u128::from(TB_HZ.load(Ordering::Relaxed)) / 1_000_000) as u64
}
