//! TCE windows: which IOBAs of an adapter's DMA window map which guest pages.
//!
//! Each adapter's window is a range of IOBAs backed by a TCE table that only the hypervisor
//! writes (H_PUT_TCE and friends). [`TceWindow`] hands out runs of IOBA pages, maps guest
//! memory into them with the fewest hcalls (one H_PUT_TCE for a page, H_PUT_TCE_INDIRECT for
//! up to 512, H_STUFF_TCE to clear a run) and never hands out IOBA 0. The windows of all
//! adapters live in one registry ([`with_window`]), because virtio-drivers' `Hal` is static.

use crate::hcall::{self, HcallError, Ioba, Liobn, RealAddr};
use crate::mem;
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

/// One adapter's DMA window.
pub struct TceWindow {
    liobn: Liobn,
    base: u64,
    pages: PageBitmap,
    /// A 4 KiB page for H_PUT_TCE_INDIRECT lists.
    list: Option<RealAddr>,
    /// Buffers mapped for one request ([`share`](Self::share)): (IOBA, length). A request that
    /// fails leaves its buffers here, and [`revoke_shared`](Self::revoke_shared) unmaps them
    /// before their memory is used again.
    shared: Vec<(Ioba, usize)>,
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
        }
    }

    /// Maps a request's buffer, as [`map`](Self::map), and remembers it until it is unshared.
    pub fn share(&mut self, addr: RealAddr, len: usize, access: Access) -> Result<Ioba, TceError> {
        let ioba = self.map(addr, len, access)?;
        self.shared.push((ioba, len));
        Ok(ioba)
    }

    /// Unmaps what [`share`](Self::share) mapped.
    pub fn unshare(&mut self, ioba: Ioba, len: usize) -> Result<(), TceError> {
        let at = self
            .shared
            .iter()
            .position(|&(i, l)| i == ioba && l == len)
            .ok_or(TceError::NotMapped {
                liobn: self.liobn.0,
                ioba: ioba.0,
            })?;
        self.shared.swap_remove(at);
        self.unmap(ioba, len)
    }

    /// Unmaps every buffer still shared: after a request failed half way, the device must not
    /// reach memory that is about to be used for something else. Returns how many there were.
    pub fn revoke_shared(&mut self) -> Result<usize, TceError> {
        let all = core::mem::take(&mut self.shared);
        for &(ioba, len) in &all {
            self.unmap(ioba, len)?;
        }
        Ok(all.len())
    }

    /// IOBA pages in use (the reserved first page included).
    pub fn pages_in_use(&self) -> usize {
        self.pages.used()
    }

    /// Maps `len` bytes at `addr` (any alignment) and returns the IOBA of `addr`.
    pub fn map(&mut self, addr: RealAddr, len: usize, access: Access) -> Result<Ioba, TceError> {
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
        let list = match self.list {
            Some(l) => l,
            None => {
                let l = mem::alloc_pages(1).ok_or(TceError::NoMemory)?;
                self.list = Some(l);
                l
            }
        };
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

    /// Unmaps what [`map`](Self::map) mapped: the device can no longer reach it.
    pub fn unmap(&mut self, ioba: Ioba, len: usize) -> Result<(), TceError> {
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
        self.shared.clear();
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
