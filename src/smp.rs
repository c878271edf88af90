//! The other processors: each secondary thread is started through RTAS `start-cpu` on a stack
//! of its own (boot/entry.S `vioboot_secondary_start`), reports in through its [`Slot`], does
//! what the boot processor asks through the slot's command word, and stops itself with RTAS
//! `stop-self`, leaving it in the state Linux expects to find it (PAPR: stopped, to be started
//! again with `start-cpu`).
//!
//! Secondaries never print: the boot processor reads their slots and reports. Every wait on
//! either side is bounded by the timebase; a secondary the boot processor gave up on keeps its
//! slot and stack for ever (they are leaked, never freed under a running processor), and stops
//! itself when no command comes for [`IDLE_LIMIT_US`].

use crate::rtas::{self, RtasError};
use crate::{arch, hcall, time, xics};
use alloc::boxed::Box;
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use vioboot_core::rtas::BLOCK_BYTES;

/// Bytes of stack for each secondary.
const STACK_BYTES: usize = 64 << 10;
/// Words of the per-processor memory check.
pub const WORDS: usize = 512;
/// Increments each processor adds to the shared counter.
pub const INCREMENTS: u64 = 5_000;
/// A secondary with no new command for this long stops itself.
const IDLE_LIMIT_US: u64 = 20_000_000;
/// H_CEDE returns a secondary accepts before giving up on a prod.
const CEDE_LIMIT: u64 = 1_000;

/// How long the boot processor waits for a prodded thread before prodding it again.
const REPROD_US: u64 = 10_000;
/// H_PRODs repeated because the first did not wake the thread within [`REPROD_US`].
pub static REPRODS: AtomicU64 = AtomicU64::new(0);
/// Times a thread's `stop-self` came back with status 0 and was called again (see `stop`).
pub static STOP_REWAKES: AtomicU64 = AtomicU64::new(0);
/// How often a thread calls `stop-self` again after it came back with status 0.
const STOP_RETRIES: u32 = 16;

/// The counter every processor increments with atomic read-modify-write.
pub static COUNTER: AtomicU64 = AtomicU64::new(0);

/// Where a secondary is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum State {
    /// `start-cpu` made, the thread not seen yet.
    Starting = 0,
    /// It ran its own checks and waits for commands.
    Arrived = 1,
    /// It is about to call H_CEDE (and calls it again after each early return).
    Ceding = 2,
    /// It is calling `stop-self`.
    Stopping = 3,
    /// `stop-self` came back: it spins, and its slot says why.
    StopFailed = 4,
    /// Its CPPR lets everything in and MSR[EE] is open: it waits for an IPI.
    IpiReady = 5,
}

/// What the boot processor asks of a secondary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u64)]
enum Command {
    /// Read the timebase at once and put it in `value`.
    Timebase = 1,
    /// H_CEDE until prodded (`prodded` set): `value` = H_CEDE returns, `value2` = the
    /// timebase at the wake, or `value` = the hcall's status with `failed`.
    Cede = 2,
    /// `stop-self`.
    Stop = 3,
    /// Open the controller (CPPR 0xff) and MSR[EE], wait for an IPI at vector 0x500, accept
    /// it (H_XIRR), end it (MFRR cleared, H_EOI), close the controller (CPPR 0): `value` = the
    /// XIRR, `value2` = microseconds from ready to taken; with `failed`, `value` = the hcall's
    /// status, or `u64::MAX` when nothing came within [`IPI_LIMIT_US`].
    Ipi = 4,
}

/// How long a secondary keeps MSR[EE] open for the IPI it was told to expect.
const IPI_LIMIT_US: u64 = 1_000_000;

