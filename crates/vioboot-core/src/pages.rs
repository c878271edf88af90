//! A first-fit allocator of page indices: the bookkeeping behind vioboot's 4 KiB DMA page pool.
//!
//! It hands out runs of consecutive indices and detects freeing what was not allocated. The firmware
//! maps indices to physical addresses.

use alloc::vec;
use alloc::vec::Vec;

/// Why a free was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageError {
    /// The run lies (partly) outside the pool.
    OutOfPool { first: usize, count: usize },
    /// A page in the run was not allocated: a double free or a wrong address.
    NotAllocated { page: usize },
}

/// Bitmap of `len` pages; a set bit is an allocated page.
pub struct PageBitmap {
    bits: Vec<u64>,
    len: usize,
    used: usize,
}

impl PageBitmap {
    pub fn new(len: usize) -> Self {
        PageBitmap {
            bits: vec![0; len.div_ceil(64)],
            len,
            used: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn used(&self) -> usize {
        self.used
    }

    fn get(&self, i: usize) -> bool {
        self.bits[i / 64] & (1 << (i % 64)) != 0
    }

    fn set(&mut self, i: usize, v: bool) {
        if v {
            self.bits[i / 64] |= 1 << (i % 64);
        } else {
            self.bits[i / 64] &= !(1 << (i % 64));
        }
    }

    /// Allocates `count` consecutive pages; returns the first index.
    pub fn alloc(&mut self, count: usize) -> Option<usize> {
        if count == 0 || count > self.len {
            return None;
        }
        let mut run = 0;
        for i in 0..self.len {
            if self.get(i) {
                run = 0;
                continue;
            }
            run += 1;
            if run == count {
                let first = i + 1 - count;
                (first..=i).for_each(|p| self.set(p, true));
                self.used += count;
                return Some(first);
            }
        }
        None
    }

    /// Frees a run returned by [`alloc`](Self::alloc).
    pub fn free(&mut self, first: usize, count: usize) -> Result<(), PageError> {
        let end = first.checked_add(count).filter(|&e| e <= self.len);
        let end = end.ok_or(PageError::OutOfPool { first, count })?;
        if let Some(page) = (first..end).find(|&p| !self.get(p)) {
            return Err(PageError::NotAllocated { page });
        }
        (first..end).for_each(|p| self.set(p, false));
        self.used -= count;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocates_first_fit_and_reuses_freed_runs() {
        let mut b = PageBitmap::new(130);
        assert_eq!(b.alloc(2), Some(0));
        assert_eq!(b.alloc(70), Some(2));
        assert_eq!(b.alloc(3), Some(72));
        b.free(2, 70).unwrap();
        assert_eq!(b.alloc(64), Some(2));
        assert_eq!(b.used(), 69);
        assert_eq!(b.alloc(200), None);
        assert_eq!(b.alloc(0), None);
    }

    #[test]
    fn refuses_double_and_out_of_pool_frees() {
        let mut b = PageBitmap::new(8);
        let p = b.alloc(4).unwrap();
        b.free(p, 4).unwrap();
        assert_eq!(b.free(p, 1), Err(PageError::NotAllocated { page: 0 }));
        assert_eq!(
            b.free(6, 4),
            Err(PageError::OutOfPool { first: 6, count: 4 })
        );
        assert_eq!(
            b.free(usize::MAX, 2),
            Err(PageError::OutOfPool {
                first: usize::MAX,
                count: 2
            })
        );
    }

    #[test]
    fn fills_the_pool_exactly() {
        let mut b = PageBitmap::new(64);
        assert_eq!(b.alloc(64), Some(0));
        assert_eq!(b.alloc(1), None);
    }
}
