//! An in-memory partner for tests in which the test plays the guest.
//!
//! It holds a sparse "guest memory" keyed by IOBA, with TCE permissions per 4 KiB page
//! (`papr::tce::TCE_READ`, `TCE_WRITE`), and refuses remote DMA outside the window,
//! to an unmapped page or without the permission with `H_DEST_PARM` (-14), all-or-nothing, as
//! QEMU's device model does. What the server sends into the guest's CRQ is kept in a queue the
//! test drains; the guest's own entries are handed to the server by the test.

use super::{Event, Hello, Partner};
use crate::hcall::PartnerError;
use papr::crq::{self, ENTRY_LEN};
use papr::status::{H_CLOSED, H_DEST_PARM, H_DROPPED, H_PARAMETER};
use papr::tce::{TCE_PAGE_SIZE, TCE_READ, TCE_WRITE};
use std::collections::{HashMap, VecDeque};
use std::time::Duration;

/// Slots of the fake guest CRQ (one 4 KiB page of 16-byte entries).
pub const CRQ_SLOTS: usize = 256;

/// Counts of what the server did to the fake guest.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct FakeCounts {
    pub rdma_reads: u64,
    pub rdma_writes: u64,
    pub refused: u64,
    pub crq_sent: u64,
    pub disconnects: u64,
}

/// The fake guest: memory, TCEs and a CRQ.
pub struct FakeGuest {
    hello: Hello,
    pages: HashMap<u64, Box<[u8; TCE_PAGE_SIZE as usize]>>,
    /// TCE permission bits of each mapped page, by page number.
    tces: HashMap<u64, u64>,
    /// Whether the guest has a CRQ registered: without one, `send_crq` gives `H_CLOSED`.
    pub crq_open: bool,
    /// Entries the server delivered that the test has not taken yet.
    crq: VecDeque<[u8; ENTRY_LEN]>,
    /// Undrained entries at which `send_crq` gives `H_DROPPED`.
    pub crq_slots: usize,
    /// Events `next_event` hands out, in order.
    pub events: VecDeque<Event>,
    /// Whether the server dropped the connection.
    pub connected: bool,
    pub counts: FakeCounts,
    /// Every refused RDMA: (ioba, len, write).
    pub refusals: Vec<(u64, usize, bool)>,
}

impl FakeGuest {
    /// A guest whose adapter has a window of `window_size` bytes at IOBA `window_ioba`, no CRQ,
    /// nothing mapped. Its first event is `Connected` with that window.
    pub fn new(window_ioba: u64, window_size: u64) -> FakeGuest {
        let hello = Hello {
            version: 1,
            unit_address: 0x7100_0010,
            liobn: 0x7100_0010,
            flags: 0,
            window_ioba,
            window_size,
        };
        FakeGuest {
            hello,
            pages: HashMap::new(),
            tces: HashMap::new(),
            crq_open: false,
            crq: VecDeque::new(),
            crq_slots: CRQ_SLOTS,
            events: VecDeque::from([Event::Connected(hello)]),
            connected: true,
            counts: FakeCounts::default(),
            refusals: Vec::new(),
        }
    }

    /// The HELLO this guest's partner reports.
    pub fn hello(&self) -> Hello {
        self.hello
    }

    /// Maps every page touching `[ioba, ioba+len)` with `perms`, `TCE_READ` and/or `TCE_WRITE`
    /// (H_PUT_TCE).
    pub fn map(&mut self, ioba: u64, len: u64, perms: u64) {
        for page in pages_of(ioba, len) {
            self.tces.insert(page, perms);
        }
    }

    /// Unmaps every page touching `[ioba, ioba+len)`.
    pub fn unmap(&mut self, ioba: u64, len: u64) {
        for page in pages_of(ioba, len) {
            self.tces.remove(&page);
        }
    }

    /// Unmaps everything.
    pub fn unmap_all(&mut self) {
        self.tces.clear();
    }

    /// The guest's own store (no TCE check).
    pub fn write(&mut self, ioba: u64, data: &[u8]) {
        let mut done = 0;
        while done < data.len() {
            let a = ioba + done as u64;
            let off = (a % TCE_PAGE_SIZE) as usize;
            let n = (TCE_PAGE_SIZE as usize - off).min(data.len() - done);
            let page = self
                .pages
                .entry(a / TCE_PAGE_SIZE)
                .or_insert_with(|| Box::new([0; TCE_PAGE_SIZE as usize]));
            page[off..off + n].copy_from_slice(&data[done..done + n]);
            done += n;
        }
    }