/// One secondary's mailbox. boot/entry.S reads `stack_top` and `entry` (the first two
/// doublewords); everything else is atomics, shared by the two processors.
#[repr(C, align(128))]
pub struct Slot {
    stack_top: u64,
    entry: u64,
    /// The thread's interrupt server number, as it was started.
    server: u32,
    stop_token: u32,
    /// Wait for commands in H_CEDE (woken by H_PROD) instead of spinning, so that idle
    /// threads leave the processors (on QEMU TCG: the host's cores) to those at work.
    idle_cede: bool,
    state: AtomicU32,
    /// `(sequence << 8) | command`.
    command: AtomicU64,
    /// The sequence number of the last command done.
    done: AtomicU64,
    value: AtomicU64,
    value2: AtomicU64,
    failed: AtomicBool,
    prodded: AtomicBool,
    /// H_CEDE returns so far in the current cede.
    cede_returns: AtomicU64,
    /// H_CEDE returns while waiting for commands.
    idle_wakes: AtomicU64,
    pir: AtomicU32,
    /// Its timebase when it arrived.
    arrived_tb: AtomicU64,
    /// Words it wrote with its own pattern and read back.
    words: [AtomicU64; WORDS],
    words_ok: AtomicBool,
}

/// The value a secondary with interrupt server `server` writes into word `i` of its slot.
pub fn word_pattern(server: u32, i: usize) -> u64 {
    (u64::from(server) << 40) ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// Why a secondary could not be started, commanded or stopped.
#[derive(Debug)]
pub enum SmpError {
    /// RTAS `start-cpu` (or another RTAS call) failed.
    Rtas { server: u32, error: RtasError },
    /// The thread did not do `what` within `waited_us`.
    Timeout {
        server: u32,
        what: &'static str,
        waited_us: u64,
    },
    /// A command was not done in time: what the thread's slot said then.
    NoAnswer {
        server: u32,
        what: &'static str,
        waited_us: u64,
        state: u32,
        idle_wakes: u64,
        last_done: u64,
        command: u64,
    },
    /// The start address or the slot lies above 4 GiB, beyond RTAS's 32-bit arguments.
    Above4GiB { server: u32, addr: u64 },
    /// `stop-self` came back with this status.
    StopFailed { server: u32, status: i32 },
    /// `query-cpu-stopped-state` still says "running" (2) or "stopping" (1).
    NotStopped { server: u32, state: u32 },
}

impl fmt::Display for SmpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SmpError::Rtas { server, error } => write!(f, "thread {server:#x}: {error}"),
            SmpError::Timeout {
                server,
                what,
                waited_us,
            } => write!(
                f,
                "thread {server:#x} did not {what} within {} ms",
                waited_us / 1000
            ),
            SmpError::NoAnswer {
                server,
                what,
                waited_us,
                state,
                idle_wakes,
                last_done,
                command,
            } => write!(
                f,
                "thread {server:#x} did not {what} within {} ms (its state {state}, {idle_wakes} \
                 wakes while idle, last command done {last_done}, command {:#x} waiting)",
                waited_us / 1000,
                command
            ),
            SmpError::Above4GiB { server, addr } => write!(
                f,
                "thread {server:#x}: {addr:#x} is above 4 GiB, beyond start-cpu's 32-bit arguments"
            ),
            SmpError::StopFailed { server, status } => {
                write!(f, "thread {server:#x}: stop-self returned status {status}")
            }
            SmpError::NotStopped { server, state } => write!(
                f,
                "thread {server:#x}: query-cpu-stopped-state says {state} (not stopped) after stop-self"
            ),
        }
    }
}

/// The RTAS tokens this module needs.
#[derive(Debug, Clone, Copy)]
pub struct Tokens {
    pub start_cpu: u32,
    pub stop_self: u32,
    pub query_stopped: Option<u32>,
}

/// What `query-cpu-stopped-state` says about a thread (PAPR: 0 stopped, 1 stop in progress,
/// 2 not stopped).
pub fn query_stopped(token: u32, server: u32) -> Result<u32, RtasError> {
    rtas::call("query-cpu-stopped-state", token, &[server], 2).map(|r| r[0])
}

/// A secondary thread vioboot started. Dropping it without [`Secondary::stop`] leaks its slot
/// and stack on purpose: the thread may still run on them.
pub struct Secondary {
    pub server: u32,
    slot: Option<Box<Slot>>,
    stack: Option<Vec<u128>>,
    seq: u64,
}

impl Drop for Secondary {
    fn drop(&mut self) {
        // A thread that was not seen to stop may still use both.
        core::mem::forget(self.slot.take());
        core::mem::forget(self.stack.take());
    }
}

