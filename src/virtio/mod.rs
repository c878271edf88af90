//! virtio over the VIO bus: the transport (CRQ messages and remote DMA instead of MMIO or PCI)
//! and the DMA layer that hands virtio-drivers IOBAs. The devices on top are in `drivers`.

pub mod hal;
pub mod transport;

pub use hal::VioHal;
pub use transport::{QueueError, VioError, VioHandle, VioTransport};
