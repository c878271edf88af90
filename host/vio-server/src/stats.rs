//! Counters of what the server did, printed at exit.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

/// Counters; shared between the session, the devices and the binary (`Arc<Stats>`).
#[derive(Debug, Default)]
pub struct Stats {
    /// Connections (sessions) started.
    pub sessions: AtomicU64,
    /// CRQ entries from the guest.
    pub crq_in: AtomicU64,
    /// CRQ entries delivered to the guest.
    pub crq_out: AtomicU64,
    /// CRQ entries the guest's CRQ refused (H_CLOSED, H_DROPPED, ...).
    pub crq_refused: AtomicU64,
    pub rdma_reads: AtomicU64,
    pub rdma_writes: AtomicU64,
    pub rdma_read_bytes: AtomicU64,
    pub rdma_write_bytes: AtomicU64,
    /// Remote DMA the window refused.
    pub rdma_refused: AtomicU64,
    /// NOTIFY messages handled.
    pub notifies: AtomicU64,
    /// Descriptor chains served (virtio requests).
    pub requests: AtomicU64,
    /// Descriptor chains refused as malformed.
    pub bad_chains: AtomicU64,
    /// Bytes the device read from its backend for the guest.
    pub backend_read_bytes: AtomicU64,
    /// Bytes the device wrote to its backend for the guest.
    pub backend_write_bytes: AtomicU64,
}

impl Stats {
    /// Adds `n` to `counter`.
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Adds one to `counter`.
    pub fn inc(counter: &AtomicU64) {
        Self::add(counter, 1);
    }

    /// The value of `counter`.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let g = Self::get;
        write!(
            f,
            "sessions {}, crq in {} out {} refused {}, rdma reads {} ({} B) writes {} ({} B) \
             refused {}, notifies {}, requests {} (bad chains {}), backend read {} B written {} B",
            g(&self.sessions),
            g(&self.crq_in),
            g(&self.crq_out),
            g(&self.crq_refused),
            g(&self.rdma_reads),
            g(&self.rdma_read_bytes),
            g(&self.rdma_writes),
            g(&self.rdma_write_bytes),
            g(&self.rdma_refused),
            g(&self.notifies),
            g(&self.requests),
            g(&self.bad_chains),
            g(&self.backend_read_bytes),
            g(&self.backend_write_bytes),
        )
    }
}
