//! TCE windows: which IOBAs of an adapter's DMA window map which guest pages.
//!
//! Each adapter's window is a range of IOBAs backed by a TCE table that only the hypervisor
//! writes (H_PUT_TCE and friends). [`TceWindow`] hands out runs of IOBA pages, maps guest
//! memory into them with the fewest hcalls (one H_PUT_TCE for a page, H_PUT_TCE_INDIRECT for
//! up to 512, H_STUFF_TCE to clear a run) and never hands out IOBA 0. A request's small
//! buffers (up to [`BOUNCE_MAX`] bytes: virtio request headers, status bytes, indirect
//! descriptor lists, a 4 KiB block) are not mapped at all: they are copied through a bounce
//! area that stays mapped while the window's devices have rings, so they cost no hcall. Longer
//! buffers are mapped in batches: those shared before one notify normally get adjacent IOBAs
//! (first fit); on a virtio-vio window their TCEs are put only at the notify
//! ([`TceWindow::flush`]: the device reads nothing before it), with one H_PUT_TCE_INDIRECT per
//! 512 pages, and each batch is cleared with one H_STUFF_TCE once its last buffer is unshared. The windows of all adapters
//! live in one registry ([`with_window`]), because virtio-drivers' `Hal` is static.

use crate::hcall::{self, HcallError, Ioba, Liobn, RealAddr};
use crate::mem::{self, DmaPages};
use alloc::vec::Vec;
use core::fmt;
use core::sync::atomic::{AtomicUsize, Ordering};
use papr::tce::{TCE_INDIRECT_MAX, TCE_PAGE_SIZE as PAGE, TCE_READ, TCE_WRITE};
use spin::Mutex;
use vioboot_core::inventory::DmaWindow;
use vioboot_core::pages::PageBitmap;

/// What the device may do with mapped memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// The device reads it (driver-to-device buffers, the queue setup block).
    DeviceReads,
    /// The device writes it (device-to-driver buffers, the device header).
    DeviceWrites,
    /// Both (rings, the CRQ).
    Both,
}

impl Access {
    fn bits(self) -> u64 {
        match self {
            Access::DeviceReads => TCE_READ,
            Access::DeviceWrites => TCE_WRITE,
            Access::Both => TCE_READ | TCE_WRITE,
        }
    }
}

/// Why memory could not be mapped or unmapped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TceError {
    /// No run of `pages` free IOBA pages is left in the window.
    WindowFull {
        liobn: u32,
        pages: usize,
    },
    /// An IOBA that this window did not hand out.
    NotMapped {
        liobn: u32,
        ioba: u64,
    },
    /// No page for the indirect TCE list.
    NoMemory,
    Hcall(HcallError),
    /// No such window in the registry.
    NoWindow(usize),
}

impl fmt::Display for TceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TceError::WindowFull { liobn, pages } => {
                write!(f, "TCE window {liobn:#x} has no run of {pages} free pages")
            }
            TceError::NotMapped { liobn, ioba } => {
                write!(f, "IOBA {ioba:#x} is not mapped in window {liobn:#x}")
            }
            TceError::NoMemory => write!(f, "no page for the TCE list"),
            TceError::Hcall(e) => write!(f, "{e}"),
            TceError::NoWindow(i) => write!(f, "no TCE window {i}"),
        }
    }
}

impl From<HcallError> for TceError {
    fn from(e: HcallError) -> Self {
        TceError::Hcall(e)
    }
}

/// Largest buffer [`TceWindow::share`] copies through the bounce area instead of mapping.
pub const BOUNCE_MAX: usize = 4096;
/// Pages of a window's bounce area (32 KiB: the small buffers of several requests in flight).
const BOUNCE_PAGES: usize = 8;
/// Bytes per unit of the bounce area's allocator.
const GRANULE: usize = 64;

/// A window's bounce area: pool pages mapped read/write at `ioba` while the window has
/// standing mappings (rings, a CRQ); each slot holds a copy of one shared buffer.
struct Bounce {
    pages: DmaPages,
    /// IOBA page index of the area's first page in the window.
    idx: usize,
    ioba: u64,
    /// Granules in use.
    slots: PageBitmap,
    /// Buffers bounced now.
    buffers: usize,
}