    /// The guest's own load (no TCE check); untouched memory reads as zero.
    pub fn read(&self, ioba: u64, len: usize) -> Vec<u8> {
        let mut out = vec![0u8; len];
        let mut done = 0;
        while done < len {
            let a = ioba + done as u64;
            let off = (a % TCE_PAGE_SIZE) as usize;
            let n = (TCE_PAGE_SIZE as usize - off).min(len - done);
            if let Some(p) = self.pages.get(&(a / TCE_PAGE_SIZE)) {
                out[done..done + n].copy_from_slice(&p[off..off + n]);
            }
            done += n;
        }
        out
    }

    pub fn read_u16(&self, ioba: u64) -> u16 {
        u16::from_le_bytes(self.read(ioba, 2).try_into().unwrap_or_default())
    }

    pub fn read_u32(&self, ioba: u64) -> u32 {
        u32::from_le_bytes(self.read(ioba, 4).try_into().unwrap_or_default())
    }

    /// Takes the entries the server delivered so far (the guest consumes its CRQ).
    pub fn take_crq(&mut self) -> Vec<[u8; ENTRY_LEN]> {
        self.crq.drain(..).collect()
    }

    /// Whether the device may access all of `[ioba, ioba+len)` with `need`.
    fn allowed(&self, ioba: u64, len: usize, need: u64) -> bool {
        let Some(end) = ioba.checked_add(len as u64) else {
            return false;
        };
        let w_end = self
            .hello
            .window_ioba
            .saturating_add(self.hello.window_size);
        if ioba < self.hello.window_ioba || end > w_end {
            return false;
        }
        pages_of(ioba, len as u64).all(|p| self.tces.get(&p).is_some_and(|t| t & need == need))
    }

    fn refuse(&mut self, ioba: u64, len: usize, write: bool) -> Result<(), PartnerError> {
        self.counts.refused += 1;
        self.refusals.push((ioba, len, write));
        Err(PartnerError::Status(H_DEST_PARM))
    }
}

impl Partner for FakeGuest {
    fn send_crq(&mut self, entry: [u8; ENTRY_LEN]) -> Result<(), PartnerError> {
        if !self.connected {
            return Err(PartnerError::Disconnected);
        }
        if !self.crq_open {
            return Err(PartnerError::Status(H_CLOSED));
        }
        if !crq::is_valid(entry[0]) {
            return Err(PartnerError::Status(H_PARAMETER));
        }
        if self.crq.len() >= self.crq_slots {
            return Err(PartnerError::Status(H_DROPPED));
        }
        self.counts.crq_sent += 1;
        self.crq.push_back(entry);
        Ok(())
    }

    fn rdma_read(&mut self, ioba: u64, buf: &mut [u8]) -> Result<(), PartnerError> {
        if !self.connected {
            return Err(PartnerError::Disconnected);
        }
        self.counts.rdma_reads += 1;
        if buf.is_empty() {
            return Ok(());
        }
        if !self.allowed(ioba, buf.len(), TCE_READ) {
            return self.refuse(ioba, buf.len(), false);
        }
        buf.copy_from_slice(&self.read(ioba, buf.len()));
        Ok(())
    }

    fn rdma_write(&mut self, ioba: u64, data: &[u8]) -> Result<(), PartnerError> {
        if !self.connected {
            return Err(PartnerError::Disconnected);
        }
        self.counts.rdma_writes += 1;
        if data.is_empty() {
            return Ok(());
        }
        if !self.allowed(ioba, data.len(), TCE_WRITE) {
            return self.refuse(ioba, data.len(), true);
        }
        self.write(ioba, data);
        Ok(())
    }

    fn next_event(&mut self, _timeout: Duration) -> Option<Event> {
        self.events.pop_front()
    }

    fn disconnect(&mut self) {
        self.connected = false;
        self.counts.disconnects += 1;
    }
}

/// Page numbers of every page touching `[ioba, ioba+len)` (none for `len == 0`).
fn pages_of(ioba: u64, len: u64) -> impl Iterator<Item = u64> {
    let first = ioba / TCE_PAGE_SIZE;
    let end = if len == 0 {
        first
    } else {
        ioba.saturating_add(len - 1) / TCE_PAGE_SIZE + 1
    };
    first..end
}
