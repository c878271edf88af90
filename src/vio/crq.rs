//! The Command/Response Queue (PAPR): one 4 KiB page of 16-byte entries that the partner
//! fills through the hypervisor, registered by its IOBA in the adapter's own window.
//!
//! [`Crq::open`] maps and registers the queue and does the INIT handshake; [`Crq::poll`] takes
//! the next entry; transport events are answered by [`Crq::recover`] as Linux's ibmvscsi does
//! (partner failed or deregistered: free, clear, register again, INIT; migrated: H_ENABLE_CRQ,
//! INIT).

use super::tce::{self, Access, TceError};
use super::Patience;
use crate::arch;
use crate::hcall::{self, HcallError, Ioba, UnitAddress};
use crate::mem::DmaPages;
use core::fmt;
use papr::crq::{self as wire, Entry, TransportEvent, ENTRY_LEN};
use papr::status::{H_CLOSED, H_RESOURCE};

/// Bytes of the queue: one page, 256 entries.
const QUEUE_BYTES: usize = 4096;

/// Why the CRQ cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrqError {
    NoMemory,
    Tce(TceError),
    Hcall(HcallError),
    /// The partner did not complete the INIT handshake in time.
    HandshakeTimeout {
        waited_ms: u64,
    },
    /// H_SEND_CRQ said H_CLOSED: the partner has no queue (the server is not there).
    Closed,
}

impl fmt::Display for CrqError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CrqError::NoMemory => write!(f, "no page for the CRQ"),
            CrqError::Tce(e) => write!(f, "{e}"),
            CrqError::Hcall(e) => write!(f, "{e}"),
            CrqError::HandshakeTimeout { waited_ms } => {
                write!(f, "the partner did not answer INIT within {waited_ms} ms (is the VIO server running?)")
            }
            CrqError::Closed => write!(f, "the partner's queue is closed (H_CLOSED)"),
        }
    }
}

impl From<HcallError> for CrqError {
    fn from(e: HcallError) -> Self {
        if e.is(H_CLOSED) {
            CrqError::Closed
        } else {
            CrqError::Hcall(e)
        }
    }
}

impl From<TceError> for CrqError {
    fn from(e: TceError) -> Self {
        CrqError::Tce(e)
    }
}

/// What the queue has seen, for the report and the tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CrqStats {
    pub received: u64,
    /// Transport events answered by re-registering or re-enabling the queue.
    pub recoveries: u64,
    /// Entries that are neither INIT, a message nor a transport event.
    pub invalid: u64,
}

/// One adapter's CRQ.
pub struct Crq {
    unit: UnitAddress,
    window: usize,
    queue: DmaPages,
    ioba: Ioba,
    head: usize,
    closed: bool,
    stats: CrqStats,
}

impl Crq {
    /// Maps a queue page in window `window`, registers it and does the handshake.
    pub fn open(unit: UnitAddress, window: usize, timeout_us: u64) -> Result<Crq, CrqError> {
        let queue = DmaPages::alloc(1).ok_or(CrqError::NoMemory)?;
        let ioba = tce::with(window, |w| w.map(queue.addr(), QUEUE_BYTES, Access::Both))??;
        let mut crq = Crq {
            unit,
            window,
            queue,
            ioba,
            head: 0,
            closed: false,
            stats: CrqStats::default(),
        };
        // On failure `crq` is dropped, which frees the registration and unmaps the page.
        crq.register()?;
        crq.handshake(timeout_us)?;
        Ok(crq)
    }

    pub fn unit(&self) -> UnitAddress {
        self.unit
    }

    /// H_REG_CRQ; on H_RESOURCE (a queue left registered, e.g. by firmware before us) free it
    /// and register once more.
    fn register(&mut self) -> Result<(), CrqError> {
        match hcall::reg_crq(self.unit, self.ioba, QUEUE_BYTES as u64) {
            Err(e) if e.is(H_RESOURCE) => {
                hcall::free_crq(self.unit)?;
                hcall::reg_crq(self.unit, self.ioba, QUEUE_BYTES as u64)?;
            }
            r => r?,
        }
        self.head = 0;
        Ok(())
    }

    /// Sends INIT and waits for the partner: an INIT (answered with INIT COMPLETE) or an INIT
    /// COMPLETE. H_CLOSED on our INIT only means the partner is not there yet.
    pub fn handshake(&mut self, timeout_us: u64) -> Result<(), CrqError> {
        match self.send(Entry::init(false)) {
            Ok(()) | Err(CrqError::Closed) => {}
            Err(e) => return Err(e),
        }
        self.await_init(timeout_us)
    }

