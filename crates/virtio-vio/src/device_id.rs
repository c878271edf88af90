//! virtio device ids (virtio 1.2, section 5): the `device_id` of the device header.

/// A block device (virtio 1.2, 5.2).
pub const BLOCK: u32 = 2;
/// A file system device (virtio 1.2, 5.11).
pub const FS: u32 = 26;
