//! The device kinds behind the virtio-vio model: one trait, one implementation per kind
//! (virtio-blk in [`crate::blk`], virtio-fs in [`crate::fs`]).
//!
//! The model ([`crate::model`]) does everything that is the same for every kind: the device
//! header, status and feature negotiation, config access, queues, remote DMA. A device sees
//! only its config space and, per request, a descriptor chain over the mirror whose
//! driver-readable buffers already hold the guest's bytes. That chain is `virtio-queue`'s
//! `DescriptorChain` over `vm-memory`'s `GuestMemoryMmap`, the types `fuse-backend-rs` 0.14
//! builds its virtio-fs `Reader`/`Writer` from.

use crate::faults::Faults;
use crate::mirror::{DmaError, MirrorMemory};
use virtio_queue::DescriptorChain;
use virtio_vio::msg::Status;

/// One request: a descriptor chain the model has checked and prepared.
pub struct Request<'a> {
    /// The queue it came from.
    pub queue: u16,
    /// The chain; its buffers are inside the mirror. Use `chain.reader(mem)` /
    /// `chain.writer(mem)` (or any other `virtio-queue` consumer) to get at the bytes.
    pub chain: DescriptorChain<&'a MirrorMemory>,
    pub mem: &'a MirrorMemory,
    /// Set when a driver-readable buffer could not be fetched from the guest: the mirror does
    /// not hold the guest's bytes then, and the device should fail the request its own way.
    pub fetch_failed: Option<DmaError>,
    /// The session's fault injection (a device applies the faults that are its own).
    pub faults: Faults,
}

/// A virtio device kind.
pub trait Device {
    /// A short name for logs ("virtio-blk").
    fn name(&self) -> &str;
    /// The virtio device id (`virtio_vio::device_id`).
    fn device_id(&self) -> u32;
    /// The vendor id of the header.
    fn vendor_id(&self) -> u32 {
        0
    }
    /// The device feature bits offered (VIRTIO_F_VERSION_1 included).
    fn features(&self) -> u64;
    /// The maximum size of each queue, in queue order: 1 to 64 entries, each 0 (no such queue)
    /// or a power of two <= 32768.
    fn queue_max_sizes(&self) -> Vec<u16>;
    /// The config space as virtio lays it out (little-endian fields), at most 256 bytes.
    fn config(&self) -> Vec<u8>;
    /// The driver writes `data` at `offset` of the config space (already checked to lie inside
    /// it). The default refuses: no field is writable.
    fn write_config(&mut self, offset: u16, data: &[u8]) -> Result<(), Status> {
        let _ = (offset, data);
        Err(Status::BadArgument)
    }
    /// The driver accepted `features` (a subset of [`Device::features`]) with FEATURES_OK.
    fn set_features(&mut self, features: u64) {
        let _ = features;
    }
    /// The device is reset (SET_STATUS 0, or a new session).
    fn reset(&mut self) {}
    /// Whether a NOTIFY of `queue` is swallowed under `faults`: nothing served, no USED sent
    /// (a device's way to play an unresponsive backend). The default never swallows.
    fn swallows_notify(&self, queue: u16, faults: &Faults) -> bool {
        let _ = (queue, faults);
        false
    }
    /// Serves one request. Before the call the model has zeroed the chain's device-writable
    /// buffers in the mirror; the device returns how many bytes at the start of that
    /// device-writable space it produced (the used length). Exactly those bytes are copied to the
    /// guest afterwards, so a device that writes a status byte at the end reports the whole
    /// space. Must not panic on any chain.
    fn process(&mut self, req: Request<'_>) -> u32;
}
