//! The block device interface: fixed-size blocks addressed from 0.

use super::Device;
use super::DeviceError as Error;
use alloc::string::String;

pub trait BlockDevice: Device {
    /// Bytes per block (what `read` and `write` address).
    fn block_size(&self) -> usize;
    /// Blocks on the device.
    fn capacity(&self) -> u64;
    fn read_only(&self) -> bool;
    /// Reads whole blocks from `block` into `buf` (a multiple of the block size).
    fn read(&mut self, block: u64, buf: &mut [u8]) -> Result<(), Error>;
    /// Writes whole blocks from `block`.
    fn write(&mut self, block: u64, buf: &[u8]) -> Result<(), Error>;
    fn flush(&mut self) -> Result<(), Error>;
    /// What [`flush`](Self::flush) sends, for the report.
    fn flush_command(&self) -> &'static str {
        "VIRTIO_BLK_T_FLUSH"
    }
    /// What the device says it is (a serial number).
    fn identity(&mut self) -> Result<String, Error>;
    /// A name of the disk that is the same on every path to it and belongs to no other disk
    /// (a SCSI logical unit's NAA or EUI-64 designator, a virtio-blk serial), or `None`: only
    /// devices that have one are joined as paths of one disk (`dev::multipath`).
    fn unique_id(&mut self) -> Option<String> {
        None
    }
    /// Sets the device up again if it was given up after a failed request and its transport
    /// can (a virtio-vio device whose server came back: a new session, the device reset, new
    /// queues): `Ok(true)` when it did, `Ok(false)` when there was nothing to set up again or
    /// the transport cannot. The caller checks that it is still the same disk.
    fn reconnect(&mut self) -> Result<bool, Error> {
        Ok(false)
    }
    fn as_device(&mut self) -> &mut dyn Device;
}
