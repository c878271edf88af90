//! The console: Open Firmware's stdout while OF is alive, the hvterm vty afterwards, and a
//! `log` backend. Lines are written with "\r\n". Output made before any sink exists is kept in
//! a small buffer and written as soon as one does, so nothing printed early is lost.

use crate::hcall::{self, UnitAddress};
use crate::of::{Ihandle, Of};
use crate::time;
use core::fmt::{self, Write};
use spin::Mutex;
use vioboot_core::options::LogLevel;

/// Where console bytes go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sink {
    /// Nothing yet: bytes wait in the early buffer.
    Early,
    /// Open Firmware's `write` on its stdout instance; the vty behind it, if it is one, takes
    /// over should `write` take nothing (QEMU's VOF accepts writes but prints nothing).
    Of(Ihandle, Option<UnitAddress>),
    /// H_PUT_TERM_CHAR on a vty.
    Hvterm(UnitAddress),
}

impl fmt::Display for Sink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Sink::Early => write!(f, "the early buffer"),
            Sink::Of(ih, _) => write!(f, "Open Firmware stdout (ihandle {:#x})", ih.0),
            Sink::Hvterm(u) => write!(f, "hvterm {:#x}", u.0),
        }
    }
}

const EARLY_BYTES: usize = 4096;

struct Console {
    sink: Sink,
    early: [u8; EARLY_BYTES],
    early_len: usize,
    early_lost: usize,
}

static CONSOLE: Mutex<Console> = Mutex::new(Console {
    sink: Sink::Early,
    early: [0; EARLY_BYTES],
    early_len: 0,
    early_lost: 0,
});

impl Console {
    fn emit(&mut self, bytes: &[u8]) {
        match self.sink {
            Sink::Early => {
                let room = EARLY_BYTES - self.early_len;
                let n = bytes.len().min(room);
                self.early[self.early_len..self.early_len + n].copy_from_slice(&bytes[..n]);
                self.early_len += n;
                self.early_lost += bytes.len() - n;
            }
            Sink::Of(ih, vty) => {
                let taken = Of::get().map(|of| of.write(ih, bytes));
                if !bytes.is_empty() && matches!(taken, Some(Ok(0)) | None) {
                    if let Some(v) = vty {
                        self.sink = Sink::Hvterm(v);
                        self.emit(bytes);
                    }
                }
            }
            Sink::Hvterm(vty) => {
                for chunk in bytes.chunks(vioboot_core::hvterm::MAX_CHUNK) {
                    if hcall::put_term_char(vty, chunk).is_err() {
                        break;
                    }
                }
            }
        }
    }
}

impl Write for Console {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let mut rest = s.as_bytes();
        while let Some(nl) = rest.iter().position(|&b| b == b'\n') {
            self.emit(&rest[..nl]);
            self.emit(b"\r\n");
            rest = &rest[nl + 1..];
        }
        self.emit(rest);
        Ok(())
    }
}

/// Sends console output to `sink` from now on, writing out what waited in the early buffer.
pub fn set_sink(sink: Sink) {
    let mut c = CONSOLE.lock();
    let was_early = c.sink == Sink::Early;
    c.sink = sink;
    if was_early && sink != Sink::Early {
        let (early, len, lost) = (c.early, c.early_len, c.early_lost);
        c.early_len = 0;
        c.emit(&early[..len]);
        if lost > 0 {
            let _ = writeln!(c, "# console: {lost} early bytes lost");
        }
    }
}

pub fn sink() -> Sink {
    CONSOLE.lock().sink
}

/// Writes formatted text to the console.
pub fn print(args: fmt::Arguments) {
    let _ = CONSOLE.lock().write_fmt(args);
}

/// Writes formatted text even if the console lock is held (by code that panicked mid-print).
pub fn print_emergency(args: fmt::Arguments) {
    // SAFETY: only the panic path calls this; vioboot runs on one processor with interrupts
    // off, so the holder of the lock can never run again and the console state is not torn in a
    // way that matters for writing.
    unsafe { CONSOLE.force_unlock() };
    print(args);
}

/// `print!` to the console.
#[macro_export]
macro_rules! cprint {
    ($($arg:tt)*) => { $crate::console::print(format_args!($($arg)*)) };
}

/// `println!` to the console.
#[macro_export]
macro_rules! cprintln {
    () => { $crate::console::print(format_args!("\n")) };
    ($($arg:tt)*) => { $crate::console::print(format_args!("{}\n", format_args!($($arg)*))) };
}

/// An adapter so TAP and tables can write straight to the console.
pub struct ConsoleWriter;

impl Write for ConsoleWriter {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        CONSOLE.lock().write_str(s)
    }
}

struct Logger;

static LOGGER: Logger = Logger;

impl log::Log for Logger {
    fn enabled(&self, m: &log::Metadata) -> bool {
        m.level() <= log::max_level()
    }

    fn log(&self, r: &log::Record) {
        if self.enabled(r.metadata()) {
            let us = time::now_us();
            cprintln!(
                "# [{:4}.{:06}] {:5} {}",
                us / 1_000_000,
                us % 1_000_000,
                r.level(),
                r.args()
            );
        }
    }

    fn flush(&self) {}
}

/// Installs the `log` backend (TAP comment lines with a timestamp).
pub fn init_log(level: LogLevel) {
    let _ = log::set_logger(&LOGGER);
    set_log_level(level);
}

pub fn set_log_level(level: LogLevel) {
    log::set_max_level(match level {
        LogLevel::Error => log::LevelFilter::Error,
        LogLevel::Warn => log::LevelFilter::Warn,
        LogLevel::Info => log::LevelFilter::Info,
        LogLevel::Debug => log::LevelFilter::Debug,
        LogLevel::Trace => log::LevelFilter::Trace,
    });
}
