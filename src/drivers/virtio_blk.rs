//! virtio-blk through `virtio_drivers::device::blk::VirtIOBlk`, as a [`BlockDevice`], over any
//! transport: virtio-vio (`drivers::virtio_vio`) or virtio-pci (`drivers::virtio_pci`); what
//! differs between them (whose DMA mapping is active, their failures, their counters and
//! shutdown) is behind [`Attach`]. Its block is the device's `blk_size` when it offers one (a
//! disk with 4096-byte logical sectors), else 512 bytes; requests still address 512-byte
//! sectors.

use super::virtio_vio::Attachment;
use crate::dev::{BlockDevice, Device, DeviceError as Error, TransportStats};
use crate::vio::Patience;
use crate::virtio::{QueueError, VioError, VioHal, VioHandle, VioTransport};
use alloc::string::String;
use virtio_drivers::device::blk::{BlkReq, BlkResp, VirtIOBlk, SECTOR_SIZE};
use virtio_drivers::transport::Transport;
use virtio_drivers::Hal;
use virtio_vio::device_id;

/// What a virtio device needs from the transport it sits on besides virtio-drivers'
/// `Transport`.
pub trait Attach {
    /// The name its checks are reported under.
    fn name(&self) -> &str;
    /// Runs `f` (driver calls, and dropping queues) with this device's DMA mapping active.
    fn run<R>(&self, f: impl FnOnce() -> R) -> R;
    /// The outcome of setting the device up: a transport failure recorded on the way outranks
    /// what the driver made of it; on failure what was set up is dropped and the device shut
    /// down.
    fn settle<T>(&self, r: Result<T, virtio_drivers::Error>) -> Result<T, Error>;
    /// A driver call that failed, as this transport's error.
    fn failed(&self, e: virtio_drivers::Error) -> Error;
    /// The error for a call after shutdown.
    fn gone(&self) -> Error;
    /// A virtqueue vioboot drives itself (virtio-fs) failed.
    fn queue_failed(&self, queue: u16, error: QueueError) -> Error;
    /// The device's configuration cannot be used (`what` says why).
    fn bad_config(&self, what: &'static str) -> Error;
    /// How long a request may wait for its used entry once notified: `None` where the
    /// notification itself waits for the device (virtio-vio), else the bound to poll for.
    fn patience(&self) -> Option<Patience> {
        None
    }
    /// Stops the device's DMA before its queues are freed (virtio-pci: a reset); nothing
    /// where the shutdown after the queues are freed does it (virtio-vio).
    fn stop(&self) -> Result<(), Error> {
        Ok(())
    }
    /// Runs `f`, a request its caller completes itself (it looks for the used entry), with
    /// this device's DMA mapping active; and the transport's failure meanwhile, if it
    /// recorded one instead of stopping vioboot (virtio-vio: a server that does not answer).
    fn completing<R>(&self, f: impl FnOnce() -> R) -> (R, Option<Error>) {
        (self.run(f), None)
    }
    /// How long a notified request's used entry may take to appear.
    fn used_patience(&self) -> Patience;
    /// After a request failed half way: unmaps what it left shared.
    fn revoke_shared(&self);
    /// Takes what is mapped now (the rings) as what stays mapped between requests.
    fn rings_ready(&mut self);
    /// Mappings held now beyond the rings (0 between requests).
    fn pages_left_mapped(&self) -> usize;
    fn stats(&self) -> TransportStats;
    /// Once the driver's queues are dropped: the device reset and unable to reach memory.
    fn shut_down(&self) -> Result<(), Error>;
    /// What [`shut_down`](Self::shut_down) did, for the report.
    fn shutdown_detail(&self) -> &'static str {
        "device reset, CRQ freed, every TCE cleared"
    }
}

