//! virtio over PCI (virtio 1.2, 4.1): virtio-drivers' `Transport` over a modern virtio-pci
//! device's structures (common configuration, notification, ISR, device configuration), each
//! a checked register region reached through H_LOGICAL_CI_LOAD/STORE (`pci::Mmio`: 32-bit
//! accesses at most, 64-bit fields as two, low half first).
//!
//! When the device offers VIRTIO_F_ACCESS_PLATFORM the transport accepts it whatever the
//! driver asked for (QEMU fixes the device's DMA address space when it is plugged, so the
//! device reads IOBAs through the host bridge's TCE window either way); the driver is then
//! given the bridge's window through `VioHal`, else real addresses through `RealHal`. An MMIO
//! failure cannot be returned through most `Transport` methods: the first is kept
//! ([`PciTransport::take_error`]) and outranks what the driver made of it.

use crate::hcall::{self, Ioba, Liobn, RealAddr};
use crate::mem;
use crate::pci::{Mmio, MmioError};
use crate::vio::tce::{self, TceWindow};
use crate::vio::Patience;
use alloc::rc::Rc;
use alloc::vec;
use alloc::vec::Vec;
use core::cell::Cell;
use papr::tce::{TCE_PAGE_SIZE as PAGE, TCE_READ, TCE_WRITE};
use spin::Mutex;
use vioboot_core::inventory::DmaWindow;
use virtio_drivers::transport::{DeviceStatus, DeviceType, InterruptStatus, Transport};
use virtio_drivers::{Error as VirtioError, PhysAddr};
use zerocopy::{FromBytes, Immutable, IntoBytes};

/// VIRTIO_F_ACCESS_PLATFORM (virtio 1.2, 6): the device's DMA goes through a platform IOMMU.
pub const ACCESS_PLATFORM: u64 = 1 << 33;
/// VIRTIO_F_VERSION_1.
pub const VERSION_1: u64 = 1 << 32;

// struct virtio_pci_common_cfg (virtio 1.2, 4.1.4.3).
const DEVICE_FEATURE_SELECT: u64 = 0x00;
const DEVICE_FEATURE: u64 = 0x04;
const DRIVER_FEATURE_SELECT: u64 = 0x08;
const DRIVER_FEATURE: u64 = 0x0c;
/// `device_status` in the common configuration.
pub const DEVICE_STATUS: u64 = 0x14;
const CONFIG_GENERATION: u64 = 0x15;
const QUEUE_SELECT: u64 = 0x16;
const QUEUE_SIZE: u64 = 0x18;
const QUEUE_ENABLE: u64 = 0x1c;
const QUEUE_NOTIFY_OFF: u64 = 0x1e;
const QUEUE_DESC: u64 = 0x20;
const QUEUE_DRIVER: u64 = 0x28;
const QUEUE_DEVICE: u64 = 0x30;
/// Bytes of the common configuration vioboot uses.
pub const COMMON_LEN: u64 = 0x38;

/// The regions of one device.
#[derive(Debug, Clone, Copy)]
pub struct Regions {
    pub common: Mmio,
    pub notify: Mmio,
    pub notify_multiplier: u32,
    pub isr: Mmio,
    pub device: Option<Mmio>,
}

/// One virtio-pci device.
pub struct PciTransport {
    r: Regions,
    /// virtio's device id (virtio-drivers has no `DeviceType` for virtio-fs, 26).
    device_id: u16,
    /// Features the device offered (read once).
    offered: u64,
    /// The first MMIO failure, shared with the device's attachment.
    error: Rc<Cell<Option<MmioError>>>,
    /// Each set-up queue's notify offset in the notify region, read once at set-up so a
    /// notification is one hcall.
    notify_at: Vec<(u16, u64)>,
    /// Notifications sent, shared with the attachment (one per virtio-blk request).
    notifies: Rc<Cell<u64>>,
    /// Set for a driver that spins on the used ring after notifying (virtio-drivers'
    /// blocking calls): each notification then waits for it, within a bound.
    bound: Option<Bound>,
    /// Each set-up queue's avail and used ring indexes (real addresses), for [`Bound`].
    ring_idx: Vec<(u16, RealAddr, RealAddr)>,
}

