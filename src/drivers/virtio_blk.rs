//! virtio-blk over virtio-vio, through `virtio_drivers::device::blk::VirtIOBlk`, as a
//! [`BlockDevice`]. Its block is the device's `blk_size` when it offers one (a disk with
//! 4096-byte logical sectors), else 512 bytes; requests still address 512-byte sectors.

use super::virtio_vio::Attachment;
use crate::dev::{BlockDevice, Device, DeviceError as Error, TransportStats};
use crate::virtio::{QueueError, VioError, VioHal, VioHandle, VioTransport};
use alloc::string::String;
use virtio_drivers::device::blk::{VirtIOBlk, SECTOR_SIZE};
use virtio_drivers::transport::Transport;
use virtio_vio::device_id;

/// One virtio-vio block device.
pub struct VirtioBlk {
    at: Attachment,
    dev: Option<VirtIOBlk<VioHal, VioTransport>>,
    /// Bytes per block: `blk_size`, or 512.
    block_size: usize,
}

/// virtio-blk feature bit: `blk_size` in the config space is valid (virtio 1.2, 5.2.3).
const VIRTIO_BLK_F_BLK_SIZE: u64 = 1 << 6;
/// Offset of `blk_size` in `struct virtio_blk_config` (after capacity, size_max, seg_max,
/// geometry).
const BLK_SIZE_OFFSET: usize = 20;

impl VirtioBlk {
    /// Initializes a block device over an open transport.
    pub fn over(name: String, t: VioTransport) -> Result<VirtioBlk, VioError> {
        let id = t.handle().header().device_id;
        if id != device_id::BLOCK {
            return Err(VioError::WrongKind {
                adapter: name,
                id,
                wanted: "a block device",
            });
        }
        // virtio-drivers 0.13 neither negotiates VIRTIO_BLK_F_BLK_SIZE nor reads blk_size:
        // read it here when the device offers it, and keep 512 for anything implausible.
        let offered = t.handle().header().device_features;
        let block_size = if offered & VIRTIO_BLK_F_BLK_SIZE != 0 {
            t.read_config_space::<u32>(BLK_SIZE_OFFSET)
                .ok()
                .map(|b| b as usize)
                .filter(|b| b.is_power_of_two() && (SECTOR_SIZE..=65536).contains(b))
                .unwrap_or(SECTOR_SIZE)
        } else {
            SECTOR_SIZE
        };
        let mut at = Attachment::new(name, &t);
        let dev = at.settle(at.run(|| VirtIOBlk::<VioHal, _>::new(t)))?;
        at.rings_ready();
        Ok(VirtioBlk {
            at,
            dev: Some(dev),
            block_size,
        })
    }

    /// Driver features the device accepted, and those it offered.
    pub fn features(&self) -> (u64, u64) {
        (
            self.at.handle.negotiated_features().unwrap_or(0),
            self.at.handle.header().device_features,
        )
    }

    /// 512-byte sectors in one block.
    fn sectors_per_block(&self) -> u64 {
        (self.block_size / SECTOR_SIZE) as u64
    }

    /// The transport's handle: its counters and header.
    pub fn handle(&self) -> &VioHandle {
        &self.at.handle
    }

    /// Runs `op` on the driver with this adapter's window active.
    fn with_dev<T>(
        &mut self,
        op: impl FnOnce(&mut VirtIOBlk<VioHal, VioTransport>) -> Result<T, virtio_drivers::Error>,
    ) -> Result<T, Error> {
        let name = &self.at.name;
        let Some(dev) = self.dev.as_mut() else {
            return Err(VioError::Queue {
                adapter: name.clone(),
                queue: 0,
                error: QueueError::ShutDown,
            }
            .into());
        };
        let r = self.at.run(|| op(dev));
        if r.is_err() {
            self.at.revoke_shared();
        }
        r.map_err(|error| {
            VioError::Driver {
                adapter: name.clone(),
                error,
            }
            .into()
        })
    }
}

impl Device for VirtioBlk {
    fn name(&self) -> &str {
        &self.at.name
    }

    fn pages_left_mapped(&self) -> usize {
        self.at.pages_left_mapped()
    }

    fn stats(&self) -> TransportStats {
        self.at.stats()
    }

    /// Resets the device, frees the queue, the CRQ and every TCE: the server can reach nothing.
    fn shut_down(&mut self) -> Result<(), Error> {
        self.at.run(|| drop(self.dev.take()));
        Ok(self.at.shut_down()?)
    }
}

impl BlockDevice for VirtioBlk {
    fn block_size(&self) -> usize {
        self.block_size
    }

    fn capacity(&self) -> u64 {
        self.dev.as_ref().map_or(0, |d| d.capacity()) / self.sectors_per_block()
    }

    fn read_only(&self) -> bool {
        self.dev.as_ref().is_some_and(|d| d.readonly())
    }

    fn read(&mut self, block: u64, buf: &mut [u8]) -> Result<(), Error> {
        let sector = block * self.sectors_per_block();
        self.with_dev(|d| d.read_blocks(sector as usize, buf))
    }

    fn write(&mut self, block: u64, buf: &[u8]) -> Result<(), Error> {
        let sector = block * self.sectors_per_block();
        self.with_dev(|d| d.write_blocks(sector as usize, buf))
    }

    fn flush(&mut self) -> Result<(), Error> {
        self.with_dev(|d| d.flush())
    }

    /// The device's serial (VIRTIO_BLK_T_GET_ID).
    fn identity(&mut self) -> Result<String, Error> {
        let mut id = [0u8; 20];
        let n = self.with_dev(|d| d.device_id(&mut id))?;
        Ok(String::from_utf8_lossy(&id[..n.min(20)]).into())
    }

    fn as_device(&mut self) -> &mut dyn Device {
        self
    }
}

impl Drop for VirtioBlk {
    /// The driver frees its rings through `VioHal`, which must know the window.
    fn drop(&mut self) {
        self.at.run(|| drop(self.dev.take()));
    }
}