    /// Sets the queue up again for a partner that failed for good earlier and may be back:
    /// the page mapped again if the queue was closed, then H_FREE_CRQ, the queue cleared
    /// (an INIT the partner sent meanwhile is dropped with it), H_REG_CRQ and INIT. Unlike
    /// [`handshake`](Self::handshake), H_CLOSED on that INIT (no partner there) fails at once:
    /// the caller tries again later rather than waiting for it.
    pub fn rejoin(&mut self, timeout_us: u64) -> Result<(), CrqError> {
        if self.closed {
            self.ioba = tce::with(self.window, |w| {
                w.map(self.queue.addr(), QUEUE_BYTES, Access::Both)
            })??;
            self.closed = false;
        }
        self.reset_queue(TransportEvent::PartnerFailed)?;
        self.send(Entry::init(false))?;
        self.await_init(timeout_us)
    }

    /// Waits for the partner's side of the handshake after our INIT: its INIT (answered with
    /// INIT COMPLETE) or its INIT COMPLETE; a transport event meanwhile starts it over.
    fn await_init(&mut self, timeout_us: u64) -> Result<(), CrqError> {
        let mut wait = Patience::new(timeout_us);
        loop {
            match self.poll() {
                Some(Entry::Init) => {
                    match self.send(Entry::init(true)) {
                        Ok(()) => return Ok(()),
                        // The partner went away again between its INIT and our answer.
                        Err(CrqError::Closed) => {}
                        Err(e) => return Err(e),
                    }
                }
                Some(Entry::InitComplete) => return Ok(()),
                Some(Entry::Transport(ev)) => {
                    self.reset_queue(ev)?;
                    let _ = self.send(Entry::init(false));
                }
                Some(_) => {}
                None => {
                    let unit = self.unit.0;
                    if wait.expired(&format_args!("CRQ {unit:#x}: the partner's INIT")) {
                        return Err(CrqError::HandshakeTimeout {
                            waited_ms: timeout_us / 1000,
                        });
                    }
                }
            }
        }
    }

    /// Sends one entry (H_BUSY is retried by the hcall layer).
    pub fn send(&mut self, entry: [u8; ENTRY_LEN]) -> Result<(), CrqError> {
        let (w0, w1) = wire::to_words(&entry);
        hcall::send_crq(self.unit, w0, w1)?;
        Ok(())
    }

    /// Whether the partner has written an entry not taken yet.
    pub fn pending(&self) -> bool {
        wire::is_valid(self.queue.read_volatile(self.head * ENTRY_LEN))
    }

    /// Takes the next entry, if the partner has written one.
    pub fn poll(&mut self) -> Option<Entry> {
        let at = self.head * ENTRY_LEN;
        if !wire::is_valid(self.queue.read_volatile(at)) {
            return None;
        }
        // The partner writes bytes 8..15 before byte 0: order our reads after the valid byte.
        arch::sync();
        let mut e = [0u8; ENTRY_LEN];
        for (i, b) in e.iter_mut().enumerate() {
            *b = self.queue.read_volatile(at + i);
        }
        // Give the slot back only after the entry is copied out.
        arch::sync();
        self.queue.write_volatile(at, 0);
        self.head = (self.head + 1) % (QUEUE_BYTES / ENTRY_LEN);
        self.stats.received += 1;
        let entry = Entry::parse(e);
        if matches!(entry, Entry::Invalid(_)) {
            self.stats.invalid += 1;
        }
        Some(entry)
    }

    /// Brings the queue back after a transport event, without the handshake.
    fn reset_queue(&mut self, ev: TransportEvent) -> Result<(), CrqError> {
        self.stats.recoveries += 1;
        match ev {
            TransportEvent::Migrated => hcall::enable_crq(self.unit)?,
            _ => {
                // The partner is gone: drop our registration, forget every entry, register again.
                let _ = hcall::free_crq(self.unit);
                self.queue.bytes_mut().fill(0);
                self.register()?;
            }
        }
        Ok(())
    }

    /// Answers a transport event: re-register (or re-enable) and INIT again.
    pub fn recover(&mut self, ev: TransportEvent, timeout_us: u64) -> Result<(), CrqError> {
        self.reset_queue(ev)?;
        self.handshake(timeout_us)
    }

    /// Frees the queue and unmaps its page (before a kernel takes over, or on giving up).
    /// Idempotent; the page itself is returned when the `Crq` is dropped.
    pub fn close(&mut self) -> Result<(), CrqError> {
        if self.closed {
            return Ok(());
        }
        self.closed = true;
        let r = hcall::free_crq(self.unit).map_err(CrqError::from);
        let u = tce::with(self.window, |w| w.unmap(self.ioba, QUEUE_BYTES));
        r?;
        u??;
        Ok(())
    }

    pub fn stats(&self) -> CrqStats {
        self.stats
    }

    pub fn is_closed(&self) -> bool {
        self.closed
    }
}

impl Drop for Crq {
    /// The queue's page goes back to the pool: neither the hypervisor nor the partner may write
    /// it any more.
    fn drop(&mut self) {
        let _ = self.close();
    }
}