/// Starts the thread with interrupt server number `server` on a stack of its own (`lost`:
/// on a loop that never reports in, for `vioboot.inject=lost-cpu`). With `idle_cede` it waits
/// for commands in H_CEDE, which needs vioboot's vectors live (H_CEDE sets MSR[EE]).
pub fn start(
    server: u32,
    tokens: Tokens,
    lost: bool,
    idle_cede: bool,
) -> Result<Secondary, SmpError> {
    let mut stack = vec![0u128; STACK_BYTES / 16];
    let stack_top = stack.as_mut_ptr_range().end as u64;
    let slot = Box::new(Slot {
        stack_top,
        entry: secondary_main as *const () as u64,
        server,
        stop_token: tokens.stop_self,
        idle_cede,
        state: AtomicU32::new(State::Starting as u32),
        command: AtomicU64::new(0),
        done: AtomicU64::new(0),
        value: AtomicU64::new(0),
        value2: AtomicU64::new(0),
        failed: AtomicBool::new(false),
        prodded: AtomicBool::new(false),
        cede_returns: AtomicU64::new(0),
        idle_wakes: AtomicU64::new(0),
        pir: AtomicU32::new(u32::MAX),
        arrived_tb: AtomicU64::new(0),
        words: [const { AtomicU64::new(0) }; WORDS],
        words_ok: AtomicBool::new(false),
    });
    let at = &*slot as *const Slot as u64;
    let mut s = Secondary {
        server,
        slot: Some(slot),
        stack: Some(stack),
        seq: 0,
    };
    arch::sync();
    // PAPR start-cpu: the thread's interrupt server number, its start address (real), r3.
    // Both addresses fit in 32 bits: the image and the heap lie below 4 GiB.
    let start = if lost {
        arch::secondary_lost()
    } else {
        arch::secondary_start()
    };
    let low = |addr: u64| u32::try_from(addr).map_err(|_| SmpError::Above4GiB { server, addr });
    let (entry, r3) = (low(start)?, low(at)?);
    rtas::call("start-cpu", tokens.start_cpu, &[server, entry, r3], 1).map_err(|error| {
        // Never started: nothing runs on the slot or the stack.
        drop(s.slot.take());
        drop(s.stack.take());
        SmpError::Rtas { server, error }
    })?;
    Ok(s)
}

/// What a secondary found when it arrived.
#[derive(Debug, Clone, Copy)]
pub struct Arrival {
    pub pir: u32,
    pub tb: u64,
    /// Its own words held their values.
    pub words_ok: bool,
    /// The boot processor reads the same values from its slot.
    pub words_seen: bool,
}

impl Secondary {
    fn slot(&self) -> &Slot {
        self.slot.as_ref().expect("a live secondary has its slot")
    }

    /// Waits until the thread has arrived (ran its own checks), for up to `timeout_us`.
    pub fn arrival(&self, timeout_us: u64) -> Result<Arrival, SmpError> {
        let s = self.slot();
        wait(timeout_us, || {
            s.state.load(Ordering::Acquire) != State::Starting as u32
        })
        .map_err(|waited_us| SmpError::Timeout {
            server: self.server,
            what: "come up",
            waited_us,
        })?;
        let words_seen = s
            .words
            .iter()
            .enumerate()
            .all(|(i, w)| w.load(Ordering::Relaxed) == word_pattern(self.server, i));
        Ok(Arrival {
            pir: s.pir.load(Ordering::Relaxed),
            tb: s.arrived_tb.load(Ordering::Relaxed),
            words_ok: s.words_ok.load(Ordering::Relaxed),
            words_seen,
        })
    }

    /// Sends `cmd`; returns its sequence number, which the thread puts in `done` when done.
    fn send(&mut self, cmd: Command) -> u64 {
        self.seq += 1;
        arch::sync();
        let s = self.slot();
        s.command
            .store(self.seq << 8 | cmd as u64, Ordering::Release);
        if s.idle_cede {
            // It may be in H_CEDE waiting; if not, its next H_CEDE returns at once. A failed
            // prod shows as a command not done in time.
            let _ = hcall::prod(self.server);
        }
        self.seq
    }

    /// Prods the thread again when it waits in H_CEDE and `next` has passed.
    fn reprod_if_due(&self, next: &mut u64) {
        if self.slot().idle_cede && time::now_us() > *next {
            REPRODS.fetch_add(1, Ordering::Relaxed);
            let _ = hcall::prod(self.server);
            *next = time::now_us() + REPROD_US;
        }
    }

