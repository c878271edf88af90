//! Memory: the heap and a pool of 4 KiB pages for DMA, each in a region that overlaps neither
//! the image, the device tree, Open Firmware, RTAS nor any reserved range.
//!
//! With Open Firmware the regions are claimed from it; without, they are placed from the
//! tree's memory nodes and reservations (see [`place`]).

use crate::hcall::RealAddr;
use spin::Mutex;
use vioboot_core::pages::{PageBitmap, PageError};
use vioboot_core::ranges::Range;

/// Bytes of heap.
pub const HEAP_SIZE: u64 = 16 << 20;
/// Bytes of DMA page pool.
pub const POOL_SIZE: u64 = 8 << 20;
pub const PAGE_SIZE: u64 = 4096;
/// Alignment of both regions.
pub const REGION_ALIGN: u64 = 1 << 20;

#[cfg(target_os = "none")]
#[global_allocator]
static HEAP: linked_list_allocator::LockedHeap = linked_list_allocator::LockedHeap::empty();

struct Pool {
    base: u64,
    bits: PageBitmap,
}

static POOL: Mutex<Option<Pool>> = Mutex::new(None);

/// Starts the heap in `heap`.
///
/// # Safety
/// `heap` must be RAM that nothing else uses, for as long as vioboot runs; call once.
pub unsafe fn init_heap(heap: Range) {
    #[cfg(target_os = "none")]
    // SAFETY: the caller gives us exclusive, valid memory.
    unsafe {
        HEAP.lock()
            .init(heap.start as *mut u8, heap.size() as usize)
    };
    #[cfg(not(target_os = "none"))]
    let _ = heap;
}

/// Starts the page pool in `pool` (after the heap: its bitmap lives there).
///
/// # Safety
/// As [`init_heap`].
pub unsafe fn init_pool(pool: Range) {
    *POOL.lock() = Some(Pool {
        base: pool.start,
        bits: PageBitmap::new((pool.size() / PAGE_SIZE) as usize),
    });
}

/// Heap bytes in use and free.
pub fn heap_usage() -> (usize, usize) {
    #[cfg(target_os = "none")]
    {
        let h = HEAP.lock();
        (h.used(), h.free())
    }
    #[cfg(not(target_os = "none"))]
    (0, 0)
}

/// Allocates `count` physically contiguous 4 KiB pages, zeroed.
pub fn alloc_pages(count: usize) -> Option<RealAddr> {
    let mut p = POOL.lock();
    let pool = p.as_mut()?;
    let first = pool.bits.alloc(count)?;
    let addr = pool.base + first as u64 * PAGE_SIZE;
    // SAFETY: the pages lie in the pool, which `init_pool` gave us exclusively, and were free.
    unsafe { core::ptr::write_bytes(addr as *mut u8, 0, count * PAGE_SIZE as usize) };
    Some(RealAddr(addr))
}

/// Returns pages from [`alloc_pages`].
pub fn free_pages(addr: RealAddr, count: usize) -> Result<(), PageError> {
    let mut p = POOL.lock();
    let pool = p.as_mut().ok_or(PageError::OutOfPool { first: 0, count })?;
    let off = addr.0.wrapping_sub(pool.base);
    if off % PAGE_SIZE != 0 || addr.0 < pool.base {
        return Err(PageError::OutOfPool {
            first: usize::MAX,
            count,
        });
    }
    pool.bits.free((off / PAGE_SIZE) as usize, count)
}

/// Pages of the pool in use and in all.
pub fn pool_usage() -> (usize, usize) {
    POOL.lock()
        .as_ref()
        .map_or((0, 0), |p| (p.bits.used(), p.bits.len()))
}

/// Places `size` bytes (aligned to [`REGION_ALIGN`]) at or above `from` without the tree's
/// help beyond `fits` (is this range inside one memory node?) and `taken` (what is the end of
/// a reservation overlapping this range?). Works before the heap exists, so it cannot allocate.
pub fn place(
    from: u64,
    size: u64,
    limit: u64,
    fits: impl Fn(Range) -> bool,
    taken: impl Fn(Range) -> Option<u64>,
) -> Option<Range> {
    let mut start = from.checked_next_multiple_of(REGION_ALIGN)?;
    // Each round either succeeds or moves past one obstacle; bound it anyway.
    for _ in 0..1024 {
        let r = Range::from_base_size(start, size)?;
        if r.end > limit {
            return None;
        }
        match taken(r) {
            Some(end) => {
                start = end
                    .checked_next_multiple_of(REGION_ALIGN)?
                    .max(start + REGION_ALIGN)
            }
            None if fits(r) => return Some(r),
            None => start += REGION_ALIGN,
        }
    }
    None
}

/// The bytes of a memory region vioboot claimed or placed for a kernel, an initrd or a tree.
///
/// # Safety
/// `r` must be RAM that vioboot owns (claimed from OF or placed clear of everything else) and
/// that nothing else references for the lifetime of the slice.
pub unsafe fn region_mut(r: Range) -> &'static mut [u8] {
    // SAFETY: the caller's contract.
    unsafe { core::slice::from_raw_parts_mut(r.start as *mut u8, r.size() as usize) }
}

/// Free memory lent for the pattern test, reached word by word with volatile accesses (so
/// that every write and read really goes to memory).
pub struct Lent {
    range: Range,
}

impl Lent {
    /// # Safety
    /// `range` must be RAM that nothing uses while the `Lent` lives: not vioboot's image,
    /// heap, pool or stacks, not the tree, and claimed from Open Firmware when it is alive.
    pub unsafe fn new(range: Range) -> Lent {
        Lent { range }
    }

