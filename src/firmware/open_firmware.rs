//! Booted by Open Firmware (SLOF, VOF, PowerVM): console on OF's stdout, memory claimed from
//! OF, the tree from `fdt-fetch` or a walk, RTAS by H_RTAS or `instantiate-rtas`, quiesce at
//! the end, and a kernel entered with OF alive for it.

use super::{Firmware, FirmwareError, Regions, Tree, FDT_MAX};
use crate::console::{self, Sink};
use crate::hcall::UnitAddress;
use crate::loader::{Handoff, OfHandoff};
use crate::mem;
use crate::of::{self, Ihandle, Of, OfError};
use crate::rtas;
use alloc::boxed::Box;
use alloc::string::String;
use alloc::vec;
use vioboot_core::cells;
use vioboot_core::fdt_write;
use vioboot_core::inventory::{Inventory, RtasInfo};
use vioboot_core::options::{FdtChoice, RtasChoice};
use vioboot_core::ranges::Range;

/// `s` NUL-terminated, for Open Firmware (a NUL inside ends it early).
fn c_string(s: &str) -> alloc::ffi::CString {
    let bytes: alloc::vec::Vec<u8> = s.bytes().take_while(|&b| b != 0).collect();
    alloc::ffi::CString::new(bytes).unwrap_or_default()
}

/// Longest `/memory` `available` property read.
const AVAILABLE_MAX: usize = 4096;
/// Longest `/chosen/bootargs` read.
const BOOTARGS_MAX: usize = 1024;

pub struct OpenFirmware {
    of: Of,
}

impl OpenFirmware {
    /// # Safety
    /// `entry` must be Open Firmware's client-interface entry point.
    pub unsafe fn new(entry: u64) -> OpenFirmware {
        // SAFETY: forwarded contract.
        let of = unsafe { Of::install(entry) };
        OpenFirmware { of }
    }

    fn claim(&self, what: &'static str, size: u64) -> Result<Range, FirmwareError> {
        let start = self
            .of
            .claim(size, mem::REGION_ALIGN)
            .map_err(|error| FirmwareError::Claim { what, error })?;
        Ok(Range {
            start,
            end: start + size,
        })
    }

    /// Console on OF's stdout (or the vty behind it), RTAS tokens from `/rtas`.
    fn early_calls(of: &Of) {
        if let Some(ih) = of
            .finddevice(c"/chosen")
            .ok()
            .and_then(|c| of.getprop_u32(c, c"stdout").ok().flatten())
        {
            let ih = Ihandle(ih);
            // The vty behind stdout, if it is one: the console's fallback and its home after
            // quiesce.
            let vty = of.instance_to_package(ih).ok().and_then(|p| {
                let mut compat = [0u8; 64];
                let n = of.getprop(p, c"compatible", &mut compat).ok().flatten()?;
                let is_vty = cells::string_list(&compat[..n.min(64)]).any(|c| c == "hvterm1");
                is_vty
                    .then(|| of.getprop_u32(p, c"reg").ok().flatten())
                    .flatten()
                    .map(UnitAddress)
            });
            // When OF's stdout is the hvterm vty itself, write to the vty directly: the same
            // console, without a firmware call (and its exception-vector swap) per line.
            console::set_sink(match vty {
                Some(v) => Sink::Hvterm(v),
                None => Sink::Of(ih, None),
            });
        }
        if let Ok(r) = of.finddevice(c"/rtas") {
            let t = |n| of.getprop_u32(r, n).ok().flatten();
            rtas::set_tokens(t(c"power-off"), t(c"ibm,os-term"));
            rtas::probe_hcall();
        }
    }

    /// `fdt-fetch` where OF has it and the options allow, else a walk of its tree.
    fn obtain_tree(&self, choice: FdtChoice) -> Result<Tree, FirmwareError> {
        if choice != FdtChoice::Walk && self.of.has(c"fdt-fetch") {
            let mut buf = vec![0u8; FDT_MAX];
            self.of
                .fdt_fetch(&mut buf)
                .map_err(|e| FirmwareError::FdtFetch(Some(e)))?;
            let size = fdt_write::total_size(&buf).ok_or(FirmwareError::FdtFetch(None))? as usize;
            buf.truncate(size.min(FDT_MAX));
            buf.shrink_to_fit();
            Ok(Tree {
                blob: buf,
                source: "Open Firmware fdt-fetch",
            })
        } else {
            Ok(Tree {
                blob: of::flatten(&self.of)?,
                source: "a walk of the Open Firmware tree",
            })
        }
    }

    /// `/chosen/bootargs`, at most BOOTARGS_MAX bytes.
    fn read_bootargs(&self) -> String {
        let Ok(chosen) = self.of.finddevice(c"/chosen") else {
            return String::new();
        };
        let mut buf = vec![0u8; BOOTARGS_MAX];
        match self.of.getprop(chosen, c"bootargs", &mut buf) {
            Ok(Some(n)) => {
                buf.truncate(n.min(BOOTARGS_MAX));
                String::from_utf8_lossy(&buf).trim_end_matches('\0').into()
            }
            _ => String::new(),
        }
    }
}