    /// Waits for command `seq` to be done; with `reprod`, prods a thread that waits in H_CEDE
    /// again every [`REPROD_US`].
    fn wait_done(
        &self,
        seq: u64,
        what: &'static str,
        timeout_us: u64,
        reprod: bool,
    ) -> Result<(), SmpError> {
        let s = self.slot();
        let mut next_prod = time::now_us() + REPROD_US;
        wait(timeout_us, || {
            if s.done.load(Ordering::Acquire) == seq {
                return true;
            }
            // QEMU 7.2's TCG can lose an H_PROD that races with the thread's H_CEDE (seen
            // here: the thread stays halted with the command waiting): prod again, counted.
            if reprod {
                self.reprod_if_due(&mut next_prod);
            }
            false
        })
        .map_err(|waited_us| SmpError::NoAnswer {
            server: self.server,
            what,
            waited_us,
            state: s.state.load(Ordering::Acquire),
            idle_wakes: s.idle_wakes.load(Ordering::Acquire),
            last_done: s.done.load(Ordering::Acquire),
            command: s.command.load(Ordering::Acquire),
        })
    }

    /// One timebase exchange: `(before, theirs, after)`, where `before` is read before the
    /// request is stored and `after` once the answer is seen. With synchronised timebases
    /// `before <= theirs <= after`.
    pub fn timebase_exchange(&mut self, timeout_us: u64) -> Result<(u64, u64, u64), SmpError> {
        let before = arch::timebase();
        let seq = self.send(Command::Timebase);
        self.wait_done(seq, "answer a timebase request", timeout_us, true)?;
        let after = arch::timebase_after();
        Ok((before, self.slot().value.load(Ordering::Acquire), after))
    }

    /// Asks the thread to H_CEDE, waits until it is about to, lets `settle_us` pass, then
    /// H_PRODs it and waits for it to come back.
    pub fn cede_and_prod(&mut self, settle_us: u64, timeout_us: u64) -> Result<Cede, CedeError> {
        let seq = self.send(Command::Cede);
        let s = self.slot();
        let server = self.server;
        let ceding = || s.state.load(Ordering::Acquire) == State::Ceding as u32;
        wait(timeout_us, || {
            ceding() || s.done.load(Ordering::Acquire) == seq
        })
        .map_err(|waited_us| {
            CedeError::Smp(SmpError::Timeout {
                server,
                what: "start to cede",
                waited_us,
            })
        })?;
        time::delay_us(settle_us);
        let before_prod = s.cede_returns.load(Ordering::Acquire);
        s.prodded.store(true, Ordering::Release);
        arch::sync();
        let prod_tb = arch::timebase();
        let prod = hcall::prod(server);
        // The check itself: one H_PROD, no second chance.
        let done = self.wait_done(seq, "wake from H_CEDE after H_PROD", timeout_us, false);
        let s = self.slot();
        if s.failed.load(Ordering::Acquire) {
            return Err(CedeError::Cede(s.value.load(Ordering::Acquire) as i64));
        }
        prod.map_err(CedeError::Prod)?;
        done.map_err(CedeError::Smp)?;
        if s.value2.load(Ordering::Acquire) == 0 {
            return Err(CedeError::NeverHalted {
                returns: s.value.load(Ordering::Acquire),
            });
        }
        Ok(Cede {
            returns_before_prod: before_prod,
            returns: s.value.load(Ordering::Acquire),
            wake_us: time::ticks_to_us(s.value2.load(Ordering::Acquire).saturating_sub(prod_tb)),
        })
    }

