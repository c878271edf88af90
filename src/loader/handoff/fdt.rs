//! The kernel entered with no firmware, as kexec does: a rewritten flattened tree with
//! `/chosen` (`bootargs`, `linux,initrd-start/end`), an RTAS blob that forwards to H_RTAS and
//! its `linux,rtas-*` properties, the TPM event log (if vioboot measured the kernel) as
//! `linux,sml-base` (u64) and `linux,sml-size` (u32) on the vTPM's node in the kernel's
//! (little-endian) byte order, as Linux's prom_init leaves them and
//! `drivers/char/tpm/eventlog/of.c` reads them for a vTPM, and memory
//! reservations for the tree, initrd, RTAS and log, all above where the kernel copies itself
//! (0..its size); r3 = tree, r4 = kernel, r5 = 0.

use super::{Handoff, HandoffError, Jump};
use crate::loader::load::Loaded;
use crate::loader::place::{PlaceError, Placer, ALIGN};
use crate::{arch, mem};
use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use vioboot_core::fdt_write::{self, Edit};
use vioboot_core::inventory::Inventory;
use vioboot_core::ranges::Range;

/// A kernel is placed at a multiple of this above its own span.
const KERNEL_ALIGN: u64 = 16 << 20;

pub struct FdtHandoff<'a> {
    tree: &'a [u8],
    placer: Placer,
    /// Above everything vioboot occupies: where placement starts for each entry.
    first_free: u64,
}

impl<'a> FdtHandoff<'a> {
    /// `tree` is the blob to rewrite; nothing is placed over `taken` (what vioboot occupies)
    /// or the reservations, nor above `limit`.
    pub fn new(tree: &'a [u8], inv: &Inventory, taken: &[Range], limit: u64) -> FdtHandoff<'a> {
        let mut usable = inv.usable_memory();
        let mut reserved = inv.reserved.clone();
        for r in taken {
            usable.remove(*r);
            reserved.push(*r);
        }
        let first_free = taken
            .iter()
            .map(|r| r.end)
            .max()
            .unwrap_or(0)
            .next_multiple_of(1 << 20);
        FdtHandoff {
            tree,
            placer: Placer::new(usable, reserved, first_free, limit),
            first_free,
        }
    }
}

fn be32(v: u64) -> Vec<u8> {
    (v as u32).to_be_bytes().to_vec()
}

impl Handoff for FdtHandoff<'_> {
    fn rewind(&mut self) {
        self.placer.next = self.first_free;
    }

    /// Above the kernel's own span: it copies itself to 0.
    fn take_kernel(&mut self, span: u64) -> Result<Range, PlaceError> {
        self.placer.next = self.placer.next.max(span.next_multiple_of(KERNEL_ALIGN));
        self.placer.take(span)
    }

    fn take_initrd(&mut self, size: u64, above: u64) -> Result<Range, PlaceError> {
        self.placer.next = self.placer.next.max(above);
        self.placer.take(size)
    }

    fn prepare(&mut self, l: &Loaded) -> Result<Jump, HandoffError> {
        self.placer.next = self.placer.next.next_multiple_of(1 << 20);
        let rtas = self.placer.take(4096)?;
        // SAFETY: placed clear of everything in use, like the kernel.
        let rtas_bytes = unsafe { mem::region_mut(rtas) };
        for (i, w) in arch::RTAS_HCALL_FORWARDER.iter().enumerate() {
            rtas_bytes[4 * i..4 * i + 4].copy_from_slice(&w.to_be_bytes());
        }
        let log = match &l.event_log {
            Some(log) => {
                let at = self.placer.take(log.bytes.len() as u64)?;
                // SAFETY: placed clear of everything in use, like the kernel.
                let dst = unsafe { mem::region_mut(at) };
                dst[..log.bytes.len()].copy_from_slice(&log.bytes);
                Some((log.node.as_str(), at, log.bytes.len() as u64))
            }
            None => None,
        };
        let room = self.placer.take(self.tree.len() as u64 + 4096)?;
        let mut bootargs = l.cmdline.clone().into_bytes();
        bootargs.push(0);
        let mut edits = vec![
            Edit {
                path: "/chosen",
                name: "bootargs",
                value: bootargs,
            },
            Edit {
                path: "/rtas",
                name: "linux,rtas-base",
                value: be32(rtas.start),
            },
            Edit {
                path: "/rtas",
                name: "linux,rtas-entry",
                value: be32(rtas.start),
            },
            Edit {
                path: "/rtas",
                name: "rtas-size",
                value: be32(rtas.size()),
            },
        ];
        let mut reserve = vec![(rtas.start, rtas.size()), (room.start, room.size())];
        if let Some((node, at, len)) = log {
            // In the kernel's byte order, not the tree's: for a vTPM (`IBM,vtpm20`) Linux's
            // of.c takes both as native integers (`size = *sizep; base = *basep`), as prom_init
            // writes them; vioboot boots only little-endian kernels.
            edits.push(Edit {
                path: node,
                name: "linux,sml-base",
                value: at.start.to_le_bytes().to_vec(),
            });
            edits.push(Edit {
                path: node,
                name: "linux,sml-size",
                value: (len as u32).to_le_bytes().to_vec(),
            });
            reserve.push((at.start, at.size().next_multiple_of(ALIGN)));
        }
        if let Some(r) = l.initrd {
            edits.push(Edit {
                path: "/chosen",
                name: "linux,initrd-start",
                value: r.start.to_be_bytes().to_vec(),
            });
            edits.push(Edit {
                path: "/chosen",
                name: "linux,initrd-end",
                value: r.end.to_be_bytes().to_vec(),
            });
            reserve.push((r.start, r.size().next_multiple_of(ALIGN)));
        }
        let tree =
            fdt_write::rewrite(self.tree, &edits, &reserve).map_err(HandoffError::Rewrite)?;
        fdt_write::validate(&tree).map_err(HandoffError::Invalid)?;
        if tree.len() as u64 > room.size() {
            return Err(HandoffError::TreeTooLarge {
                len: tree.len() as u64,
                room: room.size(),
            });
        }
        // SAFETY: placed clear of everything in use.
        let dst = unsafe { mem::region_mut(room) };
        dst[..tree.len()].copy_from_slice(&tree);
        Ok(Jump {
            entry: l.entry_point,
            r3: room.start,
            r4: l.kernel.start,
            r5: 0,
            summary: format!(
                "flattened tree ({} bytes) at {:#x}: entry {:#x}, r3 = tree, r4 = kernel {:#x}, r5 = 0; RTAS at {:#x}{}",
                tree.len(),
                room.start,
                l.entry_point,
                l.kernel.start,
                rtas.start,
                log.map_or(String::new(), |(node, at, len)| format!(
                    "; TPM event log ({len} bytes) at {:#x}, linux,sml-base/size on {node}",
                    at.start
                ))
            ),
        })
    }
}
