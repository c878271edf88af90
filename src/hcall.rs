//! Hypervisor calls: one typed wrapper per PAPR hcall vioboot uses, one error type, one retry loop.
//!
//! Status codes become [`HcallError`] here and nowhere else; H_BUSY and long-busy are retried in
//! [`call`] (bounded), so callers never loop on them.

use crate::{arch, time};
use core::fmt;
use papr::hcall::*;
use papr::status;

/// Hcalls made since boot (each try counts), for the benchmark.
static HCALLS: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

/// Number of hcalls made so far.
pub fn count() -> u64 {
    HCALLS.load(core::sync::atomic::Ordering::Relaxed)
}

/// The hcalls the benchmark counts by kind (those a request can make); every other opcode
/// counts as "other".
pub const COUNTED: [(u64, &str); 8] = [
    (H_PUT_TCE, "H_PUT_TCE"),
    (H_PUT_TCE_INDIRECT, "H_PUT_TCE_INDIRECT"),
    (H_STUFF_TCE, "H_STUFF_TCE"),
    (H_GET_TCE, "H_GET_TCE"),
    (H_SEND_CRQ, "H_SEND_CRQ"),
    (H_VIO_SIGNAL, "H_VIO_SIGNAL"),
    (H_LOGICAL_CI_LOAD, "H_LOGICAL_CI_LOAD"),
    (H_LOGICAL_CI_STORE, "H_LOGICAL_CI_STORE"),
];

/// Hcalls made since boot per entry of [`COUNTED`], then "other" (each try counts).
static BY_KIND: [core::sync::atomic::AtomicU64; COUNTED.len() + 1] =
    [const { core::sync::atomic::AtomicU64::new(0) }; COUNTED.len() + 1];

/// Hcalls made so far by kind: entry `i` for `COUNTED[i]`, the last for every other opcode.
pub fn count_by_kind() -> [u64; COUNTED.len() + 1] {
    core::array::from_fn(|i| BY_KIND[i].load(core::sync::atomic::Ordering::Relaxed))
}

fn kind_index(opcode: u64) -> usize {
    COUNTED
        .iter()
        .position(|&(op, _)| op == opcode)
        .unwrap_or(COUNTED.len())
}

/// Most time [`call`] keeps retrying a busy hypervisor.
const BUSY_BUDGET_US: u64 = 10_000_000;

/// A logical I/O bus number: names a TCE table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Liobn(pub u32);

/// An I/O bus address: what a device sees through a TCE window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Ioba(pub u64);

/// A real (physical) address in this partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct RealAddr(pub u64);

/// A VIO unit address (`reg` of a `/vdevice` child).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnitAddress(pub u32);

/// An hcall that did not succeed: which one, and the PAPR status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HcallError {
    pub call: &'static str,
    pub status: i64,
}

impl HcallError {
    pub fn is(&self, status: i64) -> bool {
        self.status == status
    }
}

impl fmt::Display for HcallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match status::name(self.status) {
            Some(name) => write!(f, "{} failed: {name} ({})", self.call, self.status),
            None => write!(f, "{} failed: unknown status {}", self.call, self.status),
        }
    }
}

/// Makes hcall `opcode` (named `name` in errors), retrying H_BUSY and long-busy for up to 10 s.
///
/// # Safety
/// As [`arch::hcall`]: buffers named by real address in `args` must be valid for the call.
pub unsafe fn call(name: &'static str, opcode: u64, args: &[u64]) -> Result<[u64; 9], HcallError> {
    let start = time::now_us();
    loop {
        HCALLS.fetch_add(1, core::sync::atomic::Ordering::Relaxed);
        BY_KIND[kind_index(opcode)].fetch_add(1, core::sync::atomic::Ordering::Relaxed);
        // SAFETY: forwarded contract.
        let regs = unsafe { arch::hcall(opcode, args) };
        if regs.status == status::H_SUCCESS {
            return Ok(regs.out);
        }
        if !status::is_busy(regs.status) || time::now_us() - start > BUSY_BUDGET_US {
            return Err(HcallError {
                call: name,
                status: regs.status,
            });
        }
        if let Some(ms) = status::long_busy_ms(regs.status) {
            time::delay_us(ms * 1000);
        }
    }
}

/// Writes up to 16 bytes to a virtual terminal.
pub fn put_term_char(vterm: UnitAddress, bytes: &[u8]) -> Result<(), HcallError> {
    let (hi, lo) = vioboot_core::hvterm::pack(bytes);
    // SAFETY: passes registers only, no memory.
    unsafe {
        call(
            "H_PUT_TERM_CHAR",
            H_PUT_TERM_CHAR,
            &[vterm.0.into(), bytes.len() as u64, hi, lo],
        )
    }
    .map(|_| ())
}

/// Reads up to 16 bytes from a virtual terminal; returns how many arrived.
pub fn get_term_char(vterm: UnitAddress, out: &mut [u8; 16]) -> Result<usize, HcallError> {
    // SAFETY: registers only.
    let r = unsafe { call("H_GET_TERM_CHAR", H_GET_TERM_CHAR, &[vterm.0.into()]) }?;
    Ok(vioboot_core::hvterm::unpack(r[0], r[1], r[2], out))
}

