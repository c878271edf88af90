//! Buses and their drivers: where adapters come from, and what turns an adapter into a device.
//!
//! Each bus lists its adapters from the inventory (the VIO bus: `vio::discover`); each kind of
//! adapter has a driver (`drivers::virtio_vio` for virtio-vio) that opens it and makes a block
//! device or a file system of it. Callers see only [`Adapter`], `drivers::Bound` and
//! `dev::AnyDevice`.

use crate::dev::DeviceError;
use crate::drivers::{self, Bound};
use crate::vio;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use vioboot_core::inventory::Inventory;

/// An adapter some bus found, before a driver has opened it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Adapter {
    /// A virtio-vio adapter on the VIO bus.
    VirtioVio(vio::Adapter),
}

impl Adapter {
    /// The name its checks are reported under.
    pub fn name(&self) -> &str {
        match self {
            Adapter::VirtioVio(a) => &a.name,
        }
    }

    /// Where it is, for a failure's diagnostics.
    pub fn location(&self) -> (&'static str, String) {
        match self {
            Adapter::VirtioVio(a) => ("unit", format!("{:#x}", a.unit)),
        }
    }
}

/// What the buses found: adapters to open, and nodes that cannot be used, with why.
pub struct Found {
    pub adapters: Vec<Adapter>,
    pub unusable: Vec<vio::Unusable>,
}

/// Every adapter of every bus.
pub fn enumerate(inv: &Inventory) -> Found {
    let (vio, unusable) = vio::discover(inv);
    Found {
        adapters: vio.into_iter().map(Adapter::VirtioVio).collect(),
        unusable,
    }
}

/// Opens `a` with its driver.
pub fn bind(a: &Adapter, timeout_us: u64) -> Result<Bound, DeviceError> {
    match a {
        Adapter::VirtioVio(v) => Ok(drivers::virtio_vio::bind(v, timeout_us)?),
    }
}
