//! virtio-vio wire formats, shared by vioboot (the driver side) and the VIO server (the device
//! side) so the two cannot drift. `docs/virtio-vio.md` describes the protocol in prose; every
//! byte layout is defined here once.
//!
//! - [`msg`]: virtio-vio messages carried in CRQ command/response entries (the entry itself is
//!   PAPR's: `papr::crq`).
//! - [`header`]: the device header the server writes into the guest at PROBE.
//! - [`queue`]: the queue setup block the guest hands over at QUEUE_SETUP.
//! - [`device_id`]: the virtio device ids the header names.
//! - [`blk`]: virtio-blk request headers, types, status and feature bits.
#![no_std]
#![forbid(unsafe_code)]

pub mod blk;
pub mod device_id;
pub mod header;
pub mod msg;
pub mod queue;

/// The protocol version this crate describes.
pub const VERSION: u16 = 1;

/// Reads a big-endian u16 at `at` (callers pass fixed-size arrays, so `at` is in bounds).
fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn be64(b: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[at..at + 8]);
    u64::from_be_bytes(w)
}
