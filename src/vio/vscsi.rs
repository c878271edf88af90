//! A v-scsi session: SRP over one adapter's CRQ (PAPR virtual SCSI, as Linux's ibmvscsi
//! speaks it), the initiator side.
//!
//! [`Session::open`] turns the adapter's TCE bypass off (where `/rtas` offers
//! `ibm,set-tce-bypass`), registers a TCE window and the CRQ; then MAD ADAPTER_INFO, SRP_LOGIN
//! and SRP_CMDs follow, one at a time. Every IU carries a fresh tag and its answer is matched
//! by it; the IU page and each data buffer are mapped in the window only while their request
//! is in flight, and only the bytes the answer says it has are read. An answer that does not
//! come within the timeout, or with a tag nobody asked, ends the request with a named failure;
//! a late answer to a request given up on is dropped. The target's request limit (login grant,
//! then each response's delta) is honoured. Wire formats: the `srp` crate.

use super::channel::{Channel, ChannelError, Received};
use super::crq::CrqError;
use super::tce::{Access, TceError};
use super::Adapter;
use crate::hcall::{Ioba, RealAddr};
use crate::mem::DmaPages;
use crate::rtas::RtasError;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use papr::crq::TransportEvent;
use srp::cdb::{self, Cdb};
use srp::cmd::{self, Data, Descriptor, Iu, MAX_INDIRECT};
use srp::iu::{self, IuEntry, FORMAT_MAD, FORMAT_SRP, VIOSRP_OK};
use srp::login::{self, Granted, Login, BUF_FORMAT_INDIRECT};
use srp::mad::{self, AdapterInfo};
use srp::rsp::{self, Expect, Residual};
use srp::sense::{Sense, UNIT_ATTENTION};
use srp::tsk;
use srp::{SrpError, MAX_IU_LEN};

/// Times a command is sent again after UNIT ATTENTION (a reset, a changed medium).
const UNIT_ATTENTION_RETRIES: u32 = 4;

/// Largest memory segment one data descriptor describes: 128 KiB. QEMU 7.2's spapr-vscsi
/// moves a command's data in pieces of 128 KiB (its SCSI layer's bounce buffer) and starts
/// every piece at the beginning of the current descriptor, not where the last piece ended
/// (`vscsi_fetch_desc` ignores the offset); a descriptor of at most one piece, ending where a
/// piece ends, is transferred right. So a larger command is described indirectly, one
/// 128 KiB segment per descriptor, as many as fit the IU ([`MAX_INDIRECT`]): 1.375 MiB.
pub const SEGMENT: u32 = 128 << 10;

