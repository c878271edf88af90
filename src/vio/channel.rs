//! One adapter's CRQ channel, as the CRQ protocols that are not virtio (v-scsi's SRP, the
//! vTPM's) open and use it: the adapter's TCE bypass turned off (where `/rtas` offers
//! `ibm,set-tce-bypass`), a TCE window registered, the CRQ registered with its INIT handshake;
//! then messages received with the partner's INIT and the hypervisor's transport events
//! answered on the way, every wait bounded; and on close the CRQ freed and every TCE of the
//! window cleared, so the adapter can reach nothing of ours afterwards.

use super::crq::{Crq, CrqError};
use super::tce::{self, Access, TceError, TceWindow};
use super::{Adapter, Patience};
use crate::hcall::{Ioba, RealAddr, UnitAddress};
use crate::rtas::{self, RtasError};
use alloc::string::String;
use core::fmt;
use papr::crq::{Entry, TransportEvent, ENTRY_LEN};

/// What opening or closing a channel ran into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelError {
    /// `ibm,set-tce-bypass` failed.
    Rtas(RtasError),
    Crq(CrqError),
    Tce(TceError),
}

impl fmt::Display for ChannelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChannelError::Rtas(e) => write!(f, "{e}"),
            ChannelError::Crq(e) => write!(f, "{e}"),
            ChannelError::Tce(e) => write!(f, "{e}"),
        }
    }
}

/// What a wait for the partner ended with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Received {
    /// A command or response entry.
    Message([u8; ENTRY_LEN]),
    /// The partner failed or went away; the CRQ is registered again, and whatever was in
    /// flight is lost.
    Reset(TransportEvent),
    /// Nothing came within the channel's timeout.
    TimedOut,
}

/// A registered window and CRQ for one adapter.
pub struct Channel {
    name: String,
    window: usize,
    crq: Crq,
    timeout_us: u64,
    /// IOBA pages in use while nothing is in flight (the CRQ, the reserved first page).
    standing: usize,
    resets: u64,
    strays: u64,
    closed: bool,
}

impl Channel {
    /// Bypass off, window, CRQ and handshake. On failure, names the step: the RTAS call, or
    /// `CRQ`.
    pub fn open(
        a: &Adapter,
        tce_bypass: Option<u32>,
        timeout_us: u64,
    ) -> Result<Channel, (&'static str, ChannelError)> {
        if let Some(token) = tce_bypass {
            rtas::call("ibm,set-tce-bypass", token, &[a.unit, 0], 1)
                .map_err(|e| ("ibm,set-tce-bypass", ChannelError::Rtas(e)))?;
        }
        let window = tce::register(TceWindow::new(a.window));
        let crq = match Crq::open(UnitAddress(a.unit), window, timeout_us) {
            Ok(c) => c,
            Err(e) => {
                let _ = tce::with(window, |w| w.clear_all());
                return Err(("CRQ", ChannelError::Crq(e)));
            }
        };
        let standing = tce::with(window, |w| w.pages_in_use()).unwrap_or(0);
        Ok(Channel {
            name: a.name.clone(),
            window,
            crq,
            timeout_us,
            standing,
            resets: 0,
            strays: 0,
            closed: false,
        })
    }

    /// The adapter's node name (`v-scsi@2000`).
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn unit(&self) -> UnitAddress {
        self.crq.unit()
    }

    pub fn timeout_us(&self) -> u64 {
        self.timeout_us
    }

    /// Transport events answered.
    pub fn resets(&self) -> u64 {
        self.resets
    }

    /// Entries that were neither a message, an INIT nor a transport event.
    pub fn strays(&self) -> u64 {
        self.strays
    }

    /// Maps `len` bytes at `addr` in the window for the adapter.
    pub fn map(&self, addr: RealAddr, len: usize, access: Access) -> Result<Ioba, TceError> {
        tce::with(self.window, |w| w.map(addr, len, access)).and_then(|r| r)
    }

    pub fn unmap(&self, ioba: Ioba, len: usize) -> Result<(), TceError> {
        tce::with(self.window, |w| w.unmap(ioba, len)).and_then(|r| r)
    }

    /// IOBA pages mapped now beyond the standing ones (0 between requests).
    pub fn pages_left_mapped(&self) -> usize {
        tce::with(self.window, |w| w.pages_in_use())
            .unwrap_or(0)
            .saturating_sub(self.standing)
    }

    pub fn send(&mut self, entry: [u8; ENTRY_LEN]) -> Result<(), CrqError> {
        self.crq.send(entry)
    }

    /// Whether the partner has queued an entry not taken yet (read without taking it).
    pub fn pending(&self) -> bool {
        self.crq.pending()
    }

    /// Takes and drops every entry queued now (at most one queue's worth); returns how many.
    pub fn discard_pending(&mut self) -> usize {
        let mut n = 0;
        while n < 256 && self.crq.poll().is_some() {
            n += 1;
        }
        n
    }

    /// A bound for one request's wait, the channel's timeout long.
    pub fn patience(&self) -> Patience {
        Patience::new(self.timeout_us)
    }

    /// Waits, within `wait`, for the next message. The partner's INIT is answered and its
    /// INIT COMPLETE ignored (QEMU's tpm-spapr echoes one after the handshake); a transport
    /// event registers the CRQ again and ends the wait. `what` names the wait in the console
    /// notes a slow partner gets.
    pub fn receive(
        &mut self,
        wait: &mut Patience,
        what: &dyn fmt::Display,
    ) -> Result<Received, CrqError> {
        loop {
            match self.crq.poll() {
                Some(Entry::Message(b)) => return Ok(Received::Message(b)),
                Some(Entry::Init) => {
                    let _ = self.crq.send(Entry::init(true));
                }
                Some(Entry::InitComplete) => {}
                Some(Entry::Transport(ev)) => {
                    self.resets += 1;
                    self.crq.recover(ev, self.timeout_us)?;
                    return Ok(Received::Reset(ev));
                }
                Some(Entry::Invalid(_)) => self.strays += 1,
                None => {
                    if wait.expired(what) {
                        return Ok(Received::TimedOut);
                    }
                }
            }
        }
    }

    /// Frees the CRQ and clears every TCE of the window. Idempotent.
    pub fn close(&mut self) -> Result<(), ChannelError> {
        if self.closed {
            return Ok(());
        }
        self.closed = true;
        let c = self.crq.close();
        let t = tce::with(self.window, |w| w.clear_all()).and_then(|r| r);
        c.map_err(ChannelError::Crq)?;
        t.map_err(ChannelError::Tce)
    }
}