/// The data buffer of a request in flight.
enum Side<'b> {
    Read(&'b mut [u8]),
    Write(&'b [u8]),
}

/// One virtio block device (on virtio-vio unless named otherwise).
pub struct VirtioBlk<H: Hal = VioHal, T: Transport = VioTransport, A: Attach = Attachment> {
    at: A,
    dev: Option<VirtIOBlk<H, T>>,
    /// Bytes per block: `blk_size`, or 512.
    block_size: usize,
    /// The transport failure that left a request unfinished in the queue: the device takes
    /// no further request.
    broken: Option<Error>,
}

/// virtio-blk feature bit: `blk_size` in the config space is valid (virtio 1.2, 5.2.3).
pub const VIRTIO_BLK_F_BLK_SIZE: u64 = 1 << 6;
/// Offset of `blk_size` in `struct virtio_blk_config` (after capacity, size_max, seg_max,
/// geometry).
pub const BLK_SIZE_OFFSET: usize = 20;

/// A `blk_size` vioboot believes: a power of two from 512 to 64 KiB.
pub fn plausible_block_size(b: u32) -> Option<usize> {
    let b = b as usize;
    (b.is_power_of_two() && (SECTOR_SIZE..=65536).contains(&b)).then_some(b)
}

impl VirtioBlk {
    /// Initializes a block device over an open virtio-vio transport.
    pub fn over(name: String, t: VioTransport) -> Result<VirtioBlk, Error> {
        let id = t.handle().header().device_id;
        if id != device_id::BLOCK {
            return Err(VioError::WrongKind {
                adapter: name,
                id,
                wanted: "a block device",
            }
            .into());
        }
        // virtio-drivers 0.13 neither negotiates VIRTIO_BLK_F_BLK_SIZE nor reads blk_size:
        // read it here when the device offers it, and keep 512 for anything implausible.
        let offered = t.handle().header().device_features;
        let block_size = if offered & VIRTIO_BLK_F_BLK_SIZE != 0 {
            t.read_config_space::<u32>(BLK_SIZE_OFFSET)
                .ok()
                .and_then(plausible_block_size)
                .unwrap_or(SECTOR_SIZE)
        } else {
            SECTOR_SIZE
        };
        let at = Attachment::new(name, &t);
        VirtioBlk::start(at, t, block_size)
    }

    /// Driver features the device accepted, and those it offered.
    pub fn features(&self) -> (u64, u64) {
        (
            self.at.handle.negotiated_features().unwrap_or(0),
            self.at.handle.header().device_features,
        )
    }

    /// The transport's handle: its counters and header.
    pub fn handle(&self) -> &VioHandle {
        &self.at.handle
    }
}

impl<H: Hal, T: Transport, A: Attach> VirtioBlk<H, T, A> {
    /// Initializes the device over `t`, with blocks of `block_size` bytes.
    pub fn start(mut at: A, t: T, block_size: usize) -> Result<Self, Error> {
        let dev = at.settle(at.run(|| VirtIOBlk::<H, _>::new(t)))?;
        at.rings_ready();
        Ok(VirtioBlk {
            at,
            dev: Some(dev),
            block_size,
            broken: None,
        })
    }

    /// Sets the block size once known (a transport whose device configuration can only be
    /// read once features are negotiated).
    pub fn set_block_size(&mut self, block_size: usize) {
        self.block_size = block_size;
    }

    pub fn attachment(&self) -> &A {
        &self.at
    }

    /// 512-byte sectors in one block.
    fn sectors_per_block(&self) -> u64 {
        (self.block_size / SECTOR_SIZE) as u64
    }

    /// One read or write through virtio-drivers' non-blocking calls, completed here: when the
    /// transport failed the request (no used entry, and the failure recorded), the device's
    /// mappings are revoked and it takes no further request, and the failure is returned (a
    /// path's failure, which a multipath disk moves to another path).
    fn request<'b>(
        &mut self,
        submit: impl FnOnce(
            &mut VirtIOBlk<H, T>,
            &mut BlkReq,
            &mut BlkResp,
        ) -> Result<(u16, Side<'b>), virtio_drivers::Error>,
    ) -> Result<(), Error> {
        if let Some(e) = &self.broken {
            return Err(e.clone());
        }
        let Some(dev) = self.dev.as_mut() else {
            return Err(self.at.gone());
        };
        let mut req = BlkReq::default();
        let mut resp = BlkResp::default();
        let (r, recorded) = self.at.completing(|| submit(dev, &mut req, &mut resp));
        let done = match (r, recorded) {
            (_, Some(e)) => Err(Some(e)),
            (Err(e), None) => Err(Some(self.at.failed(e))),
            (Ok((token, side)), None) => {
                // Normally there once notify returns; a late used ring (a server that
                // answered a stale notice first) is waited for within the bound.
                let mut p = self.at.used_patience();
                let what = alloc::format!("{}: a used entry", self.at.name());
                loop {
                    match dev.peek_used() {
                        Some(t) if t == token => break Ok((token, side)),
                        Some(_) => break Err(None),
                        None if p.expired(&what) => break Err(None),
                        None => core::hint::spin_loop(),
                    }
                }
            }
        };
        let (token, side) = match done {
            Ok(x) => x,
            Err(e) => {
                self.at.revoke_shared();
                let e = e.unwrap_or_else(|| {
                    self.at
                        .queue_failed(0, QueueError::TooFewCompleted { missing: 1 })
                });
                self.broken = Some(e.clone());
                return Err(e);
            }
        };
        let r = self.at.run(|| match side {
            // SAFETY: the same buffers that were submitted with this token.
            Side::Read(buf) => unsafe { dev.complete_read_blocks(token, &req, buf, &mut resp) },
            // SAFETY: as above.
            Side::Write(buf) => unsafe { dev.complete_write_blocks(token, &req, buf, &mut resp) },
        });
        if r.is_err() {
            self.at.revoke_shared();
        }
        r.map_err(|e| self.at.failed(e))
    }

    /// Runs `op` on the driver with this device's DMA mapping active.
    fn with_dev<R>(
        &mut self,
        op: impl FnOnce(&mut VirtIOBlk<H, T>) -> Result<R, virtio_drivers::Error>,
    ) -> Result<R, Error> {
        let Some(dev) = self.dev.as_mut() else {
            return Err(self.at.gone());
        };
        let r = self.at.run(|| op(dev));
        if r.is_err() {
            self.at.revoke_shared();
        }
        r.map_err(|e| self.at.failed(e))
    }
}

impl<H: Hal, T: Transport, A: Attach> Device for VirtioBlk<H, T, A> {
    fn name(&self) -> &str {
        self.at.name()
    }

    fn pages_left_mapped(&self) -> usize {
        self.at.pages_left_mapped()
    }

    fn stats(&self) -> TransportStats {
        self.at.stats()
    }

    /// Resets the device and frees the queue and every mapping: the device can reach nothing.
    fn shut_down(&mut self) -> Result<(), Error> {
        self.at.run(|| drop(self.dev.take()));
        self.at.shut_down()
    }

    fn shutdown_detail(&self) -> &'static str {
        self.at.shutdown_detail()
    }
}

