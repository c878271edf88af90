//! Physical memory ranges: what the tree says exists, minus what is already taken.

use alloc::vec::Vec;
use core::fmt;

/// A half-open range of physical addresses `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Range {
    pub start: u64,
    pub end: u64,
}

impl Range {
    /// A range from a base and a size; `None` if it wraps past the top of the address space.
    pub fn from_base_size(base: u64, size: u64) -> Option<Range> {
        Some(Range {
            start: base,
            end: base.checked_add(size)?,
        })
    }

    pub fn size(&self) -> u64 {
        self.end - self.start
    }

    pub fn is_empty(&self) -> bool {
        self.end <= self.start
    }

    pub fn contains(&self, addr: u64) -> bool {
        (self.start..self.end).contains(&addr)
    }

    pub fn overlaps(&self, other: &Range) -> bool {
        self.start < other.end && other.start < self.end
    }
}

impl fmt::Display for Range {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}..{:#x}", self.start, self.end)
    }
}

/// A sorted set of disjoint ranges.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RangeSet {
    ranges: Vec<Range>,
}

impl RangeSet {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn ranges(&self) -> &[Range] {
        &self.ranges
    }

    pub fn total(&self) -> u64 {
        self.ranges.iter().map(Range::size).sum()
    }

    /// Adds a range, merging it with any it touches.
    pub fn add(&mut self, r: Range) {
        if r.is_empty() {
            return;
        }
        let mut merged = r;
        self.ranges.retain(|x| {
            let touches = x.start <= merged.end && merged.start <= x.end;
            if touches {
                merged.start = merged.start.min(x.start);
                merged.end = merged.end.max(x.end);
            }
            !touches
        });
        let at = self.ranges.partition_point(|x| x.start < merged.start);
        self.ranges.insert(at, merged);
    }

    /// Removes a range (a reservation, the image, the FDT...).
    pub fn remove(&mut self, hole: Range) {
        if hole.is_empty() {
            return;
        }
        let mut out = Vec::with_capacity(self.ranges.len() + 1);
        for r in &self.ranges {
            if !r.overlaps(&hole) {
                out.push(*r);
                continue;
            }
            if r.start < hole.start {
                out.push(Range {
                    start: r.start,
                    end: hole.start,
                });
            }
            if hole.end < r.end {
                out.push(Range {
                    start: hole.end,
                    end: r.end,
                });
            }
        }
        self.ranges = out;
    }

    /// The first `size` bytes, aligned to `align` (a power of two), lying below `limit`.
    pub fn find(&self, size: u64, align: u64, limit: u64) -> Option<Range> {
        self.ranges.iter().find_map(|r| {
            let start = r.start.checked_next_multiple_of(align)?;
            let end = start.checked_add(size)?;
            (end <= r.end && end <= limit).then_some(Range { start, end })
        })
    }
}

/// Reads a property of (address, size) pairs, `addr_cells` and `size_cells` 32-bit big-endian
/// cells each (1 or 2), such as `/memory`'s `reg` or `available`. `None` when it is not whole
/// pairs or a cell count is not 1 or 2; empty (size 0) or overflowing pairs are left out.
pub fn pairs(value: &[u8], addr_cells: usize, size_cells: usize) -> Option<Vec<Range>> {
    if !(1..=2).contains(&addr_cells) || !(1..=2).contains(&size_cells) {
        return None;
    }
    let pair = 4 * (addr_cells + size_cells);
    if !value.len().is_multiple_of(pair) {
        return None;
    }
    let number = |cells: &[u8]| {
        cells.chunks_exact(4).fold(0u64, |n, c| {
            n << 32 | u64::from(u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
        })
    };
    Some(
        value
            .chunks_exact(pair)
            .filter_map(|p| {
                let (a, s) = p.split_at(4 * addr_cells);
                Range::from_base_size(number(a), number(s)).filter(|r| !r.is_empty())
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(start: u64, end: u64) -> Range {
        Range { start, end }
    }

    #[test]
    fn add_merges_and_sorts() {
        let mut s = RangeSet::new();
        s.add(r(0x3000, 0x4000));
        s.add(r(0, 0x1000));
        s.add(r(0x1000, 0x2000));
        assert_eq!(s.ranges(), [r(0, 0x2000), r(0x3000, 0x4000)]);
        assert_eq!(s.total(), 0x3000);
    }

    #[test]
    fn remove_splits_trims_and_drops() {
        let mut s = RangeSet::new();
        s.add(r(0, 0x10000));
        s.remove(r(0x4000, 0x5000));
        s.remove(r(0, 0x1000));
        s.remove(r(0xf000, 0x20000));
        assert_eq!(s.ranges(), [r(0x1000, 0x4000), r(0x5000, 0xf000)]);
        s.remove(r(0, u64::MAX));
        assert!(s.ranges().is_empty());
    }

    #[test]
    fn find_respects_alignment_and_limit() {
        let mut s = RangeSet::new();
        s.add(r(0x1234, 0x9000));
        s.add(r(0x10_0000, 0x20_0000));
        assert_eq!(s.find(0x1000, 0x1000, u64::MAX), Some(r(0x2000, 0x3000)));
        assert_eq!(
            s.find(0x8000, 0x1000, u64::MAX),
            Some(r(0x10_0000, 0x10_8000))
        );
        assert_eq!(s.find(0x8000, 0x1000, 0x10_4000), None);
        assert_eq!(Range::from_base_size(u64::MAX, 2), None);
    }

    #[test]
    fn pairs_of_cells() {
        let mut v = alloc::vec::Vec::new();
        for n in [0x4000u64, 0x1000, 0x10_0000_0000, 0x2000, 0, 0] {
            v.extend_from_slice(&n.to_be_bytes());
        }
        assert_eq!(
            pairs(&v, 2, 2),
            Some(alloc::vec![
                Range {
                    start: 0x4000,
                    end: 0x5000
                },
                Range {
                    start: 0x10_0000_0000,
                    end: 0x10_0000_2000
                }
            ])
        );
        assert_eq!(pairs(&v[..20], 2, 2), None);
        assert_eq!(pairs(&v, 3, 2), None);
        assert_eq!(
            pairs(&[0, 0, 0x10, 0, 0, 0, 0, 0x10], 1, 1),
            Some(alloc::vec![Range {
                start: 0x1000,
                end: 0x1010
            }])
        );
    }
}
