//! RTAS: power-off and os-term by token from `/rtas`, and any call by token.
//!
//! On QEMU the hypervisor runs RTAS calls itself (H_RTAS). Where H_RTAS is absent (PowerVM),
//! RTAS must be instantiated through Open Firmware (`instantiate-rtas` on `/rtas`) before OF is
//! quiesced, and is then entered in big-endian 32-bit real mode like OF. The argument block
//! lives in vioboot's BSS, which is below 4 GiB as RTAS requires.

use crate::arch;
use crate::hcall::{self, HcallError, RealAddr};
use crate::of::{Of, OfError};
use core::fmt;
use core::sync::atomic::{AtomicU32, Ordering};
use spin::Mutex;
use vioboot_core::rtas::{self as pack, BLOCK_BYTES};

const NO_TOKEN: u32 = u32::MAX;

/// How RTAS is entered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// Not known yet (no tree read, or no `/rtas`).
    None,
    /// QEMU's H_RTAS hcall.
    Hcall,
    /// An RTAS image instantiated through OF at `base`, entered at `entry`.
    Instantiated { base: u32, entry: u32 },
}

struct State {
    method: Method,
    block: [u8; BLOCK_BYTES],
    message: [u8; 256],
}

static STATE: Mutex<State> = Mutex::new(State {
    method: Method::None,
    block: [0; BLOCK_BYTES],
    message: [0; 256],
});
static POWER_OFF: AtomicU32 = AtomicU32::new(NO_TOKEN);
static OS_TERM: AtomicU32 = AtomicU32::new(NO_TOKEN);

/// Why an RTAS call could not be made or failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RtasError {
    /// `/rtas` does not list the service.
    NoToken {
        service: &'static str,
    },
    /// Neither H_RTAS nor an instantiated RTAS is available.
    Unavailable,
    Hcall(HcallError),
    Of(OfError),
    /// RTAS ran the call and returned a failure status.
    Status {
        service: &'static str,
        status: i32,
    },
    /// `/rtas` has no `rtas-size`, needed to instantiate it.
    NoSize,
}

impl fmt::Display for RtasError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RtasError::NoToken { service } => write!(f, "RTAS service `{service}` is not in /rtas"),
            RtasError::Unavailable => {
                write!(f, "no way to call RTAS (no H_RTAS, not instantiated)")
            }
            RtasError::Hcall(e) => write!(f, "{e}"),
            RtasError::Of(e) => write!(f, "{e}"),
            RtasError::Status { service, status } => {
                write!(f, "RTAS `{service}` returned status {status}")
            }
            RtasError::NoSize => write!(f, "/rtas has no rtas-size; cannot instantiate RTAS"),
        }
    }
}

/// Records the tokens the exit path needs.
pub fn set_tokens(power_off: Option<u32>, os_term: Option<u32>) {
    POWER_OFF.store(power_off.unwrap_or(NO_TOKEN), Ordering::SeqCst);
    OS_TERM.store(os_term.unwrap_or(NO_TOKEN), Ordering::SeqCst);
}

pub fn method() -> Method {
    STATE.lock().method
}

/// Whether the hypervisor runs RTAS calls (H_RTAS): a call with an invalid token is answered
/// with an RTAS parameter error by QEMU, and with H_FUNCTION by a hypervisor without H_RTAS.
pub fn probe_hcall() -> bool {
    let mut s = STATE.lock();
    if pack::pack(NO_TOKEN, &[], 1, &mut s.block).is_err() {
        return false;
    }
    // SAFETY: the block is a valid argument block with room for one return word, in BSS.
    let r = unsafe { hcall::rtas(RealAddr(s.block.as_ptr() as u64)) };
    // Any answer but H_FUNCTION (QEMU says H_PARAMETER for the bad token) means H_RTAS exists.
    let ok = !matches!(r, Err(e) if e.is(papr::status::H_FUNCTION));
    if ok {
        s.method = Method::Hcall;
    }
    ok
}

/// Instantiates RTAS through Open Firmware (before quiesce): claims `size` bytes and runs
/// `instantiate-rtas` on `/rtas`.
pub fn instantiate(of: &Of, size: Option<u32>) -> Result<Method, RtasError> {
    let size = size.ok_or(RtasError::NoSize)?;
    let ih = of.open(c"/rtas").map_err(RtasError::Of)?;
    let base = of.claim(size.into(), 4096).map_err(RtasError::Of)?;
    let base = u32::try_from(base).map_err(|_| {
        RtasError::Of(OfError::AddressTooHigh {
            service: "claim",
            addr: base,
        })
    })?;
    let entry = of
        .call_method1(c"instantiate-rtas", ih, base)
        .map_err(RtasError::Of)?;
    let m = Method::Instantiated { base, entry };
    STATE.lock().method = m;
    Ok(m)
}

