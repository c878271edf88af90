//! The memory pattern test, without memory: which blocks of free memory to test for a size
//! (`vioboot.memtest=quick|full|<MiB>`), and the patterns, run over a [`Memory`] that the
//! firmware backs with real addresses and the tests with a fake that can hold a stuck bit.
//!
//! Each block gets address-in-address (every 64-bit word holds its own address), then its
//! complement, written in one sweep and checked in the next; its first words also get walking
//! ones and walking zeros (each of the 64 bits alone, set and then clear).

use crate::ranges::{Range, RangeSet};
use alloc::vec::Vec;

/// How much memory the test covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Size {
    /// A bounded sample ([`QUICK_BYTES`] spread over all of free memory).
    Quick,
    /// Every free byte.
    Full,
    /// This many MiB, spread the same way (0: no test).
    MiB(u32),
}

/// Bytes the quick test covers.
pub const QUICK_BYTES: u64 = 2 << 20;
/// The test works in blocks of this size (the unit a firmware lends at a time).
pub const BLOCK: u64 = 256 << 10;
/// Words of each block that get walking ones and zeros.
pub const WALK_WORDS: u64 = 4;

/// Word access to memory by address.
pub trait Memory {
    fn write(&mut self, addr: u64, value: u64);
    fn read(&mut self, addr: u64) -> u64;
}

/// An address that did not hold what was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fault {
    pub addr: u64,
    pub wrote: u64,
    pub read: u64,
    pub pattern: &'static str,
}

/// The blocks to test for `size`, taken from `free` (aligned to [`BLOCK`]): all of them for
/// `Full`, else that many bytes' worth spread evenly from the first free block to the last.
pub fn plan(free: &RangeSet, size: Size) -> Vec<Range> {
    let blocks: Vec<Range> = free
        .ranges()
        .iter()
        .flat_map(|r| {
            let start = r.start.next_multiple_of(BLOCK);
            let end = r.end - r.end % BLOCK;
            (start..end.max(start))
                .step_by(BLOCK as usize)
                .filter_map(|b| Range::from_base_size(b, BLOCK))
        })
        .collect();
    let want = match size {
        Size::Full => return blocks,
        Size::Quick => QUICK_BYTES,
        Size::MiB(m) => u64::from(m) << 20,
    };
    let n = (want.div_ceil(BLOCK) as usize).min(blocks.len());
    if n == 0 {
        return Vec::new();
    }
    // Block i of n is the one at i/n of the way through (the first and the last included).
    (0..n)
        .map(|i| {
            let at = if n == 1 {
                0
            } else {
                i * (blocks.len() - 1) / (n - 1)
            };
            blocks[at]
        })
        .collect()
}

