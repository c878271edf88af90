//! POWER (ppc64le): boot assembly, hypervisor calls, timebase, calls into big-endian firmware.

use super::HcallRegs;
use core::arch::{asm, global_asm};

global_asm!(
    include_str!("../../boot/entry.S"),
    MSR_SF_BIT = const 63,
    MSR_FPVEC_HI = const 0x0280, // (MSR_VEC 1<<25 | MSR_VSX 1<<23) >> 16
    MSR_FP = const 0x2000,
    R_PPC64_RELATIVE = const 22,
    VECTOR_TARGET = const VECTOR_TARGET,
    DEC_COUNT = const DEC_COUNT,
    MSR_EE = const MSR_EE,
);

unsafe extern "C" {
    fn vioboot_call_be32(r3: u64, entry: u64, r4: u64) -> i64;
    static exception_common: u8;
    static vioboot_secondary_start: u8;
    static vioboot_secondary_lost: u8;
    static __image_start: u8;
    static __file_end: u8;
    static __image_end: u8;
}

/// Makes a hypervisor call (`sc 1`): r3 = opcode, r4.. = arguments.
///
/// # Safety
/// The hcall may read or write memory at real addresses named by the arguments; the caller
/// guarantees those buffers are valid for the call.
pub unsafe fn hcall(opcode: u64, args: &[u64]) -> HcallRegs {
    let mut a = [0u64; 9];
    a[..args.len().min(9)].copy_from_slice(&args[..args.len().min(9)]);
    let (mut r3, [mut r4, mut r5, mut r6, mut r7, mut r8, mut r9, mut r10, mut r11, mut r12]) =
        (opcode, a);
    // SAFETY: `sc 1` follows PAPR's hcall convention: inputs in r3..r12, outputs in r3..r12,
    // r0, CR, CTR and XER clobbered; memory effects are the caller's contract above.
    unsafe {
        asm!(
            "sc 1",
            inout("r3") r3, inout("r4") r4, inout("r5") r5, inout("r6") r6, inout("r7") r7,
            inout("r8") r8, inout("r9") r9, inout("r10") r10, inout("r11") r11, inout("r12") r12,
            out("r0") _, out("cr") _, out("ctr") _, out("xer") _,
        );
    }
    HcallRegs {
        status: r3 as i64,
        out: [r4, r5, r6, r7, r8, r9, r10, r11, r12],
    }
}

/// The timebase register (ticks at `timebase-frequency`).
pub fn timebase() -> u64 {
    let tb: u64;
    // SAFETY: reading the timebase has no side effects.
    unsafe { asm!("mftb {0}", out(reg) tb, options(nomem, nostack)) };
    tb
}

/// SPRG0, a register software keeps for itself (H_SET_SPRG0 writes it).
pub fn sprg0() -> u64 {
    let v: u64;
    // SAFETY: reading SPRG0 (SPR 272) in supervisor state has no side effects.
    unsafe { asm!("mfspr {0}, 272", out(reg) v, options(nomem, nostack)) };
    v
}

/// Full memory barrier (`sync`): orders all loads and stores, including against the hypervisor.
pub fn sync() {
    // SAFETY: a barrier has no effect but ordering.
    unsafe { asm!("sync", options(nostack)) };
}

/// Calls big-endian 32-bit code at `entry` with r3 and r4 (Open Firmware, instantiated RTAS).
///
/// # Safety
/// `entry` must be the client-interface or RTAS entry point, and every address reachable from
/// r3/r4 must be valid for what the callee does with it and lie below 4 GiB, as must the stack.
pub unsafe fn call_be32(entry: u64, r3: u64, r4: u64) -> i64 {
    // SAFETY: the trampoline saves and restores all state the 32-bit callee may clobber; the
    // caller upholds the contract above.
    unsafe { vioboot_call_be32(r3, entry, r4) }
}

/// Where the image lies in memory now: `(start, end_of_file_contents, end_including_bss)`.
/// (The compiler assumes a static's address is never 0: compare the entry's load base, not
/// these, with 0.)
pub fn image_bounds() -> (u64, u64, u64) {
    // Linker-script symbols: only their addresses are taken, never their contents.
    (
        &raw const __image_start as u64,
        &raw const __file_end as u64,
        &raw const __image_end as u64,
    )
}

