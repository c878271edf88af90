//! Handed a flattened tree and no firmware (QEMU `-bios`, kexec): the tree at r3 checked in
//! place, console on its hvterm vty, RTAS by H_RTAS, memory placed from the tree's memory map,
//! and a kernel entered with a rewritten tree.

use super::{Firmware, FirmwareError, Regions, Tree, FDT_MAX};
use crate::console::{self, Sink};
use crate::hcall::UnitAddress;
use crate::loader::{FdtHandoff, Handoff};
use crate::mem;
use crate::of::OfError;
use crate::{arch, rtas};
use alloc::boxed::Box;
use alloc::string::String;
use fdt::Fdt;
use vioboot_core::cells;
use vioboot_core::fdt_write;
use vioboot_core::inventory::{Inventory, RtasInfo};
use vioboot_core::options::{FdtChoice, RtasChoice};
use vioboot_core::ranges::Range;

pub struct FlatTree {
    /// Where the tree is (r3 at entry).
    at: u64,
    /// The tree in place, once checked by [`Firmware::early`].
    blob: &'static [u8],
}

impl FlatTree {
    /// # Safety
    /// `at` must point at a flattened device tree in RAM that stays there while vioboot runs.
    pub unsafe fn new(at: u64) -> FlatTree {
        FlatTree { at, blob: &[] }
    }

    fn fdt(&self) -> Option<Fdt<'static>> {
        Fdt::new(self.blob).ok()
    }
}

impl Firmware for FlatTree {
    fn memory_in_use(&self) -> Result<alloc::vec::Vec<Range>, FirmwareError> {
        Ok(alloc::vec![Range {
            start: self.at,
            end: self.at + self.blob.len() as u64,
        }])
    }

    fn booted_by(&self) -> &'static str {
        "a flattened device tree (no firmware)"
    }

    fn interface(&self) -> &'static str {
        "flattened device tree"
    }

    /// Checks the tree in place (no heap yet), then console on its vty and RTAS tokens from
    /// it. A bad tree leaves nothing to print to: halt.
    fn early(&mut self) {
        let mut header = [0u8; 8];
        // SAFETY: r3 points at the tree QEMU placed in RAM; its 8-byte header is readable.
        unsafe { core::ptr::copy_nonoverlapping(self.at as *const u8, header.as_mut_ptr(), 8) };
        let size = fdt_write::total_size(&header).filter(|&s| (s as usize) <= FDT_MAX);
        let Some(size) = size else { arch::halt() };
        // SAFETY: the header's totalsize (bounded by FDT_MAX) says how many bytes the blob spans.
        let blob: &'static [u8] =
            unsafe { core::slice::from_raw_parts(self.at as *const u8, size as usize) };
        if fdt_write::validate(blob).is_err() {
            arch::halt()
        }
        let Ok(fdt) = Fdt::new(blob) else {
            arch::halt()
        };
        self.blob = blob;
        if let Some(vdev) = fdt.find_node("/vdevice") {
            let vty = vdev.children().find(|n| {
                n.property("compatible")
                    .is_some_and(|p| cells::string_list(p.value).any(|c| c == "hvterm1"))
            });
            if let Some(unit) = vty
                .and_then(|v| v.property("reg"))
                .and_then(|p| cells::single_u32(p.value).ok())
            {
                console::set_sink(Sink::Hvterm(UnitAddress(unit)));
            }
        }
        if let Some(r) = fdt.find_node("/rtas") {
            let t = |n| r.property(n).and_then(|p| cells::single_u32(p.value).ok());
            rtas::set_tokens(t("power-off"), t("ibm,os-term"));
            rtas::probe_hcall();
        }
    }

    /// The heap and pool above the image, in the first memory node (the RMA: real mode
    /// reaches only it), below 4 GiB, clear of the tree and every reservation.
    fn regions(&self, image: Range) -> Result<Regions, FirmwareError> {
        let fdt = self.fdt().ok_or(FirmwareError::NoRoom { what: "heap" })?;
        let tree = Range {
            start: self.blob.as_ptr() as u64,
            end: self.blob.as_ptr() as u64 + self.blob.len() as u64,
        };
        let fits = |r: Range| {
            fdt.all_nodes()
                .filter(|n| n.name.starts_with("memory"))
                .flat_map(|n| n.reg().into_iter().flatten())
                .any(|m| {
                    let start = m.starting_address as u64;
                    m.size
                        .is_some_and(|s| r.start >= start && r.end <= start + s as u64)
                })
        };
        let taken = |r: Range, extra: Option<Range>| {
            let mut fixed = [Some(image), Some(tree), extra].into_iter().flatten();
            let rsv = fdt
                .memory_reservations()
                .filter_map(|m| Range::from_base_size(m.address() as u64, m.size() as u64));
            fixed
                .find(|x| x.overlaps(&r))
                .or_else(|| rsv.into_iter().find(|x| x.overlaps(&r)))
                .map(|x| x.end)
        };
        let limit = 1 << 32;
        let heap = mem::place(image.end, mem::HEAP_SIZE, limit, fits, |r| taken(r, None))
            .ok_or(FirmwareError::NoRoom { what: "heap" })?;
        let pool = mem::place(heap.end, mem::POOL_SIZE, limit, fits, |r| {
            taken(r, Some(heap))
        })
        .ok_or(FirmwareError::NoRoom { what: "page pool" })?;
        Ok(Regions { image, heap, pool })
    }

    fn bootargs(&self) -> String {
        let Some(fdt) = self.fdt() else {
            return String::new();
        };
        fdt.find_node("/chosen")
            .and_then(|c| c.property("bootargs"))
            .map(|p| {
                String::from_utf8_lossy(p.value)
                    .trim_end_matches('\0')
                    .into()
            })
            .unwrap_or_default()
    }

    fn tree(&self, _choice: FdtChoice) -> Result<Tree, FirmwareError> {
        Ok(Tree {
            blob: self.blob.to_vec(),
            source: "r3 at entry",
        })
    }

    fn keeps_tpm_log(&self) -> bool {
        false
    }

    fn hash_ext_log(
        &self,
        _node: &str,
        _pcr: u32,
        _event_type: u32,
        _info: &[u8],
        _data: Range,
    ) -> Result<(), FirmwareError> {
        Err(FirmwareError::Unsupported {
            what: "measuring through the firmware",
        })
    }

    fn lend(&self, what: &'static str, _size: u64) -> Result<Range, FirmwareError> {
        Err(FirmwareError::Unsupported { what })
    }

    fn give_back(&self, _r: Range) {}

    fn console_needs_vty(&self) -> bool {
        true
    }

    /// H_RTAS or nothing: there is no firmware to instantiate RTAS.
    fn prepare_rtas(&self, _info: &RtasInfo, _choice: RtasChoice) -> Result<(), FirmwareError> {
        Ok(())
    }

    fn quiesce(&self) -> Option<Result<(), OfError>> {
        None
    }

    fn handoff<'a>(
        &'a self,
        tree: &'a [u8],
        inv: &Inventory,
        regions: &Regions,
    ) -> Box<dyn Handoff + 'a> {
        Box::new(FdtHandoff::new(
            tree,
            inv,
            &regions.all(),
            super::real_mode_limit(inv),
        ))
    }
}
