//! virtio-blk over any transport: virtio-vio (`drivers::virtio_vio`) or virtio-pci
//! (`drivers::virtio_pci`), as a [`BlockDevice`]. vioboot drives virtio-drivers' public
//! `VirtQueue` itself (as for virtio-fs) so that every request, reads and writes as well as
//! FLUSH and GET_ID, is submitted without waiting and completed here: a device that never
//! answers fails the request by name, on either transport, instead of leaving vioboot
//! spinning on a used ring. What differs between the transports (whose DMA mapping is active,
//! their failures, their counters and shutdown, whether a device given up can be set up again)
//! is behind [`Attach`]. Its block is the device's `blk_size` when it offers one (a disk with
//! 4096-byte logical sectors), else 512 bytes; requests still address 512-byte sectors.

use super::virtio_vio::Attachment;
use crate::dev::{BlockDevice, Device, DeviceError as Error, TransportStats};
use crate::vio::Patience;
use crate::virtio::{QueueError, VioError, VioHal, VioHandle, VioTransport};
use alloc::string::String;
use bitflags::bitflags;
use virtio_drivers::queue::VirtQueue;
use virtio_drivers::transport::Transport;
use virtio_drivers::Hal;
use virtio_vio::blk;
use virtio_vio::device_id;

pub use virtio_vio::blk::{BLK_SIZE_OFFSET, F_BLK_SIZE as VIRTIO_BLK_F_BLK_SIZE};

/// Bytes of a virtio-blk sector, the unit requests address whatever `blk_size` is.
pub const SECTOR_SIZE: usize = 512;
/// The request queue, and its size in descriptors.
const QUEUE: u16 = 0;
const QUEUE_SIZE: usize = 16;
/// A status byte no device writes: the request's status was never filled in.
const STATUS_UNSET: u8 = 0xff;

bitflags! {
    /// The features vioboot's virtio-blk driver accepts.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct BlkFeature: u64 {
        const RO = blk::F_RO;
        const FLUSH = blk::F_FLUSH;
        const RING_INDIRECT_DESC = blk::F_RING_INDIRECT_DESC;
        const RING_EVENT_IDX = blk::F_RING_EVENT_IDX;
        const VERSION_1 = blk::F_VERSION_1;
    }
}

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
    /// A request failed and the device takes no more: the transport stops talking to it (so
    /// tearing the driver down does not wait on a partner that is gone). Nothing where the
    /// transport has nothing to stop.
    fn abandon(&self) {}
    /// Sets a device that was given up up again for a new driver (a new session with its
    /// server; the device reset), or `None` where this transport cannot.
    fn reconnect(&self) -> Option<Result<(), Error>> {
        None
    }
}

