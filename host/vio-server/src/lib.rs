//! The reference VIO server: the device side of virtio-vio (`docs/virtio-vio.md`), served to
//! QEMU's `spapr-virtio-vio` device over its socket (`docs/vio-socket.md`).
//!
//! Layers, each using only those below it:
//! - [`partner`]: what the hypervisor gives a server ([`partner::Partner`]): the socket client
//!   for QEMU, and an in-memory fake guest for tests.
//! - [`mirror`]: the local copy of the guest's DMA window that rust-vmm's `virtio-queue` runs on.
//! - [`device`]: the device kinds behind one trait; [`blk`] is virtio-blk, [`fs`] virtio-fs.
//! - [`model`]: the virtio device model (header, status, features, config, queues).
//! - [`session`]: the CRQ handshake and message dispatch of one connection.
//! - [`server`]: the loop over connections.
#![forbid(unsafe_code)]

pub mod blk;
pub mod chain;
pub mod device;
pub mod faults;
pub mod fs;
pub mod hcall;
pub mod logger;
pub mod mirror;
pub mod model;
pub mod partner;
pub mod server;
pub mod session;
pub mod stats;

pub use blk::Blk;
pub use device::{Device, Request};
pub use faults::Faults;
pub use fs::{Fs, FsOptions};
pub use hcall::PartnerError;
pub use mirror::Mirror;
pub use model::{DeviceModel, Ended};
pub use partner::fake::FakeGuest;
pub use partner::socket::SocketPartner;
pub use partner::{Event, Hello, Partner};
pub use session::{CrqState, Session};
pub use stats::Stats;