impl Bounce {
    /// The byte offset of `ioba` in the area, if it lies there.
    fn offset(&self, ioba: u64) -> Option<usize> {
        let off = ioba.checked_sub(self.ioba)?;
        (off < (BOUNCE_PAGES as u64 * PAGE)).then_some(off as usize)
    }
}

/// A shared buffer's run of IOBA pages (a mapped one; bounced buffers have none).
struct Run {
    /// First IOBA page index in the window, and pages.
    idx: usize,
    count: usize,
    /// The batch it was shared in: the notify after which the device may use it.
    batch: u64,
    /// Not unshared yet.
    live: bool,
    /// The TCE of its first page (real page | permission bits) while it is not put yet; page
    /// `i` takes `tce + i * 4096`.
    pending: Option<u64>,
}

/// One adapter's DMA window.
pub struct TceWindow {
    liobn: Liobn,
    base: u64,
    pages: PageBitmap,
    /// A 4 KiB page for H_PUT_TCE_INDIRECT lists.
    list: Option<RealAddr>,
    /// Buffers shared for a request ([`share`](Self::share)): (IOBA, length), mapped or
    /// bounced. A request that fails leaves its buffers here, and
    /// [`revoke_shared`](Self::revoke_shared) unmaps them before their memory is used again.
    shared: Vec<(Ioba, usize)>,
    /// Runs mapped by [`map`](Self::map) and not yet unmapped (rings, a CRQ, a transport
    /// page): the bounce area is kept only while there are some, or buffers in it.
    standing: usize,
    bounce: Option<Bounce>,
    /// Mapped shared buffers whose batch is not cleared yet, live or unshared, by IOBA.
    runs: Vec<Run>,
    /// The batch that shares join now; [`flush`](Self::flush) (at each notify) starts the next.
    batch: u64,
    /// Put shared buffers' TCEs at [`flush`](Self::flush) rather than when shared.
    defer: bool,
}

impl TceWindow {
    /// A window over `w`; its first page is kept unused so no buffer gets IOBA 0 (virtio-drivers
    /// and many devices read 0 as "no address").
    pub fn new(w: DmaWindow) -> TceWindow {
        let mut pages = PageBitmap::new((w.size / PAGE) as usize);
        let _ = pages.alloc(1);
        TceWindow {
            liobn: Liobn(w.liobn),
            base: w.ioba,
            pages,
            list: None,
            shared: Vec::new(),
            standing: 0,
            bounce: None,
            runs: Vec::new(),
            batch: 0,
            defer: false,
        }
    }

    /// From now on, shared buffers' TCEs are put when [`flush`](Self::flush) is called, all at
    /// once, instead of one hcall per buffer. For a transport that calls `flush` before every
    /// notify and whose device reaches buffers only after a notify (virtio-vio: the server reads
    /// the rings on NOTIFY alone). Not for virtio-pci: a device may process a ring without a
    /// notify (it suppresses them while it works).
    pub fn defer_puts_until_notify(&mut self) {
        self.defer = true;
    }

    /// The device is about to be notified: puts the TCEs of every buffer shared since the last
    /// notify (none unless [`defer_puts_until_notify`](Self::defer_puts_until_notify)), one
    /// H_PUT_TCE_INDIRECT per 512 adjacent pages (H_PUT_TCE for a single page), and starts the
    /// next batch.
    pub fn flush(&mut self) -> Result<(), TceError> {
        self.batch += 1;
        // In IOBA order, as `runs` is kept.
        let todo: Vec<(usize, usize, u64)> = self
            .runs
            .iter()
            .filter_map(|r| r.pending.map(|t| (r.idx, r.count, t)))
            .collect();
        if todo.is_empty() {
            return Ok(());
        }
        // The pages of adjacent runs, as one list of (IOBA page index, TCE).
        let mut segment: Vec<u64> = Vec::new();
        let mut start = todo[0].0;
        for (n, &(idx, count, tce)) in todo.iter().enumerate() {
            if idx != start + segment.len() {
                self.put_list(start, &segment)?;
                segment.clear();
                start = idx;
            }
            segment.extend((0..count as u64).map(|i| tce + i * PAGE));
            if n + 1 == todo.len() {
                self.put_list(start, &segment)?;
            }
        }
        for r in &mut self.runs {
            r.pending = None;
        }
        Ok(())
    }

