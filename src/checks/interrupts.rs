//! Interrupts vioboot takes on purpose: the decrementer fires into vioboot's own 0x900 vector
//! (boot/entry.S), which counts it and returns; external interrupts through XICS
//! (src/xics.rs) reach its 0x500 vector in bounded windows: an IPI the boot thread sends
//! itself, an IPI to every secondary thread, and a VIO adapter's interrupt for a command's
//! completion (src/vio/irq.rs). Afterwards every processor presents nothing (CPPR 0, MFRR cleared), the
//! device's signalling is off and its source masked, as a kernel expects to find them.

use crate::checks::cpus::boot_thread;
use crate::smp::{self, Secondary, Tokens};
use crate::vio;
use crate::xics::{self, Routing, PRIORITY};
use crate::{arch, hcall, report, time};
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::sync::atomic::Ordering;
use papr::xics::{Source, PRIORITY_MASKED};
use vioboot_core::inventory::{IntcKind, Inventory};
use vioboot_core::options::Inject;

/// How long MSR[EE] stays open for an interrupt that was made pending before (QEMU raises it
/// within the hcall that caused it; the bound is for a busy host).
const EXTERNAL_US: u64 = 1_000_000;
/// How long the secondaries together may take to come up, and one command to be done.
const ARRIVAL_US: u64 = 5_000_000;
const COMMAND_US: u64 = 3_000_000;
/// The CRQ handshake with a VIO adapter's partner.
const CRQ_US: u64 = 2_000_000;

/// Runs the interrupt checks. `vioboot.inject=lost-ipi` sends the first secondary's IPI
/// masked (MFRR 0xff), so that it never arrives.
pub fn run(inv: &Inventory, boot_cpuid: u32, inject: Option<Inject>) {
    decrementer();
    external(inv, boot_cpuid, inject == Some(Inject::LostIpi));
}

/// The external-interrupt lines when there is nothing to take them with.
fn skip_external(reason: &str) {
    for name in ["xics", "ipi-self", "ipi", "vio-irq"] {
        report::skip(name, reason);
    }
}

fn external(inv: &Inventory, boot_cpuid: u32, lose_ipi: bool) {
    let Some(intc) = inv.intc.as_ref() else {
        return skip_external(
            "the device tree has no interrupt-controller node: no external interrupts to take",
        );
    };
    match &intc.kind {
        IntcKind::Xics => {}
        IntcKind::Xive => {
            return skip_external(
                "the interrupt controller is XIVE (ibm,power-ivpe: ic-mode=xive, or CAS chose \
                 it): vioboot drives XICS only",
            )
        }
        IntcKind::Other(c) => {
            return skip_external(&format!(
                "the interrupt controller is `{c}`, neither XICS nor XIVE"
            ))
        }
    }
    if intc.server_ranges.is_empty() {
        return skip_external(
            "the XICS node has no usable ibm,interrupt-server-ranges: no servers to address",
        );
    }
    if !arch::owns_vectors() {
        return skip_external("vioboot's vectors are not live with little-endian interrupts");
    }
    let servers: Vec<u32> = inv
        .cpus
        .iter()
        .flat_map(|c| c.servers.iter().copied())
        .collect();
    let token = |n: &str| inv.rtas.as_ref().and_then(|r| r.token(n));
    let Some(boot) = boot_thread(&servers, boot_cpuid, token("query-cpu-stopped-state")) else {
        return skip_external("the boot thread's interrupt server is unknown");
    };
    let outside: Vec<String> = servers
        .iter()
        .filter(|&&s| !intc.serves(s))
        .map(|s| format!("{s:#x}"))
        .collect();
    if !outside.is_empty() {
        report::fail(
            "xics",
            &format!(
                "threads {} lie outside ibm,interrupt-server-ranges {:?}",
                outside.join(", "),
                intc.server_ranges
            ),
            &[],
        );
        return;
    }
    report::pass(
        "xics",
        format_args!(
            "{} is XICS (no CAS: QEMU's ic-mode=dual stays on XICS), {} servers in \
             ibm,interrupt-server-ranges {:?}; boot thread {boot:#x}",
            intc.name,
            intc.servers(),
            intc.server_ranges
        ),
    );
    let before = (
        xics::TAKEN.load(Ordering::Relaxed),
        xics::SPURIOUS.load(Ordering::Relaxed),
        xics::UNKNOWN.load(Ordering::Relaxed),
    );
    arch::set_decrementer(i32::MAX as u32);
    let ipis_self = ipi_self(boot);
    let ipis_sent = ipi_secondaries(inv, &servers, boot, lose_ipi);
    let vio = vio_irq(inv, boot);
    // Whatever happened above, this processor presents nothing any more.
    let closed = xics::close(boot);
    let taken = xics::TAKEN.load(Ordering::Relaxed) - before.0;
    let spurious = xics::SPURIOUS.load(Ordering::Relaxed) - before.1;
    let unknown = xics::UNKNOWN.load(Ordering::Relaxed) - before.2;
    let detail = format!(
        "{taken} taken at vector 0x500 ({} IPIs, {vio} device interrupts); {spurious} spurious \
         and {unknown} unknown accepts counted and ended with H_EOI",
        ipis_self + ipis_sent
    );
    match closed {
        Ok(()) => report::pass(
            "external-interrupts",
            format_args!("{detail}; CPPR 0 and MFRR cleared on every thread, sources masked"),
        ),
        Err(e) => report::fail(
            "external-interrupts",
            &format!("{detail}; leaving the controller as a kernel expects failed: {e}"),
            &[],
        ),
    }
}

