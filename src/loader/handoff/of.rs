//! The kernel entered with Open Firmware alive: memory claimed through OF, the options as
//! `/chosen/bootargs`, r3/r4 = initrd address/size, r5 = the client interface.

use super::{Handoff, HandoffError, Jump};
use crate::loader::load::Loaded;
use crate::loader::place::{PlaceError, ALIGN};
use crate::of::Of;
use alloc::format;
use vioboot_core::ranges::Range;

/// How far above the kernel's end the initrd starts.
const INITRD_GAP: u64 = 32 << 20;
/// Step between claim attempts for the initrd.
const INITRD_STEP: u64 = 16 << 20;
/// Linux's prom_init allocates (RTAS, the flattened tree) between the end of whatever it must
/// keep and the top of the real-mode area, capped at 768 MiB (`prom_init_mem`: "cap at 768MB
/// on all machines"); an initrd that starts below that cap moves the bottom of that space to
/// the initrd's end. An initrd that ends too close to the cap leaves prom_init no room: it
/// stops in "Could not allocate memory for RTAS" and drops to the firmware's prompt.
const PROM_ALLOC_CAP: u64 = 0x3000_0000;
/// Room left for prom_init between a low initrd's end and the cap.
const PROM_ROOM: u64 = 64 << 20;

pub struct OfHandoff {
    of: Of,
    /// Highest address a claim may reach (real mode, and OF's 4 GiB).
    limit: u64,
}

impl OfHandoff {
    pub fn new(of: Of, limit: u64) -> OfHandoff {
        OfHandoff { of, limit }
    }
}

impl Handoff for OfHandoff {
    /// Claims cannot be given back through the client interface: nothing to rewind.
    fn rewind(&mut self) {}

    fn take_kernel(&mut self, span: u64) -> Result<Range, PlaceError> {
        let size = span.next_multiple_of(ALIGN).max(ALIGN);
        let start = self
            .of
            .claim(size, ALIGN)
            .map_err(|error| PlaceError::Claim { size, error })?;
        Ok(Range {
            start,
            end: start + size,
        })
    }

    /// Just above the kernel when it leaves prom_init its room below the 768 MiB cap;
    /// otherwise at or above the cap (where prom_init does not look), below the real-mode
    /// limit vioboot can write to. GRUB places a large initrd low and Linux then stops in
    /// prom_init; vioboot does not.
    fn take_initrd(&mut self, size: u64, above: u64) -> Result<Range, PlaceError> {
        let size = size.next_multiple_of(ALIGN).max(ALIGN);
        let first = (above + INITRD_GAP).next_multiple_of(1 << 20);
        let cap = PROM_ALLOC_CAP.min(self.limit);
        let mut at = first;
        loop {
            if at < cap && at.saturating_add(size).saturating_add(PROM_ROOM) > cap {
                at = cap.max(first);
            }
            if at.checked_add(size).is_none_or(|end| end > self.limit) {
                break;
            }
            if let Ok(start) = self.of.claim_at(at, size) {
                return Ok(Range {
                    start,
                    end: start + size,
                });
            }
            at += INITRD_STEP;
        }
        Err(PlaceError::NoClaim {
            size,
            from: first,
            limit: self.limit,
            cap,
        })
    }

    fn prepare(&mut self, l: &Loaded) -> Result<Jump, HandoffError> {
        let of_err = |what| move |error| HandoffError::Of { what, error };
        let chosen = self
            .of
            .finddevice(c"/chosen")
            .map_err(of_err("finding /chosen"))?;
        let mut args = l.cmdline.clone().into_bytes();
        args.push(0);
        self.of
            .setprop(chosen, c"bootargs", &args)
            .map_err(of_err("setting /chosen/bootargs"))?;
        let (r3, r4) = l.initrd.map_or((0, 0), |r| (r.start, r.size()));
        // The kernel finds Open Firmware as it was: its vectors, big-endian interrupts.
        crate::arch::give_back_vectors();
        Ok(Jump {
            entry: l.entry_point,
            r3,
            r4,
            r5: Of::entry_address(),
            summary: format!(
                "Open Firmware: entry {:#x}, r3/r4 = initrd {r3:#x}/{r4:#x}, r5 = client interface",
                l.entry_point
            ),
        })
    }
}