/// What went wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    Tce(TceError),
    Crq(CrqError),
    /// `ibm,set-tce-bypass` failed.
    Rtas(RtasError),
    /// No DMA page for the IU or a bounce buffer.
    NoMemory,
    /// An answer (or its CRQ entry) that does not hold together.
    Malformed(SrpError),
    /// No answer within the timeout; what was done about the command then.
    Timeout {
        waited_ms: u64,
        tag: u64,
        after: Recovery,
    },
    /// An answer whose tag no request of ours carries.
    UnknownTag {
        got: u64,
        want: u64,
    },
    /// The CRQ entry of the answer says the IU was not delivered.
    EntryStatus(u8),
    LoginRejected {
        reason: u32,
    },
    MadStatus(u16),
    /// The target's request limit is used up.
    NoCredit,
    CheckCondition(Sense),
    /// A SCSI status other than GOOD or CHECK CONDITION (BUSY, TASK SET FULL, ...).
    Status(u8),
    /// Not all the data moved.
    Residual {
        moved: u32,
        wanted: u32,
    },
    /// The partner failed or went away; the CRQ is registered again, a new login is needed.
    Transport(TransportEvent),
    /// A logical block length vioboot does not handle.
    BlockSize(u32),
    /// Blocks beyond the end of the LUN.
    OutOfRange {
        block: u64,
        count: u64,
        capacity: u64,
    },
    /// A buffer that is not a whole number of blocks.
    BadLength {
        len: usize,
        block: u32,
    },
    /// The LUN is write-protected.
    ReadOnly,
    /// The adapter was shut down.
    ShutDown,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Tce(e) => write!(f, "{e}"),
            Failure::Crq(e) => write!(f, "{e}"),
            Failure::Rtas(e) => write!(f, "ibm,set-tce-bypass: {e}"),
            Failure::NoMemory => write!(f, "no DMA page left"),
            Failure::Malformed(e) => write!(f, "malformed answer: {e}"),
            Failure::Timeout {
                waited_ms,
                tag,
                after,
            } => {
                write!(f, "no answer within {waited_ms} ms (tag {tag:#x}){after}")
            }
            Failure::UnknownTag { got, want } => {
                write!(
                    f,
                    "answer with unknown tag {got:#x} (waiting for {want:#x})"
                )
            }
            Failure::EntryStatus(s) => {
                write!(f, "CRQ entry status {s:#04x} ({})", iu::status_name(*s))
            }
            Failure::LoginRejected { reason } => write!(f, "SRP_LOGIN_REJ, reason {reason:#x}"),
            Failure::MadStatus(s) => write!(f, "MAD status {s:#x}"),
            Failure::NoCredit => write!(f, "the target's request limit is used up"),
            Failure::CheckCondition(s) => write!(f, "CHECK CONDITION: {s}"),
            Failure::Status(s) => write!(f, "SCSI status {s:#04x}"),
            Failure::Residual { moved, wanted } => {
                write!(f, "{moved} of {wanted} bytes transferred")
            }
            Failure::Transport(ev) => {
                write!(f, "transport event {ev:?}: the CRQ was registered again")
            }
            Failure::BlockSize(n) => {
                write!(
                    f,
                    "logical block length {n} (512, 2048 and 4096 are supported)"
                )
            }
            Failure::OutOfRange {
                block,
                count,
                capacity,
            } => write!(
                f,
                "blocks {block}..{} lie beyond the {capacity} blocks of the LUN",
                block + count
            ),
            Failure::BadLength { len, block } => {
                write!(
                    f,
                    "{len} bytes are not a whole number of {block}-byte blocks"
                )
            }
            Failure::ReadOnly => write!(f, "the LUN is write-protected"),
            Failure::ShutDown => write!(f, "the adapter is shut down"),
        }
    }
}

/// What vioboot did about a command that went unanswered (SAM-5's escalation): ABORT TASK,
/// then LOGICAL UNIT RESET if the abort did not succeed. Whatever the outcome, the command's
/// buffers are unmapped and a late answer to it is dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recovery {
    /// Nothing (not a SCSI command: a login or a MAD).
    NotTried,
    /// The target aborted it.
    Aborted,
    /// The abort did not succeed (the response code, or `None` for no answer); the logical
    /// unit was reset.
    Reset { abort: Option<u8> },
    /// Neither succeeded (each one's response code, or `None` for no answer or no credit).
    Failed {
        abort: Option<u8>,
        reset: Option<u8>,
    },
}

impl fmt::Display for Recovery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let outcome = |c: &Option<u8>| match c {
            Some(c) => tsk::response_name(*c),
            None => "no answer",
        };
        match self {
            Recovery::NotTried => Ok(()),
            Recovery::Aborted => write!(f, "; ABORT TASK: function complete"),
            Recovery::Reset { abort } => write!(
                f,
                "; ABORT TASK: {}; LOGICAL UNIT RESET: function complete",
                outcome(abort)
            ),
            Recovery::Failed { abort, reset } => write!(
                f,
                "; ABORT TASK: {}; LOGICAL UNIT RESET: {}",
                outcome(abort),
                outcome(reset)
            ),
        }
    }
}

impl From<ChannelError> for Failure {
    fn from(e: ChannelError) -> Failure {
        match e {
            ChannelError::Rtas(e) => Failure::Rtas(e),
            ChannelError::Crq(e) => Failure::Crq(e),
            ChannelError::Tce(e) => Failure::Tce(e),
        }
    }
}

