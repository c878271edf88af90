//! Device drivers: each turns an adapter into a device behind the `dev` interfaces. The
//! virtio-vio driver ([`virtio_vio`]) opens the adapter's CRQ and transport and makes a block
//! device ([`virtio_blk`]) or a file system ([`virtio_fs`]) of it, by the device id its server
//! reports.

pub mod virtio_blk;
pub mod virtio_fs;
pub mod virtio_vio;

use crate::dev::{AnyDevice, DeviceError};
use alloc::string::String;
use alloc::vec::Vec;

/// An adapter a driver opened.
pub struct Bound {
    /// What opening found, for the adapter's own report line.
    pub summary: String,
    /// Further facts, each a report line of its own (check, detail), once the device is up.
    pub facts: Vec<(&'static str, String)>,
    /// The device, or the kind of device that could not be set up and why.
    pub device: Result<AnyDevice, (&'static str, DeviceError)>,
}
