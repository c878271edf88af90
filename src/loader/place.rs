//! Where a kernel, its initrd, the RTAS blob and the rewritten tree go when no firmware hands
//! out memory: bump allocation through usable memory, skipping reservations, below a limit.
//! Pure, so it is tested on the host.

use core::fmt;
use vioboot_core::ranges::{Range, RangeSet};

/// Alignment and granule of everything placed.
pub const ALIGN: u64 = 64 << 10;

/// Why memory could not be had.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlaceError {
    /// No run of `size` bytes of usable memory from `from` below `limit`; `free` is the
    /// memory that was free there (after the image, the reservations and what is placed).
    NoRoom {
        size: u64,
        from: u64,
        limit: u64,
        free: alloc::vec::Vec<Range>,
    },
    /// Open Firmware claimed no run of `size` bytes at any step from `from` up to the
    /// real-mode limit `limit` (skipping what would leave prom_init no room below `cap`).
    NoClaim {
        size: u64,
        from: u64,
        limit: u64,
        cap: u64,
    },
    /// Open Firmware refused to claim `size` bytes.
    Claim {
        size: u64,
        error: crate::of::OfError,
    },
}

impl fmt::Display for PlaceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PlaceError::NoRoom {
                size,
                from,
                limit,
                free,
            } => {
                write!(
                    f,
                    "no room for {} ({size:#x} bytes) from {from:#x} below the limit {limit:#x}; free memory found there: ",
                    mib(*size)
                )?;
                if free.is_empty() {
                    return write!(f, "none");
                }
                for (i, r) in free.iter().enumerate() {
                    let sep = if i == 0 { "" } else { ", " };
                    write!(f, "{sep}{:#x}..{:#x} ({})", r.start, r.end, mib(r.size()))?;
                }
                Ok(())
            }
            PlaceError::NoClaim {
                size,
                from,
                limit,
                cap,
            } => write!(
                f,
                "Open Firmware gave no {} ({size:#x} bytes) at any 16 MiB step from {from:#x} up to the real-mode limit {limit:#x} (a range starting below {cap:#x} must end 64 MiB below it, for Linux's prom_init)",
                mib(*size)
            ),
            PlaceError::Claim { size, error } => write!(f, "claiming {size:#x} bytes: {error}"),
        }
    }
}

/// `n` bytes in MiB, for messages.
fn mib(n: u64) -> alloc::string::String {
    alloc::format!("{} MiB", n.div_ceil(1 << 20))
}

/// Bump allocation through `usable` memory, skipping `reserved` ranges, below `limit`.
#[derive(Debug, Clone)]
pub struct Placer {
    usable: RangeSet,
    reserved: alloc::vec::Vec<Range>,
    pub next: u64,
    limit: u64,
}

impl Placer {
    pub fn new(
        usable: RangeSet,
        reserved: alloc::vec::Vec<Range>,
        next: u64,
        limit: u64,
    ) -> Placer {
        Placer {
            usable,
            reserved,
            next,
            limit,
        }
    }

    /// `size` bytes (rounded up to [`ALIGN`]) at or above `next`.
    /// Memory free from `from` below the limit: usable, not reserved.
    pub fn free_from(&self, from: u64) -> alloc::vec::Vec<Range> {
        let mut free = RangeSet::new();
        for u in self.usable.ranges() {
            let r = Range {
                start: u.start.max(from),
                end: u.end.min(self.limit),
            };
            if r.start < r.end {
                free.add(r);
            }
        }
        for x in &self.reserved {
            free.remove(*x);
        }
        free.ranges().to_vec()
    }

    pub fn take(&mut self, size: u64) -> Result<Range, PlaceError> {
        let size = size.next_multiple_of(ALIGN).max(ALIGN);
        let from = self.next;

        // Each round moves past one reservation or succeeds; bound it anyway.
        for _ in 0..64 {
            let Some(r) = Range::from_base_size(self.next, size) else {
                break;
            };
            if r.end > self.limit {
                break;
            }
            if let Some(x) = self.reserved.iter().find(|x| x.overlaps(&r)) {
                self.next = x.end.next_multiple_of(ALIGN);
                continue;
            }
            if !self
                .usable
                .ranges()
                .iter()
                .any(|u| r.start >= u.start && r.end <= u.end)
            {
                break;
            }
            self.next = r.end;
            return Ok(r);
        }
        Err(PlaceError::NoRoom {
            size,
            from,
            limit: self.limit,
            free: self.free_from(from),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(start: u64, end: u64) -> Range {
        Range { start, end }
    }

    fn placer(next: u64) -> Placer {
        let mut usable = RangeSet::new();
        usable.add(r(0, 0x1000_0000));
        Placer::new(
            usable,
            alloc::vec![r(0x20_0000, 0x31_0000)],
            next,
            0x0800_0000,
        )
    }

    #[test]
    fn bumps_and_rounds_to_the_granule() {
        let mut p = placer(0x10_0000);
        assert_eq!(p.take(1), Ok(r(0x10_0000, 0x11_0000)));
        assert_eq!(p.take(0x1_0001), Ok(r(0x11_0000, 0x13_0000)));
    }

    #[test]
    fn skips_reservations() {
        let mut p = placer(0x1f_0000);
        // 0x1f0000..0x210000 would overlap the reservation: placed right after it.
        assert_eq!(p.take(0x2_0000), Ok(r(0x31_0000, 0x33_0000)));
        // A reservation ending off the granule moves the next range to the granule.
        let mut usable = RangeSet::new();
        usable.add(r(0, 0x100_0000));
        let mut p = Placer::new(usable, alloc::vec![r(0, 0x1_2345)], 0, 0x100_0000);
        assert_eq!(p.take(1), Ok(r(0x2_0000, 0x3_0000)));
    }

    #[test]
    fn refuses_beyond_the_limit_or_outside_memory() {
        let mut p = placer(0x07f0_0000);
        let e = p.take(0x20_0000).unwrap_err();
        assert_eq!(
            e,
            PlaceError::NoRoom {
                size: 0x20_0000,
                from: 0x07f0_0000,
                limit: 0x0800_0000,
                free: alloc::vec![r(0x07f0_0000, 0x0800_0000)],
            }
        );
        assert_eq!(
            alloc::format!("{e}"),
            "no room for 2 MiB (0x200000 bytes) from 0x7f00000 below the limit 0x8000000; free memory found there: 0x7f00000..0x8000000 (1 MiB)"
        );
        let mut p = Placer::new(RangeSet::new(), alloc::vec![], 0, u64::MAX);
        assert!(p.take(4096).is_err());
        let mut p = placer(u64::MAX - 0x1000);
        assert!(p.take(0x10_0000).is_err(), "a wrapping range is refused");
    }
}
