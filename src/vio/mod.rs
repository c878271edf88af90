//! The VIO bus: virtio-vio, v-scsi and vTPM adapters, their TCE windows and CRQs.
//!
//! [`discover`] finds adapters of one kind in the inventory; [`tce::TceWindow`] maps guest memory into each
//! adapter's DMA window; [`crq::Crq`] is the PAPR Command/Response Queue with its handshake and
//! recovery; [`link::Link`] carries virtio-vio requests and responses over it, and
//! [`vscsi::Session`] a v-scsi adapter's SRP exchanges, [`vtpm::Vtpm`] a vTPM's commands.

pub mod channel;
pub mod crq;
pub mod irq;
pub mod link;
pub mod tce;
pub mod vscsi;
pub mod vtpm;
mod wait;

pub use wait::Patience;

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use vioboot_core::inventory::{DmaWindow, Inventory};

/// `compatible` of a virtio-vio adapter.
pub const COMPATIBLE: &str = "IBM,virtio-vio";
/// `compatible` of a v-scsi adapter (PAPR virtual SCSI: SRP over a CRQ).
pub const VSCSI_COMPATIBLE: &str = "IBM,v-scsi";
/// `compatible` of a TPM 2.0 vTPM (QEMU's tpm-spapr; `device_type` is `IBM,vtpm`).
pub const VTPM_COMPATIBLE: &str = "IBM,vtpm20";

/// A VIO adapter from the device tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Adapter {
    /// Node name, e.g. `virtio@71000010`.
    pub name: String,
    pub unit: u32,
    pub window: DmaWindow,
    pub irq: Option<u32>,
}

/// An adapter node vioboot cannot use, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unusable {
    pub name: String,
    pub why: &'static str,
}

impl fmt::Display for Unusable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.name, self.why)
    }
}

/// Smallest window vioboot works with: a CRQ page, rings and a few buffers.
pub const MIN_WINDOW: u64 = 1 << 20;

/// The adapters under `/vdevice` compatible with `compatible` ([`COMPATIBLE`],
/// [`VSCSI_COMPATIBLE`]), and the ones that cannot be used.
pub fn discover(inv: &Inventory, compatible: &str) -> (Vec<Adapter>, Vec<Unusable>) {
    let mut ok = Vec::new();
    let mut bad = Vec::new();
    for d in inv.vdevices.as_deref().unwrap_or_default() {
        if !d.is_compatible(compatible) {
            continue;
        }
        let why = match d.dma {
            None => Some("no ibm,my-dma-window: the server could not reach any memory"),
            Some(w) if w.size < MIN_WINDOW => Some("DMA window smaller than 1 MiB"),
            Some(w) if w.ioba % 4096 != 0 || w.size % 4096 != 0 => {
                Some("DMA window not 4 KiB aligned")
            }
            Some(w) if w.ioba.checked_add(w.size).is_none() => Some("DMA window wraps"),
            Some(_) => None,
        };
        match (why, d.dma) {
            (None, Some(window)) => ok.push(Adapter {
                name: d.name.clone(),
                unit: d.unit,
                window,
                irq: d.irq,
            }),
            (why, _) => bad.push(Unusable {
                name: d.name.clone(),
                why: why.unwrap_or("unusable"),
            }),
        }
    }
    (ok, bad)
}