/// A v-scsi failure: which adapter or LUN, which operation, what went wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VscsiError {
    /// `v-scsi@2000`, or a LUN `v-scsi@2000 0:1:0`.
    pub device: String,
    /// The MAD, SRP IU or SCSI command.
    pub op: &'static str,
    pub failure: Failure,
}

impl VscsiError {
    /// The sense data, when the target answered CHECK CONDITION.
    pub fn sense(&self) -> Option<Sense> {
        match self.failure {
            Failure::CheckCondition(s) => Some(s),
            _ => None,
        }
    }
}

impl fmt::Display for VscsiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: {}", self.device, self.op, self.failure)
    }
}

/// Counters for the report.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SessionStats {
    pub requests: u64,
    pub received: u64,
    pub protocol_errors: u64,
    /// Transport events answered.
    pub resets: u64,
    /// Answers to requests given up on, dropped.
    pub late: u64,
    /// Commands sent again after UNIT ATTENTION.
    pub unit_attentions: u64,
    /// ABORT TASKs sent for commands that went unanswered.
    pub aborts: u64,
    /// LOGICAL UNIT RESETs sent after an abort that did not succeed.
    pub resets_sent: u64,
}

/// Memory a command moves data through: a real address and length, and the direction.
#[derive(Debug, Clone, Copy)]
enum Buffer {
    None,
    In(RealAddr, u32),
    Out(RealAddr, u32),
}

/// One adapter's SRP session.
pub struct Session {
    ch: Channel,
    /// Requests we may still send (SRP request limit).
    credits: u32,
    /// Largest IU the target takes.
    max_iu: usize,
    next_tag: u64,
    /// Tags of requests given up on: their answers may still come.
    abandoned: Vec<u64>,
    /// The page each IU (request, then answer) lives in.
    iu: DmaPages,
    /// A page for small data-in (INQUIRY, REPORT LUNS, capacities, ADAPTER_INFO).
    bounce: DmaPages,
    stats: SessionStats,
    closed: bool,
    /// The target takes indirect descriptor tables (its login grant says so).
    indirect: bool,
}

fn iu_of(b: &[u8]) -> Iu {
    let mut bytes = [0u8; MAX_IU_LEN];
    bytes[..b.len()].copy_from_slice(b);
    Iu {
        bytes,
        len: b.len(),
    }
}

impl Session {
    /// Turns TCE bypass off (with the `ibm,set-tce-bypass` token, when `/rtas` has one),
    /// registers the adapter's window and CRQ and does the INIT handshake.
    pub fn open(
        a: &Adapter,
        tce_bypass: Option<u32>,
        timeout_us: u64,
    ) -> Result<Session, VscsiError> {
        let fail = |op, failure| VscsiError {
            device: a.name.clone(),
            op,
            failure,
        };
        let pages = (DmaPages::alloc(1), DmaPages::alloc(1));
        let (Some(iu), Some(bounce)) = pages else {
            return Err(fail("open", Failure::NoMemory));
        };
        let ch = Channel::open(a, tce_bypass, timeout_us).map_err(|(op, e)| fail(op, e.into()))?;
        Ok(Session {
            ch,
            credits: 0,
            max_iu: MAX_IU_LEN,
            next_tag: 1,
            abandoned: Vec::new(),
            iu,
            bounce,
            stats: SessionStats::default(),
            closed: false,
            indirect: false,
        })
    }

    pub fn name(&self) -> &str {
        self.ch.name()
    }

    pub fn stats(&self) -> SessionStats {
        SessionStats {
            resets: self.ch.resets(),
            protocol_errors: self.stats.protocol_errors + self.ch.strays(),
            ..self.stats
        }
    }

    /// Requests the target still takes.
    pub fn credits(&self) -> u32 {
        self.credits
    }

    /// IOBA pages mapped now beyond the CRQ (0 between requests).
    pub fn pages_left_mapped(&self) -> usize {
        self.ch.pages_left_mapped()
    }

    fn error(&self, device: &str, op: &'static str, failure: Failure) -> VscsiError {
        VscsiError {
            device: device.into(),
            op,
            failure,
        }
    }

    fn tag(&mut self) -> u64 {
        let t = self.next_tag;
        self.next_tag += 1;
        t
    }

