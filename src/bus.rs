//! Buses and their drivers: where adapters come from, and what turns an adapter into a device.
//!
//! Each bus lists its adapters from the inventory (the VIO bus: `vio::discover`, for
//! virtio-vio, v-scsi and vTPM adapters); each kind of adapter has a driver (`drivers::virtio_vio`,
//! `drivers::vscsi`, `drivers::vtpm`) that opens it and makes block devices, a file system or
//! a TPM of it. Callers see
//! only [`Adapter`], `drivers::Bound` and `dev::AnyDevice`.

use crate::dev::DeviceError;
use crate::drivers::{self, Bound};
use crate::vio;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use vioboot_core::inventory::Inventory;

/// The RTAS call (QEMU's own) that turns a VIO adapter's TCE bypass on or off.
const SET_TCE_BYPASS: &str = "ibm,set-tce-bypass";

/// An adapter some bus found, before a driver has opened it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Adapter {
    /// A virtio-vio adapter on the VIO bus.
    VirtioVio(vio::Adapter),
    /// A v-scsi adapter on the VIO bus, and the `ibm,set-tce-bypass` token if `/rtas` has one
    /// (SLOF leaves v-scsi adapters in bypass; the driver turns it off first).
    VScsi {
        adapter: vio::Adapter,
        tce_bypass: Option<u32>,
    },
    /// A vTPM on the VIO bus (SLOF leaves it in bypass too).
    Vtpm {
        adapter: vio::Adapter,
        tce_bypass: Option<u32>,
    },
}

impl Adapter {
    /// The name its checks are reported under.
    pub fn name(&self) -> &str {
        match self {
            Adapter::VirtioVio(a)
            | Adapter::VScsi { adapter: a, .. }
            | Adapter::Vtpm { adapter: a, .. } => &a.name,
        }
    }

    /// Where it is, for a failure's diagnostics.
    pub fn location(&self) -> (&'static str, String) {
        match self {
            Adapter::VirtioVio(a)
            | Adapter::VScsi { adapter: a, .. }
            | Adapter::Vtpm { adapter: a, .. } => ("unit", format!("{:#x}", a.unit)),
        }
    }
}

/// What the buses found: adapters to open, and nodes that cannot be used, with why (and the
/// kind of adapter they claim to be: `virtio-vio`, `v-scsi`).
pub struct Found {
    pub adapters: Vec<Adapter>,
    pub unusable: Vec<(&'static str, vio::Unusable)>,
}

impl Found {
    /// Whether any virtio-vio adapter was found, usable or not.
    pub fn has_virtio_vio(&self) -> bool {
        self.adapters
            .iter()
            .any(|a| matches!(a, Adapter::VirtioVio(_)))
            || self.unusable.iter().any(|(k, _)| *k == "virtio-vio")
    }
}

/// Every adapter of every bus.
pub fn enumerate(inv: &Inventory) -> Found {
    let (virtio, bad_virtio) = vio::discover(inv, vio::COMPATIBLE);
    let (vscsi, bad_vscsi) = vio::discover(inv, vio::VSCSI_COMPATIBLE);
    let tce_bypass = inv.rtas.as_ref().and_then(|r| r.token(SET_TCE_BYPASS));
    let mut adapters: Vec<Adapter> = virtio.into_iter().map(Adapter::VirtioVio).collect();
    adapters.extend(vscsi.into_iter().map(|adapter| Adapter::VScsi {
        adapter,
        tce_bypass,
    }));
    let (vtpm, bad_vtpm) = vio::discover(inv, vio::VTPM_COMPATIBLE);
    adapters.extend(vtpm.into_iter().map(|adapter| Adapter::Vtpm {
        adapter,
        tce_bypass,
    }));
    let mut unusable: Vec<_> = bad_virtio.into_iter().map(|u| ("virtio-vio", u)).collect();
    unusable.extend(bad_vscsi.into_iter().map(|u| ("v-scsi", u)));
    unusable.extend(bad_vtpm.into_iter().map(|u| ("vtpm", u)));
    Found { adapters, unusable }
}

/// Opens `a` with its driver.
pub fn bind(a: &Adapter, timeout_us: u64) -> Result<Bound, DeviceError> {
    match a {
        Adapter::VirtioVio(v) => Ok(drivers::virtio_vio::bind(v, timeout_us)?),
        Adapter::VScsi {
            adapter,
            tce_bypass,
        } => Ok(drivers::vscsi::bind(adapter, *tce_bypass, timeout_us)?),
        Adapter::Vtpm {
            adapter,
            tce_bypass,
        } => Ok(drivers::vtpm::bind(adapter, *tce_bypass, timeout_us)?),
    }
}