    fn check(&self, addr: u64) {
        assert!(
            addr.is_multiple_of(8) && addr >= self.range.start && addr + 8 <= self.range.end,
            "memory test word {addr:#x} outside the lent {}",
            self.range
        );
    }
}

impl vioboot_core::memtest::Memory for Lent {
    fn write(&mut self, addr: u64, value: u64) {
        self.check(addr);
        // SAFETY: an aligned word inside the lent range (checked), which `new`'s caller
        // vouched nothing else uses.
        unsafe { core::ptr::write_volatile(addr as *mut u64, value) };
    }

    fn read(&mut self, addr: u64) -> u64 {
        self.check(addr);
        // SAFETY: as `write`.
        unsafe { core::ptr::read_volatile(addr as *const u64) }
    }
}

/// Pages from the pool, owned: freed when dropped. The device may see them only through a TCE
/// mapping its user makes; reads of what a device wrote go through [`DmaPages::read_volatile`].
pub struct DmaPages {
    addr: RealAddr,
    count: usize,
}

impl DmaPages {
    /// `count` zeroed pages, or `None` when the pool is exhausted.
    pub fn alloc(count: usize) -> Option<DmaPages> {
        alloc_pages(count).map(|addr| DmaPages { addr, count })
    }

    pub fn addr(&self) -> RealAddr {
        self.addr
    }

    pub fn len(&self) -> usize {
        self.count * PAGE_SIZE as usize
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The pages as bytes.
    pub fn bytes(&self) -> &[u8] {
        // SAFETY: the pages are ours (from the pool) for as long as `self` lives.
        unsafe { core::slice::from_raw_parts(self.addr.0 as *const u8, self.len()) }
    }

    pub fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: as `bytes`, and `&mut self` makes the access exclusive on our side.
        unsafe { core::slice::from_raw_parts_mut(self.addr.0 as *mut u8, self.len()) }
    }

    /// Reads a byte that a device may change at any time.
    pub fn read_volatile(&self, at: usize) -> u8 {
        assert!(
            at < self.len(),
            "DMA read at {at} beyond {} bytes",
            self.len()
        );
        volatile::VolatileRef::from_ref(&self.bytes()[at])
            .as_ptr()
            .read()
    }

    /// Writes a byte that a device reads.
    pub fn write_volatile(&mut self, at: usize, v: u8) {
        assert!(
            at < self.len(),
            "DMA write at {at} beyond {} bytes",
            self.len()
        );
        volatile::VolatileRef::from_mut_ref(&mut self.bytes_mut()[at])
            .as_mut_ptr()
            .write(v);
    }
}

impl Drop for DmaPages {
    fn drop(&mut self) {
        let _ = free_pages(self.addr, self.count);
    }
}

/// Reads the little-endian u16 at `addr` in the pool (a virtqueue ring's index, which a
/// device may change at any time); `None` outside the pool or unaligned.
pub fn read_pool_u16(addr: RealAddr) -> Option<u16> {
    let p = POOL.lock();
    let pool = p.as_ref()?;
    let end = pool.base + pool.bits.len() as u64 * PAGE_SIZE;
    if addr.0 < pool.base || addr.0.checked_add(2)? > end || !addr.0.is_multiple_of(2) {
        return None;
    }
    // SAFETY: an aligned u16 inside the pool, which `init_pool` gave vioboot; volatile, since
    // the device writes it.
    Some(u16::from_le(unsafe {
        core::ptr::read_volatile(addr.0 as *const u16)
    }))
}

/// Writes big-endian u64s at the start of one pool page (an H_PUT_TCE_INDIRECT list).
pub fn write_be_u64s(page: RealAddr, values: &[u64]) {
    assert!(
        values.len() * 8 <= PAGE_SIZE as usize,
        "TCE list larger than a page"
    );
    let in_pool = POOL.lock().as_ref().is_some_and(|p| {
        page.0 >= p.base && page.0 + PAGE_SIZE <= p.base + p.bits.len() as u64 * PAGE_SIZE
    });
    assert!(in_pool, "TCE list page {:#x} is not a pool page", page.0);
    for (i, v) in values.iter().enumerate() {
        // SAFETY: the page lies in the pool (checked) and belongs to the caller's window.
        unsafe { core::ptr::write((page.0 as *mut u64).add(i), v.to_be()) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn place_skips_reservations_and_respects_limit() {
        let ram = Range {
            start: 0,
            end: 0x4000_0000,
        };
        let rsv = [
            Range {
                start: 0x10_0000,
                end: 0x28_0000,
            },
            Range {
                start: 0x30_0000,
                end: 0x31_0000,
            },
        ];
        let taken = |r: Range| rsv.iter().find(|x| x.overlaps(&r)).map(|x| x.end);
        let fits = |r: Range| r.start >= ram.start && r.end <= ram.end;
        let r = place(0x8_0000, 0x10_0000, u64::MAX, fits, taken).unwrap();
        assert_eq!(
            r,
            Range {
                start: 0x40_0000,
                end: 0x50_0000
            }
        );
        assert_eq!(place(0, 0x20_0000, 0x28_0000, fits, taken), None);
        assert_eq!(
            place(0, 0x10_0000, 0x20_0000, fits, taken),
            Some(Range {
                start: 0,
                end: 0x10_0000
            })
        );
        assert_eq!(place(0x3ff0_0000, 0x20_0000, u64::MAX, fits, taken), None);
    }
}