    fn map(&self, addr: RealAddr, len: usize, access: Access) -> Result<Ioba, Failure> {
        self.ch.map(addr, len, access).map_err(Failure::Tce)
    }

    fn unmap(&self, ioba: Ioba, len: usize) -> Result<(), Failure> {
        self.ch.unmap(ioba, len).map_err(Failure::Tce)
    }

    /// Sends the IU `build` makes (given the IOBA it will live at) and returns the answer's
    /// bytes, as many as its CRQ entry says (at most 256). The IU page is mapped only
    /// meanwhile.
    fn exchange(
        &mut self,
        format: u8,
        tag: u64,
        build: impl FnOnce(u64) -> Result<Iu, SrpError>,
    ) -> Result<([u8; MAX_IU_LEN], usize), Failure> {
        if self.closed {
            return Err(Failure::ShutDown);
        }
        let ioba = self.map(self.iu.addr(), MAX_IU_LEN, Access::Both)?;
        let r = self.exchange_mapped(format, tag, ioba, build);
        let u = self.unmap(ioba, MAX_IU_LEN);
        let len = r?;
        u?;
        let mut out = [0u8; MAX_IU_LEN];
        for (i, b) in out.iter_mut().enumerate().take(len) {
            *b = self.iu.read_volatile(i);
        }
        Ok((out, len))
    }

    fn exchange_mapped(
        &mut self,
        format: u8,
        tag: u64,
        ioba: Ioba,
        build: impl FnOnce(u64) -> Result<Iu, SrpError>,
    ) -> Result<usize, Failure> {
        let iu = build(ioba.0).map_err(Failure::Malformed)?;
        if iu.len > self.max_iu {
            return Err(Failure::Malformed(SrpError::Oversized {
                what: "request IU (beyond the login's limit)",
                len: iu.len,
            }));
        }
        let page = self.iu.bytes_mut();
        page[..MAX_IU_LEN].fill(0);
        page[..iu.len].copy_from_slice(iu.as_bytes());
        let entry = IuEntry::request(format, iu.len, ioba.0).map_err(Failure::Malformed)?;
        self.stats.requests += 1;
        self.ch.send(entry.encode()).map_err(Failure::Crq)?;
        match self.wait(tag) {
            Ok(e) => Ok(usize::from(e.len)),
            Err(f) => {
                if !matches!(f, Failure::EntryStatus(_) | Failure::Transport(_)) {
                    self.abandoned.push(tag);
                }
                Err(f)
            }
        }
    }

    /// Waits for the answer tagged `tag`.
    fn wait(&mut self, tag: u64) -> Result<IuEntry, Failure> {
        let mut wait = self.ch.patience();
        let unit = self.ch.unit().0;
        loop {
            let what = format_args!("v-scsi {unit:#x}: the answer to tag {tag}");
            match self.ch.receive(&mut wait, &what).map_err(Failure::Crq)? {
                Received::Message(b) => {
                    self.stats.received += 1;
                    let e = IuEntry::decode(&b).map_err(|e| {
                        self.stats.protocol_errors += 1;
                        Failure::Malformed(e)
                    })?;
                    if e.addr == tag {
                        if e.status != VIOSRP_OK {
                            return Err(Failure::EntryStatus(e.status));
                        }
                        return Ok(e);
                    }
                    if let Some(i) = self.abandoned.iter().position(|&t| t == e.addr) {
                        self.abandoned.swap_remove(i);
                        self.stats.late += 1;
                        continue;
                    }
                    self.stats.protocol_errors += 1;
                    return Err(Failure::UnknownTag {
                        got: e.addr,
                        want: tag,
                    });
                }
                Received::Reset(ev) => {
                    self.credits = 0;
                    self.abandoned.clear();
                    return Err(Failure::Transport(ev));
                }
                Received::TimedOut => {
                    return Err(Failure::Timeout {
                        waited_ms: self.ch.timeout_us() / 1000,
                        tag,
                        after: Recovery::NotTried,
                    });
                }
            }
        }
    }