/// Tests one block (8-byte aligned bounds); appends up to `max_faults` faults in all.
pub fn test_block(mem: &mut impl Memory, r: Range, faults: &mut Vec<Fault>, max_faults: usize) {
    let words = || (r.start..r.end).step_by(8);
    let mut note = |f: Fault| {
        if faults.len() < max_faults {
            faults.push(f);
        }
    };
    // Each word holds its own address, then its complement (`flip`): a plain XOR, so the
    // sweeps stay tight loops (no call per word).
    for (pattern, flip) in [("address", 0u64), ("complement", u64::MAX)] {
        for a in words() {
            mem.write(a, a ^ flip);
        }
        for a in words() {
            let got = mem.read(a);
            if got != a ^ flip {
                note(Fault {
                    addr: a,
                    wrote: a ^ flip,
                    read: got,
                    pattern,
                });
            }
        }
    }
    for a in words().take(WALK_WORDS as usize) {
        for bit in 0..64 {
            for (pattern, v) in [
                ("walking one", 1u64 << bit),
                ("walking zero", !(1u64 << bit)),
            ] {
                mem.write(a, v);
                let got = mem.read(a);
                if got != v {
                    note(Fault {
                        addr: a,
                        wrote: v,
                        read: got,
                        pattern,
                    });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::collections::BTreeMap;

    /// Memory with one bit stuck at 0 or 1 at one address.
    struct Fake {
        words: BTreeMap<u64, u64>,
        stuck: Option<(u64, u32, bool)>,
    }

    impl Memory for Fake {
        fn write(&mut self, addr: u64, value: u64) {
            self.words.insert(addr, value);
        }
        fn read(&mut self, addr: u64) -> u64 {
            let v = self.words.get(&addr).copied().unwrap_or(0xdead);
            match self.stuck {
                Some((a, bit, true)) if a == addr => v | 1 << bit,
                Some((a, bit, false)) if a == addr => v & !(1 << bit),
                _ => v,
            }
        }
    }

    fn set(ranges: &[(u64, u64)]) -> RangeSet {
        let mut s = RangeSet::new();
        for &(a, b) in ranges {
            s.add(Range { start: a, end: b });
        }
        s
    }

    #[test]
    fn full_covers_every_aligned_block_and_quick_a_spread_sample() {
        let free = set(&[(0x1000, 0x10_0000), (0x4000_0000, 0x4100_0000)]);
        let all = plan(&free, Size::Full);
        // 0x1000..0x100000 holds 3 whole blocks (0x40000, 0x80000, 0xc0000); 16 MiB holds 64.
        assert_eq!(all.len(), 3 + 64);
        assert!(all
            .iter()
            .all(|b| b.size() == BLOCK && b.start % BLOCK == 0));
        let quick = plan(&free, Size::Quick);
        assert_eq!(quick.len(), (QUICK_BYTES / BLOCK) as usize);
        assert_eq!(quick.first(), all.first());
        assert_eq!(quick.last(), all.last());
        assert!(quick.windows(2).all(|w| w[0].start < w[1].start));
        assert_eq!(plan(&free, Size::MiB(0)), Vec::new());
        assert_eq!(plan(&free, Size::MiB(1000)).len(), all.len());
        assert_eq!(plan(&set(&[(0, 0x1000)]), Size::Quick), Vec::new());
    }

    #[test]
    fn good_memory_passes() {
        let mut m = Fake {
            words: BTreeMap::new(),
            stuck: None,
        };
        let mut faults = Vec::new();
        test_block(
            &mut m,
            Range::from_base_size(0x4_0000, BLOCK).unwrap(),
            &mut faults,
            8,
        );
        assert_eq!(faults, Vec::new());
    }

    #[test]
    fn a_stuck_bit_is_found_with_its_address() {
        for (bit, high) in [(0, true), (17, false), (63, true)] {
            let addr = 0x4_0000 + 0x1238;
            let mut m = Fake {
                words: BTreeMap::new(),
                stuck: Some((addr, bit, high)),
            };
            let mut faults = Vec::new();
            test_block(
                &mut m,
                Range::from_base_size(0x4_0000, BLOCK).unwrap(),
                &mut faults,
                8,
            );
            assert!(!faults.is_empty(), "bit {bit} stuck {high}");
            assert!(faults.iter().all(|f| f.addr == addr));
            assert!(faults.iter().all(|f| (f.wrote ^ f.read) == 1 << bit));
        }
    }

    #[test]
    fn walking_bits_catch_a_stuck_bit_in_the_first_words() {
        // Bit 40 of word 0 stuck at 0: address and complement of 0x40000 differ there too, but
        // the walking ones name it on their own.
        let mut m = Fake {
            words: BTreeMap::new(),
            stuck: Some((0x4_0000, 40, false)),
        };
        let mut faults = Vec::new();
        test_block(
            &mut m,
            Range::from_base_size(0x4_0000, BLOCK).unwrap(),
            &mut faults,
            100,
        );
        assert!(faults
            .iter()
            .any(|f| f.pattern == "walking one" && f.wrote == 1 << 40));
    }

    #[test]
    fn faults_are_capped() {
        let mut m = Fake {
            words: BTreeMap::new(),
            stuck: Some((0x4_0008, 3, true)),
        };
        let mut faults = Vec::new();
        test_block(
            &mut m,
            Range::from_base_size(0x4_0000, BLOCK).unwrap(),
            &mut faults,
            1,
        );
        assert_eq!(faults.len(), 1);
    }
}