    /// Asks the thread to take an IPI: waits until it is ready (CPPR 0xff, MSR[EE] open),
    /// sends H_IPI at `priority`, and waits for it to have accepted and ended the interrupt.
    pub fn ipi(&mut self, priority: u8, timeout_us: u64) -> Result<Ipi, IpiError> {
        let seq = self.send(Command::Ipi);
        let server = self.server;
        let s = self.slot();
        wait(timeout_us, || {
            s.state.load(Ordering::Acquire) == State::IpiReady as u32
                || s.done.load(Ordering::Acquire) == seq
        })
        .map_err(|waited_us| {
            IpiError::Smp(SmpError::Timeout {
                server,
                what: "get ready for an IPI",
                waited_us,
            })
        })?;
        let sent = hcall::ipi(server, priority);
        let done = self.wait_done(seq, "take the IPI", timeout_us, false);
        let s = self.slot();
        // An IPI that was never sent explains the thread's wait in vain.
        sent.map_err(IpiError::Send)?;
        if s.failed.load(Ordering::Acquire) {
            let v = s.value.load(Ordering::Acquire);
            return Err(if v == u64::MAX {
                IpiError::NotTaken {
                    waited_us: IPI_LIMIT_US,
                }
            } else {
                IpiError::Controller(v as i64)
            });
        }
        done.map_err(IpiError::Smp)?;
        Ok(Ipi {
            xirr: s.value.load(Ordering::Acquire) as u32,
            taken_us: s.value2.load(Ordering::Acquire),
        })
    }

    /// Asks the thread to `stop-self` and confirms through `query-cpu-stopped-state` that it
    /// stopped; only then are its slot and stack freed.
    pub fn stop(mut self, query: Option<u32>, timeout_us: u64) -> Result<(), SmpError> {
        let server = self.server;
        self.send(Command::Stop);
        let s = self.slot();
        let mut next_prod = time::now_us() + REPROD_US;
        wait(timeout_us, || {
            let st = s.state.load(Ordering::Acquire);
            if st == State::Stopping as u32 || st == State::StopFailed as u32 {
                return true;
            }
            self.reprod_if_due(&mut next_prod);
            false
        })
        .map_err(|waited_us| SmpError::Timeout {
            server,
            what: "take the stop command",
            waited_us,
        })?;
        let Some(token) = query else {
            // Nothing can confirm it: give it time, and keep its memory.
            time::delay_us(10_000);
            return if s.state.load(Ordering::Acquire) == State::StopFailed as u32 {
                Err(SmpError::StopFailed {
                    server,
                    status: s.value.load(Ordering::Acquire) as i32,
                })
            } else {
                Ok(())
            };
        };
        let mut last = u32::MAX;
        let stopped = wait(timeout_us, || {
            if s.state.load(Ordering::Acquire) == State::StopFailed as u32 {
                return true;
            }
            match query_stopped(token, server) {
                Ok(state) => {
                    last = state;
                    state == 0
                }
                Err(_) => false,
            }
        });
        if s.state.load(Ordering::Acquire) == State::StopFailed as u32 {
            return Err(SmpError::StopFailed {
                server,
                status: s.value.load(Ordering::Acquire) as i32,
            });
        }
        if stopped.is_err() {
            return Err(if last == u32::MAX {
                SmpError::Timeout {
                    server,
                    what: "answer query-cpu-stopped-state",
                    waited_us: timeout_us,
                }
            } else {
                SmpError::NotStopped {
                    server,
                    state: last,
                }
            });
        }
        // Stopped for sure: nothing runs on its slot and stack any more.
        drop(self.slot.take());
        drop(self.stack.take());
        Ok(())
    }
}

/// A cede and its prod, as seen from both sides.
#[derive(Debug, Clone, Copy)]
pub struct Cede {
    /// H_CEDE returned this often before the prod (with no interrupt: spurious wakes).
    pub returns_before_prod: u64,
    /// H_CEDE returns in all.
    pub returns: u64,
    /// From H_PROD to the thread running again.
    pub wake_us: u64,
}

/// Why the cede check failed.
#[derive(Debug)]
pub enum CedeError {
    /// H_CEDE itself failed with this status.
    Cede(i64),
    Prod(hcall::HcallError),
    Smp(SmpError),
    /// H_CEDE kept returning with no prod and no interrupt.
    NeverHalted {
        returns: u64,
    },
}

impl fmt::Display for CedeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CedeError::Cede(status) => write!(
                f,
                "H_CEDE failed: {} ({status})",
                papr::status::name(*status).unwrap_or("unknown status")
            ),
            CedeError::Prod(e) => write!(f, "{e}"),
            CedeError::Smp(e) => write!(f, "{e}"),
            CedeError::NeverHalted { returns } => write!(
                f,
                "H_CEDE returned {returns} times before any H_PROD: the thread never halted"
            ),
        }
    }
}