    /// Reads `len` bytes of the bounce page that a device wrote.
    fn bounce_bytes(&self, len: usize) -> Vec<u8> {
        (0..len.min(self.bounce.len()))
            .map(|i| self.bounce.read_volatile(i))
            .collect()
    }

    /// MAD ADAPTER_INFO: what the server says about itself.
    pub fn adapter_info(&mut self) -> Result<AdapterInfo, VscsiError> {
        const OP: &str = "MAD ADAPTER_INFO";
        let name = String::from(self.ch.name());
        let tag = self.tag();
        self.bounce.bytes_mut().fill(0);
        let buf = self
            .map(
                self.bounce.addr(),
                mad::ADAPTER_INFO_LEN,
                Access::DeviceWrites,
            )
            .map_err(|f| self.error(&name, OP, f))?;
        let r = self.exchange(FORMAT_MAD, tag, |_| {
            Ok(iu_of(&mad::adapter_info_request(tag, buf.0)))
        });
        let u = self.unmap(buf, mad::ADAPTER_INFO_LEN);
        let (iu, n) = r.map_err(|f| self.error(&name, OP, f))?;
        u.map_err(|f| self.error(&name, OP, f))?;
        let m = mad::parse_adapter_info_response(&iu[..n], tag)
            .map_err(|e| self.error(&name, OP, Failure::Malformed(e)))?;
        if m.status != mad::MAD_SUCCESS {
            return Err(self.error(&name, OP, Failure::MadStatus(m.status)));
        }
        AdapterInfo::parse(&self.bounce_bytes(m.length.into()))
            .map_err(|e| self.error(&name, OP, Failure::Malformed(e)))
    }

    /// SRP_LOGIN: the target's grant, whose request limit the session then honours.
    pub fn login(&mut self) -> Result<Granted, VscsiError> {
        const OP: &str = "SRP_LOGIN";
        let name = String::from(self.ch.name());
        let tag = self.tag();
        let (iu, n) = self
            .exchange(FORMAT_SRP, tag, |_| {
                Ok(iu_of(&login::request(tag, MAX_IU_LEN as u32)))
            })
            .map_err(|f| self.error(&name, OP, f))?;
        match login::parse(&iu[..n], tag) {
            Ok(Login::Accepted(g)) => {
                self.credits = g.request_limit;
                self.max_iu = (g.max_it_iu_len as usize).min(MAX_IU_LEN);
                self.indirect = g.buf_formats & BUF_FORMAT_INDIRECT != 0;
                Ok(g)
            }
            Ok(Login::Rejected { reason }) => {
                Err(self.error(&name, OP, Failure::LoginRejected { reason }))
            }
            Err(e) => Err(self.error(&name, OP, Failure::Malformed(e))),
        }
    }

    /// The bytes one command may move: one direct descriptor of at most [`SEGMENT`] bytes,
    /// or, when the target takes indirect descriptors, up to [`MAX_INDIRECT`] of them.
    pub fn max_command_bytes(&self) -> u32 {
        SEGMENT * self.max_segments() as u32
    }

    /// Descriptors one command may carry: indirect ones inline as far as the login's IU
    /// length allows, else one direct descriptor.
    fn max_segments(&self) -> usize {
        let room = self
            .max_iu
            .saturating_sub(cmd::HEADER_LEN + cmd::INDIRECT_HEADER_LEN)
            / cmd::DESCRIPTOR_LEN;
        if self.indirect && room > 1 {
            room.min(MAX_INDIRECT)
        } else {
            1
        }
    }

    /// Describes `len` bytes at `ioba` (mapped contiguously) as segments of at most
    /// [`SEGMENT`] bytes; returns how many. The caller keeps `len` within
    /// [`Session::max_command_bytes`]; anything beyond the last segment is cut off, and the
    /// residual check then names it.
    fn segments(&self, ioba: Ioba, len: u32, out: &mut [Descriptor; MAX_INDIRECT]) -> usize {
        let limit = self.max_segments();
        let mut n = 0;
        let mut at = 0u32;
        while at < len && n < limit {
            let l = (len - at).min(SEGMENT);
            out[n] = Descriptor::new(ioba.0 + u64::from(at), l);
            at += l;
            n += 1;
        }
        n
    }