    /// Puts `tces` at IOBA page `idx` and on: H_PUT_TCE for one, else H_PUT_TCE_INDIRECT per
    /// 512.
    fn put_list(&mut self, idx: usize, tces: &[u64]) -> Result<(), TceError> {
        let ioba = self.base + idx as u64 * PAGE;
        if let [one] = tces {
            return Ok(hcall::put_tce(self.liobn, Ioba(ioba), *one)?);
        }
        let list = self.list_page()?;
        for (k, chunk) in tces.chunks(TCE_INDIRECT_MAX).enumerate() {
            mem::write_be_u64s(list, chunk);
            let at = ioba + (k * TCE_INDIRECT_MAX) as u64 * PAGE;
            // SAFETY: `list` is our own 4 KiB pool page holding `chunk.len()` (<= 512) TCEs,
            // unchanged until the call returns.
            unsafe { hcall::put_tce_indirect(self.liobn, Ioba(at), list, chunk.len() as u64) }?;
        }
        Ok(())
    }

    fn list_page(&mut self) -> Result<RealAddr, TceError> {
        match self.list {
            Some(l) => Ok(l),
            None => {
                let l = mem::alloc_pages(1).ok_or(TceError::NoMemory)?;
                self.list = Some(l);
                Ok(l)
            }
        }
    }

    /// Shares a request's buffer with the device until [`unshare`](Self::unshare): one of up
    /// to [`BOUNCE_MAX`] bytes is copied into the bounce area (unless the device only writes
    /// it) and costs no hcall; a longer one is mapped in place, in this batch: now (one
    /// hcall), or at [`flush`](Self::flush) with the batch's other buffers.
    pub fn share(&mut self, buf: &[u8], access: Access) -> Result<Ioba, TceError> {
        let len = buf.len();
        let ioba = match self.bounce_slot(len) {
            Some((ioba, off)) => {
                if access != Access::DeviceWrites {
                    if let Some(b) = self.bounce.as_mut() {
                        b.pages.bytes_mut()[off..off + len].copy_from_slice(buf);
                    }
                }
                Ioba(ioba)
            }
            None => self.share_run(buf.as_ptr() as u64, len, access)?,
        };
        self.shared.push((ioba, len));
        Ok(ioba)
    }

    /// Maps a shared buffer at `addr` in the current batch (see [`share`](Self::share)).
    fn share_run(&mut self, addr: u64, len: usize, access: Access) -> Result<Ioba, TceError> {
        let first = addr & !(PAGE - 1);
        let count = (addr + len.max(1) as u64 - first).div_ceil(PAGE) as usize;
        let idx = self.pages.alloc(count).ok_or(TceError::WindowFull {
            liobn: self.liobn.0,
            pages: count,
        })?;
        let ioba = self.base + idx as u64 * PAGE;
        let tce = first | access.bits();
        let pending = if self.defer {
            Some(tce)
        } else {
            if let Err(e) = self.put(ioba, first, count, access.bits()) {
                if self.clear(ioba, count).is_ok() {
                    let _ = self.pages.free(idx, count);
                }
                return Err(e);
            }
            None
        };
        let at = self.runs.partition_point(|r| r.idx < idx);
        self.runs.insert(
            at,
            Run {
                idx,
                count,
                batch: self.batch,
                live: true,
                pending,
            },
        );
        Ok(Ioba(ioba + (addr - first)))
    }

    /// Marks the run of a mapped shared buffer unshared; when it was its batch's last live one,
    /// clears the batch.
    fn unshare_run(&mut self, ioba: Ioba, len: usize) -> Result<(), TceError> {
        let first = ioba.0 & !(PAGE - 1);
        let count = (ioba.0 + len.max(1) as u64 - first).div_ceil(PAGE) as usize;
        let idx = first.checked_sub(self.base).map(|o| (o / PAGE) as usize);
        let run = self
            .runs
            .iter_mut()
            .find(|r| Some(r.idx) == idx && r.count == count && r.live)
            .ok_or(TceError::NotMapped {
                liobn: self.liobn.0,
                ioba: ioba.0,
            })?;
        run.live = false;
        let batch = run.batch;
        if self.runs.iter().any(|r| r.batch == batch && r.live) {
            return Ok(());
        }
        let (done, keep) = core::mem::take(&mut self.runs)
            .into_iter()
            .partition(|r| r.batch == batch);
        self.runs = keep;
        self.clear_runs(done)
    }

