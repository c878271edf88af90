//! The smoke report on the console: TAP lines as checks finish, boot phases with their
//! timebase durations, the plan and the verdict line (format in `vioboot_core::tap`).
//! [`Scope`] names a device's checks in one place.

use crate::console::ConsoleWriter;
use crate::time;
use alloc::format;
use alloc::string::{String, ToString};
use core::fmt::{self, Write};
use spin::Mutex;
use vioboot_core::tap::Tap;

struct State {
    tap: Tap,
    started: bool,
    /// (phase, µs it took); a fixed array, as the first phase ends before the heap exists.
    phases: [(&'static str, u64); MAX_PHASES],
    nphases: usize,
    phase_start_us: u64,
}

const MAX_PHASES: usize = 16;

static STATE: Mutex<State> = Mutex::new(State {
    tap: Tap {
        passed: 0,
        failed: 0,
        skipped: 0,
    },
    started: false,
    phases: [("", 0); MAX_PHASES],
    nphases: 0,
    phase_start_us: 0,
});

fn with<R>(f: impl FnOnce(&mut State) -> R) -> R {
    f(&mut STATE.lock())
}

/// Prints the TAP header (once).
pub fn begin() {
    with(|s| {
        if !s.started {
            s.started = true;
            let _ = s.tap.header(&mut ConsoleWriter);
        }
    });
}

/// A passing check.
pub fn pass(name: &str, detail: fmt::Arguments) {
    begin();
    with(|s| {
        let _ = s.tap.pass(&mut ConsoleWriter, name, detail);
    });
}

/// A failing check, with `key: value` diagnostics for its YAML block.
pub fn fail(name: &str, message: &str, fields: &[(&str, &str)]) {
    begin();
    log::error!("{name}: {message}");
    with(|s| {
        let _ = s.tap.fail(&mut ConsoleWriter, name, message, fields);
    });
}

/// A check that does not apply.
pub fn skip(name: &str, reason: &str) {
    begin();
    with(|s| {
        let _ = s.tap.skip(&mut ConsoleWriter, name, reason);
    });
}

/// A check from a result: `Ok(detail)` passes, `Err(error)` fails with the error's text.
pub fn check<E: fmt::Display>(name: &str, result: Result<String, E>) -> bool {
    match result {
        Ok(detail) => {
            pass(name, format_args!("{detail}"));
            true
        }
        Err(e) => {
            fail(name, &e.to_string(), &[]);
            false
        }
    }
}

/// The checks of one device: each is named `<prefix> <check>` (or `<prefix>` alone for the
/// empty check), and a failure message that begins with `<prefix>: ` loses it, since the
/// name already says which device it is.
pub struct Scope<'a> {
    prefix: &'a str,
}

impl<'a> Scope<'a> {
    pub fn new(prefix: &'a str) -> Scope<'a> {
        Scope { prefix }
    }

    fn name(&self, check: &str) -> String {
        if check.is_empty() {
            self.prefix.into()
        } else {
            format!("{} {check}", self.prefix)
        }
    }

    fn message(&self, error: &dyn fmt::Display) -> String {
        let text = error.to_string();
        match text
            .strip_prefix(self.prefix)
            .and_then(|t| t.strip_prefix(": "))
        {
            Some(rest) => rest.into(),
            None => text,
        }
    }

    pub fn pass(&self, check: &str, detail: fmt::Arguments) {
        pass(&self.name(check), detail)
    }

    pub fn fail(&self, check: &str, error: &dyn fmt::Display) {
        self.fail_with(check, error, &[])
    }

    /// A failure with `key: value` diagnostics.
    pub fn fail_with(&self, check: &str, error: &dyn fmt::Display, fields: &[(&str, &str)]) {
        fail(&self.name(check), &self.message(error), fields)
    }

    pub fn skip(&self, check: &str, reason: &str) {
        skip(&self.name(check), reason)
    }

    /// `Ok(detail)` passes, `Err(error)` fails.
    pub fn check<E: fmt::Display>(&self, check: &str, result: Result<String, E>) -> bool {
        match result {
            Ok(detail) => {
                self.pass(check, format_args!("{detail}"));
                true
            }
            Err(e) => {
                self.fail(check, &e);
                false
            }
        }
    }
}

/// Ends the current boot phase (its time runs from the previous one's end).
pub fn phase(name: &'static str) {
    let now = time::now_us();
    with(|s| {
        let took = now - s.phase_start_us;
        if s.nphases < MAX_PHASES {
            s.phases[s.nphases] = (name, took);
            s.nphases += 1;
        }
        s.phase_start_us = now;
    });
}

/// Prints the phase times, the plan and the verdict; returns whether all checks passed.
pub fn finish() -> bool {
    begin();
    let total = time::now_us();
    with(|s| {
        let mut w = ConsoleWriter;
        for (name, us) in &s.phases[..s.nphases] {
            let _ = writeln!(w, "# phase {name}: {us} us");
        }
        let _ = writeln!(w, "# phase total: {total} us");
        let _ = s.tap.finish(&mut w);
        s.tap.verdict_pass()
    })
}

/// A message in a fixed buffer: the panic path must not allocate (the heap may be what failed).
pub struct FixedText {
    buf: [u8; 240],
    len: usize,
}

impl FixedText {
    pub const fn new() -> Self {
        FixedText {
            buf: [0; 240],
            len: 0,
        }
    }

    pub fn as_str(&self) -> &str {
        core::str::from_utf8(&self.buf[..self.len]).unwrap_or("?")
    }
}

impl Default for FixedText {
    fn default() -> Self {
        Self::new()
    }
}

impl Write for FixedText {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for c in s.chars() {
            let mut b = [0u8; 4];
            let e = c.encode_utf8(&mut b);
            if self.len + e.len() > self.buf.len() {
                break;
            }
            self.buf[self.len..self.len + e.len()].copy_from_slice(e.as_bytes());
            self.len += e.len();
        }
        Ok(())
    }
}

/// Called by the panic handler and the exception vectors: a failing check `name` with the
/// message, the bail-out and the verdict. Allocates nothing.
pub fn aborted(name: &str, at: &str, message: &str) {
    // SAFETY: single processor, interrupts off: the holder of the lock (if any) panicked and
    // will never run again.
    unsafe { STATE.force_unlock() };
    let mut bail = FixedText::new();
    let _ = write!(bail, "{name} at {at}");
    with(|s| {
        let mut w = ConsoleWriter;
        if !s.started {
            s.started = true;
            let _ = s.tap.header(&mut w);
        }
        let _ = s.tap.fail(&mut w, name, message, &[("at", at)]);
        let _ = s.tap.bail_out(&mut w, bail.as_str());
        let _ = s.tap.finish(&mut w);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_names_checks_and_drops_its_own_prefix_from_messages() {
        let s = Scope::new("virtio@71000010");
        assert_eq!(s.name(""), "virtio@71000010");
        assert_eq!(s.name("read"), "virtio@71000010 read");
        assert_eq!(
            s.message(&"virtio@71000010: CRQ: no page for the CRQ"),
            "CRQ: no page for the CRQ"
        );
        // Another device's name, or the prefix without its separator, is kept.
        assert_eq!(s.message(&"virtio@71000011: x"), "virtio@71000011: x");
        assert_eq!(s.message(&"virtio@71000010x"), "virtio@71000010x");
    }
}
