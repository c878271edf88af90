//! External interrupts through XICS, the interrupt controller QEMU's pseries offers a guest
//! that never negotiates XIVE through `ibm,client-architecture-support` (vioboot never calls
//! CAS): each processor's presentation controller through H_CPPR, H_IPI, H_XIRR and H_EOI;
//! each source routed to a server at a priority, or masked, through RTAS `ibm,set-xive`.
//!
//! vioboot takes interrupts only in bounded windows ([`take`]): MSR[EE] is opened, and the
//! 0x500 vector (boot/entry.S) returns with it closed, leaving the interrupt pending in the
//! controller; the code that opened the window then accepts it (H_XIRR), handles it and ends
//! it (H_EOI), in thread context, with no handler running inside the vector. Every processor
//! leaves the window with MSR[EE] off and its CPPR at 0, as a kernel expects to find it.

use crate::hcall::{self, HcallError};
use crate::rtas::{self, RtasError};
use crate::{arch, time};
use core::fmt;
use core::sync::atomic::{AtomicU64, Ordering};
use papr::xics::{Source, CPPR_NONE, PRIORITY_MASKED};

/// The priority vioboot gives its IPIs and the device sources it routes (any value below
/// 0xff is let in by a CPPR of 0xff; Linux uses 5 for devices and 4 for IPIs).
pub const PRIORITY: u8 = 5;
/// Most interrupts [`drain`] accepts in one go (a source that keeps firing is not followed
/// for ever).
const DRAIN_LIMIT: usize = 64;

/// External interrupts taken at vector 0x500 in a window, on any processor.
pub static TAKEN: AtomicU64 = AtomicU64::new(0);
/// Accepts that named no source (XISR 0).
pub static SPURIOUS: AtomicU64 = AtomicU64::new(0);
/// Accepts that named a source nobody was waiting for (ended with H_EOI and counted).
pub static UNKNOWN: AtomicU64 = AtomicU64::new(0);

/// What went wrong with the controller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XicsError {
    Hcall(HcallError),
    Rtas(RtasError),
    /// `/rtas` lacks the named call.
    NoToken(&'static str),
}

impl fmt::Display for XicsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            XicsError::Hcall(e) => write!(f, "{e}"),
            XicsError::Rtas(e) => write!(f, "{e}"),
            XicsError::NoToken(n) => write!(f, "/rtas has no {n}"),
        }
    }
}

impl From<HcallError> for XicsError {
    fn from(e: HcallError) -> Self {
        XicsError::Hcall(e)
    }
}

impl From<RtasError> for XicsError {
    fn from(e: RtasError) -> Self {
        XicsError::Rtas(e)
    }
}

/// Opens MSR[EE] until the 0x500 vector closes it (an external interrupt was taken on this
/// processor) or `limit_us` passes; MSR[EE] is off either way afterwards. Ok: the time it took;
/// Err: the time waited. The caller must own the vectors ([`arch::owns_vectors`]) and make no
/// Open Firmware call while the window is open (the firmware's vectors would be put back).
pub fn take(limit_us: u64) -> Result<u64, u64> {
    let start = time::now_us();
    arch::external_interrupts(true);
    loop {
        if !arch::external_interrupts_on() {
            TAKEN.fetch_add(1, Ordering::Relaxed);
            return Ok(time::now_us().saturating_sub(start));
        }
        let waited = time::now_us().saturating_sub(start);
        if waited > limit_us {
            arch::external_interrupts(false);
            return Err(waited);
        }
        core::hint::spin_loop();
    }
}

/// One accepted interrupt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Accepted {
    pub xirr: u32,
    pub source: Source,
}

/// H_XIRR, then H_EOI for whatever it named (a spurious accept too: the EOI puts the CPPR
/// back), counting spurious and unknown sources. `mine` says which sources the caller waits
/// for; an IPI is ended by clearing this processor's MFRR (`own_server`) first. Returns the
/// accepted interrupt.
pub fn accept(own_server: u32, mine: impl Fn(Source) -> bool) -> Result<Accepted, XicsError> {
    let xirr = hcall::xirr()?;
    let source = Source::of(xirr);
    match source {
        Source::Spurious => {
            SPURIOUS.fetch_add(1, Ordering::Relaxed);
        }
        Source::Ipi => hcall::ipi(own_server, PRIORITY_MASKED)?,
        Source::Device(_) => {}
    }
    if source != Source::Spurious && !mine(source) {
        UNKNOWN.fetch_add(1, Ordering::Relaxed);
    }
    hcall::eoi(xirr)?;
    Ok(Accepted { xirr, source })
}

/// Accepts and ends whatever is still pending (at most [`DRAIN_LIMIT`]), counting it as
/// unknown unless `mine`; returns how many it took.
pub fn drain(own_server: u32, mine: impl Fn(Source) -> bool) -> Result<usize, XicsError> {
    for n in 0..DRAIN_LIMIT {
        let a = accept(own_server, &mine)?;
        if a.source == Source::Spurious {
            // Nothing was pending: that accept was ours, not the controller's.
            SPURIOUS.fetch_sub(1, Ordering::Relaxed);
            return Ok(n);
        }
    }
    Ok(DRAIN_LIMIT)
}

/// Lets every priority in on this processor (CPPR 0xff).
pub fn open() -> Result<(), XicsError> {
    hcall::set_cppr(PRIORITY_MASKED).map_err(Into::into)
}

/// Presents nothing on this processor again (CPPR 0) and clears its MFRR: the state a kernel
/// expects at entry.
pub fn close(own_server: u32) -> Result<(), XicsError> {
    let c = hcall::set_cppr(CPPR_NONE);
    let m = hcall::ipi(own_server, PRIORITY_MASKED);
    c?;
    m?;
    Ok(())
}

/// The RTAS calls that route a source.
#[derive(Debug, Clone, Copy)]
pub struct Routing {
    pub set_xive: u32,
    pub int_off: Option<u32>,
}

impl Routing {
    /// From the `/rtas` tokens: `ibm,set-xive` is needed, `ibm,int-off` used where present.
    pub fn new(token: impl Fn(&str) -> Option<u32>) -> Result<Routing, XicsError> {
        Ok(Routing {
            set_xive: token("ibm,set-xive").ok_or(XicsError::NoToken("ibm,set-xive"))?,
            int_off: token("ibm,int-off"),
        })
    }

    /// Routes source `irq` to `server` at `priority` (PAPR `ibm,set-xive`).
    pub fn route(&self, irq: u32, server: u32, priority: u8) -> Result<(), XicsError> {
        rtas::call(
            "ibm,set-xive",
            self.set_xive,
            &[irq, server, u32::from(priority)],
            1,
        )?;
        Ok(())
    }

    /// Masks source `irq` again: priority 0xff (`ibm,set-xive`), then `ibm,int-off`, as after
    /// a reset.
    pub fn mask(&self, irq: u32, server: u32) -> Result<(), XicsError> {
        let r = self.route(irq, server, PRIORITY_MASKED);
        if let Some(t) = self.int_off {
            rtas::call("ibm,int-off", t, &[irq], 1)?;
        }
        r
    }
}