/// An IPI a secondary took.
#[derive(Debug, Clone, Copy)]
pub struct Ipi {
    /// The XIRR its H_XIRR returned.
    pub xirr: u32,
    /// From its being ready to the interrupt taken at 0x500 (the H_IPI lies in between).
    pub taken_us: u64,
}

/// Why an IPI was not taken.
#[derive(Debug)]
pub enum IpiError {
    /// The boot processor's H_IPI failed.
    Send(hcall::HcallError),
    /// The thread's own H_CPPR, H_XIRR, H_IPI or H_EOI failed with this status.
    Controller(i64),
    /// MSR[EE] stayed open this long with no interrupt at 0x500.
    NotTaken {
        waited_us: u64,
    },
    Smp(SmpError),
}

impl fmt::Display for IpiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IpiError::Send(e) => write!(f, "{e}"),
            IpiError::Controller(status) => write!(
                f,
                "the thread's interrupt controller hcall failed: {} ({status})",
                papr::status::name(*status).unwrap_or("unknown status")
            ),
            IpiError::NotTaken { waited_us } => write!(
                f,
                "no IPI reached vector 0x500 within {} ms of H_IPI",
                waited_us / 1000
            ),
            IpiError::Smp(e) => write!(f, "{e}"),
        }
    }
}

/// Spins until `done` or `timeout_us` passed; the error is the time waited.
fn wait(timeout_us: u64, mut done: impl FnMut() -> bool) -> Result<(), u64> {
    let start = time::now_us();
    loop {
        if done() {
            return Ok(());
        }
        let waited = time::now_us().saturating_sub(start);
        if waited > timeout_us {
            return Err(waited);
        }
        core::hint::spin_loop();
    }
}

/// A secondary's life, entered from boot/entry.S with its slot in r3.
extern "C" fn secondary_main(slot: u64) -> ! {
    // SAFETY: the boot processor passed the address of a `Slot` it keeps alive (or leaks)
    // until this thread is seen stopped; all shared fields are atomics.
    let s = unsafe { &*(slot as *const Slot) };
    arrive(s);
    let mut last = 0;
    let mut idle_since = time::now_us();
    let mut idle_cede = s.idle_cede;
    loop {
        let c = s.command.load(Ordering::Acquire);
        let seq = c >> 8;
        if seq == last {
            if time::now_us().saturating_sub(idle_since) > IDLE_LIMIT_US {
                stop(s);
            }
            if idle_cede {
                // Woken by the boot processor's H_PROD, or by the decrementer (set as far out
                // as it goes: counted at 0x900) so that the idle limit is still seen.
                arch::set_decrementer(i32::MAX as u32);
                let r = hcall::cede();
                arch::external_interrupts(false);
                s.idle_wakes.fetch_add(1, Ordering::Release);
                idle_cede = r.is_ok();
            } else {
                core::hint::spin_loop();
            }
            continue;
        }
        last = seq;
        match c & 0xff {
            x if x == Command::Timebase as u64 => {
                s.value.store(arch::timebase_after(), Ordering::Release);
            }
            x if x == Command::Cede as u64 => cede(s),
            x if x == Command::Stop as u64 => stop(s),
            x if x == Command::Ipi as u64 => take_ipi(s),
            _ => {}
        }
        s.done.store(seq, Ordering::Release);
        idle_since = time::now_us();
    }
}

/// The thread's own checks: PIR, timebase, its words, the shared counter.
fn arrive(s: &Slot) {
    s.arrived_tb.store(arch::timebase(), Ordering::Relaxed);
    let server = s.server;
    s.pir.store(arch::pir(), Ordering::Relaxed);
    for (i, w) in s.words.iter().enumerate() {
        w.store(word_pattern(server, i), Ordering::Relaxed);
    }
    let ok = s
        .words
        .iter()
        .enumerate()
        .all(|(i, w)| w.load(Ordering::Relaxed) == word_pattern(server, i));
    s.words_ok.store(ok, Ordering::Relaxed);
    for _ in 0..INCREMENTS {
        COUNTER.fetch_add(1, Ordering::Relaxed);
    }
    s.state.store(State::Arrived as u32, Ordering::Release);
}

