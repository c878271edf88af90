//! virtio-blk over virtio-vio, through `virtio_drivers::device::blk::VirtIOBlk`.

use super::hal::VioHal;
use super::transport::{VioError, VioHandle, VioTransport};
use crate::vio::tce;
use crate::vio::Adapter;
use alloc::string::String;
use virtio_drivers::device::blk::VirtIOBlk;
use virtio_drivers::transport::{DeviceType, Transport};

pub const SECTOR: usize = 512;

/// One virtio-vio block device.
pub struct Blk {
    pub name: String,
    window: usize,
    dev: Option<VirtIOBlk<VioHal, VioTransport>>,
    handle: VioHandle,
    /// IOBA pages in use once the queue exists: rings only. Every request must return to it.
    pub baseline_pages: usize,
}

impl Blk {
    /// Connects to the adapter, checks it is a block device and initializes it.
    pub fn open(adapter: &Adapter, timeout_us: u64) -> Result<Blk, VioError> {
        let t = VioTransport::open(adapter, timeout_us)?;
        Self::over(adapter.name.clone(), t)
    }

    /// Initializes a block device over an open transport.
    pub fn over(name: String, t: VioTransport) -> Result<Blk, VioError> {
        if t.device_type() != DeviceType::Block {
            let id = t.handle().header().device_id;
            return Err(VioError::Changed {
                adapter: name,
                what: if id == 26 {
                    "is a filesystem, not a block device"
                } else {
                    "is not a block device"
                },
            });
        }
        let window = t.window();
        let handle = t.handle();
        let dev = tce::with_window(window, || VirtIOBlk::<VioHal, _>::new(t)).map_err(|error| {
            VioError::Driver {
                adapter: name.clone(),
                error,
            }
        });
        if let Some(e) = handle.take_error() {
            drop(dev);
            let _ = handle.shut_down();
            return Err(e);
        }
        let dev = dev?;
        let baseline_pages = tce::with(window, |w| w.pages_in_use()).unwrap_or(0);
        Ok(Blk {
            name,
            window,
            dev: Some(dev),
            handle,
            baseline_pages,
        })
    }

    fn dev(&mut self) -> &mut VirtIOBlk<VioHal, VioTransport> {
        // Present from `over` until `shut_down`, which consumes `self`.
        self.dev
            .as_mut()
            .unwrap_or_else(|| unreachable!("device used after shut_down"))
    }

    pub fn capacity_sectors(&self) -> u64 {
        self.dev.as_ref().map_or(0, |d| d.capacity())
    }

    pub fn readonly(&self) -> bool {
        self.dev.as_ref().is_some_and(|d| d.readonly())
    }

    fn driver_err(&self, error: virtio_drivers::Error) -> VioError {
        VioError::Driver {
            adapter: self.name.clone(),
            error,
        }
    }

    /// Reads whole sectors starting at `sector` into `buf`.
    pub fn read(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), VioError> {
        let w = self.window;
        let r = tce::with_window(w, || self.dev().read_blocks(sector as usize, buf));
        r.map_err(|e| self.driver_err(e))
    }

    /// Writes whole sectors starting at `sector`.
    pub fn write(&mut self, sector: u64, buf: &[u8]) -> Result<(), VioError> {
        let w = self.window;
        let r = tce::with_window(w, || self.dev().write_blocks(sector as usize, buf));
        r.map_err(|e| self.driver_err(e))
    }

    pub fn flush(&mut self) -> Result<(), VioError> {
        let w = self.window;
        let r = tce::with_window(w, || self.dev().flush());
        r.map_err(|e| self.driver_err(e))
    }

    /// The device's serial (VIRTIO_BLK_T_GET_ID).
    pub fn serial(&mut self) -> Result<String, VioError> {
        let mut id = [0u8; 20];
        let w = self.window;
        let r = tce::with_window(w, || self.dev().device_id(&mut id));
        let n = r.map_err(|e| self.driver_err(e))?;
        Ok(String::from_utf8_lossy(&id[..n.min(20)]).into())
    }

    /// IOBA pages mapped now beyond the rings (0 between requests).
    pub fn pages_left_mapped(&self) -> usize {
        tce::with(self.window, |w| w.pages_in_use())
            .unwrap_or(0)
            .saturating_sub(self.baseline_pages)
    }

    pub fn handle(&self) -> &VioHandle {
        &self.handle
    }

    /// Resets the device, frees the queue, the CRQ and every TCE: the server can reach nothing.
    pub fn shut_down(mut self) -> Result<(), VioError> {
        let w = self.window;
        tce::with_window(w, || drop(self.dev.take()));
        self.handle.shut_down()
    }

    pub fn window(&self) -> usize {
        self.window
    }
}

impl Drop for Blk {
    /// The driver frees its rings through `VioHal`, which must know the window.
    fn drop(&mut self) {
        let w = self.window;
        tce::with_window(w, || drop(self.dev.take()));
    }
}