/// How a notification waits for the device: the device's name (for the failure), the bound,
/// and the TCE window its ring addresses are IOBAs in (none: real addresses).
pub struct Bound {
    pub name: alloc::string::String,
    pub timeout_us: u64,
    pub liobn: Option<u32>,
}

impl PciTransport {
    /// A transport over `r` for a device with virtio id `device_id`; reads the offered
    /// features.
    pub fn new(r: Regions, device_id: u16) -> Result<PciTransport, MmioError> {
        if r.common.len() < COMMON_LEN {
            return Err(MmioError::OutOfRange {
                offset: 0,
                size: COMMON_LEN as u8,
                len: r.common.len(),
            });
        }
        let mut t = PciTransport {
            r,
            device_id,
            offered: 0,
            error: Rc::new(Cell::new(None)),
            notify_at: Vec::new(),
            notifies: Rc::new(Cell::new(0)),
            bound: None,
            ring_idx: Vec::new(),
        };
        t.offered = t.features_now();
        match t.error.take() {
            Some(e) => Err(e),
            None => Ok(t),
        }
    }

    /// Makes every notification wait until the device has used every chain made available,
    /// at most `b.timeout_us`; past it vioboot stops with a panic naming the device and
    /// queue (virtio-drivers would spin on the used ring for ever).
    pub fn bound_notifications(&mut self, b: Bound) {
        self.bound = Some(b);
    }

    /// The real address behind `addr` as the device sees it: an IOBA in the window, looked
    /// up with H_GET_TCE, or already real.
    fn real(&self, addr: PhysAddr) -> Option<RealAddr> {
        match self.bound.as_ref()?.liobn {
            None => Some(RealAddr(addr)),
            Some(l) => {
                let page = addr & !(PAGE - 1);
                let entry = hcall::get_tce(Liobn(l), Ioba(page)).ok()?;
                (entry & (TCE_READ | TCE_WRITE) != 0)
                    .then_some(RealAddr((entry & !(PAGE - 1)) | (addr & (PAGE - 1))))
            }
        }
    }

    /// After a notification: waits until the queue's used index reaches its avail index.
    fn wait_used(&self, queue: u16) {
        let Some(b) = &self.bound else { return };
        let Some(&(_, avail, used)) = self.ring_idx.iter().find(|(q, _, _)| *q == queue) else {
            return;
        };
        let (Some(want), Some(_)) = (mem::read_pool_u16(avail), mem::read_pool_u16(used)) else {
            log::warn!("{}: queue {queue}: rings outside the page pool", b.name);
            return;
        };
        let mut wait = Patience::new(b.timeout_us);
        let what = alloc::format!("{} queue {queue}", b.name);
        while mem::read_pool_u16(used) != Some(want) {
            if wait.expired(&what) {
                let done = mem::read_pool_u16(used).unwrap_or(want);
                panic!(
                    "{}: queue {queue}: no completion within {} ms ({} request(s) in flight)",
                    b.name,
                    wait.limit_ms(),
                    want.wrapping_sub(done)
                );
            }
            core::hint::spin_loop();
        }
    }

    /// The features the device offered.
    pub fn offered(&self) -> u64 {
        self.offered
    }

    /// Shares the error cell (for the attachment that outlives the transport's move into the
    /// driver).
    pub fn error_cell(&self) -> Rc<Cell<Option<MmioError>>> {
        self.error.clone()
    }

    /// The count of notifications sent, shared.
    pub fn notify_counter(&self) -> Rc<Cell<u64>> {
        self.notifies.clone()
    }

    /// The first MMIO failure since the last call, if any.
    pub fn take_error(&self) -> Option<MmioError> {
        self.error.take()
    }

    fn record<T: Default>(&self, r: Result<T, MmioError>) -> T {
        r.unwrap_or_else(|e| {
            if self.error.get().is_none() {
                self.error.set(Some(e));
            }
            T::default()
        })
    }

    fn features_now(&self) -> u64 {
        let c = &self.r.common;
        let half = |sel: u32| {
            c.write32(DEVICE_FEATURE_SELECT, sel)
                .and_then(|()| c.read32(DEVICE_FEATURE))
        };
        let lo = self.record(half(0));
        let hi = self.record(half(1));
        u64::from(hi) << 32 | u64::from(lo)
    }

