//! A vTPM session: TPM commands over one adapter's CRQ (QEMU's tpm-spapr, PowerVM's vTPM; the
//! protocol Linux's tpm_ibmvtpm speaks).
//!
//! [`Vtpm::open`] turns the adapter's TCE bypass off (where `/rtas` offers
//! `ibm,set-tce-bypass`: SLOF leaves the vTPM in bypass), registers a TCE window and the CRQ
//! and does the INIT handshake, then asks GET_VERSION and GET_RTCE_BUFFER_SIZE. Each command
//! goes through one 4 KiB page mapped in the window only while the command runs (QEMU reads the
//! whole 4 KiB whatever the length); the response length the CRQ answer gives is checked
//! against the page and the vTPM's buffer size before a byte is read. A command not answered
//! within the timeout ends with a named failure, the page unmapped, and the session refuses
//! further commands (the vTPM would answer a new one with H_BUSY). Wire formats: the `tpm`
//! crate.

use super::channel::{Channel, ChannelError, Received};
use super::crq::CrqError;
use super::tce::{Access, TceError};
use super::Adapter;
use crate::hcall::Ioba;
use crate::mem::DmaPages;
use crate::rtas::RtasError;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use papr::crq::TransportEvent;
use tpm::crq::{self as wire, Answer, BUFFER_SIZE};
use tpm::TpmError;

/// What went wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    Tce(TceError),
    Crq(CrqError),
    /// `ibm,set-tce-bypass` failed.
    Rtas(RtasError),
    NoMemory,
    /// An answer that does not hold together, or the TPM's own error code.
    Tpm(TpmError),
    /// No answer within the timeout.
    Timeout {
        waited_ms: u64,
    },
    /// A response longer than the buffer it was written to.
    TooLong {
        len: usize,
        buffer: usize,
    },
    /// An answer to a message other than the one in flight.
    Unasked(Answer),
    /// The TPM version is not 2.
    Version(u32),
    /// The partner failed or went away; the CRQ is registered again.
    Transport(TransportEvent),
    /// A command timed out earlier, or the adapter was shut down.
    ShutDown,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Tce(e) => write!(f, "{e}"),
            Failure::Crq(e) => write!(f, "{e}"),
            Failure::Rtas(e) => write!(f, "ibm,set-tce-bypass: {e}"),
            Failure::NoMemory => write!(f, "no DMA page left"),
            Failure::Tpm(e) => write!(f, "{e}"),
            Failure::Timeout { waited_ms } => write!(f, "no answer within {waited_ms} ms"),
            Failure::TooLong { len, buffer } => {
                write!(f, "a {len}-byte response for a {buffer}-byte buffer")
            }
            Failure::Unasked(a) => write!(f, "an answer nobody asked for: {a:?}"),
            Failure::Version(v) => write!(f, "TPM version {v} (only TPM 2.0 is supported)"),
            Failure::Transport(ev) => {
                write!(f, "transport event {ev:?}: the CRQ was registered again")
            }
            Failure::ShutDown => write!(f, "the vTPM is shut down (or gave no answer before)"),
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

/// A vTPM failure: which adapter, which operation, what went wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VtpmError {
    pub device: String,
    pub op: &'static str,
    pub failure: Failure,
}

impl fmt::Display for VtpmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: {}", self.device, self.op, self.failure)
    }
}

/// Counters for the report.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VtpmStats {
    pub commands: u64,
    pub received: u64,
    pub protocol_errors: u64,
    pub resets: u64,
}

/// One vTPM adapter's session.
pub struct Vtpm {
    ch: Channel,
    /// The command/response page.
    page: DmaPages,
    /// The largest command the vTPM takes (GET_RTCE_BUFFER_SIZE, at most 4 KiB).
    buffer: usize,
    version: u32,
    stats: VtpmStats,
    closed: bool,
}

impl Vtpm {
    /// Bypass off, window, CRQ and handshake; then the version (2 required) and buffer size.
    pub fn open(a: &Adapter, tce_bypass: Option<u32>, timeout_us: u64) -> Result<Vtpm, VtpmError> {
        let fail = |op, failure| VtpmError {
            device: a.name.clone(),
            op,
            failure,
        };
        let Some(page) = DmaPages::alloc(1) else {
            return Err(fail("open", Failure::NoMemory));
        };
        let ch = Channel::open(a, tce_bypass, timeout_us).map_err(|(op, e)| fail(op, e.into()))?;
        let mut v = Vtpm {
            ch,
            page,
            buffer: BUFFER_SIZE,
            version: 0,
            stats: VtpmStats::default(),
            closed: false,
        };
        let r = v.identify();
        if r.is_err() {
            let _ = v.shut_down();
        }
        r.map(|()| v)
    }