/// Sets one TCE: `tce` = real page address | permission bits (0 clears).
pub fn put_tce(liobn: Liobn, ioba: Ioba, tce: u64) -> Result<(), HcallError> {
    // SAFETY: the hypervisor validates the window; no guest buffer is passed.
    unsafe { call("H_PUT_TCE", H_PUT_TCE, &[liobn.0.into(), ioba.0, tce]) }.map(|_| ())
}

/// Reads one TCE.
pub fn get_tce(liobn: Liobn, ioba: Ioba) -> Result<u64, HcallError> {
    // SAFETY: registers only.
    unsafe { call("H_GET_TCE", H_GET_TCE, &[liobn.0.into(), ioba.0]) }.map(|r| r[0])
}

/// Sets `count` consecutive TCEs to the same value (normally 0, to clear a range).
pub fn stuff_tce(liobn: Liobn, ioba: Ioba, tce: u64, count: u64) -> Result<(), HcallError> {
    // SAFETY: registers only.
    unsafe {
        call(
            "H_STUFF_TCE",
            H_STUFF_TCE,
            &[liobn.0.into(), ioba.0, tce, count],
        )
    }
    .map(|_| ())
}

/// Sets `count` (<= 512) TCEs from a list of big-endian u64 at a 4 KiB-aligned real address.
///
/// # Safety
/// `list` must hold `count` TCE values, stay unchanged during the call, and be 4 KiB aligned.
pub unsafe fn put_tce_indirect(
    liobn: Liobn,
    ioba: Ioba,
    list: RealAddr,
    count: u64,
) -> Result<(), HcallError> {
    // SAFETY: forwarded contract.
    unsafe {
        call(
            "H_PUT_TCE_INDIRECT",
            H_PUT_TCE_INDIRECT,
            &[liobn.0.into(), ioba.0, list.0, count],
        )
    }
    .map(|_| ())
}

/// Loads `size` (1, 2, 4 or 8) bytes from the device address `addr` (H_LOGICAL_CI_LOAD): the
/// value as a big-endian load of those bytes. Reaches MMIO in real mode where plain loads
/// cannot (KVM, PowerVM).
pub fn logical_ci_load(size: u64, addr: RealAddr) -> Result<u64, HcallError> {
    // SAFETY: registers only; a load changes no memory of ours.
    unsafe { call("H_LOGICAL_CI_LOAD", H_LOGICAL_CI_LOAD, &[size, addr.0]) }.map(|r| r[0])
}

/// Stores the low `size` (1, 2, 4 or 8) bytes of `value` at `addr` (H_LOGICAL_CI_STORE), as a
/// big-endian store.
///
/// # Safety
/// `addr..addr + size` must be a device register (a BAR of a function vioboot owns), never
/// memory: the hypervisor would store into guest RAM as readily.
pub unsafe fn logical_ci_store(size: u64, addr: RealAddr, value: u64) -> Result<(), HcallError> {
    // SAFETY: forwarded contract.
    unsafe {
        call(
            "H_LOGICAL_CI_STORE",
            H_LOGICAL_CI_STORE,
            &[size, addr.0, value],
        )
    }
    .map(|_| ())
}

/// Registers a CRQ of `len` bytes at `queue` (an IOBA in the unit's own window).
pub fn reg_crq(unit: UnitAddress, queue: Ioba, len: u64) -> Result<(), HcallError> {
    // SAFETY: the hypervisor reaches the queue through the unit's TCE window, which validates it.
    unsafe { call("H_REG_CRQ", H_REG_CRQ, &[unit.0.into(), queue.0, len]) }.map(|_| ())
}

/// Frees the unit's CRQ.
pub fn free_crq(unit: UnitAddress) -> Result<(), HcallError> {
    // SAFETY: registers only.
    unsafe { call("H_FREE_CRQ", H_FREE_CRQ, &[unit.0.into()]) }.map(|_| ())
}

/// Re-enables the unit's CRQ after a migration.
pub fn enable_crq(unit: UnitAddress) -> Result<(), HcallError> {
    // SAFETY: registers only.
    unsafe { call("H_ENABLE_CRQ", H_ENABLE_CRQ, &[unit.0.into()]) }.map(|_| ())
}

/// Sends one 16-byte CRQ entry (two big-endian words) to the partner.
pub fn send_crq(unit: UnitAddress, word0: u64, word1: u64) -> Result<(), HcallError> {
    // SAFETY: registers only.
    unsafe { call("H_SEND_CRQ", H_SEND_CRQ, &[unit.0.into(), word0, word1]) }.map(|_| ())
}

/// H_SET_MODE resource 4: interrupts are taken in little-endian mode (mflags 1) or big (0).
pub fn set_little_endian_interrupts(le: bool) -> Result<(), HcallError> {
    // SAFETY: registers only.
    unsafe { call("H_SET_MODE", H_SET_MODE, &[u64::from(le), 4, 0, 0]) }.map(|_| ())
}

