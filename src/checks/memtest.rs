//! The memory pattern test (`vioboot.memtest=quick|full|<MiB>`) over RAM vioboot does not
//! occupy: the tree's usable memory below the real-mode limit, minus the vectors' first
//! 64 KiB, the image (with its stacks), the heap (with the secondaries' stacks and the tree
//! copy) and the page pool, and minus what the firmware still uses (Open Firmware: all it
//! does not list as available; without firmware: the tree at r3). The patterns are
//! `vioboot_core::memtest`'s.

use crate::firmware::{self, Firmware, Regions};
use crate::{mem, report, time};
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use vioboot_core::inventory::Inventory;
use vioboot_core::memtest::{self, Size};
use vioboot_core::options::Options;
use vioboot_core::ranges::Range;

/// Low memory never tested: the exception vectors and what firmware keeps next to them.
const LOW_KEEP: u64 = 64 << 10;
/// Faulty addresses reported at most.
const MAX_FAULTS: usize = 8;

pub fn run(fw: &dyn Firmware, inv: &Inventory, regions: &Regions, opts: &Options) {
    if opts.memtest == Size::MiB(0) {
        report::skip("memtest", "vioboot.memtest=0");
        return;
    }
    let mut free = inv.usable_memory();
    free.remove(Range {
        start: firmware::real_mode_limit(inv),
        end: u64::MAX,
    });
    free.remove(Range {
        start: 0,
        end: LOW_KEEP,
    });
    for r in regions.all() {
        free.remove(r);
    }
    match fw.memory_in_use() {
        Ok(in_use) => in_use.into_iter().for_each(|r| free.remove(r)),
        Err(e) => {
            report::fail(
                "memtest",
                &format!("cannot tell which memory the firmware uses: {e}"),
                &[],
            );
            return;
        }
    }
    let blocks = memtest::plan(&free, opts.memtest);
    if blocks.is_empty() {
        report::skip("memtest", "no free memory outside vioboot's own regions");
        return;
    }
    let start = time::now_us();
    let mut faults = Vec::new();
    let mut tested = 0u64;
    for &b in &blocks {
        // SAFETY: `b` is usable RAM by the tree, below the real-mode limit, past the vectors,
        // clear of the image, heap and pool (every stack and the tree copy live there), and
        // of what the firmware uses (Open Firmware: not listed as available); nothing runs
        // meanwhile that could allocate it.
        let mut m = unsafe { mem::Lent::new(b) };
        memtest::test_block(&mut m, b, &mut faults, MAX_FAULTS);
        tested += b.size();
    }
    let us = time::now_us().saturating_sub(start);
    let what = match opts.memtest {
        Size::Full => String::from("full"),
        Size::Quick => String::from("quick"),
        Size::MiB(m) => format!("{m} MiB"),
    };
    if !faults.is_empty() {
        let list: Vec<String> = faults
            .iter()
            .map(|f| {
                format!(
                    "{:#x} ({}: wrote {:#018x}, read {:#018x})",
                    f.addr, f.pattern, f.wrote, f.read
                )
            })
            .collect();
        report::fail(
            "memtest",
            &format!(
                "{} address(es) did not hold their value: {}",
                faults.len(),
                list.join("; ")
            ),
            &[],
        );
    } else {
        report::pass(
            "memtest",
            format_args!(
                "{what}: {} KiB in {} blocks of {} KiB between {:#x} and {:#x} ({} KiB free in all), \
                 address, complement and walking bits, in {} ms",
                tested >> 10,
                blocks.len(),
                memtest::BLOCK >> 10,
                blocks[0].start,
                blocks[blocks.len() - 1].end,
                free.total() >> 10,
                us / 1000,
            ),
        );
    }
}
