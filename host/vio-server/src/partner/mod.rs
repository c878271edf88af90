//! What the hypervisor gives a VIO server, as one trait: deliver a CRQ entry to the guest, move
//! bytes through the guest's TCE window by remote DMA, and report what the guest did.
//!
//! - [`socket::SocketPartner`]: QEMU's `spapr-virtio-vio` device over a UNIX socket
//!   (`docs/vio-socket.md`).
//! - [`fake::FakeGuest`]: in memory, for tests that play the guest.

pub mod fake;
pub mod socket;

use crate::hcall::PartnerError;
use papr::crq::ENTRY_LEN;
use std::time::Duration;

/// Largest remote DMA one socket frame carries; the socket partner splits larger transfers.
pub const MAX_RDMA: usize = 0x10_0000;

/// What the partner says about the adapter when a connection starts (the socket's HELLO).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hello {
    pub version: u32,
    pub unit_address: u32,
    pub liobn: u32,
    /// Bit 0: the guest had a CRQ registered when the partner said hello (informational).
    pub flags: u32,
    /// First IOBA of the guest's DMA window.
    pub window_ioba: u64,
    /// Bytes in the DMA window.
    pub window_size: u64,
}

/// Something the partner reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// A (new) connection: a fresh session starts.
    Connected(Hello),
    /// The guest's H_SEND_CRQ delivered this entry.
    GuestCrq([u8; ENTRY_LEN]),
    /// The adapter was reset (machine reset): the guest's CRQ is gone and its TCEs are cleared.
    Reset,
    /// The connection is gone; a later [`Partner::next_event`] may report a new one.
    Disconnected,
}

/// One remote DMA of a batch ([`Partner::rdma_batch`]).
#[derive(Debug)]
pub enum Rdma<'a> {
    /// Guest memory at `ioba` into `buf` (the TCEs must allow device reads).
    Read { ioba: u64, buf: &'a mut [u8] },
    /// `data` into guest memory at `ioba` (the TCEs must allow device writes).
    Write { ioba: u64, data: &'a [u8] },
}

/// The hypervisor side a VIO server talks to.
///
/// The RDMA calls accept any length; an implementation with a per-transfer limit splits (a split
/// transfer is then all-or-nothing per piece, not as a whole).
pub trait Partner {
    /// Delivers one entry into the guest's CRQ (the server's H_SEND_CRQ).
    fn send_crq(&mut self, entry: [u8; ENTRY_LEN]) -> Result<(), PartnerError>;
    /// Reads guest memory at `ioba` through the TCE window (the TCEs must allow device reads).
    fn rdma_read(&mut self, ioba: u64, buf: &mut [u8]) -> Result<(), PartnerError>;
    /// Writes guest memory at `ioba` through the TCE window (the TCEs must allow device writes).
    fn rdma_write(&mut self, ioba: u64, data: &[u8]) -> Result<(), PartnerError>;
    /// Runs `ops` in order and gives one result each. A partner may have them all in flight
    /// at once (the socket sends every request before it waits for the first reply; QEMU
    /// serves them in order), so a batch costs one round trip instead of one per transfer.
    /// Each transfer succeeds or fails on its own, as if it had been asked alone.
    fn rdma_batch(&mut self, ops: &mut [Rdma<'_>]) -> Vec<Result<(), PartnerError>> {
        ops.iter_mut()
            .map(|op| match op {
                Rdma::Read { ioba, buf } => self.rdma_read(*ioba, buf),
                Rdma::Write { ioba, data } => self.rdma_write(*ioba, data),
            })
            .collect()
    }
    /// The next event, waiting at most about `timeout`; `None` if nothing happened.
    fn next_event(&mut self, timeout: Duration) -> Option<Event>;
    /// Drops the connection (the guest then sees "partner failed"); a later `next_event` may
    /// connect again.
    fn disconnect(&mut self);
}
