//! A VIO adapter's interrupt for a command's completion, the interrupt path next to the
//! polling every driver uses: the adapter's CRQ opened as its driver opens it, its source
//! routed to a server (RTAS `ibm,set-xive`), H_VIO_SIGNAL(unit, 1), one command (v-scsi: MAD
//! ADAPTER_INFO; vTPM: GET_VERSION) whose answer the partner queues and signals, the
//! interrupt taken at vector 0x500 in a bounded window (src/xics.rs), accepted and ended;
//! then the answer read and checked, signalling off, the source masked, the CRQ freed and
//! every TCE cleared, whatever happened before.

use super::channel::{Channel, Received};
use super::tce::Access;
use super::{Adapter, Patience};
use crate::hcall::{self, Ioba, RealAddr};
use crate::mem::DmaPages;
use crate::xics::{self, Routing, PRIORITY};
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use papr::xics::Source;
use srp::iu::{IuEntry, FORMAT_MAD};
use srp::mad::{self, AdapterInfo};
use srp::MAX_IU_LEN;

/// How long the answer may take to be readable once its interrupt was taken (it is queued
/// before the interrupt is raised: the bound is for a wrong partner).
const ANSWER_US: u64 = 1_000_000;

/// A completion taken by interrupt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completion {
    /// From MSR[EE] opened to the interrupt taken.
    pub us: u64,
    /// The XIRR H_XIRR returned.
    pub xirr: u32,
    /// What the answer said (`MAD ADAPTER_INFO answered (...)`).
    pub answer: String,
}

/// Why the completion was not taken by interrupt, or what went wrong around it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IrqError {
    /// The adapter's node name.
    pub adapter: String,
    /// Whether the adapter's interrupt was taken all the same.
    pub taken: bool,
    /// Each problem, in the order met.
    pub problems: Vec<String>,
}

impl fmt::Display for IrqError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.adapter, self.problems.join("; "))
    }
}

/// The command whose completion raises a VIO adapter's interrupt, while it is in flight.
enum Probe {
    /// MAD ADAPTER_INFO to a v-scsi adapter: the IU page and the data page, mapped.
    Vscsi {
        pages: DmaPages,
        iu: Ioba,
        data: Ioba,
    },
    /// GET_VERSION to a vTPM (no buffer).
    Vtpm,
}

/// The tag of the v-scsi probe's MAD.
const PROBE_TAG: u64 = 0x1502;

impl Probe {
    fn send(ch: &mut Channel, vscsi: bool) -> Result<Probe, String> {
        if !vscsi {
            ch.send(tpm::crq::request(tpm::crq::GET_VERSION, 0, 0))
                .map_err(|e| format!("sending GET_VERSION: {e}"))?;
            return Ok(Probe::Vtpm);
        }
        let mut pages = DmaPages::alloc(2).ok_or("no DMA pages for the MAD")?;
        let iu = ch
            .map(pages.addr(), MAX_IU_LEN, Access::Both)
            .map_err(|e| format!("mapping the MAD: {e}"))?;
        let data_addr = RealAddr(pages.addr().0 + 4096);
        let data = match ch.map(data_addr, mad::ADAPTER_INFO_LEN, Access::DeviceWrites) {
            Ok(d) => d,
            Err(e) => {
                let _ = ch.unmap(iu, MAX_IU_LEN);
                return Err(format!("mapping the ADAPTER_INFO buffer: {e}"));
            }
        };
        pages.bytes_mut().fill(0);
        let req = mad::adapter_info_request(PROBE_TAG, data.0);
        pages.bytes_mut()[..req.len()].copy_from_slice(&req);
        let probe = Probe::Vscsi { pages, iu, data };
        let entry = IuEntry::request(FORMAT_MAD, req.len(), iu.0)
            .map_err(|e| format!("{e}"))
            .and_then(|e| {
                ch.send(e.encode())
                    .map_err(|e| format!("sending MAD ADAPTER_INFO: {e}"))
            });
        match entry {
            Ok(()) => Ok(probe),
            Err(e) => {
                probe.release(ch);
                Err(e)
            }
        }
    }

    /// What the command's answer, already queued, says: checked as its driver checks it.
    fn answer(&self, ch: &mut Channel) -> Result<String, String> {
        let mut wait = Patience::new(ANSWER_US);
        let entry = match ch.receive(&mut wait, &"the probe's answer") {
            Ok(Received::Message(b)) => b,
            Ok(Received::Reset(ev)) => return Err(format!("transport event {ev:?} instead")),
            Ok(Received::TimedOut) => return Err("no answer was queued".into()),
            Err(e) => return Err(format!("{e}")),
        };
        match self {
            Probe::Vtpm => match tpm::crq::parse(&entry) {
                Ok(tpm::crq::Answer::Version(v)) => Ok(format!("GET_VERSION answered {v}")),
                Ok(other) => Err(format!("GET_VERSION answered {other:?}")),
                Err(e) => Err(format!("GET_VERSION: {e}")),
            },
            Probe::Vscsi { pages, .. } => {
                let e = IuEntry::decode(&entry).map_err(|e| format!("{e}"))?;
                if e.addr != PROBE_TAG {
                    return Err(format!("an answer to tag {:#x}, not the MAD's", e.addr));
                }
                let iu: Vec<u8> = (0..usize::from(e.len))
                    .map(|i| pages.read_volatile(i))
                    .collect();
                let m =
                    mad::parse_adapter_info_response(&iu, PROBE_TAG).map_err(|e| format!("{e}"))?;
                if m.status != mad::MAD_SUCCESS {
                    return Err(format!("MAD status {:#x}", m.status));
                }
                let data: Vec<u8> = (0..mad::ADAPTER_INFO_LEN)
                    .map(|i| pages.read_volatile(4096 + i))
                    .collect();
                let info = AdapterInfo::parse(&data).map_err(|e| format!("{e}"))?;
                Ok(format!(
                    "MAD ADAPTER_INFO answered (partition \"{}\", SRP version {})",
                    info.partition_name, info.srp_version
                ))
            }
        }
    }

