//! A virtio-vio link: requests and responses over one adapter's CRQ.
//!
//! One request is outstanding at a time; its response is matched by tag and opcode. Server
//! notices (USED, CONFIG_CHANGED) that arrive meanwhile are recorded. A transport event, or an
//! INIT from a restarted server, re-establishes the CRQ and ends the request with
//! [`LinkError::Reset`]: the caller must set the device up again (replay) and retry.

use super::crq::{Crq, CrqError};
use super::Patience;
use crate::hcall::UnitAddress;
use core::fmt;
use papr::crq::{Entry, TransportEvent};
use virtio_vio::header::MAX_QUEUES;
use virtio_vio::msg::{Message, Opcode, Status};

/// Why a request did not complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkError {
    Crq(CrqError),
    /// No response within the timeout.
    Timeout {
        op: &'static str,
        waited_ms: u64,
    },
    /// The server refused the request.
    Refused {
        op: &'static str,
        status: Status,
    },
    /// A response with a status byte the protocol does not have.
    BadStatus {
        op: &'static str,
        byte: u8,
    },
    /// The partner failed or restarted; the CRQ is up again and the device must be replayed.
    Reset,
}

impl fmt::Display for LinkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LinkError::Crq(e) => write!(f, "{e}"),
            LinkError::Timeout { op, waited_ms } => {
                write!(f, "{op}: no answer within {waited_ms} ms")
            }
            LinkError::Refused { op, status } => write!(f, "{op} refused: {status}"),
            LinkError::BadStatus { op, byte } => {
                write!(f, "{op}: response status {byte} is not defined")
            }
            LinkError::Reset => write!(f, "the VIO server failed or restarted"),
        }
    }
}