    /// Clears `runs` (in IOBA order; one H_STUFF_TCE per adjacent group, normally one) and frees
    /// their IOBA pages; pages whose clear failed stay allocated, never to be handed out again.
    fn clear_runs(&mut self, runs: Vec<Run>) -> Result<(), TceError> {
        let mut result = Ok(());
        let mut i = 0;
        while i < runs.len() {
            let start = runs[i].idx;
            let mut end = start + runs[i].count;
            let mut j = i + 1;
            while j < runs.len() && runs[j].idx == end {
                end += runs[j].count;
                j += 1;
            }
            match self.clear(self.base + start as u64 * PAGE, end - start) {
                Ok(()) => {
                    for r in &runs[i..j] {
                        let _ = self.pages.free(r.idx, r.count);
                    }
                }
                Err(e) => result = Err(e),
            }
            i = j;
        }
        result
    }

    /// Ends what [`share`](Self::share) began: a bounced buffer's copy goes back into `back`
    /// (given for buffers the device writes) and its slot is zeroed; a mapped one is unmapped.
    /// Either way the device can no longer reach the buffer's contents.
    pub fn unshare(
        &mut self,
        ioba: Ioba,
        len: usize,
        back: Option<&mut [u8]>,
    ) -> Result<(), TceError> {
        let at = self
            .shared
            .iter()
            .position(|&(i, l)| i == ioba && l == len)
            .ok_or(TceError::NotMapped {
                liobn: self.liobn.0,
                ioba: ioba.0,
            })?;
        self.shared.swap_remove(at);
        let r = if self.is_bounced(ioba) {
            self.free_slot(ioba, len, back);
            Ok(())
        } else {
            self.unshare_run(ioba, len)
        };
        self.settle_bounce()?;
        r
    }

    /// Unmaps every buffer still shared (of every batch, put or not yet), and the bounce area
    /// when buffers were left in it: after a request failed half way, the device must not
    /// reach memory that is about to be used for something else. Returns how many buffers
    /// there were.
    pub fn revoke_shared(&mut self) -> Result<usize, TceError> {
        let all = core::mem::take(&mut self.shared);
        let mut bounced = false;
        for &(ioba, len) in &all {
            if self.is_bounced(ioba) {
                self.free_slot(ioba, len, None);
                bounced = true;
            }
        }
        let runs = core::mem::take(&mut self.runs);
        let cleared = self.clear_runs(runs);
        if bounced {
            self.release_bounce()?;
        }
        cleared?;
        Ok(all.len())
    }

    /// IOBA pages mapped (the reserved first page included, the bounce area not) plus the
    /// buffers bounced now: between requests it is back to what the rings take.
    pub fn pages_in_use(&self) -> usize {
        match &self.bounce {
            Some(b) => self.pages.used() - BOUNCE_PAGES + b.buffers,
            None => self.pages.used(),
        }
    }

    /// Whether the bounce area is mapped now (it is while rings or bounced buffers exist).
    pub fn bounce_mapped(&self) -> bool {
        self.bounce.is_some()
    }