/// Runs the RTAS call whose argument block is at `block` (QEMU only).
///
/// # Safety
/// `block` must be a valid RTAS argument block, writable for the return words.
pub unsafe fn rtas(block: RealAddr) -> Result<(), HcallError> {
    // SAFETY: forwarded contract.
    unsafe { call("H_RTAS", H_RTAS, &[block.0]) }.map(|_| ())
}

/// Registers (or with `register` false, deregisters) the VPA of processor `cpu` at `vpa`.
///
/// # Safety
/// `vpa` must be a page vioboot owns that the hypervisor may write for as long as it is
/// registered.
pub unsafe fn register_vpa(cpu: u64, vpa: RealAddr, register: bool) -> Result<(), HcallError> {
    let flags = if register {
        VPA_REGISTER
    } else {
        VPA_DEREGISTER
    };
    // SAFETY: forwarded contract.
    unsafe { call("H_REGISTER_VPA", H_REGISTER_VPA, &[flags, cpu, vpa.0]) }.map(|_| ())
}

/// Zeroes page `dst` (`src` None) or copies page `src` into it, through the hypervisor.
///
/// # Safety
/// Both must be 4 KiB pages vioboot owns; `dst` is overwritten.
pub unsafe fn page_init(dst: RealAddr, src: Option<RealAddr>) -> Result<(), HcallError> {
    let (flags, from) = match src {
        Some(s) => (PAGE_INIT_COPY, s.0),
        None => (PAGE_INIT_ZERO, 0),
    };
    // SAFETY: forwarded contract.
    unsafe { call("H_PAGE_INIT", H_PAGE_INIT, &[flags, dst.0, from]) }.map(|_| ())
}

/// Sets SPRG0.
pub fn set_sprg0(value: u64) -> Result<(), HcallError> {
    // SAFETY: registers only.
    unsafe { call("H_SET_SPRG0", H_SET_SPRG0, &[value]) }.map(|_| ())
}

/// A random number from the platform's RNG.
pub fn random() -> Result<u64, HcallError> {
    // SAFETY: registers only.
    unsafe { call("H_RANDOM", H_RANDOM, &[]) }.map(|r| r[0])
}

/// H_CEDE: gives up this processor until an interrupt arrives or another processor prods it.
/// PAPR: it returns with MSR[EE] set; the caller turns it off again.
pub fn cede() -> Result<(), HcallError> {
    // SAFETY: registers only.
    unsafe { call("H_CEDE", H_CEDE, &[]) }.map(|_| ())
}

/// H_PROD: wakes the processor with interrupt server number `cpu` from H_CEDE.
pub fn prod(cpu: u32) -> Result<(), HcallError> {
    // SAFETY: registers only.
    unsafe { call("H_PROD", H_PROD, &[u64::from(cpu)]) }.map(|_| ())
}

/// H_VIO_SIGNAL: the unit's interrupt on (`on`: mode 1, raised when the hypervisor queues a
/// CRQ entry for us) or off (mode 0).
pub fn vio_signal(unit: UnitAddress, on: bool) -> Result<(), HcallError> {
    // SAFETY: registers only.
    unsafe {
        call(
            "H_VIO_SIGNAL",
            H_VIO_SIGNAL,
            &[unit.0.into(), u64::from(on)],
        )
    }
    .map(|_| ())
}

/// H_CPPR: the calling processor's current priority (0: nothing presented; 0xff: everything).
pub fn set_cppr(cppr: u8) -> Result<(), HcallError> {
    // SAFETY: registers only.
    unsafe { call("H_CPPR", H_CPPR, &[u64::from(cppr)]) }.map(|_| ())
}

/// H_IPI: sets the MFRR of the processor with interrupt server `server` (0xff: no IPI).
pub fn ipi(server: u32, mfrr: u8) -> Result<(), HcallError> {
    // SAFETY: registers only.
    unsafe { call("H_IPI", H_IPI, &[u64::from(server), u64::from(mfrr)]) }.map(|_| ())
}

/// H_XIRR: accepts the most favoured pending interrupt; returns the XIRR (the old CPPR in the
/// top byte, the source below; source 0 when nothing was pending).
pub fn xirr() -> Result<u32, HcallError> {
    // SAFETY: registers only.
    unsafe { call("H_XIRR", H_XIRR, &[]) }.map(|r| r[0] as u32)
}

/// H_EOI: ends an interrupt's handling with the XIRR H_XIRR returned (restores that CPPR).
pub fn eoi(xirr: u32) -> Result<(), HcallError> {
    // SAFETY: registers only.
    unsafe { call("H_EOI", H_EOI, &[u64::from(xirr)]) }.map(|_| ())
}

/// H_IPOLL: the XIRR and MFRR of processor `server`, accepting nothing.
pub fn ipoll(server: u32) -> Result<(u32, u8), HcallError> {
    // SAFETY: registers only.
    unsafe { call("H_IPOLL", H_IPOLL, &[u64::from(server)]) }.map(|r| (r[0] as u32, r[1] as u8))
}
