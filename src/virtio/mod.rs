//! virtio's transports: over the VIO bus (CRQ messages and remote DMA instead of MMIO or PCI)
//! and over PCI ([`pci`]), and the DMA layers that hand virtio-drivers IOBAs ([`VioHal`]) or
//! real addresses ([`hal::RealHal`]). The devices on top are in `drivers`.

pub mod hal;
pub mod pci;
pub mod transport;

pub use hal::VioHal;
pub use transport::{QueueError, VioError, VioHandle, VioTransport};