    fn select(&self, queue: u16) {
        self.record(self.r.common.write16(QUEUE_SELECT, queue));
    }

    /// Where in the notify region queue `queue` is notified.
    fn notify_offset(&self, queue: u16) -> u64 {
        self.select(queue);
        let off = self.record(self.r.common.read16(QUEUE_NOTIFY_OFF));
        u64::from(off) * u64::from(self.r.notify_multiplier)
    }

    /// Resets the device (status 0): every queue is forgotten and no DMA follows.
    pub fn reset(&mut self) {
        self.set_status(DeviceStatus::empty());
    }
}

impl Transport for PciTransport {
    fn device_type(&self) -> DeviceType {
        // virtio-drivers never asks; vioboot's drivers know the id they were given.
        DeviceType::try_from(u32::from(self.device_id)).unwrap_or_else(|_| {
            panic!(
                "virtio-pci device id {} has no virtio-drivers DeviceType",
                self.device_id
            )
        })
    }

    fn read_device_features(&mut self) -> u64 {
        self.offered
    }

    /// Accepts VIRTIO_F_ACCESS_PLATFORM if offered, whatever the driver asked for.
    fn write_driver_features(&mut self, driver_features: u64) {
        let f = driver_features | (self.offered & ACCESS_PLATFORM);
        let c = self.r.common;
        for (sel, half) in [(0, f as u32), (1, (f >> 32) as u32)] {
            self.record(
                c.write32(DRIVER_FEATURE_SELECT, sel)
                    .and_then(|()| c.write32(DRIVER_FEATURE, half)),
            );
        }
    }

    fn max_queue_size(&mut self, queue: u16) -> u32 {
        self.select(queue);
        self.record(self.r.common.read16(QUEUE_SIZE)).into()
    }

    /// Writes the queue index at the queue's notify address (4.1.4.4).
    fn notify(&mut self, queue: u16) {
        let at = match self.notify_at.iter().find(|(q, _)| *q == queue) {
            Some(&(_, at)) => at,
            None => self.notify_offset(queue),
        };
        // What was shared since the last notification is one batch in the device's TCE window
        // (cleared together once all of it is unshared). Nothing to put: virtio-pci windows
        // put TCEs when a buffer is shared (a device may read a ring without a notification),
        // so this cannot fail, and a device without a window has nothing to close.
        let _ = tce::with(tce::active(), |w| w.flush());
        self.record(self.r.notify.write16(at, queue));
        self.notifies.set(self.notifies.get() + 1);
        self.wait_used(queue);
    }

    fn get_status(&self) -> DeviceStatus {
        DeviceStatus::from_bits_truncate(self.record(self.r.common.read8(DEVICE_STATUS)).into())
    }

    fn set_status(&mut self, status: DeviceStatus) {
        self.record(self.r.common.write8(DEVICE_STATUS, status.bits() as u8));
        if status.is_empty() {
            // 4.1.4.3.2: after writing 0 the driver waits until it reads back 0.
            for _ in 0..1000 {
                if self.record(self.r.common.read8(DEVICE_STATUS)) == 0 {
                    break;
                }
            }
        }
    }

    fn set_guest_page_size(&mut self, _guest_page_size: u32) {}

    fn requires_legacy_layout(&self) -> bool {
        false
    }

    fn queue_set(
        &mut self,
        queue: u16,
        size: u32,
        descriptors: PhysAddr,
        driver_area: PhysAddr,
        device_area: PhysAddr,
    ) {
        let c = self.r.common;
        self.select(queue);
        self.record(c.write16(QUEUE_SIZE, size as u16));
        self.record(c.write64(QUEUE_DESC, descriptors));
        self.record(c.write64(QUEUE_DRIVER, driver_area));
        self.record(c.write64(QUEUE_DEVICE, device_area));
        self.record(c.write16(QUEUE_ENABLE, 1));
        let at = self.notify_offset(queue);
        self.notify_at.retain(|(q, _)| *q != queue);
        self.notify_at.push((queue, at));
        // virtio 1.2, 2.7.6 and 2.7.8: `idx` is the second u16 of the avail and used rings.
        self.ring_idx.retain(|(q, _, _)| *q != queue);
        if let (Some(avail), Some(used)) = (self.real(driver_area + 2), self.real(device_area + 2))
        {
            self.ring_idx.push((queue, avail, used));
        }
    }

