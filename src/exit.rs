//! The exit protocol: a finished run powers off (QEMU exits 0); a failed run or a panic prints
//! what failed and calls ibm,os-term (QEMU with `-action panic=exit-failure` exits 1).
//! Where neither works, vioboot says so and halts: it never reports success it did not have.

use crate::{arch, console, cprintln, report, rtas};

/// Ends the run with the report's verdict.
pub fn finish(pass: bool) -> ! {
    if pass {
        cprintln!("# vioboot: powering off");
        let e = rtas::power_off();
        cprintln!("# vioboot: power-off failed: {e}");
        // Falling through to os-term would turn a pass into a failure exit: halt instead.
        halt()
    } else {
        terminate("vioboot: smoke checks failed")
    }
}

/// Terminates with a failure that names what went wrong.
pub fn terminate(message: &str) -> ! {
    cprintln!("# vioboot: terminating: {message}");
    let e = rtas::os_term(message);
    cprintln!("# vioboot: ibm,os-term failed: {e}");
    halt()
}

fn halt() -> ! {
    cprintln!("# vioboot: halted");
    arch::halt()
}

/// An unexpected interrupt (from the exception vectors): names it, fails the report, terminates.
pub fn exception(vector: u64, srr0: u64, srr1: u64, dar: u64) -> ! {
    use core::fmt::Write;
    let name = match vector {
        0x200 => "machine check",
        0x300 => "data storage",
        0x380 => "data segment",
        0x400 => "instruction storage",
        0x480 => "instruction segment",
        0x500 => "external",
        0x600 => "alignment",
        0x700 => "program",
        0x800 => "floating-point unavailable",
        0x900 => "decrementer",
        0xc00 => "system call",
        0xf20 => "vector unavailable",
        0xf40 => "VSX unavailable",
        _ => "unexpected",
    };
    let mut msg = report::FixedText::new();
    let _ = write!(
        msg,
        "{name} interrupt {vector:#x} at {srr0:#x} (SRR1 {srr1:#x}, DAR {dar:#x})"
    );
    console::print_emergency(format_args!("\n# vioboot: {}\n", msg.as_str()));
    report::aborted("exception", "exception vector", msg.as_str());
    terminate("vioboot: unexpected interrupt")
}

#[cfg(target_os = "none")]
#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    use core::fmt::Write;
    use core::sync::atomic::{AtomicBool, Ordering};
    static PANICKING: AtomicBool = AtomicBool::new(false);
    if PANICKING.swap(true, Ordering::SeqCst) {
        // A panic while reporting a panic: say so once and stop, without recursing.
        console::print_emergency(format_args!("\n# vioboot: PANIC while handling a panic\n"));
        let _ = rtas::os_term("vioboot: double panic");
        arch::halt()
    }
    let mut at = report::FixedText::new();
    let mut message = report::FixedText::new();
    if let Some(l) = info.location() {
        let _ = write!(at, "{}:{}", l.file(), l.line());
    }
    let _ = write!(message, "{}", info.message());
    console::print_emergency(format_args!(
        "\n# vioboot: PANIC at {}: {}\n",
        at.as_str(),
        message.as_str()
    ));
    report::aborted("panic", at.as_str(), message.as_str());
    terminate("vioboot: panic")
}
