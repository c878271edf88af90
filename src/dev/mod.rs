//! Devices as the rest of vioboot sees them, whatever bus and transport is behind: a block
//! device, a file system and a TPM. The smoke checks and the loader are written against these traits
//! only; a driver (`drivers`: virtio-vio, v-scsi, the vTPM, virtio-pci) implements them.

pub mod block;
pub mod fs;
#[cfg(test)]
pub mod memfs;
pub mod multipath;
pub mod tpm;

pub use block::BlockDevice;
pub use fs::FileSystem;
pub use tpm::Tpm;

use crate::pci::PciError;
use crate::vio::vscsi::VscsiError;
use crate::vio::vtpm::VtpmError;
use crate::virtio::{QueueError, VioError};
use alloc::boxed::Box;
use alloc::string::String;
use core::fmt;

/// What a device failed with: its transport's own error, as it gave it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceError {
    Vio(VioError),
    /// A v-scsi adapter or LUN: the transport, the SRP exchange or the SCSI command.
    Vscsi(VscsiError),
    /// What the device holds cannot be right (a file system larger than its partition).
    Corrupt {
        device: String,
        what: String,
    },
    /// A vTPM: the transport, the CRQ exchange or the TPM command.
    Vtpm(VtpmError),
    /// A TPM command the TPM answered with an error, or with a response that does not hold
    /// together.
    TpmCommand {
        device: String,
        op: &'static str,
        error: ::tpm::TpmError,
    },
    /// A PCI function: its config space, BARs, capabilities or registers.
    Pci(PciError),
    /// A virtqueue vioboot drives itself (virtio-fs over virtio-pci): missing, too small, or
    /// a request the device never completed.
    Queue {
        device: String,
        queue: u16,
        error: QueueError,
    },
    /// A device's configuration that cannot be used.
    BadConfig {
        device: String,
        what: &'static str,
    },
    /// A request outside a device's blocks (a partition refusing to reach past its end).
    OutOfRange {
        device: String,
        block: u64,
        blocks: u64,
        capacity: u64,
    },
}

impl fmt::Display for DeviceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceError::Vio(e) => e.fmt(f),
            DeviceError::Vscsi(e) => e.fmt(f),
            DeviceError::Corrupt { device, what } => write!(f, "{device}: {what}"),
            DeviceError::Vtpm(e) => e.fmt(f),
            DeviceError::TpmCommand { device, op, error } => write!(f, "{device}: {op}: {error}"),
            DeviceError::Pci(e) => e.fmt(f),
            DeviceError::Queue {
                device,
                queue,
                error,
            } => write!(f, "{device}: queue {queue}: {error}"),
            DeviceError::BadConfig { device, what } => {
                write!(f, "{device}: bad device configuration: {what}")
            }
            DeviceError::OutOfRange {
                device,
                block,
                blocks,
                capacity,
            } => write!(
                f,
                "{device}: {blocks} blocks at block {block} outside its {capacity} blocks"
            ),
        }
    }
}

impl DeviceError {
    /// A device that presents itself so that it cannot be used (virtio structures missing or
    /// outside their BAR, a queue it does not offer): reported as a skip with this reason,
    /// not as a failure of vioboot's.
    pub fn unusable_device(&self) -> bool {
        matches!(
            self,
            DeviceError::Pci(PciError::VirtioCaps { .. })
                | DeviceError::Queue {
                    error: QueueError::Unavailable | QueueError::TooSmall { .. },
                    ..
                }
        )
    }
}

impl From<VioError> for DeviceError {
    fn from(e: VioError) -> Self {
        DeviceError::Vio(e)
    }
}

impl From<PciError> for DeviceError {
    fn from(e: PciError) -> Self {
        DeviceError::Pci(e)
    }
}

impl From<VscsiError> for DeviceError {
    fn from(e: VscsiError) -> Self {
        DeviceError::Vscsi(e)
    }
}

impl From<VtpmError> for DeviceError {
    fn from(e: VtpmError) -> Self {
        DeviceError::Vtpm(e)
    }
}

/// Transport counters of a device, for the report.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TransportStats {
    pub requests: u64,
    pub notifies: u64,
    /// Entries (responses and notices) received from the device.
    pub received: u64,
    pub protocol_errors: u64,
    /// Times the server side restarted and the device state was replayed.
    pub resets: u64,
    /// Of those, the ones after the partition migrated (counted by virtio-vio).
    pub migrations: u64,
}

/// What every device offers besides its class interface: a name, its DMA hygiene, counters and
/// a shutdown after which it can reach no memory of ours.
pub trait Device {
    /// The adapter's name (`virtio@71000010`).
    fn name(&self) -> &str;
    /// DMA mappings held now beyond the standing ones (rings): 0 between requests.
    fn pages_left_mapped(&self) -> usize;
    fn stats(&self) -> TransportStats;
    /// Resets the device and withdraws every DMA mapping and queue. Idempotent.
    fn shut_down(&mut self) -> Result<(), DeviceError>;
    /// What `shut_down` did, for the report.
    fn shutdown_detail(&self) -> &'static str {
        "device reset, CRQ freed, every TCE cleared"
    }
}

/// A device a driver made of an adapter.
pub enum AnyDevice {
    Block(Box<dyn BlockDevice>),
    FileSystem(Box<dyn FileSystem>),
    Tpm(Box<dyn Tpm>),
}

impl AnyDevice {
    pub fn device(&mut self) -> &mut dyn Device {
        match self {
            AnyDevice::Block(b) => b.as_device(),
            AnyDevice::FileSystem(f) => f.as_device(),
            AnyDevice::Tpm(t) => t.as_device(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ::pci::virtio::VirtioCapError;
    use ::pci::Bdf;

    /// A device that presents itself unusably is a skip; vioboot's own failures, and a
    /// device that stopped answering, are failures.
    #[test]
    fn which_device_errors_are_skips() {
        let at = Bdf {
            bus: 0,
            device: 1,
            function: 0,
        };
        let caps = DeviceError::Pci(PciError::VirtioCaps {
            name: "pci 0000:00:01.0".into(),
            error: VirtioCapError::OutsideBar {
                at,
                cap: 0x70,
                bar: 4,
                offset: 0x3f00,
                length: 0x200,
                bar_size: 0x4000,
            },
        });
        assert!(caps.unusable_device());
        assert!(format!("{caps}").contains("reach past BAR4's 0x4000 bytes"));
        let queue = |error| DeviceError::Queue {
            device: "d".into(),
            queue: 1,
            error,
        };
        assert!(queue(QueueError::Unavailable).unusable_device());
        assert!(queue(QueueError::TooSmall { size: 8, want: 128 }).unusable_device());
        let silent = queue(QueueError::NoCompletion {
            waited_ms: 3000,
            missing: 2,
        });
        assert!(!silent.unusable_device());
        assert_eq!(
            format!("{silent}"),
            "d: queue 1: no completion within 3000 ms (2 request(s) in flight): the device is given up"
        );
        assert!(!queue(QueueError::GaveUp).unusable_device());
        assert!(!DeviceError::Pci(PciError::ShutDown { name: "d".into() }).unusable_device());
    }
}