/// Most return words after the status that [`call`] hands back.
pub const MAX_RETS: usize = 8;

/// Makes an RTAS call with `nret` return words (the status included); returns those after
/// the status.
pub fn call(
    service: &'static str,
    token: u32,
    args: &[u32],
    nret: usize,
) -> Result<[u32; MAX_RETS], RtasError> {
    let mut s = force_lock_if_panicking();
    pack::pack(token, args, nret.max(1), &mut s.block).map_err(|_| RtasError::Unavailable)?;
    let at = s.block.as_ptr() as u64;
    match s.method {
        Method::None => return Err(RtasError::Unavailable),
        // SAFETY: a valid block with room for the return words, in BSS below 4 GiB.
        Method::Hcall => unsafe { hcall::rtas(RealAddr(at)) }.map_err(RtasError::Hcall)?,
        Method::Instantiated { base, entry } => {
            // SAFETY: RTAS was instantiated at `base` by OF and is entered as PAPR says, with
            // the block and our stack below 4 GiB.
            unsafe { arch::call_be32(entry.into(), at, base.into()) };
        }
    }
    let status = pack::ret(&s.block, 0) as i32;
    if status != 0 {
        return Err(RtasError::Status { service, status });
    }
    let mut out = [0u32; MAX_RETS];
    for (i, o) in out.iter_mut().enumerate().take(nret.saturating_sub(1)) {
        *o = pack::ret(&s.block, i + 1);
    }
    Ok(out)
}

/// `stop-self` for the calling processor, through its own argument block (`block`, on its
/// stack below 4 GiB) without the shared block's lock: the call does not come back when it
/// works, and a lock held by a stopped processor would never be released (Linux calls it
/// unlocked too). Returns only on failure.
pub fn stop_self(token: u32, block: &mut [u8; BLOCK_BYTES]) -> RtasError {
    if pack::pack(token, &[], 1, block).is_err() {
        return RtasError::Unavailable;
    }
    let at = block.as_ptr() as u64;
    let method = STATE.lock().method;
    match method {
        Method::None => return RtasError::Unavailable,
        Method::Hcall => {
            // SAFETY: a valid block with room for the status word, on the caller's stack.
            if let Err(e) = unsafe { hcall::rtas(RealAddr(at)) } {
                return RtasError::Hcall(e);
            }
        }
        Method::Instantiated { base, entry } => {
            // SAFETY: as in `call`: RTAS instantiated by OF, block and stack below 4 GiB.
            unsafe { arch::call_be32(entry.into(), at, base.into()) };
        }
    }
    RtasError::Status {
        service: "stop-self",
        status: pack::ret(block, 0) as i32,
    }
}

fn force_lock_if_panicking() -> spin::MutexGuard<'static, State> {
    if let Some(g) = STATE.try_lock() {
        return g;
    }
    // SAFETY: one processor, no interrupts: a held lock means its holder panicked and will
    // never run again, so taking it over cannot race.
    unsafe { STATE.force_unlock() };
    STATE.lock()
}

fn token(cell: &AtomicU32, service: &'static str) -> Result<u32, RtasError> {
    match cell.load(Ordering::SeqCst) {
        NO_TOKEN => Err(RtasError::NoToken { service }),
        t => Ok(t),
    }
}

/// Powers the partition off (QEMU exits with status 0). Returns only on failure.
pub fn power_off() -> RtasError {
    let r =
        token(&POWER_OFF, "power-off").and_then(|t| call("power-off", t, &[u32::MAX, u32::MAX], 1));
    r.err().unwrap_or(RtasError::Unavailable)
}

/// Terminates the partition reporting `message` (ibm,os-term; QEMU run with
/// `-action panic=exit-failure` exits with status 1). Returns only on failure.
pub fn os_term(message: &str) -> RtasError {
    let t = match token(&OS_TERM, "ibm,os-term") {
        Ok(t) => t,
        Err(e) => return e,
    };
    let at = {
        let mut s = force_lock_if_panicking();
        let n = message.len().min(s.message.len() - 1);
        s.message[..n].copy_from_slice(&message.as_bytes()[..n]);
        s.message[n] = 0;
        s.message.as_ptr() as u64
    };
    match call("ibm,os-term", t, &[at as u32], 1) {
        Ok(_) => RtasError::Status {
            service: "ibm,os-term",
            status: 0,
        },
        Err(e) => e,
    }
}