impl<H: Hal, T: Transport, A: Attach> BlockDevice for VirtioBlk<H, T, A> {
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
        self.request(|d, req, resp| {
            // SAFETY: `req`, `buf` and `resp` stay borrowed in `request` until the used entry
            // is popped, or, when it never comes, until every mapping of the device is
            // revoked (it can then reach none of them).
            let token = unsafe { d.read_blocks_nb(sector as usize, req, buf, resp) }?;
            Ok((token, Side::Read(buf)))
        })
    }

    fn write(&mut self, block: u64, buf: &[u8]) -> Result<(), Error> {
        let sector = block * self.sectors_per_block();
        self.request(|d, req, resp| {
            // SAFETY: as for `read`.
            let token = unsafe { d.write_blocks_nb(sector as usize, req, buf, resp) }?;
            Ok((token, Side::Write(buf)))
        })
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

    /// The serial (GET_ID), when the device has one: two adapters whose devices give the
    /// same serial, size and block 0 are taken as paths to one disk, so a serial must name one
    /// disk (as a WWID does; the VIO server's `--serial`).
    fn unique_id(&mut self) -> Option<String> {
        let s = self.identity().ok()?;
        let s = s.trim_matches(|c: char| c == '\0' || c.is_whitespace());
        (!s.is_empty()).then(|| alloc::format!("serial:{s}"))
    }

    fn as_device(&mut self) -> &mut dyn Device {
        self
    }
}

impl<H: Hal, T: Transport, A: Attach> Drop for VirtioBlk<H, T, A> {
    /// The driver frees its rings through the Hal, which must know the mapping.
    fn drop(&mut self) {
        self.at.run(|| drop(self.dev.take()));
    }
}