/// The boot thread sends itself an IPI. Returns the IPIs taken (0 or 1).
fn ipi_self(boot: u32) -> u64 {
    let r = (|| -> Result<(u64, xics::Accepted), String> {
        xics::open().map_err(|e| format!("{e}"))?;
        hcall::ipi(boot, PRIORITY).map_err(|e| format!("{e}"))?;
        let us = xics::take(EXTERNAL_US).map_err(|waited| {
            format!(
                "H_IPI to itself (server {boot:#x}) sent, MSR[EE] open for {} ms, nothing \
                 reached vector 0x500",
                waited / 1000
            )
        });
        let us = match us {
            Ok(us) => us,
            Err(e) => {
                // Whatever is pending now is taken and ended, never left behind.
                let _ = xics::drain(boot, |_| false);
                return Err(e);
            }
        };
        let a = xics::accept(boot, |s| s == Source::Ipi).map_err(|e| format!("{e}"))?;
        let _ = xics::drain(boot, |_| false);
        Ok((us, a))
    })();
    let _ = xics::close(boot);
    match r {
        Ok((us, a)) if a.source == Source::Ipi => {
            report::pass(
                "ipi-self",
                format_args!(
                    "H_IPI to itself (server {boot:#x}, priority {PRIORITY}) taken at vector \
                     0x500 after {us} us: XIRR {:#010x} (source 2, IPI), MFRR cleared, H_EOI",
                    a.xirr
                ),
            );
            1
        }
        Ok((_, a)) => {
            report::fail(
                "ipi-self",
                &format!(
                    "waiting for its own IPI, H_XIRR returned {:#010x}, not source 2",
                    a.xirr
                ),
                &[],
            );
            0
        }
        Err(e) => {
            report::fail("ipi-self", &e, &[]);
            0
        }
    }
}

/// Every secondary is started again, takes an IPI from the boot thread, and stops. Nothing
/// is printed until all are stopped (a print through Open Firmware would put the firmware's
/// vectors back while a secondary's MSR[EE] is open). Returns the IPIs taken.
fn ipi_secondaries(inv: &Inventory, servers: &[u32], boot: u32, lose_first: bool) -> u64 {
    let others: Vec<u32> = servers.iter().copied().filter(|&s| s != boot).collect();
    if others.is_empty() {
        report::skip("ipi", "a single vCPU: no other thread to send an IPI to");
        return 0;
    }
    let token = |n: &str| inv.rtas.as_ref().and_then(|r| r.token(n));
    let (Some(start_cpu), Some(stop_self)) = (token("start-cpu"), token("stop-self")) else {
        report::skip("ipi", "/rtas has no start-cpu or stop-self");
        return 0;
    };
    let query = token("query-cpu-stopped-state");
    let tokens = Tokens {
        start_cpu,
        stop_self,
        query_stopped: query,
    };
    let mut failures: Vec<String> = Vec::new();
    let mut started: Vec<Secondary> = Vec::new();
    for &server in &others {
        // A thread the vCPU checks could not stop (it never came up) is still running: RTAS
        // would refuse to start it, so say what it is.
        if let Some(state) = query.and_then(|t| smp::query_stopped(t, server).ok()) {
            if state != 0 {
                failures.push(format!(
                    "thread {server:#x} is not stopped (query-cpu-stopped-state {state}): no IPI sent"
                ));
                continue;
            }
        }
        match smp::start(server, tokens, false, true) {
            Ok(s) => started.push(s),
            Err(e) => failures.push(format!("{e}")),
        }
    }
    let deadline = time::now_us() + ARRIVAL_US;
    let mut running = Vec::new();
    for s in started {
        match s.arrival(deadline.saturating_sub(time::now_us())) {
            Ok(_) => running.push(s),
            Err(e) => failures.push(format!("{e}")),
        }
    }
    let mut took = 0u64;
    let mut slowest = 0u64;
    for (i, s) in running.iter_mut().enumerate() {
        let priority = if lose_first && i == 0 {
            PRIORITY_MASKED
        } else {
            PRIORITY
        };
        match s.ipi(priority, COMMAND_US) {
            Ok(i) if Source::of(i.xirr) == Source::Ipi => {
                took += 1;
                slowest = slowest.max(i.taken_us);
            }
            Ok(i) => failures.push(format!(
                "thread {:#x}: H_XIRR returned {:#010x}, not source 2 (IPI)",
                s.server, i.xirr
            )),
            Err(e) => failures.push(format!("thread {:#x}: {e}", s.server)),
        }
    }
    for s in running {
        let server = s.server;
        if let Err(e) = s.stop(query, COMMAND_US) {
            failures.push(format!("thread {server:#x}: {e}"));
        }
    }
    if failures.is_empty() {
        report::pass(
            "ipi",
            format_args!(
                "{took} of {} secondaries took H_IPI from the boot thread {boot:#x} at vector \
                 0x500 (XIRR source 2), cleared their MFRR and ended it with H_EOI (slowest \
                 {slowest} us from ready); all stopped again",
                others.len()
            ),
        );
    } else {
        report::fail(
            "ipi",
            &format!(
                "{took} of {} secondaries took their IPI; {}",
                others.len(),
                failures.join("; ")
            ),
            &[],
        );
    }
    took
}