impl From<CrqError> for LinkError {
    fn from(e: CrqError) -> Self {
        LinkError::Crq(e)
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinkStats {
    pub requests: u64,
    pub notifies: u64,
    pub used_notices: u64,
    /// Entries dropped: unknown opcodes, foreign formats, unmatched responses, bad queue
    /// indexes, invalid CRQ entries.
    pub protocol_errors: u64,
    pub resets: u64,
    /// Of `resets`, those the hypervisor's "partner migrated" event began.
    pub migrations: u64,
}

pub struct Link {
    crq: Crq,
    next_tag: u16,
    /// How long a request, a handshake or a USED may take.
    pub timeout_us: u64,
    /// Queues with a USED notice not yet consumed.
    used_pending: u64,
    /// Number of queues the device has (USED for others is a protocol error).
    pub queues: u16,
    pub config_changed: bool,
    pub stats: LinkStats,
}

impl Link {
    pub fn new(crq: Crq, timeout_us: u64) -> Link {
        Link {
            crq,
            next_tag: 1,
            timeout_us,
            used_pending: 0,
            queues: MAX_QUEUES as u16,
            config_changed: false,
            stats: LinkStats::default(),
        }
    }

    pub fn unit(&self) -> UnitAddress {
        self.crq.unit()
    }

    pub fn crq(&self) -> &Crq {
        &self.crq
    }

    pub fn crq_mut(&mut self) -> &mut Crq {
        &mut self.crq
    }

    /// Forgets notices of a session that ended (USED, CONFIG_CHANGED): a new one starts.
    pub fn forget_notices(&mut self) {
        self.used_pending = 0;
        self.config_changed = false;
    }

    /// Sends `msg` (its tag is assigned here) and waits for its response.
    pub fn request(&mut self, mut msg: Message) -> Result<Message, LinkError> {
        msg.tag = self.next_tag;
        self.next_tag = self.next_tag.wrapping_add(1).max(1);
        self.stats.requests += 1;
        self.send(&msg)?;
        let op = msg.opcode.name();
        let mut wait = Patience::new(self.timeout_us);
        loop {
            if let Some(r) = self.step()? {
                if r.response && r.tag == msg.tag && r.opcode == msg.opcode {
                    return match r.status() {
                        Some(Status::Ok) => Ok(r),
                        Some(status) => Err(LinkError::Refused { op, status }),
                        None => Err(LinkError::BadStatus { op, byte: r.byte3 }),
                    };
                }
                // A response to something we are not waiting for.
                self.stats.protocol_errors += 1;
                log::warn!(
                    "virtio-vio {:#x}: dropped unexpected {:?}",
                    self.unit().0,
                    r
                );
            }
            let unit = self.unit().0;
            if wait.expired(&format_args!("virtio-vio {unit:#x}: the answer to {op}")) {
                return Err(LinkError::Timeout {
                    op,
                    waited_ms: self.timeout_us / 1000,
                });
            }
        }
    }

    /// Sends NOTIFY(queue); the server answers with USED(queue) (see [`wait_used`](Self::wait_used)).
    pub fn notify(&mut self, queue: u16) -> Result<(), LinkError> {
        // Whatever is queued now was sent before this NOTIFY and cannot answer it: handle it
        // first, so a stale USED (or a flood of them) is not taken for this one's answer.
        while self.crq.pending() {
            if let Some(r) = self.step()? {
                self.stats.protocol_errors += 1;
                log::warn!(
                    "virtio-vio {:#x}: dropped unexpected response {:?}",
                    self.unit().0,
                    r
                );
            }
        }
        self.used_pending &= !(1u64 << (queue % 64));
        self.stats.notifies += 1;
        self.send(&Message::request(Opcode::Notify, 0, queue, 0))
    }

    /// Waits for a USED notice for `queue`.
    pub fn wait_used(&mut self, queue: u16) -> Result<(), LinkError> {
        let mut wait = Patience::new(self.timeout_us);
        loop {
            if self.used_pending & (1u64 << (queue % 64)) != 0 {
                self.used_pending &= !(1u64 << (queue % 64));
                return Ok(());
            }
            if let Some(r) = self.step()? {
                self.stats.protocol_errors += 1;
                log::warn!(
                    "virtio-vio {:#x}: dropped unexpected response {:?}",
                    self.unit().0,
                    r
                );
            }
            let unit = self.unit().0;
            if wait.expired(&format_args!(
                "virtio-vio {unit:#x}: USED for queue {queue}"
            )) {
                return Err(LinkError::Timeout {
                    op: "NOTIFY (waiting for USED)",
                    waited_ms: self.timeout_us / 1000,
                });
            }
        }
    }

    fn send(&mut self, msg: &Message) -> Result<(), LinkError> {
        match self.crq.send(msg.encode()) {
            Ok(()) => Ok(()),
            // The server is gone: its transport event is on the way (or already queued).
            Err(CrqError::Closed) => Err(self.await_partner()),
            Err(e) => Err(e.into()),
        }
    }

    /// After H_CLOSED: waits for the partner's return (a transport event, then the handshake).
    fn await_partner(&mut self) -> LinkError {
        let mut wait = Patience::new(self.timeout_us);
        let unit = self.unit().0;
        while !wait.expired(&format_args!(
            "virtio-vio {unit:#x}: the VIO server to come back"
        )) {
            match self.step() {
                Err(e) => return e,
                Ok(_) => continue,
            }
        }
        LinkError::Crq(CrqError::Closed)
    }

    /// Handles one CRQ entry, if there is one; returns it if it is a response.
    fn step(&mut self) -> Result<Option<Message>, LinkError> {
        let Some(entry) = self.crq.poll() else {
            return Ok(None);
        };
        match entry {
            Entry::Message(bytes) => match Message::decode(&bytes) {
                Ok(m) if m.response => return Ok(Some(m)),
                Ok(m) => self.notice(m),
                Err(e) => {
                    self.stats.protocol_errors += 1;
                    log::warn!("virtio-vio {:#x}: dropped entry: {e}", self.unit().0);
                }
            },
            Entry::Transport(ev) => {
                if ev == TransportEvent::Migrated {
                    log::warn!(
                        "virtio-vio {:#x}: the partition migrated; re-enabling the CRQ and \
                         setting the device up again with the server now serving it",
                        self.unit().0
                    );
                    self.stats.migrations += 1;
                } else {
                    log::warn!(
                        "virtio-vio {:#x}: transport event {ev:?}; re-establishing the CRQ",
                        self.unit().0
                    );
                }
                self.stats.resets += 1;
                self.crq.recover(ev, self.timeout_us)?;
                return Err(LinkError::Reset);
            }
            Entry::Init => {
                // A server that restarted without a transport event: complete its handshake.
                self.stats.resets += 1;
                self.crq.send(Entry::init(true))?;
                return Err(LinkError::Reset);
            }
            Entry::InitComplete => {}
            Entry::Invalid(b) => {
                self.stats.protocol_errors += 1;
                log::warn!(
                    "virtio-vio {:#x}: dropped invalid CRQ entry {b:02x?}",
                    self.unit().0
                );
            }
        }
        Ok(None)
    }

    fn notice(&mut self, m: Message) {
        match m.opcode {
            Opcode::Used if m.arg16 < self.queues => {
                self.stats.used_notices += 1;
                self.used_pending |= 1u64 << m.arg16;
            }
            Opcode::ConfigChanged => self.config_changed = true,
            _ => {
                self.stats.protocol_errors += 1;
                log::warn!(
                    "virtio-vio {:#x}: dropped unexpected {} (arg16 {})",
                    self.unit().0,
                    m.opcode.name(),
                    m.arg16
                );
            }
        }
    }
}