    /// Unmaps the probe's pages (freed when dropped).
    fn release(self, ch: &mut Channel) {
        if let Probe::Vscsi { iu, data, .. } = self {
            let _ = ch.unmap(data, mad::ADAPTER_INFO_LEN);
            let _ = ch.unmap(iu, MAX_IU_LEN);
        }
    }
}

/// Takes adapter `a`'s interrupt (its source, `a.irq`) for one command's completion on `server`,
/// with MSR[EE] open at most `limit_us`; `vscsi` says which command. `crq_us` bounds the CRQ
/// handshake. The controller is left closed (CPPR 0) on this processor.
pub fn completion(
    a: &Adapter,
    vscsi: bool,
    tce_bypass: Option<u32>,
    routing: &Routing,
    server: u32,
    limit_us: u64,
    crq_us: u64,
) -> Result<Completion, IrqError> {
    let fail = |taken: bool, problems: Vec<String>| IrqError {
        adapter: a.name.clone(),
        taken,
        problems,
    };
    let irq = a.irq.ok_or_else(|| {
        fail(
            false,
            alloc::vec!["no interrupts property: no source to route".into()],
        )
    })?;
    let mut ch = Channel::open(a, tce_bypass, crq_us)
        .map_err(|(op, e)| fail(false, alloc::vec![format!("{op}: {e}")]))?;
    let unit = ch.unit();
    // Entries the handshake left (an echoed INIT) raised nothing: take them first.
    ch.discard_pending();
    let mine = |s| s == Source::Device(irq);
    let mut probe = None;
    let r = (|| -> Result<(u64, xics::Accepted), String> {
        routing
            .route(irq, server, PRIORITY)
            .map_err(|e| format!("routing source {irq:#x}: {e}"))?;
        hcall::vio_signal(unit, true).map_err(|e| format!("{e}"))?;
        xics::open().map_err(|e| format!("{e}"))?;
        probe = Some(Probe::send(&mut ch, vscsi)?);
        let us = xics::take(limit_us).map_err(|waited| {
            format!(
                "a command sent with H_VIO_SIGNAL on and source {irq:#x} routed, MSR[EE] open \
                 for {} ms: nothing reached vector 0x500 (its answer was {}queued)",
                waited / 1000,
                if ch.pending() { "" } else { "not " }
            )
        })?;
        let acc = xics::accept(server, mine).map_err(|e| format!("{e}"))?;
        Ok((us, acc))
    })();
    // Signalling off and the source masked again whatever happened, then anything still
    // pending taken and ended.
    let off = hcall::vio_signal(unit, false);
    let masked = routing.mask(irq, server);
    let _ = xics::drain(server, mine);
    let _ = xics::close(server);
    // The answer, read only now (polling, as the drivers do), then the CRQ freed and every
    // TCE cleared.
    let answer = probe.as_ref().map(|p| p.answer(&mut ch));
    if let Some(p) = probe {
        p.release(&mut ch);
    }
    ch.discard_pending();
    let closed = ch.close();
    let mut problems = Vec::new();
    let mut taken = false;
    let mut good = None;
    match r {
        Ok((us, acc)) => {
            taken = acc.source == Source::Device(irq);
            if !taken {
                problems.push(format!(
                    "waiting for source {irq:#x}, H_XIRR returned {:#010x}",
                    acc.xirr
                ));
            }
            good = Some((us, acc.xirr));
        }
        Err(e) => problems.push(e),
    }
    let answer = match answer {
        Some(Ok(said)) => Some(said),
        Some(Err(e)) => {
            problems.push(format!("the answer: {e}"));
            None
        }
        None => None,
    };
    if let Err(e) = off {
        problems.push(format!("{e}"));
    }
    if let Err(e) = masked {
        problems.push(format!("masking source {irq:#x}: {e}"));
    }
    if let Err(e) = closed {
        problems.push(format!("closing the CRQ: {e}"));
    }
    match (good, answer) {
        (Some((us, xirr)), Some(answer)) if problems.is_empty() => {
            Ok(Completion { us, xirr, answer })
        }
        _ => Err(fail(taken, problems)),
    }
}