/// Enters a kernel at `entry` with r3, r4, r5 (the Linux boot protocol on POWER) and never
/// returns: interrupts stay off, 64-bit little-endian (Linux's FIXUP_ENDIAN copes with either
/// endianness), FP/VMX/VSX off.
///
/// # Safety
/// `entry` must be a loaded kernel's entry point and everything r3..r5 name must be in place;
/// nothing of vioboot runs afterwards.
pub unsafe fn jump_to_kernel(entry: u64, r3: u64, r4: u64, r5: u64) -> ! {
    // SAFETY: the caller's contract; the kernel owns the machine from here.
    unsafe {
        asm!(
            // FP, VMX and VSX off, as Linux expects to find them: it enables them itself.
            "mfmsr 6",
            "lis 7, 0x0280",
            "ori 7, 7, 0x2000",
            "andc 6, 6, 7",
            "mtmsrd 6",
            "isync",
            "mtctr 8",
            "li 0, 0",
            "mtlr 0",
            "bctr",
            in("r8") entry,
            in("r3") r3, in("r4") r4, in("r5") r5,
            options(noreturn),
        )
    }
}

/// The exception vectors (boot/entry.S): image offsets and physical addresses 0x200..0x2000.
const VECTORS_START: usize = 0x200;
const VECTORS_END: usize = 0x2000;
/// Where the vectors find the absolute address of `exception_common` (entry.S's `vector_far`).
const VECTOR_TARGET: usize = 0x1ff8;
/// MSR[EE]: external and decrementer interrupts enabled.
const MSR_EE: u64 = 0x8000;
/// Where the decrementer vector (0x900) counts the interrupts it took.
const DEC_COUNT: usize = 0x1ff0;
/// Bytes written to flush from the data cache and drop from the instruction cache at a time
/// (no POWER processor has a smaller cache line).
const CACHE_STEP: usize = 32;

/// Whether the hypervisor took little-endian interrupts (H_SET_MODE) when vioboot placed its
/// vectors: without that, no interrupt may be let in on purpose.
static LE_INTERRUPTS: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);

/// Whose vectors are in low memory now, and what was there before vioboot's.
struct Vectors {
    /// Where the image runs (0: the vectors are the image's own, nothing to copy).
    base: u64,
    installed: bool,
    ours_live: bool,
    saved: [u8; VECTORS_END - VECTORS_START],
}

static VECTORS: spin::Mutex<Vectors> = spin::Mutex::new(Vectors {
    base: 0,
    installed: false,
    ours_live: false,
    saved: [0; VECTORS_END - VECTORS_START],
});

/// Makes code just written at `at..at+len` visible to instruction fetch (Power ISA Book II,
/// "Instruction Storage": dcbst each line, sync, icbi each line, sync, isync).
///
/// # Safety
/// The range must be memory vioboot may touch.
unsafe fn sync_icache(at: usize, len: usize) {
    for a in (at..at + len).step_by(CACHE_STEP) {
        // SAFETY: a cache-line store to memory in the range the caller owns.
        unsafe { asm!("dcbst 0, {0}", in(reg) a, options(nostack)) };
    }
    // SAFETY: barriers only.
    unsafe { asm!("sync", options(nostack)) };
    for a in (at..at + len).step_by(CACHE_STEP) {
        // SAFETY: invalidates an instruction cache line; no data effect.
        unsafe { asm!("icbi 0, {0}", in(reg) a, options(nostack)) };
    }
    // SAFETY: barriers only.
    unsafe { asm!("sync", "isync", options(nostack)) };
}

