//! Device drivers: each turns an adapter into devices behind the `dev` interfaces. The
//! virtio-vio driver ([`virtio_vio`]) opens the adapter's CRQ and transport and makes a block
//! device ([`virtio_blk`]) or a file system ([`virtio_fs`]) of it, by the device id its server
//! reports. The v-scsi driver ([`vscsi`]) logs in to an SRP target and makes a block device of
//! each disk LUN it reports; the LUNs share the adapter's CRQ and TCE window. The vTPM driver
//! ([`vtpm`]) offers the adapter as a `dev::Tpm`. A PCI function ([`pci`]) is identified and
//! reported (a virtio-pci device's structures checked); a virtio-pci block device or file
//! system goes through the same `virtio_blk`/`virtio_fs` drivers ([`virtio_pci`]).

pub mod pci;
pub mod virtio_blk;
pub mod virtio_fs;
pub mod virtio_pci;
pub mod virtio_vio;
pub mod vscsi;
pub mod vtpm;

use crate::dev::{AnyDevice, Device, DeviceError};
use alloc::boxed::Box;
use alloc::string::String;
use alloc::vec::Vec;

/// An adapter a driver opened.
pub struct Bound {
    /// What opening found, for the adapter's own report line.
    pub summary: String,
    /// Further facts, each a report line of its own (check, detail), once the adapter is up.
    pub facts: Vec<(&'static str, String)>,
    /// The devices behind it: one for virtio-vio, one per usable LUN for v-scsi.
    pub units: Vec<Unit>,
    /// What the units share, shut down after them under the adapter's name (a v-scsi
    /// adapter's CRQ and TCE window); `None` when the one unit owns its adapter outright.
    pub shared: Option<Box<dyn Device>>,
}

/// One device of an adapter.
pub struct Unit {
    /// The name its checks are reported under; `None`: the adapter's.
    pub name: Option<String>,
    /// The device, or the kind of device that could not be set up and why.
    pub device: Result<AnyDevice, (&'static str, DeviceError)>,
}