/// A VIO adapter's interrupt for a command's completion: the first v-scsi adapter (else the
/// first vTPM) gets its CRQ, its source routed to the boot thread, H_VIO_SIGNAL on, and a
/// command (MAD ADAPTER_INFO; for a vTPM GET_VERSION) whose answer the partner queues with
/// the interrupt. Returns the device interrupts taken.
fn vio_irq(inv: &Inventory, boot: u32) -> u64 {
    let token = |n: &str| inv.rtas.as_ref().and_then(|r| r.token(n));
    let routing = match Routing::new(token) {
        Ok(r) => r,
        Err(e) => {
            report::skip("vio-irq", &format!("{e}: no source can be routed"));
            return 0;
        }
    };
    let (vscsi, _) = vio::discover(inv, vio::VSCSI_COMPATIBLE);
    let (vtpm, _) = vio::discover(inv, vio::VTPM_COMPATIBLE);
    let is_vscsi = !vscsi.is_empty();
    let Some(a) = vscsi.into_iter().chain(vtpm).next() else {
        report::skip("vio-irq", "no v-scsi or vTPM adapter to raise an interrupt");
        return 0;
    };
    let Some(irq) = a.irq else {
        report::skip(
            "vio-irq",
            &format!("{} has no interrupts property: no source to route", a.name),
        );
        return 0;
    };
    match vio::irq::completion(
        &a,
        is_vscsi,
        token("ibm,set-tce-bypass"),
        &routing,
        boot,
        EXTERNAL_US,
        CRQ_US,
    ) {
        Ok(c) => {
            report::pass(
                "vio-irq",
                format_args!(
                    "{}: source {irq:#x} routed to server {boot:#x} at priority {PRIORITY} \
                     (ibm,set-xive), H_VIO_SIGNAL on; the completion raised it, taken at \
                     vector 0x500 after {} us: XIRR {:#010x}, H_EOI; {}; then signalling off \
                     and the source masked",
                    a.name, c.us, c.xirr, c.answer
                ),
            );
            1
        }
        Err(e) => {
            report::fail("vio-irq", &format!("{e}"), &[]);
            u64::from(e.taken)
        }
    }
}

/// How far ahead the decrementer is set.
const DEC_US: u64 = 1_000;
/// How long MSR[EE] stays on waiting for it (QEMU's TCG raises the interrupt from a host
/// timer: on a busy host it was seen more than 100 ms late).
const LIMIT_US: u64 = 1_000_000;

/// Runs the decrementer check where vioboot's vectors are live.
fn decrementer() {
    if !arch::owns_vectors() {
        report::skip(
            "decrementer",
            "vioboot's vectors are not live with little-endian interrupts",
        );
        return;
    }
    let ticks = time::us_to_ticks(DEC_US).clamp(1, i32::MAX as u64) as u32;
    let before = arch::decrementer_count();
    let start = time::now_us();
    arch::set_decrementer(ticks);
    arch::external_interrupts(true);
    let mut fired_us = None;
    while time::now_us().saturating_sub(start) < LIMIT_US {
        if arch::decrementer_count() != before {
            fired_us = Some(time::now_us().saturating_sub(start));
            break;
        }
        core::hint::spin_loop();
    }
    arch::external_interrupts(false);
    arch::set_decrementer(i32::MAX as u32);
    let taken = arch::decrementer_count().wrapping_sub(before);
    match fired_us {
        Some(us) if us + 1 >= DEC_US / 2 => report::pass(
            "decrementer",
            format_args!(
                "set for {DEC_US} us ({ticks} ticks), taken at vector 0x900 after {us} us ({taken} interrupt)"
            ),
        ),
        Some(us) => report::fail(
            "decrementer",
            &alloc::format!("set for {DEC_US} us, the interrupt came after only {us} us"),
            &[],
        ),
        None => report::fail(
            "decrementer",
            &alloc::format!(
                "set for {DEC_US} us with MSR[EE] on, no interrupt within {} ms",
                LIMIT_US / 1000
            ),
            &[],
        ),
    }
}