    /// Runs `cdb` on `lun` once; returns the bytes moved.
    fn command_once(&mut self, lun: [u8; 8], cdb: &Cdb, buf: Buffer) -> Result<u32, Failure> {
        if self.credits == 0 {
            return Err(Failure::NoCredit);
        }
        let tag = self.tag();
        let (mapped, data_in, data_out) = match buf {
            Buffer::None => (None, 0, 0),
            Buffer::In(a, n) => (
                Some((self.map(a, n as usize, Access::DeviceWrites)?, n)),
                n,
                0,
            ),
            Buffer::Out(a, n) => (
                Some((self.map(a, n as usize, Access::DeviceReads)?, n)),
                0,
                n,
            ),
        };
        let mut segments = [Descriptor::new(0, 0); MAX_INDIRECT];
        let d = mapped.map(|(ioba, n)| {
            let count = self.segments(ioba, n, &mut segments);
            &segments[..count]
        });
        let data = match (d, buf) {
            (Some(d), Buffer::In(..)) => Data::In(d),
            (Some(d), Buffer::Out(..)) => Data::Out(d),
            _ => Data::None,
        };
        self.credits -= 1;
        let r = self.exchange(FORMAT_SRP, tag, |ioba| {
            cmd::command(tag, lun, cdb, data, ioba)
        });
        let u = mapped.map_or(Ok(()), |(ioba, n)| self.unmap(ioba, n as usize));
        let (iu, n) = r?;
        u?;
        let e = Expect {
            tag,
            data_in,
            data_out,
        };
        let rsp = rsp::parse(&iu[..n], e).map_err(Failure::Malformed)?;
        self.credits = self.credits.saturating_add(rsp.req_lim_delta);
        match rsp.status {
            rsp::GOOD => {}
            // CHECK CONDITION without sense data says no more than its status.
            rsp::CHECK_CONDITION if rsp.sense.is_empty() => {
                return Err(Failure::Status(rsp::CHECK_CONDITION))
            }
            rsp::CHECK_CONDITION => {
                return Err(match Sense::parse(rsp.sense) {
                    Ok(s) => Failure::CheckCondition(s),
                    Err(e) => Failure::Malformed(e),
                })
            }
            s => return Err(Failure::Status(s)),
        }
        let residual = match (rsp.data_in, rsp.data_out) {
            (Residual::Under(r), _) | (_, Residual::Under(r)) => r,
            _ => 0,
        };
        Ok(data_in.max(data_out) - residual)
    }

    fn command(
        &mut self,
        device: &str,
        lun: [u8; 8],
        cdb: Cdb,
        buf: Buffer,
    ) -> Result<u32, VscsiError> {
        let mut tries = 0;
        loop {
            match self.command_once(lun, &cdb, buf) {
                Err(Failure::CheckCondition(s))
                    if s.key == UNIT_ATTENTION && tries < UNIT_ATTENTION_RETRIES =>
                {
                    tries += 1;
                    self.stats.unit_attentions += 1;
                }
                Err(Failure::Timeout { waited_ms, tag, .. }) => {
                    let after = self.recover(lun, tag);
                    let f = Failure::Timeout {
                        waited_ms,
                        tag,
                        after,
                    };
                    return Err(self.error(device, cdb::name(cdb.opcode()), f));
                }
                r => return r.map_err(|f| self.error(device, cdb::name(cdb.opcode()), f)),
            }
        }
    }

    /// After command `tag` on `lun` went unanswered: ABORT TASK, and LOGICAL UNIT RESET if
    /// that does not succeed, each within the timeout. The command's answer, if it still
    /// comes, is dropped (its tag is among the abandoned). The aborted command's request
    /// credit is not counted back: SRP returns credit only in a response's REQUEST LIMIT
    /// DELTA, and QEMU's v-scsi sends no response for an aborted command.
    fn recover(&mut self, lun: [u8; 8], tag: u64) -> Recovery {
        self.stats.aborts += 1;
        let abort = self.task_management(lun, tsk::ABORT_TASK, tag);
        if abort == Some(tsk::COMPLETE) {
            return Recovery::Aborted;
        }
        self.stats.resets_sent += 1;
        match self.task_management(lun, tsk::LOGICAL_UNIT_RESET, 0) {
            Some(tsk::COMPLETE) => Recovery::Reset { abort },
            reset => Recovery::Failed { abort, reset },
        }
    }