    /// A free slot of `len` bytes in the bounce area, mapping the area first if need be:
    /// (its IOBA, its offset in the area). `None` for a longer buffer, or when the area is full
    /// or cannot be had (no pool page, no IOBA run, a failed hcall): the buffer is mapped then.
    fn bounce_slot(&mut self, len: usize) -> Option<(u64, usize)> {
        if len == 0 || len > BOUNCE_MAX {
            return None;
        }
        if self.bounce.is_none() {
            let pages = DmaPages::alloc(BOUNCE_PAGES)?;
            let idx = self.pages.alloc(BOUNCE_PAGES)?;
            let ioba = self.base + idx as u64 * PAGE;
            let bits = Access::Both.bits();
            if self.put(ioba, pages.addr().0, BOUNCE_PAGES, bits).is_err() {
                // Whatever part was put stays mapped if it cannot be cleared: keep the pages
                // and the IOBAs out of use then.
                if self.clear(ioba, BOUNCE_PAGES).is_ok() {
                    let _ = self.pages.free(idx, BOUNCE_PAGES);
                } else {
                    core::mem::forget(pages);
                }
                return None;
            }
            self.bounce = Some(Bounce {
                pages,
                idx,
                ioba,
                slots: PageBitmap::new(BOUNCE_PAGES * PAGE as usize / GRANULE),
                buffers: 0,
            });
        }
        let b = self.bounce.as_mut()?;
        let slot = b.slots.alloc(len.div_ceil(GRANULE))?;
        b.buffers += 1;
        Some((b.ioba + (slot * GRANULE) as u64, slot * GRANULE))
    }

    fn is_bounced(&self, ioba: Ioba) -> bool {
        self.bounce
            .as_ref()
            .is_some_and(|b| b.offset(ioba.0).is_some())
    }

    /// Copies a bounced buffer back into `back` (if given), zeroes its slot and frees it.
    fn free_slot(&mut self, ioba: Ioba, len: usize, back: Option<&mut [u8]>) {
        let Some(b) = self.bounce.as_mut() else {
            return;
        };
        let Some(off) = b.offset(ioba.0) else {
            return;
        };
        let end = (off + len).min(b.pages.len());
        let slot = &mut b.pages.bytes_mut()[off..end];
        if let Some(back) = back {
            let n = back.len().min(slot.len());
            back[..n].copy_from_slice(&slot[..n]);
        }
        slot.fill(0);
        if b.slots.free(off / GRANULE, len.div_ceil(GRANULE)).is_ok() {
            b.buffers = b.buffers.saturating_sub(1);
        }
    }

    /// Unmaps the bounce area when nothing needs it any more: no standing mapping (the
    /// window's devices are gone) and no buffer in it.
    fn settle_bounce(&mut self) -> Result<(), TceError> {
        match &self.bounce {
            Some(b) if self.standing == 0 && b.buffers == 0 => self.release_bounce(),
            _ => Ok(()),
        }
    }

    /// Clears the bounce area's TCEs (one H_STUFF_TCE) and gives its pages back; if the clear
    /// fails, the pages and IOBAs stay out of use (the device might still reach them).
    fn release_bounce(&mut self) -> Result<(), TceError> {
        let Some(b) = self.bounce.take() else {
            return Ok(());
        };
        match self.clear(b.ioba, BOUNCE_PAGES) {
            Ok(()) => {
                let _ = self.pages.free(b.idx, BOUNCE_PAGES);
                Ok(())
            }
            Err(e) => {
                core::mem::forget(b.pages);
                Err(e)
            }
        }
    }

    /// Maps `len` bytes at `addr` (any alignment) for as long as the caller needs (a ring, a
    /// CRQ, a transport page) and returns the IOBA of `addr`.
    pub fn map(&mut self, addr: RealAddr, len: usize, access: Access) -> Result<Ioba, TceError> {
        let ioba = self.map_run(addr, len, access)?;
        self.standing += 1;
        Ok(ioba)
    }

    /// Unmaps what [`map`](Self::map) mapped: the device can no longer reach it.
    pub fn unmap(&mut self, ioba: Ioba, len: usize) -> Result<(), TceError> {
        self.unmap_run(ioba, len)?;
        self.standing = self.standing.saturating_sub(1);
        self.settle_bounce()
    }

    fn map_run(&mut self, addr: RealAddr, len: usize, access: Access) -> Result<Ioba, TceError> {
        let first = addr.0 & !(PAGE - 1);
        let count = (addr.0 + len.max(1) as u64 - first).div_ceil(PAGE) as usize;
        let idx = self.pages.alloc(count).ok_or(TceError::WindowFull {
            liobn: self.liobn.0,
            pages: count,
        })?;
        let ioba = self.base + idx as u64 * PAGE;
        if let Err(e) = self.put(ioba, first, count, access.bits()) {
            let _ = self.clear(ioba, count);
            let _ = self.pages.free(idx, count);
            return Err(e);
        }
        Ok(Ioba(ioba + (addr.0 - first)))
    }