impl Firmware for OpenFirmware {
    fn booted_by(&self) -> &'static str {
        "Open Firmware"
    }

    fn interface(&self) -> &'static str {
        "Open Firmware client interface"
    }

    /// Console on OF's stdout (or, when that is the hvterm vty, on the vty directly), RTAS
    /// tokens from `/rtas`.
    fn early(&mut self) {
        // A burst of OF calls: the firmware's vectors stay in place for all of it.
        let of = self.of;
        crate::arch::with_firmware_vectors(|| Self::early_calls(&of));
    }

    fn regions(&self, image: Range) -> Result<Regions, FirmwareError> {
        Ok(Regions {
            image,
            heap: self.claim("heap", mem::HEAP_SIZE)?,
            pool: self.claim("page pool", mem::POOL_SIZE)?,
        })
    }

    fn memory_in_use(&self) -> Result<alloc::vec::Vec<Range>, FirmwareError> {
        let mut buf = vec![0u8; AVAILABLE_MAX];
        let of = self.of;
        let read = crate::arch::with_firmware_vectors(|| {
            let node = of.finddevice(c"/memory")?;
            of.getprop(node, c"available", &mut buf)
        });
        let len = match read {
            Ok(Some(n)) => n,
            Ok(None) => 0,
            Err(e) => {
                return Err(FirmwareError::NoAvailable {
                    error: Some(e),
                    len: 0,
                })
            }
        };
        // PAPR's pseries root: two address and two size cells.
        let pairs = vioboot_core::ranges::pairs(buf.get(..len).unwrap_or(&[]), 2, 2)
            .ok_or(FirmwareError::NoAvailable { error: None, len })?;
        let mut in_use = vioboot_core::ranges::RangeSet::new();
        in_use.add(Range {
            start: 0,
            end: 1 << 32,
        });
        for r in pairs {
            in_use.remove(r);
        }
        Ok(in_use.ranges().to_vec())
    }

    fn bootargs(&self) -> String {
        crate::arch::with_firmware_vectors(|| self.read_bootargs())
    }

    fn tree(&self, choice: FdtChoice) -> Result<Tree, FirmwareError> {
        // Hundreds of OF calls when the tree is walked: the firmware's vectors stay in place.
        crate::arch::with_firmware_vectors(|| self.obtain_tree(choice))
    }

    /// SLOF keeps the TPM event log and hands it to Linux's prom_init (`sml-handover`); its
    /// vTPM driver must keep the CRQ.
    fn keeps_tpm_log(&self) -> bool {
        true
    }

    /// The vTPM's `2hash-ext-log ( pcr eventtype info info-len data data-len -- success? )`
    /// on an instance opened for the call (SLOF's vTPM driver keeps its CRQ open all along;
    /// its `open` and `close` do nothing more).
    fn hash_ext_log(
        &self,
        node: &str,
        pcr: u32,
        event_type: u32,
        info: &[u8],
        data: Range,
    ) -> Result<(), FirmwareError> {
        const METHOD: &str = "2hash-ext-log";
        let method_error = |e| FirmwareError::TpmMethod {
            method: METHOD,
            error: Some(e),
        };
        let path = c_string(node);
        let info = info.to_vec();
        let addr32 = |what, a: u64| {
            u32::try_from(a).map_err(|_| {
                method_error(OfError::AddressTooHigh {
                    service: what,
                    addr: a,
                })
            })
        };
        let (data_at, data_len) = (
            addr32("2hash-ext-log data", data.start)?,
            addr32("2hash-ext-log data", data.size())?,
        );
        let info_at = addr32("2hash-ext-log info", info.as_ptr() as u64)?;
        let of = self.of;
        crate::arch::with_firmware_vectors(|| {
            let ih = of.open(&path).map_err(FirmwareError::NoTpmDriver)?;
            // Whether the driver has the method, where OF can say (SLOF can; VOF cannot, and
            // has no device methods at all).
            let known = of
                .instance_to_package(ih)
                .and_then(|p| of.has_method(p, c"2hash-ext-log"));
            if known == Ok(false) {
                let _ = of.close(ih);
                return Err(FirmwareError::NoTpmDriver(OfError::Failed {
                    service: "test-method 2hash-ext-log",
                }));
            }
            // Arguments from the top of the method's stack down.
            let r = of.call_method(
                c"2hash-ext-log",
                ih,
                &[
                    data_len,
                    data_at,
                    info.len() as u32,
                    info_at,
                    event_type,
                    pcr,
                ],
            );
            let _ = of.close(ih);
            match r {
                Ok(0) => Err(FirmwareError::TpmMethod {
                    method: METHOD,
                    error: None,
                }),
                Ok(_) => Ok(()),
                // Without test-method, a method that cannot be called is taken as absent.
                Err(e) if known.is_err() => Err(FirmwareError::NoTpmDriver(e)),
                Err(e) => Err(method_error(e)),
            }
        })
    }

    fn lend(&self, what: &'static str, size: u64) -> Result<Range, FirmwareError> {
        crate::arch::with_firmware_vectors(|| self.claim(what, size))
    }

    fn give_back(&self, r: Range) {
        let of = self.of;
        let _ = crate::arch::with_firmware_vectors(|| of.release(r.start, r.size()));
    }

    fn console_needs_vty(&self) -> bool {
        false
    }

    fn prepare_rtas(&self, info: &RtasInfo, choice: RtasChoice) -> Result<(), FirmwareError> {
        let asked = choice == RtasChoice::Of;
        if asked || rtas::method() == rtas::Method::None {
            rtas::instantiate(&self.of, info.size)
                .map_err(|error| FirmwareError::Rtas { asked, error })?;
        }
        Ok(())
    }

    fn quiesce(&self) -> Option<Result<(), OfError>> {
        Some(self.of.quiesce())
    }

    fn handoff<'a>(
        &'a self,
        _tree: &'a [u8],
        inv: &Inventory,
        _regions: &Regions,
    ) -> Box<dyn Handoff + 'a> {
        Box::new(OfHandoff::new(self.of, super::real_mode_limit(inv)))
    }
}
