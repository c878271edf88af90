//! A partition as a [`BlockDevice`]: blocks numbered from the partition's start, every read and
//! write refused unless it lies wholly inside the partition. The disk is shared with the other
//! partitions; shutting one down shuts the disk down.

use super::SharedDisk;
use crate::dev::{BlockDevice, Device, DeviceError, TransportStats};
use alloc::format;
use alloc::string::String;
use disk::Confined;

pub struct Partition {
    disk: SharedDisk,
    part: Confined,
    /// `virtio@71000010:2`.
    name: String,
}

impl Partition {
    pub fn new(disk: SharedDisk, p: &disk::Partition) -> Partition {
        let name = format!("{}:{}", disk.borrow().name(), p.number);
        Partition {
            disk,
            part: Confined::new(p.first_lba, p.blocks),
            name,
        }
    }

    fn absolute(&self, block: u64, len: usize) -> Result<u64, DeviceError> {
        let bs = self.block_size() as u64;
        let count = (len as u64).div_ceil(bs);
        self.part
            .absolute(block, count)
            .ok_or_else(|| DeviceError::OutOfRange {
                device: self.name.clone(),
                block,
                blocks: count,
                capacity: self.part.blocks,
            })
    }
}

impl Device for Partition {
    fn name(&self) -> &str {
        &self.name
    }
    fn pages_left_mapped(&self) -> usize {
        self.disk.borrow().pages_left_mapped()
    }
    fn stats(&self) -> TransportStats {
        self.disk.borrow().stats()
    }
    fn shut_down(&mut self) -> Result<(), DeviceError> {
        self.disk.borrow_mut().shut_down()
    }
}

impl BlockDevice for Partition {
    fn block_size(&self) -> usize {
        self.disk.borrow().block_size()
    }
    fn capacity(&self) -> u64 {
        self.part.blocks
    }
    fn read_only(&self) -> bool {
        self.disk.borrow().read_only()
    }
    fn read(&mut self, block: u64, buf: &mut [u8]) -> Result<(), DeviceError> {
        let at = self.absolute(block, buf.len())?;
        self.disk.borrow_mut().read(at, buf)
    }
    fn write(&mut self, block: u64, buf: &[u8]) -> Result<(), DeviceError> {
        let at = self.absolute(block, buf.len())?;
        self.disk.borrow_mut().write(at, buf)
    }
    fn flush(&mut self) -> Result<(), DeviceError> {
        self.disk.borrow_mut().flush()
    }
    fn identity(&mut self) -> Result<String, DeviceError> {
        let id = self.disk.borrow_mut().identity()?;
        Ok(format!("{id} partition {}", self.name))
    }
    fn as_device(&mut self) -> &mut dyn Device {
        self
    }
}
