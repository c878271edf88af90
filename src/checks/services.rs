//! The hypervisor and RTAS services a guest relies on, each a check: the VPA (H_REGISTER_VPA),
//! H_PAGE_INIT, H_SET_SPRG0, H_RANDOM, RTAS get-/set-time-of-day, NVRAM through RTAS, and
//! H_GET_TERM_CHAR input. A service the machine does not offer (H_FUNCTION, no RTAS token) is
//! a skip that says so, never a failure.

use crate::hcall::{self, HcallError, UnitAddress};
use crate::mem::DmaPages;
use crate::rtas::{self, RtasError};
use crate::{arch, report};
use alloc::format;
use alloc::string::String;
use core::fmt;
use papr::hcall::{VPA_MIN_SIZE, VPA_SHARED_PROC, VPA_SHARED_PROC_OFFSET};
use papr::status::H_FUNCTION;
use vioboot_core::inventory::Inventory;

/// What a service check found wrong.
#[derive(Debug)]
enum ServiceError {
    NoPage,
    Hcall(HcallError),
    Rtas(RtasError),
    /// The service answered, but not what it must.
    Wrong(String),
}

impl fmt::Display for ServiceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServiceError::NoPage => write!(f, "no page from the pool"),
            ServiceError::Hcall(e) => write!(f, "{e}"),
            ServiceError::Rtas(e) => write!(f, "{e}"),
            ServiceError::Wrong(what) => write!(f, "{what}"),
        }
    }
}

impl From<HcallError> for ServiceError {
    fn from(e: HcallError) -> Self {
        ServiceError::Hcall(e)
    }
}

impl From<RtasError> for ServiceError {
    fn from(e: RtasError) -> Self {
        ServiceError::Rtas(e)
    }
}

/// Reports `r` as check `name`, a skip when the hypervisor does not offer the hcall.
fn report(name: &str, r: Result<String, ServiceError>) {
    match r {
        Err(ServiceError::Hcall(e)) if e.is(H_FUNCTION) => {
            report::skip(name, &format!("not offered: {e}"))
        }
        r => {
            report::check(name, r);
        }
    }
}

/// Runs every service check.
pub fn run(inv: &Inventory) {
    report("vpa", vpa(inv));
    report("h-page-init", page_init());
    report("h-set-sprg0", sprg0());
    report("h-random", random());
    time_of_day(inv);
    nvram(inv);
    report("term-input", term_input(inv));
}

/// H_REGISTER_VPA: the hypervisor accepts a VPA for the boot processor, marks it shared
/// (PAPR: the shared-processor bit), and takes it back.
fn vpa(inv: &Inventory) -> Result<String, ServiceError> {
    let cpu = inv.cpus.first().map_or(0, |c| u64::from(c.reg));
    let mut page = DmaPages::alloc(1).ok_or(ServiceError::NoPage)?;
    page.bytes_mut()[4..6].copy_from_slice(&VPA_MIN_SIZE.to_be_bytes());
    // SAFETY: a pool page of our own, kept until it is deregistered below.
    unsafe { hcall::register_vpa(cpu, page.addr(), true) }?;
    let shared = page.read_volatile(VPA_SHARED_PROC_OFFSET) & VPA_SHARED_PROC != 0;
    // SAFETY: as above.
    unsafe { hcall::register_vpa(cpu, page.addr(), false) }?;
    if !shared {
        return Err(ServiceError::Wrong(
            "the VPA registered, but the hypervisor did not mark it".into(),
        ));
    }
    Ok(format!(
        "registered and deregistered a {VPA_MIN_SIZE}-byte VPA for cpu {cpu:#x}"
    ))
}

/// H_PAGE_INIT: copy one page into another, then zero it.
fn page_init() -> Result<String, ServiceError> {
    let mut src = DmaPages::alloc(1).ok_or(ServiceError::NoPage)?;
    let mut dst = DmaPages::alloc(1).ok_or(ServiceError::NoPage)?;
    src.bytes_mut()
        .iter_mut()
        .enumerate()
        .for_each(|(i, b)| *b = (i * 13 + 7) as u8);
    dst.bytes_mut().fill(0xEE);
    // SAFETY: two pool pages of our own.
    unsafe { hcall::page_init(dst.addr(), Some(src.addr())) }?;
    if (0..dst.len()).any(|i| dst.read_volatile(i) != src.bytes()[i]) {
        return Err(ServiceError::Wrong(
            "H_PAGE_INIT copy: the page differs".into(),
        ));
    }
    // SAFETY: as above.
    unsafe { hcall::page_init(dst.addr(), None) }?;
    if (0..dst.len()).any(|i| dst.read_volatile(i) != 0) {
        return Err(ServiceError::Wrong(
            "H_PAGE_INIT zero: the page is not zero".into(),
        ));
    }
    Ok("copied a 4 KiB page and zeroed it".into())
}