    fn put(&mut self, ioba: u64, first: u64, count: usize, bits: u64) -> Result<(), TceError> {
        if count == 1 {
            return Ok(hcall::put_tce(self.liobn, Ioba(ioba), first | bits)?);
        }
        let list = self.list_page()?;
        let mut done = 0;
        while done < count {
            let n = (count - done).min(TCE_INDIRECT_MAX);
            let entries: Vec<u64> = (0..n)
                .map(|i| (first + (done + i) as u64 * PAGE) | bits)
                .collect();
            mem::write_be_u64s(list, &entries);
            // SAFETY: `list` is our own 4 KiB pool page holding `n` (<= 512) TCEs, unchanged
            // until the call returns.
            unsafe {
                hcall::put_tce_indirect(self.liobn, Ioba(ioba + done as u64 * PAGE), list, n as u64)
            }?;
            done += n;
        }
        Ok(())
    }

    fn clear(&mut self, ioba: u64, count: usize) -> Result<(), TceError> {
        if count == 1 {
            Ok(hcall::put_tce(self.liobn, Ioba(ioba), 0)?)
        } else {
            Ok(hcall::stuff_tce(self.liobn, Ioba(ioba), 0, count as u64)?)
        }
    }

    fn unmap_run(&mut self, ioba: Ioba, len: usize) -> Result<(), TceError> {
        if self.is_bounced(ioba) {
            return Err(TceError::NotMapped {
                liobn: self.liobn.0,
                ioba: ioba.0,
            });
        }
        let first = ioba.0 & !(PAGE - 1);
        let count = (ioba.0 + len.max(1) as u64 - first).div_ceil(PAGE) as usize;
        let idx = first.checked_sub(self.base).map(|o| (o / PAGE) as usize);
        let idx = idx.filter(|&i| i != 0).ok_or(TceError::NotMapped {
            liobn: self.liobn.0,
            ioba: ioba.0,
        })?;
        self.pages
            .free(idx, count)
            .map_err(|_| TceError::NotMapped {
                liobn: self.liobn.0,
                ioba: ioba.0,
            })?;
        self.clear(first, count)
    }

    /// Clears every TCE this window mapped and returns the list page: before handing the
    /// machine to a kernel, or when the adapter is given up.
    pub fn clear_all(&mut self) -> Result<(), TceError> {
        let total = self.pages.len();
        if total > 1 {
            hcall::stuff_tce(self.liobn, Ioba(self.base + PAGE), 0, total as u64 - 1)?;
        }
        self.pages = PageBitmap::new(total);
        let _ = self.pages.alloc(1);
        if let Some(l) = self.list.take() {
            let _ = mem::free_pages(l, 1);
        }
        // Its TCEs were cleared with the rest; its pages go back to the pool.
        self.bounce = None;
        self.shared.clear();
        self.runs.clear();
        self.standing = 0;
        Ok(())
    }
}

/// All adapters' windows, indexed by the id [`register`] returned.
static WINDOWS: Mutex<Vec<TceWindow>> = Mutex::new(Vec::new());
/// The window virtio-drivers' static `Hal` maps into (see [`with_window`]).
static ACTIVE: AtomicUsize = AtomicUsize::new(usize::MAX);

/// Adds a window; returns its id.
pub fn register(w: TceWindow) -> usize {
    let mut all = WINDOWS.lock();
    all.push(w);
    all.len() - 1
}

/// Runs `f` on window `id`.
pub fn with<R>(id: usize, f: impl FnOnce(&mut TceWindow) -> R) -> Result<R, TceError> {
    let mut all = WINDOWS.lock();
    let w = all.get_mut(id).ok_or(TceError::NoWindow(id))?;
    Ok(f(w))
}

/// Makes window `id` the one virtio-drivers' `Hal` maps into while `f` runs.
pub fn with_window<R>(id: usize, f: impl FnOnce() -> R) -> R {
    let previous = ACTIVE.swap(id, Ordering::SeqCst);
    let r = f();
    ACTIVE.store(previous, Ordering::SeqCst);
    r
}

/// The window `Hal` calls use now.
pub fn active() -> usize {
    ACTIVE.load(Ordering::SeqCst)
}