    /// Sends task management `function` for `lun` (and `task`); returns the response code,
    /// or `None` when there was no credit, no answer, or an answer that does not hold
    /// together (logged).
    fn task_management(&mut self, lun: [u8; 8], function: u8, task: u64) -> Option<u8> {
        if self.credits == 0 {
            log::warn!(
                "{}: no request credit for {}",
                self.ch.name(),
                tsk::function_name(function)
            );
            return None;
        }
        let tag = self.tag();
        self.credits -= 1;
        let r = self
            .exchange(FORMAT_SRP, tag, |_| {
                Ok(iu_of(&tsk::request(tag, lun, function, task)))
            })
            .and_then(|(iu, n)| tsk::parse_response(&iu[..n], tag).map_err(Failure::Malformed));
        match r {
            Ok(o) => {
                self.credits = self.credits.saturating_add(o.req_lim_delta);
                Some(o.code)
            }
            Err(f) => {
                log::warn!("{}: {}: {f}", self.ch.name(), tsk::function_name(function));
                None
            }
        }
    }

    /// Runs a command that moves no data.
    pub fn no_data(&mut self, device: &str, lun: [u8; 8], cdb: Cdb) -> Result<(), VscsiError> {
        self.command(device, lun, cdb, Buffer::None).map(|_| ())
    }

    /// Runs a command that returns at most `len` (<= 4096) bytes; returns what arrived.
    pub fn data_in(
        &mut self,
        device: &str,
        lun: [u8; 8],
        cdb: Cdb,
        len: usize,
    ) -> Result<Vec<u8>, VscsiError> {
        let len = len.min(self.bounce.len());
        self.bounce.bytes_mut().fill(0);
        let n = self.command(device, lun, cdb, Buffer::In(self.bounce.addr(), len as u32))?;
        Ok(self.bounce_bytes(n as usize))
    }

    /// Reads into `buf` with `cdb` (a READ); every byte must arrive.
    pub fn read(
        &mut self,
        device: &str,
        lun: [u8; 8],
        cdb: Cdb,
        buf: &mut [u8],
    ) -> Result<(), VscsiError> {
        let want = buf.len() as u32;
        // The device writes `buf` through the TCE while the command runs; `buf` stays borrowed
        // (and so in place) until the command is answered and its mapping removed.
        let addr = RealAddr(buf.as_mut_ptr() as u64);
        let moved = self.command(device, lun, cdb, Buffer::In(addr, want))?;
        self.whole(device, cdb, moved, want)
    }

    /// Writes `buf` with `cdb` (a WRITE); every byte must be taken.
    pub fn write(
        &mut self,
        device: &str,
        lun: [u8; 8],
        cdb: Cdb,
        buf: &[u8],
    ) -> Result<(), VscsiError> {
        let want = buf.len() as u32;
        let addr = RealAddr(buf.as_ptr() as u64);
        let moved = self.command(device, lun, cdb, Buffer::Out(addr, want))?;
        self.whole(device, cdb, moved, want)
    }

    fn whole(&self, device: &str, cdb: Cdb, moved: u32, wanted: u32) -> Result<(), VscsiError> {
        if moved == wanted {
            return Ok(());
        }
        Err(self.error(
            device,
            cdb::name(cdb.opcode()),
            Failure::Residual { moved, wanted },
        ))
    }

    /// Frees the CRQ and clears every TCE of the window: the adapter can reach nothing of
    /// ours afterwards. Idempotent.
    pub fn shut_down(&mut self) -> Result<(), VscsiError> {
        if self.closed {
            return Ok(());
        }
        self.closed = true;
        let name = String::from(self.ch.name());
        self.ch
            .close()
            .map_err(|e| self.error(&name, "shutdown", e.into()))
    }

    pub fn is_shut_down(&self) -> bool {
        self.closed
    }
}