    /// virtio-pci cannot disable one queue (QEMU treats `queue_enable = 0` as a driver
    /// error): the device is reset, which forgets every queue, before the rings are freed.
    fn queue_unset(&mut self, _queue: u16) {
        self.reset();
        self.notify_at.clear();
        self.ring_idx.clear();
    }

    fn queue_used(&mut self, queue: u16) -> bool {
        self.select(queue);
        self.record(self.r.common.read16(QUEUE_ENABLE)) != 0
    }

    fn ack_interrupt(&mut self) -> InterruptStatus {
        // Reading the ISR status clears it (4.1.4.5).
        InterruptStatus::from_bits_truncate(self.record(self.r.isr.read8(0)).into())
    }

    fn read_config_generation(&self) -> u32 {
        self.record(self.r.common.read8(CONFIG_GENERATION)).into()
    }

    /// Reads in accesses of at most 4 bytes, little-endian.
    fn read_config_space<T: FromBytes + IntoBytes>(&self, offset: usize) -> Result<T, VirtioError> {
        let dev = self.r.device.ok_or(VirtioError::ConfigSpaceMissing)?;
        let size = core::mem::size_of::<T>();
        let end = offset
            .checked_add(size)
            .ok_or(VirtioError::ConfigSpaceTooSmall)?;
        if end as u64 > dev.len() {
            return Err(VirtioError::ConfigSpaceTooSmall);
        }
        let mut bytes = vec![0u8; size];
        let mut at = 0;
        while at < size {
            let o = (offset + at) as u64;
            let r = match size - at {
                n if n >= 4 && o.is_multiple_of(4) => {
                    dev.read32(o).map(|v| (v.to_le_bytes().to_vec(), 4))
                }
                n if n >= 2 && o.is_multiple_of(2) => {
                    dev.read16(o).map(|v| (v.to_le_bytes().to_vec(), 2))
                }
                _ => dev.read8(o).map(|v| (vec![v], 1)),
            };
            match r {
                Ok((b, n)) => {
                    bytes[at..at + n].copy_from_slice(&b);
                    at += n;
                }
                Err(e) => {
                    self.record::<()>(Err(e));
                    return Err(VirtioError::IoError);
                }
            }
        }
        T::read_from_bytes(&bytes).map_err(|_| VirtioError::ConfigSpaceTooSmall)
    }

    fn write_config_space<T: IntoBytes + Immutable>(
        &mut self,
        offset: usize,
        value: T,
    ) -> Result<(), VirtioError> {
        let dev = self.r.device.ok_or(VirtioError::ConfigSpaceMissing)?;
        let bytes = value.as_bytes();
        let end = offset
            .checked_add(bytes.len())
            .ok_or(VirtioError::ConfigSpaceTooSmall)?;
        if end as u64 > dev.len() {
            return Err(VirtioError::ConfigSpaceTooSmall);
        }
        for (i, b) in bytes.iter().enumerate() {
            if let Err(e) = dev.write8((offset + i) as u64, *b) {
                self.record::<()>(Err(e));
                return Err(VirtioError::IoError);
            }
        }
        Ok(())
    }
}

/// The `vio::tce` window of each host bridge's `ibm,dma-window` (by LIOBN): registered once,
/// shared by the bridge's devices, so no IOBA is handed out twice.
static WINDOWS: Mutex<Vec<(u32, usize)>> = Mutex::new(Vec::new());

/// The registry id of the TCE window `dma`, registering it the first time.
pub fn window_for(dma: DmaWindow) -> usize {
    let mut all = WINDOWS.lock();
    if let Some(&(_, id)) = all.iter().find(|(l, _)| *l == dma.liobn) {
        return id;
    }
    let id = tce::register(TceWindow::new(dma));
    all.push((dma.liobn, id));
    id
}
