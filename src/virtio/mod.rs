//! virtio over the VIO bus: the transport (CRQ messages and remote DMA instead of MMIO or PCI),
//! the DMA layer that hands virtio-drivers IOBAs, and the devices vioboot checks.

pub mod blk;
pub mod fs;
pub mod hal;
pub mod transport;

pub use hal::VioHal;
pub use transport::{VioError, VioTransport};
