//! Buses and their drivers: where adapters come from, and what turns an adapter into a device.
//!
//! Each bus lists its adapters from the inventory (the VIO bus: `vio::discover`, for
//! virtio-vio, v-scsi and vTPM adapters; the PCI buses: `pci::discover`, every function behind
//! every host bridge); each kind of adapter has a driver (`drivers::virtio_vio`,
//! `drivers::vscsi`, `drivers::vtpm`, `drivers::pci`) that opens it and makes block devices, a
//! file system or a TPM of it, or (other PCI functions) identifies it. Callers see
//! only [`Adapter`], `drivers::Bound` and `dev::AnyDevice`.

use crate::dev::DeviceError;
use crate::drivers::{self, Bound};
use crate::pci;
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
    /// A function on a PCI host bridge, as its scan found it.
    Pci {
        name: String,
        config: pci::RtasConfig,
        function: pci::Function,
        /// Whether vioboot gave its BARs their addresses (else firmware did).
        assigned: bool,
        /// Its host bridge's TCE window.
        dma: Option<vioboot_core::inventory::DmaWindow>,
    },
}

impl Adapter {
    /// The name its checks are reported under.
    pub fn name(&self) -> &str {
        match self {
            Adapter::VirtioVio(a)
            | Adapter::VScsi { adapter: a, .. }
            | Adapter::Vtpm { adapter: a, .. } => &a.name,
            Adapter::Pci { name, .. } => name,
        }
    }

    /// Where it is, for a failure's diagnostics.
    pub fn location(&self) -> (&'static str, String) {
        match self {
            Adapter::VirtioVio(a)
            | Adapter::VScsi { adapter: a, .. }
            | Adapter::Vtpm { adapter: a, .. } => ("unit", format!("{:#x}", a.unit)),
            Adapter::Pci {
                config, function, ..
            } => ("pci", format!("buid {:#x} {}", config.buid, function.at)),
        }
    }
}

/// What the buses found: adapters to open, and nodes that cannot be used, with why (and the
/// kind of adapter they claim to be: `virtio-vio`, `v-scsi`).
pub struct Found {
    pub adapters: Vec<Adapter>,
    pub unusable: Vec<(&'static str, vio::Unusable)>,
    /// The PCI host bridges scanned, and those that could not be.
    pub pci_hosts: Vec<pci::Host>,
    pub pci_unusable: Vec<pci::PciError>,
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
    let (pci_hosts, pci_unusable) = pci::discover(inv);
    for h in &pci_hosts {
        adapters.extend(h.functions.iter().map(|f| Adapter::Pci {
            name: h.function_name(f.at),
            config: h.config,
            function: f.clone(),
            assigned: h.assigned,
            dma: h.dma,
        }));
    }
    Found {
        adapters,
        unusable,
        pci_hosts,
        pci_unusable,
    }
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
        Adapter::Pci {
            name,
            config,
            function,
            assigned,
            dma,
        } => Ok(drivers::pci::bind(
            name, *config, function, *assigned, *dma, timeout_us,
        )?),
    }
}