    fn identify(&mut self) -> Result<(), VtpmError> {
        let name = String::from(self.ch.name());
        let fail = |op, failure| VtpmError {
            device: name.clone(),
            op,
            failure,
        };
        self.ch
            .send(wire::request(wire::GET_VERSION, 0, 0))
            .map_err(|e| fail("GET_VERSION", Failure::Crq(e)))?;
        match self.wait().map_err(|f| fail("GET_VERSION", f))? {
            Answer::Version(2) => self.version = 2,
            Answer::Version(v) => return Err(fail("GET_VERSION", Failure::Version(v))),
            a => return Err(fail("GET_VERSION", Failure::Unasked(a))),
        }
        self.ch
            .send(wire::request(wire::GET_RTCE_BUFFER_SIZE, 0, 0))
            .map_err(|e| fail("GET_RTCE_BUFFER_SIZE", Failure::Crq(e)))?;
        match self.wait().map_err(|f| fail("GET_RTCE_BUFFER_SIZE", f))? {
            Answer::BufferSize(n) if n >= 10 => self.buffer = usize::from(n).min(BUFFER_SIZE),
            a => return Err(fail("GET_RTCE_BUFFER_SIZE", Failure::Unasked(a))),
        }
        Ok(())
    }

    pub fn name(&self) -> &str {
        self.ch.name()
    }

    pub fn version(&self) -> u32 {
        self.version
    }

    /// The largest command (and response) the vTPM takes.
    pub fn buffer_size(&self) -> usize {
        self.buffer
    }

    pub fn stats(&self) -> VtpmStats {
        VtpmStats {
            resets: self.ch.resets(),
            protocol_errors: self.stats.protocol_errors + self.ch.strays(),
            ..self.stats
        }
    }

    /// IOBA pages mapped now beyond the CRQ (0 between commands).
    pub fn pages_left_mapped(&self) -> usize {
        self.ch.pages_left_mapped()
    }

    /// Waits for the next answer.
    fn wait(&mut self) -> Result<Answer, Failure> {
        let mut wait = self.ch.patience();
        let unit = self.ch.unit().0;
        let what = format_args!("vTPM {unit:#x}: the answer");
        match self.ch.receive(&mut wait, &what).map_err(Failure::Crq)? {
            Received::Message(b) => {
                self.stats.received += 1;
                match wire::parse(&b) {
                    Ok(Answer::Error) => Err(Failure::Tpm(TpmError::CrqError)),
                    Ok(a) => Ok(a),
                    Err(e) => {
                        self.stats.protocol_errors += 1;
                        Err(Failure::Tpm(e))
                    }
                }
            }
            Received::Reset(ev) => Err(Failure::Transport(ev)),
            Received::TimedOut => Err(Failure::Timeout {
                waited_ms: self.ch.timeout_us() / 1000,
            }),
        }
    }

    /// Runs one TPM command; returns the response's bytes (their TPM header is the caller's to
    /// check, with `tpm::cmd`).
    pub fn command(&mut self, op: &'static str, cmd: &[u8]) -> Result<Vec<u8>, VtpmError> {
        self.command_inner(cmd).map_err(|failure| VtpmError {
            device: String::from(self.ch.name()),
            op,
            failure,
        })
    }

    fn command_inner(&mut self, cmd: &[u8]) -> Result<Vec<u8>, Failure> {
        if self.closed {
            return Err(Failure::ShutDown);
        }
        if cmd.len() > self.buffer {
            return Err(Failure::TooLong {
                len: cmd.len(),
                buffer: self.buffer,
            });
        }
        let page = self.page.bytes_mut();
        page.fill(0);
        page[..cmd.len()].copy_from_slice(cmd);
        let ioba = self
            .ch
            .map(self.page.addr(), BUFFER_SIZE, Access::Both)
            .map_err(Failure::Tce)?;
        let r = self.run(cmd.len(), ioba);
        let u = self.ch.unmap(ioba, BUFFER_SIZE);
        if matches!(r, Err(Failure::Timeout { .. })) {
            // The vTPM may still be working on it: send nothing more.
            self.closed = true;
        }
        let len = r?;
        u.map_err(Failure::Tce)?;
        if len > self.buffer || len > BUFFER_SIZE {
            self.stats.protocol_errors += 1;
            return Err(Failure::TooLong {
                len,
                buffer: self.buffer,
            });
        }
        Ok((0..len).map(|i| self.page.read_volatile(i)).collect())
    }

    fn run(&mut self, len: usize, ioba: Ioba) -> Result<usize, Failure> {
        let entry = wire::command(len, ioba.0).map_err(Failure::Tpm)?;
        self.stats.commands += 1;
        self.ch.send(entry).map_err(Failure::Crq)?;
        match self.wait()? {
            Answer::Response(n) => Ok(n.into()),
            a => {
                self.stats.protocol_errors += 1;
                Err(Failure::Unasked(a))
            }
        }
    }

    /// Frees the CRQ and clears every TCE of the window. Idempotent.
    pub fn shut_down(&mut self) -> Result<(), VtpmError> {
        self.closed = true;
        self.ch.close().map_err(|e| VtpmError {
            device: String::from(self.ch.name()),
            op: "shutdown",
            failure: e.into(),
        })
    }
}