/// The data of a request.
enum Data<'b> {
    /// None (FLUSH).
    None,
    /// The device writes it (a read, GET_ID).
    In(&'b mut [u8]),
    /// The device reads it (a write).
    Out(&'b [u8]),
}

/// One virtio block device (on virtio-vio unless named otherwise).
pub struct VirtioBlk<H: Hal = VioHal, T: Transport = VioTransport, A: Attach = Attachment> {
    at: A,
    transport: T,
    queue: Option<VirtQueue<H, QUEUE_SIZE>>,
    /// Features the device accepted.
    features: BlkFeature,
    /// 512-byte sectors on the device.
    sectors: u64,
    /// Bytes per block: `blk_size`, or 512.
    block_size: usize,
    /// The failure that left a request unfinished in the queue: the device takes no further
    /// request until [`BlockDevice::reconnect`] sets it up again.
    broken: Option<Error>,
}

/// A `blk_size` vioboot believes: a power of two from 512 to 64 KiB.
pub fn plausible_block_size(b: u32) -> Option<usize> {
    let b = b as usize;
    (b.is_power_of_two() && (SECTOR_SIZE..=65536).contains(&b)).then_some(b)
}

/// The block size a virtio-vio device's configuration gives, read before the device is set
/// up (the header says which features it offers); 512 for anything implausible.
fn vio_block_size(t: &VioTransport) -> usize {
    let offered = t.handle().header().device_features;
    if offered & VIRTIO_BLK_F_BLK_SIZE != 0 {
        t.read_config_space::<u32>(BLK_SIZE_OFFSET)
            .ok()
            .and_then(plausible_block_size)
            .unwrap_or(SECTOR_SIZE)
    } else {
        SECTOR_SIZE
    }
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
        // blk_size is read when the device offers it, and 512 kept for anything implausible.
        let block_size = vio_block_size(&t);
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
    pub fn start(at: A, mut t: T, block_size: usize) -> Result<Self, Error> {
        let (queue, features, sectors) = Self::init(&at, &mut t)?;
        let mut b = VirtioBlk {
            at,
            transport: t,
            queue: Some(queue),
            features,
            sectors,
            block_size,
            broken: None,
        };
        b.at.rings_ready();
        Ok(b)
    }

    /// The device set up (virtio 1.2, 3.1.1): features, its capacity, the request queue,
    /// DRIVER_OK. On failure what was set up is dropped and the device shut down.
    fn init(at: &A, t: &mut T) -> Result<(VirtQueue<H, QUEUE_SIZE>, BlkFeature, u64), Error> {
        let r = at.run(|| {
            let features = t.begin_init(BlkFeature::all());
            let sectors = t.read_consistent(|| {
                let lo: u32 = t.read_config_space(blk::CAPACITY_OFFSET)?;
                let hi: u32 = t.read_config_space(blk::CAPACITY_OFFSET + 4)?;
                Ok(u64::from(lo) | (u64::from(hi) << 32))
            })?;
            let queue = VirtQueue::new(
                t,
                QUEUE,
                features.contains(BlkFeature::RING_INDIRECT_DESC),
                features.contains(BlkFeature::RING_EVENT_IDX),
            )?;
            t.finish_init();
            Ok((queue, features, sectors))
        });
        at.settle(r)
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

    /// Unsets the request queue and frees its rings (through the Hal, with this device's
    /// mapping active), once; nothing when it is gone already.
    fn release_queue(&mut self) {
        let q = self.queue.take();
        let t = &mut self.transport;
        self.at.run(|| {
            if q.is_some() {
                t.queue_unset(QUEUE);
            }
            drop(q)
        });
    }

    /// One request of type `kind` at `sector`, submitted without waiting and completed here:
    /// when the transport failed it (no used entry, the failure recorded) or the used entry
    /// never comes within the transport's bound, the device's mappings are revoked, it is
    /// given up (it takes no further request until set up again) and the failure is
    /// returned (a path's failure, which a multipath disk moves to another path).
    fn request(&mut self, kind: u32, sector: u64, data: Data<'_>) -> Result<(), Error> {
        if let Some(e) = &self.broken {
            return Err(e.clone());
        }
        let len_ok = match &data {
            Data::None => true,
            Data::In(b) => !b.is_empty() && (kind == blk::T_GET_ID || b.len() % SECTOR_SIZE == 0),
            Data::Out(b) => !b.is_empty() && b.len() % SECTOR_SIZE == 0,
        };
        if !len_ok {
            return Err(self.at.failed(virtio_drivers::Error::InvalidParam));
        }
        let Some(q) = self.queue.as_mut() else {
            return Err(self.at.gone());
        };
        let header = blk::header(kind, sector);
        let mut status = [STATUS_UNSET];
        let (inputs, mut outputs): (alloc::vec::Vec<&[u8]>, alloc::vec::Vec<&mut [u8]>) = match data
        {
            Data::None => (alloc::vec![&header[..]], alloc::vec![&mut status[..]]),
            Data::In(b) => (alloc::vec![&header[..]], alloc::vec![b, &mut status[..]]),
            Data::Out(b) => (alloc::vec![&header[..], b], alloc::vec![&mut status[..]]),
        };
        let t = &mut self.transport;
        let (r, recorded) = self.at.completing(|| {
            // SAFETY: the header, data and status buffers stay borrowed here until the used
            // entry is popped below, or, when it never comes, until every mapping of the
            // device is revoked (it can then reach none of them).
            let token = unsafe { q.add(&inputs, &mut outputs) }?;
            if q.should_notify() {
                t.notify(QUEUE);
            }
            Ok(token)
        });
        let done = match (r, recorded) {
            (_, Some(e)) => Err(Some(e)),
            (Err(e), None) => Err(Some(self.at.failed(e))),
            (Ok(token), None) => {
                // On virtio-vio normally there once notify returns (a late used ring, from a
                // server that answered a stale notice first, is waited for within the
                // bound); on virtio-pci polled for at most the bound.
                let mut p: Patience = self.at.used_patience();
                let what = alloc::format!("{}: a used entry", self.at.name());
                loop {
                    match q.peek_used() {
                        Some(t) if t == token => break Ok(token),
                        // One request is in flight at a time: any other id is none of ours.
                        Some(t) => {
                            break Err(Some(
                                self.at
                                    .queue_failed(QUEUE, QueueError::NotInFlight { token: t }),
                            ))
                        }
                        None if p.expired(&what) => break Err(None),
                        None => core::hint::spin_loop(),
                    }
                }
            }
        };
        let token = match done {
            Ok(t) => t,
            Err(e) => {
                self.at.revoke_shared();
                let e = e.unwrap_or_else(|| {
                    self.at
                        .queue_failed(QUEUE, QueueError::TooFewCompleted { missing: 1 })
                });
                self.at.abandon();
                self.broken = Some(e.clone());
                return Err(e);
            }
        };
        let popped = self.at.run(|| {
            let mut outs: alloc::vec::Vec<&mut [u8]> =
                outputs.iter_mut().map(|b| &mut **b).collect();
            // SAFETY: the same buffers that were submitted with this token.
            unsafe { q.pop_used(token, &inputs, &mut outs) }
        });
        if let Err(e) = popped {
            self.at.revoke_shared();
            return Err(self.at.failed(e));
        }
        // The status byte is the last buffer the device writes.
        match outputs.last().map_or(STATUS_UNSET, |s| s[0]) {
            blk::S_OK => Ok(()),
            blk::S_UNSUPP => Err(self.at.failed(virtio_drivers::Error::Unsupported)),
            _ => Err(self.at.failed(virtio_drivers::Error::IoError)),
        }
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
        self.release_queue();
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
        self.sectors / self.sectors_per_block()
    }

    fn read_only(&self) -> bool {
        self.features.contains(BlkFeature::RO)
    }

    fn read(&mut self, block: u64, buf: &mut [u8]) -> Result<(), Error> {
        let sector = block * self.sectors_per_block();
        self.request(blk::T_IN, sector, Data::In(buf))
    }

    fn write(&mut self, block: u64, buf: &[u8]) -> Result<(), Error> {
        let sector = block * self.sectors_per_block();
        self.request(blk::T_OUT, sector, Data::Out(buf))
    }

    /// VIRTIO_BLK_T_FLUSH where the device accepted VIRTIO_BLK_F_FLUSH (else its writes are
    /// not cached, and there is nothing to flush).
    fn flush(&mut self) -> Result<(), Error> {
        if !self.features.contains(BlkFeature::FLUSH) {
            return Ok(());
        }
        self.request(blk::T_FLUSH, 0, Data::None)
    }

    /// The device's serial (VIRTIO_BLK_T_GET_ID): up to 20 bytes, NUL-padded when shorter.
    fn identity(&mut self) -> Result<String, Error> {
        let mut id = [0u8; blk::ID_BYTES];
        self.request(blk::T_GET_ID, 0, Data::In(&mut id))?;
        let n = id.iter().position(|&b| b == 0).unwrap_or(id.len());
        Ok(String::from_utf8_lossy(&id[..n]).into())
    }

    /// The serial (GET_ID), when the device has one: two adapters whose devices give the
    /// same serial, size and block 0 are taken as paths to one disk, so a serial must name one
    /// disk (as a WWID does; the VIO server's `--serial`).
    fn unique_id(&mut self) -> Option<String> {
        let s = self.identity().ok()?;
        let s = s.trim_matches(|c: char| c == '\0' || c.is_whitespace());
        (!s.is_empty()).then(|| alloc::format!("serial:{s}"))
    }

    /// A device given up after a failed request, set up again where its transport can
    /// (virtio-vio: a new CRQ session with its server, PROBE, the device reset, features and
    /// a new request queue; the old rings were unmapped with no word to the device, so
    /// nothing they held is performed). Its capacity and block size are read again: the
    /// caller checks it is still the disk it was.
    fn reconnect(&mut self) -> Result<bool, Error> {
        if self.broken.is_none() {
            return Ok(false);
        }
        let q = self.queue.take();
        self.at.run(|| drop(q));
        match self.at.reconnect() {
            None => return Ok(false),
            Some(Err(e)) => {
                self.at.abandon();
                return Err(e);
            }
            Some(Ok(())) => {}
        }
        let offered = self.transport.read_device_features();
        let block_size = if offered & VIRTIO_BLK_F_BLK_SIZE != 0 {
            self.transport
                .read_config_space::<u32>(BLK_SIZE_OFFSET)
                .ok()
                .and_then(plausible_block_size)
                .unwrap_or(SECTOR_SIZE)
        } else {
            SECTOR_SIZE
        };
        let (queue, features, sectors) = Self::init(&self.at, &mut self.transport)?;
        self.queue = Some(queue);
        self.features = features;
        self.sectors = sectors;
        self.block_size = block_size;
        self.broken = None;
        self.at.rings_ready();
        Ok(true)
    }

    fn as_device(&mut self) -> &mut dyn Device {
        self
    }
}

impl<H: Hal, T: Transport, A: Attach> Drop for VirtioBlk<H, T, A> {
    /// The queue's rings are freed through the Hal, which must know the mapping.
    fn drop(&mut self) {
        self.release_queue();
    }
}