impl Vectors {
    /// Puts vioboot's vectors (or, with `ours` false, the saved ones) into low memory.
    fn place(&mut self, ours: bool) {
        let len = VECTORS_END - VECTORS_START;
        if self.base != 0 {
            let low = VECTORS_START as *mut u8;
            let from = if ours {
                (self.base as usize + VECTORS_START) as *const u8
            } else {
                self.saved.as_ptr()
            };
            // SAFETY: physical 0x200..0x2000 holds the firmware's vectors, which vioboot saved
            // and puts back around firmware calls; the image's vector block is read-only.
            unsafe { core::ptr::copy_nonoverlapping(from, low, len) };
        }
        if ours {
            let target = &raw const exception_common as u64;
            // SAFETY: the 8-byte slot entry.S keeps at VECTOR_TARGET, in the vectors just placed.
            unsafe { core::ptr::write_volatile(VECTOR_TARGET as *mut u64, target) };
        }
        // SAFETY: the range just written.
        unsafe { sync_icache(VECTORS_START, len) };
        self.ours_live = ours;
    }
}

/// H_SET_MODE resource 4: interrupts taken little-endian (or big-endian), made here rather than
/// through `hcall` so that this layer depends on nothing above it. Whether it was accepted.
fn little_endian_interrupts(le: bool) -> bool {
    // SAFETY: registers only; no memory is named.
    let r = unsafe { hcall(papr::hcall::H_SET_MODE, &[u64::from(le), 4, 0, 0]) };
    r.status == papr::status::H_SUCCESS
}

/// What an unexpected interrupt is handed to (set by the exit layer, above this one).
static ON_EXCEPTION: spin::Once<fn(u64, u64, u64, u64) -> !> = spin::Once::new();

/// Names the function that reports an unexpected interrupt and ends the run (once).
pub fn on_exception(handler: fn(u64, u64, u64, u64) -> !) {
    ON_EXCEPTION.call_once(|| handler);
}

/// Makes vioboot's exception vectors the live ones, with interrupts taken little-endian, for
/// whichever way it was booted: at 0 (`-bios`) they are the image's own; elsewhere (under Open
/// Firmware) they are copied to physical 0x200 after saving what the firmware had there, and
/// [`with_firmware_vectors`] puts the firmware's back around calls into it (once for a burst of
/// them). An unexpected interrupt then ends as a failed report and os-term instead of in the
/// firmware's handler.
/// Returns whether the hypervisor took the endianness (H_SET_MODE).
pub fn own_vectors(base: u64) -> bool {
    let mut v = VECTORS.lock();
    if v.installed {
        return true;
    }
    v.base = base;
    if base != 0 {
        let mut saved = [0u8; VECTORS_END - VECTORS_START];
        // SAFETY: reading the firmware's vectors at physical 0x200..0x2000.
        unsafe {
            core::ptr::copy_nonoverlapping(
                VECTORS_START as *const u8,
                saved.as_mut_ptr(),
                saved.len(),
            )
        };
        v.saved = saved;
    }
    v.installed = true;
    v.place(true);
    drop(v);
    let le = little_endian_interrupts(true);
    LE_INTERRUPTS.store(le, core::sync::atomic::Ordering::SeqCst);
    le
}

/// Whether vioboot's vectors are live with little-endian interrupts, so that a decrementer
/// interrupt (vector 0x900) is counted and returns instead of ending the run.
pub fn owns_vectors() -> bool {
    let v = VECTORS.lock();
    v.installed && v.ours_live && LE_INTERRUPTS.load(core::sync::atomic::Ordering::SeqCst)
}

/// Decrementer interrupts vioboot's 0x900 vector has counted since its vectors were last
/// placed (a volatile read of the counter in low memory).
pub fn decrementer_count() -> u64 {
    // SAFETY: an aligned 8-byte slot inside the vector block at physical 0x200..0x2000, which
    // vioboot placed (or which is the image itself at 0); only the 0x900 vector writes it.
    unsafe { core::ptr::read_volatile(DEC_COUNT as *const u64) }
}

/// Sets the decrementer (it counts down at the timebase frequency; an interrupt is pending
/// once it goes negative).
pub fn set_decrementer(ticks: u32) {
    // SAFETY: writes DEC (SPR 22); no memory effect.
    unsafe { asm!("mtspr 22, {0}", in(reg) u64::from(ticks), options(nomem, nostack)) };
}