/// H_CEDE until the boot processor has set `prodded` (and prodded us), at most
/// [`CEDE_LIMIT`] returns. The decrementer is set as far out as it goes first, so that
/// H_CEDE's MSR[EE] lets nothing in; a decrementer interrupt would be counted by vioboot's
/// 0x900 vector and return.
fn cede(s: &Slot) {
    arch::set_decrementer(i32::MAX as u32);
    s.cede_returns.store(0, Ordering::Release);
    s.state.store(State::Ceding as u32, Ordering::Release);
    arch::sync();
    s.value2.store(0, Ordering::Release);
    let mut returns = 0;
    while returns < CEDE_LIMIT {
        let r = hcall::cede();
        arch::external_interrupts(false);
        returns += 1;
        s.cede_returns.store(returns, Ordering::Release);
        if let Err(e) = r {
            s.value.store(e.status as u64, Ordering::Release);
            s.failed.store(true, Ordering::Release);
            break;
        }
        if s.prodded.load(Ordering::Acquire) {
            s.value2.store(arch::timebase_after(), Ordering::Release);
            s.value.store(returns, Ordering::Release);
            break;
        }
    }
    if !s.prodded.load(Ordering::Acquire) {
        s.value.store(returns, Ordering::Release);
    }
    s.state.store(State::Arrived as u32, Ordering::Release);
}

/// The IPI command, on the secondary: see [`Command::Ipi`]. Anything else that is pending
/// meanwhile is accepted, ended and counted as unknown ([`xics::UNKNOWN`]).
fn take_ipi(s: &Slot) {
    s.failed.store(false, Ordering::Release);
    let fail = |v: u64| {
        s.value.store(v, Ordering::Release);
        s.failed.store(true, Ordering::Release);
    };
    if let Err(e) = xics::open() {
        fail(status_of(e) as u64);
        return;
    }
    s.state.store(State::IpiReady as u32, Ordering::Release);
    match xics::take(IPI_LIMIT_US) {
        Ok(us) => {
            s.value2.store(us, Ordering::Release);
            let is_ipi = |src| src == papr::xics::Source::Ipi;
            match xics::accept(s.server, is_ipi) {
                Ok(a) if a.source == papr::xics::Source::Ipi => {
                    s.value.store(u64::from(a.xirr), Ordering::Release);
                }
                Ok(a) => {
                    // Something else came first: the IPI may still be pending.
                    s.value.store(u64::from(a.xirr), Ordering::Release);
                }
                Err(e) => fail(status_of(e) as u64),
            }
            let _ = xics::drain(s.server, is_ipi);
        }
        Err(_) => fail(u64::MAX),
    }
    let closed = xics::close(s.server);
    if let (Err(e), false) = (closed, s.failed.load(Ordering::Acquire)) {
        fail(status_of(e) as u64);
    }
    s.state.store(State::Arrived as u32, Ordering::Release);
}

/// The PAPR status inside a controller error (RTAS failures, which a secondary never makes,
/// read as H_HARDWARE).
fn status_of(e: xics::XicsError) -> i64 {
    match e {
        xics::XicsError::Hcall(h) => h.status,
        _ => -1,
    }
}

/// RTAS `stop-self`, which does not come back when it works.
fn stop(s: &Slot) -> ! {
    s.state.store(State::Stopping as u32, Ordering::Release);
    arch::sync();
    let mut block = [0u8; BLOCK_BYTES];
    // `stop-self` does not return when it works. It can come back with status 0 when an
    // H_PROD meant for this thread's H_CEDE lands after it stopped: the boot processor prods
    // a thread it thinks idle before it sees the stop taken, and QEMU's H_PROD wakes a halted
    // thread whatever halted it. Then the thread stops again.
    let mut again = 0;
    let status = loop {
        let e = rtas::stop_self(s.stop_token, &mut block);
        let status = match e {
            RtasError::Status { status, .. } => status,
            _ => -1,
        };
        if status != 0 || again == STOP_RETRIES {
            break status;
        }
        again += 1;
        STOP_REWAKES.fetch_add(1, Ordering::Relaxed);
    };
    s.value.store(status as u32 as u64, Ordering::Release);
    s.state.store(State::StopFailed as u32, Ordering::Release);
    arch::halt()
}