/// H_SET_SPRG0: the value set reads back with mfspr.
fn sprg0() -> Result<String, ServiceError> {
    let want = arch::timebase() | 0x5a5a_0000_0000_0001;
    let before = arch::sprg0();
    hcall::set_sprg0(want)?;
    let got = arch::sprg0();
    hcall::set_sprg0(before)?;
    if got != want {
        return Err(ServiceError::Wrong(format!(
            "SPRG0 reads {got:#x} after H_SET_SPRG0 {want:#x}"
        )));
    }
    Ok(format!("SPRG0 set to {want:#x} and read back"))
}

/// H_RANDOM: two numbers that differ (with a platform RNG; QEMU needs `spapr-rng`).
fn random() -> Result<String, ServiceError> {
    let (a, b) = (hcall::random()?, hcall::random()?);
    if a == b {
        return Err(ServiceError::Wrong(format!(
            "H_RANDOM gave {a:#x} twice in a row"
        )));
    }
    Ok(format!("{a:#018x}, {b:#018x}"))
}

/// A date and time as RTAS gives it: year, month, day, hour, minute, second, nanosecond.
type Tod = [u32; 7];

fn get_time(token: u32) -> Result<Tod, ServiceError> {
    let r = rtas::call("get-time-of-day", token, &[], 8)?;
    let t: Tod = [r[0], r[1], r[2], r[3], r[4], r[5], r[6]];
    let ok = (2000..=2200).contains(&t[0])
        && (1..=12).contains(&t[1])
        && (1..=31).contains(&t[2])
        && t[3] < 24
        && t[4] < 60
        && t[5] < 61;
    if !ok {
        return Err(ServiceError::Wrong(format!(
            "get-time-of-day gave an impossible date {t:?}"
        )));
    }
    Ok(t)
}

/// RTAS get-time-of-day gives a possible date; set-time-of-day to that date takes, and the
/// clock does not go back.
fn time_of_day(inv: &Inventory) {
    let token = |n| inv.rtas.as_ref().and_then(|r| r.token(n));
    let Some(get) = token("get-time-of-day") else {
        report::skip("rtas-time", "/rtas has no get-time-of-day");
        return;
    };
    let r = (|| {
        let t = get_time(get)?;
        let Some(set) = token("set-time-of-day") else {
            return Ok(format!("{t:?} (no set-time-of-day)"));
        };
        rtas::call("set-time-of-day", set, &t, 1)?;
        let again = get_time(get)?;
        if again[..6] < t[..6] {
            return Err(ServiceError::Wrong(format!(
                "after set-time-of-day {t:?} the clock reads {again:?}"
            )));
        }
        // QEMU 7.2 answers the low 32 bits of its clock in nanoseconds, not the nanoseconds
        // within the second: said, not failed.
        let ns = if t[6] < 1_000_000_000 {
            String::new()
        } else {
            format!("; its nanosecond field {} is beyond one second", t[6])
        };
        Ok(format!(
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC, set back to itself{ns}",
            t[0], t[1], t[2], t[3], t[4], t[5]
        ))
    })();
    report::check("rtas-time", r);
}

/// NVRAM through RTAS: fetch the first bytes, store them back unchanged, fetch again.
fn nvram(inv: &Inventory) {
    let token = |n| inv.rtas.as_ref().and_then(|r| r.token(n));
    let (Some(fetch), Some(store)) = (token("nvram-fetch"), token("nvram-store")) else {
        report::skip("nvram", "/rtas has no nvram-fetch/nvram-store");
        return;
    };
    const LEN: usize = 64;
    let r = (|| {
        let mut page = DmaPages::alloc(1).ok_or(ServiceError::NoPage)?;
        let at = page.addr().0 as u32;
        let n = rtas::call("nvram-fetch", fetch, &[0, at, LEN as u32], 2)?[0];
        if n as usize != LEN {
            return Err(ServiceError::Wrong(format!(
                "nvram-fetch gave {n} of {LEN} bytes"
            )));
        }
        let mut first = [0u8; LEN];
        first.copy_from_slice(&page.bytes()[..LEN]);
        rtas::call("nvram-store", store, &[0, at, LEN as u32], 2)?;
        page.bytes_mut()[..LEN].fill(0);
        rtas::call("nvram-fetch", fetch, &[0, at, LEN as u32], 2)?;
        if page.bytes()[..LEN] != first {
            return Err(ServiceError::Wrong(
                "NVRAM changed under a store of what it held".into(),
            ));
        }
        Ok(format!(
            "fetched {LEN} bytes at offset 0, stored them back, fetched the same"
        ))
    })();
    report::check("nvram", r);
}

/// H_GET_TERM_CHAR: the console vty answers a poll for input.
fn term_input(inv: &Inventory) -> Result<String, ServiceError> {
    let Some(vty) = inv.console_vty() else {
        return Err(ServiceError::Wrong("no hvterm vty to read from".into()));
    };
    let mut buf = [0u8; 16];
    let n = hcall::get_term_char(UnitAddress(vty.unit), &mut buf)?;
    Ok(format!(
        "{} answers input polls ({n} bytes waiting)",
        vty.name
    ))
}