/// Sets (`on`) or clears MSR[EE], letting external and decrementer interrupts in or not.
/// `mtmsrd` with L=1 touches only EE and RI.
pub fn external_interrupts(on: bool) {
    // SAFETY: only MSR[EE] (bit 48, mask 0x8000) changes; interrupts that arrive meanwhile go
    // to vioboot's vectors (the caller checks `owns_vectors` before turning them on).
    unsafe {
        asm!(
            "mfmsr {t}",
            "andc {t}, {t}, {ee}",
            "or {t}, {t}, {on}",
            "mtmsrd {t}, 1",
            t = out(reg) _,
            ee = in(reg) MSR_EE,
            on = in(reg) if on { MSR_EE } else { 0 },
            options(nostack),
        )
    };
}

/// Whether MSR[EE] is on. vioboot's 0x500 vector returns with it off: code that opened it
/// and finds it closed knows an external interrupt was taken on this processor.
pub fn external_interrupts_on() -> bool {
    let msr: u64;
    // SAFETY: reading the MSR has no side effects.
    unsafe { asm!("mfmsr {0}", out(reg) msr, options(nomem, nostack)) };
    msr & MSR_EE != 0
}

/// The processor's PIR (processor identification register).
pub fn pir() -> u32 {
    let v: u64;
    // SAFETY: reading PIR (SPR 1023) in supervisor state has no side effects.
    unsafe { asm!("mfspr {0}, 1023", out(reg) v, options(nomem, nostack)) };
    v as u32
}

/// The timebase, read only after every earlier instruction has completed (`isync`): after a
/// load that a branch depends on, the value is taken after that load was satisfied.
pub fn timebase_after() -> u64 {
    let tb: u64;
    // SAFETY: a context barrier and a timebase read; no side effects.
    unsafe { asm!("isync", "mftb {0}", out(reg) tb, options(nostack)) };
    tb
}

/// The real address where a secondary thread started by RTAS `start-cpu` begins
/// (boot/entry.S `vioboot_secondary_start`; r3 = its slot).
pub fn secondary_start() -> u64 {
    &raw const vioboot_secondary_start as u64
}

/// A start address whose thread spins for ever without reporting in (`vioboot.inject=lost-cpu`).
pub fn secondary_lost() -> u64 {
    &raw const vioboot_secondary_lost as u64
}

/// Runs `f` (a call into Open Firmware) with the firmware's own vectors and big-endian
/// interrupts in place, as the firmware expects them; vioboot's come back afterwards.
pub fn with_firmware_vectors<R>(f: impl FnOnce() -> R) -> R {
    let swap = {
        let mut v = VECTORS.lock();
        let swap = v.installed && v.ours_live && v.base != 0;
        if swap {
            v.place(false);
        }
        swap
    };
    if swap {
        let _ = little_endian_interrupts(false);
    }
    let r = f();
    if swap {
        let _ = little_endian_interrupts(true);
        VECTORS.lock().place(true);
    }
    r
}

/// Gives the firmware its vectors back for good (before a kernel is entered with Open Firmware
/// alive, which expects to find them).
pub fn give_back_vectors() {
    let mut v = VECTORS.lock();
    if v.installed && v.ours_live && v.base != 0 {
        v.place(false);
        drop(v);
        let _ = little_endian_interrupts(false);
    }
}

/// Stops this processor for good.
pub fn halt() -> ! {
    loop {
        core::hint::spin_loop();
    }
}

/// Entered from `exception_common` (boot/entry.S) on an unexpected interrupt while vioboot owns
/// the vectors (loaded at 0): reports it and terminates.
#[unsafe(no_mangle)]
extern "C" fn vioboot_exception(vector: u64, srr0: u64, srr1: u64, dar: u64) -> ! {
    match ON_EXCEPTION.get() {
        Some(handler) => handler(vector, srr0, srr1, dar),
        // Nobody to report to yet: stop here rather than return into the fault.
        None => halt(),
    }
}

/// Executes an illegal instruction (to test the exception path).
pub fn illegal_instruction() {
    // SAFETY: raises a program interrupt, which the exception vectors report; never returns.
    unsafe { asm!(".long 0", options(nostack)) };
}
