//! The virtio-pci driver: a modern virtio-pci block device or file system over
//! `virtio::pci::PciTransport`, through the same `drivers::virtio_blk` and
//! `drivers::virtio_fs` as on virtio-vio; a network device identified, not driven. Requests
//! wait for their used entries at most `vioboot.vio-timeout` (a device that stays silent is a
//! named failure, not a hang). A device that offers VIRTIO_F_ACCESS_PLATFORM gets IOBAs in
//! its host bridge's TCE window (`ibm,dma-window`, one `vio::tce` window per bridge, buffers
//! mapped per request through `VioHal`); one that does not gets real addresses (`RealHal`).
//! Shutdown resets the device, turns its bus mastering off, and leaves none of its TCEs
//! mapped.

use super::virtio_blk::{
    plausible_block_size, Attach, VirtioBlk, BLK_SIZE_OFFSET, VIRTIO_BLK_F_BLK_SIZE,
};
use super::virtio_fs::{check_queue, Share, VirtioFs};
use crate::dev::{AnyDevice, DeviceError, TransportStats};
use crate::pci::{Mmio, MmioError, PciError, RtasConfig};
use crate::vio::{tce, Patience};
use crate::virtio::hal::{RealHal, VioHal};
use crate::virtio::pci::{self as vpci, PciTransport, Regions, ACCESS_PLATFORM, VERSION_1};
use crate::virtio::QueueError;
use ::pci::{Bdf, ConfigSpace};
use alloc::boxed::Box;
use alloc::rc::Rc;
use alloc::string::String;
use core::cell::Cell;
use vioboot_core::inventory::DmaWindow;
use virtio_drivers::transport::{DeviceStatus, Transport};
use virtio_drivers::Hal;

/// virtio device ids (virtio 1.2, 5).
pub const VIRTIO_NET: u16 = 1;
pub const VIRTIO_BLOCK: u16 = 2;
pub const VIRTIO_FS: u16 = 26;

/// What a virtio-pci device holds besides its driver.
pub struct PciAttachment {
    name: String,
    /// The host bridge's TCE window, when the device translates through it.
    window: Option<usize>,
    /// The transport's first MMIO failure.
    error: Rc<Cell<Option<MmioError>>>,
    common: Mmio,
    config: RtasConfig,
    at: Bdf,
    /// IOBA pages in use once the queues exist.
    rings: usize,
    /// Notifications the transport sent.
    notifies: Rc<Cell<u64>>,
    /// How long a request may wait for the device (`vioboot.vio-timeout`).
    timeout_us: u64,
}

impl PciAttachment {
    fn pages_in_use(&self) -> usize {
        self.window
            .and_then(|id| tce::with(id, |w| w.pages_in_use()).ok())
            .unwrap_or(0)
    }

    fn error(&self, e: virtio_drivers::Error) -> DeviceError {
        match self.error.take() {
            Some(error) => PciError::Mmio {
                name: self.name.clone(),
                error,
            },
            None => PciError::Driver {
                name: self.name.clone(),
                error: e,
            },
        }
        .into()
    }
}

impl Attach for PciAttachment {
    fn name(&self) -> &str {
        &self.name
    }

    fn run<R>(&self, f: impl FnOnce() -> R) -> R {
        match self.window {
            Some(id) => tce::with_window(id, f),
            None => f(),
        }
    }

    fn settle<T>(&self, r: Result<T, virtio_drivers::Error>) -> Result<T, DeviceError> {
        let r = match (r, self.error.take()) {
            (Ok(v), None) => Ok(v),
            (Ok(v), Some(error)) => {
                self.run(|| drop(v));
                Err(PciError::Mmio {
                    name: self.name.clone(),
                    error,
                }
                .into())
            }
            (Err(e), Some(error)) => {
                let _ = e;
                Err(PciError::Mmio {
                    name: self.name.clone(),
                    error,
                }
                .into())
            }
            (Err(error), None) => Err(PciError::Driver {
                name: self.name.clone(),
                error,
            }
            .into()),
        };
        if r.is_err() {
            let _ = Attach::shut_down(self);
        }
        r
    }

    fn failed(&self, e: virtio_drivers::Error) -> DeviceError {
        self.error(e)
    }

    fn gone(&self) -> DeviceError {
        PciError::ShutDown {
            name: self.name.clone(),
        }
        .into()
    }

    fn queue_failed(&self, queue: u16, error: QueueError) -> DeviceError {
        DeviceError::Queue {
            device: self.name.clone(),
            queue,
            error,
        }
    }

    fn bad_config(&self, what: &'static str) -> DeviceError {
        DeviceError::BadConfig {
            device: self.name.clone(),
            what,
        }
    }

    fn patience(&self) -> Option<Patience> {
        Some(Patience::new(self.timeout_us))
    }

    fn used_patience(&self) -> Patience {
        Patience::new(self.timeout_us)
    }

    /// Resets the device (status 0) and waits, within the bound, until it reads back 0
    /// (virtio 1.2, 4.1.4.3.2): afterwards it uses none of its rings.
    fn stop(&self) -> Result<(), DeviceError> {
        let mmio = |error| PciError::Mmio {
            name: self.name.clone(),
            error,
        };
        self.common.write8(vpci::DEVICE_STATUS, 0).map_err(mmio)?;
        let mut wait = Patience::new(self.timeout_us);
        let what = alloc::format!("{} reset", self.name);
        while self.common.read8(vpci::DEVICE_STATUS).map_err(mmio)? != 0 {
            if wait.expired(&what) {
                return Err(PciError::ResetTimeout {
                    name: self.name.clone(),
                    waited_ms: wait.limit_ms(),
                }
                .into());
            }
        }
        Ok(())
    }

    fn revoke_shared(&self) {
        if let Some(id) = self.window {
            match tce::with(id, |w| w.revoke_shared()) {
                Ok(Ok(0)) => {}
                Ok(Ok(n)) => log::warn!(
                    "{}: unmapped {n} buffers a failed request left shared",
                    self.name
                ),
                Ok(Err(e)) | Err(e) => log::error!("{}: {e}", self.name),
            }
        }
    }

    fn rings_ready(&mut self) {
        self.rings = self.pages_in_use();
    }

    fn pages_left_mapped(&self) -> usize {
        self.pages_in_use().saturating_sub(self.rings)
    }

    /// Requests and notifies are the same on virtio-pci (one notification a request); no
    /// entries are received (completions are read from the used ring).
    fn stats(&self) -> TransportStats {
        let n = self.notifies.get();
        TransportStats {
            requests: n,
            notifies: n,
            ..TransportStats::default()
        }
    }

    /// Resets the device (status 0) and turns its bus mastering off. Its TCEs were unmapped
    /// when its queue and buffers were (the bridge's window is shared with its other devices).
    fn shut_down(&self) -> Result<(), DeviceError> {
        let mmio = |error| PciError::Mmio {
            name: self.name.clone(),
            error,
        };
        self.common.write8(vpci::DEVICE_STATUS, 0).map_err(mmio)?;
        let mut cfg = self.config;
        let function = |error| PciError::Function {
            name: self.name.clone(),
            error: ::pci::PciError::Access(::pci::config::AccessError {
                at: self.at,
                reg: ::pci::config::COMMAND,
                write: true,
                error,
            }),
        };
        let cmd = cfg
            .read(self.at, ::pci::config::COMMAND, 2)
            .map_err(function)?;
        cfg.write(
            self.at,
            ::pci::config::COMMAND,
            2,
            cmd & !u32::from(::pci::config::CMD_BUS_MASTER),
        )
        .map_err(function)?;
        Ok(())
    }

    fn shutdown_detail(&self) -> &'static str {
        "device reset, bus mastering off, none of its TCEs mapped"
    }
}

/// A virtio-pci device's transport and attachment, before a driver takes them.
struct Parts {
    t: PciTransport,
    at: PciAttachment,
    iommu: bool,
    /// What was negotiated, for the report.
    detail: String,
}

/// The transport of the function at `at` whose structures are `r`, with the DMA its offered
/// features call for: `dma` is its host bridge's window.
fn parts(
    name: &str,
    config: RtasConfig,
    at: Bdf,
    r: Regions,
    dma: Option<DmaWindow>,
    device_id: u16,
    timeout_us: u64,
) -> Result<Parts, DeviceError> {
    let mmio = |error| PciError::Mmio {
        name: name.into(),
        error,
    };
    let t = PciTransport::new(r, device_id).map_err(mmio)?;
    let offered = t.offered();
    if offered & VERSION_1 == 0 {
        return Err(PciError::Legacy {
            name: name.into(),
            offered,
        }
        .into());
    }
    let iommu = offered & ACCESS_PLATFORM != 0;
    let window = if iommu {
        let dma = dma.ok_or(PciError::NoDmaWindow { name: name.into() })?;
        Some(vpci::window_for(dma))
    } else {
        None
    };
    let detail = alloc::format!(
        "offered {offered:#x}; {}",
        match (iommu, dma) {
            (true, Some(w)) => alloc::format!(
                "VIRTIO_F_ACCESS_PLATFORM accepted: IOBAs in TCE window liobn {:#x}",
                w.liobn
            ),
            _ => String::from("no VIRTIO_F_ACCESS_PLATFORM: real addresses"),
        }
    );
    let at = PciAttachment {
        name: name.into(),
        window,
        error: t.error_cell(),
        notifies: t.notify_counter(),
        common: r.common,
        config,
        at,
        rings: 0,
        timeout_us,
    };
    Ok(Parts {
        t,
        at,
        iommu,
        detail,
    })
}

/// Sets up the block device of a virtio-pci function whose structures are `r`; `dma` is its
/// host bridge's window. Returns the device and what was negotiated, for the report.
pub fn block(
    name: &str,
    config: RtasConfig,
    at: Bdf,
    r: Regions,
    dma: Option<DmaWindow>,
    timeout_us: u64,
) -> Result<(AnyDevice, String), DeviceError> {
    let mut p = parts(name, config, at, r, dma, VIRTIO_BLOCK, timeout_us)?;
    // A queue the device does not offer is named before virtio-drivers sees it (it would
    // only say "invalid parameter").
    if let Err(error) = check_queue(&mut p.t, 0, 1) {
        let _ = Attach::shut_down(&p.at);
        return Err(p.at.queue_failed(0, error));
    }
    // virtio-drivers' block calls spin on the used ring once notified: the transport bounds
    // that wait.
    p.t.bound_notifications(vpci::Bound {
        name: name.into(),
        timeout_us,
        liobn: dma.filter(|_| p.iommu).map(|w| w.liobn),
    });
    let offered = p.t.offered();
    // QEMU keeps the device configuration in the legacy byte order until VERSION_1 is
    // negotiated: blk_size is read once the device is set up.
    let block_size = |dev: Option<Mmio>| {
        dev.filter(|_| offered & VIRTIO_BLK_F_BLK_SIZE != 0)
            .and_then(|d| d.read32(BLK_SIZE_OFFSET as u64).ok())
            .and_then(plausible_block_size)
    };
    let dev: Box<dyn crate::dev::BlockDevice> = if p.iommu {
        started_blk::<VioHal>(p.at, p.t, || block_size(r.device))?
    } else {
        started_blk::<RealHal>(p.at, p.t, || block_size(r.device))?
    };
    Ok((AnyDevice::Block(dev), p.detail))
}

/// The block driver over `t`, with the DMA of `H`; its block size is `block_size()`'s, asked
/// once the device is set up (512 bytes if it gives none).
fn started_blk<H: Hal + 'static>(
    at: PciAttachment,
    t: PciTransport,
    block_size: impl FnOnce() -> Option<usize>,
) -> Result<Box<dyn crate::dev::BlockDevice>, DeviceError> {
    let mut b = VirtioBlk::<H, PciTransport, PciAttachment>::start(at, t, 512)?;
    if let Some(bs) = block_size() {
        b.set_block_size(bs);
    }
    Ok(Box::new(b))
}

/// Sets up the virtio-fs device (QEMU's vhost-user-fs-pci) of a virtio-pci function, as for
/// [`block`]: a share through the same driver as on virtio-vio.
pub fn fs(
    name: &str,
    config: RtasConfig,
    at: Bdf,
    r: Regions,
    dma: Option<DmaWindow>,
    timeout_us: u64,
) -> Result<(AnyDevice, String), DeviceError> {
    let p = parts(name, config, at, r, dma, VIRTIO_FS, timeout_us)?;
    let dev: Box<dyn crate::dev::FileSystem> = if p.iommu {
        Box::new(Share::new(
            VirtioFs::<VioHal, PciTransport, PciAttachment>::start(p.at, p.t)?,
        ))
    } else {
        Box::new(Share::new(
            VirtioFs::<RealHal, PciTransport, PciAttachment>::start(p.at, p.t)?,
        ))
    };
    Ok((AnyDevice::FileSystem(dev), p.detail))
}

/// virtio-net (virtio 1.2, 5.1.3, 5.1.4): `mac` and `status` in the device configuration are
/// valid with these features; the link is up when status bit 0 is set.
const VIRTIO_NET_F_MAC: u64 = 1 << 5;
const VIRTIO_NET_F_STATUS: u64 = 1 << 16;
const VIRTIO_NET_S_LINK_UP: u16 = 1;
/// Offset of `status` in `struct virtio_net_config`, after the 6-byte MAC.
const NET_STATUS_OFFSET: u64 = 6;

/// Identifies a virtio-net device without driving it: features negotiated only so that the
/// device configuration reads in virtio 1 byte order (QEMU keeps it in the legacy order
/// before), its MAC and link status read, then the device reset and its bus mastering
/// turned off. No queue is set up.
pub fn net_identity(
    name: &str,
    mut config: RtasConfig,
    at: Bdf,
    r: Regions,
) -> Result<String, PciError> {
    let mmio = |error| PciError::Mmio {
        name: name.into(),
        error,
    };
    let mut t = PciTransport::new(r, VIRTIO_NET).map_err(mmio)?;
    let offered = t.offered();
    if offered & VERSION_1 == 0 {
        return Err(PciError::Legacy {
            name: name.into(),
            offered,
        });
    }
    let ack = DeviceStatus::ACKNOWLEDGE | DeviceStatus::DRIVER;
    t.reset();
    t.set_status(ack);
    t.write_driver_features(VERSION_1 | offered & (VIRTIO_NET_F_MAC | VIRTIO_NET_F_STATUS));
    t.set_status(ack | DeviceStatus::FEATURES_OK);
    let accepted = t.get_status().contains(DeviceStatus::FEATURES_OK);
    let mut text = String::new();
    match r.device {
        _ if !accepted => text.push_str("the device refused features VERSION_1, MAC, STATUS"),
        None => text.push_str("no device configuration"),
        Some(dev) => {
            if offered & VIRTIO_NET_F_MAC != 0 {
                let mut mac = [0u8; 6];
                for (i, b) in mac.iter_mut().enumerate() {
                    *b = dev.read8(i as u64).map_err(mmio)?;
                }
                text = alloc::format!(
                    "MAC {:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
                    mac[0],
                    mac[1],
                    mac[2],
                    mac[3],
                    mac[4],
                    mac[5]
                );
            } else {
                text.push_str("no MAC offered");
            }
            if offered & VIRTIO_NET_F_STATUS != 0 {
                let st = dev.read16(NET_STATUS_OFFSET).map_err(mmio)?;
                let link = if st & VIRTIO_NET_S_LINK_UP != 0 {
                    "up"
                } else {
                    "down"
                };
                text.push_str(&alloc::format!(", link {link} (status {st:#x})"));
            } else {
                text.push_str(", link status not offered");
            }
        }
    }
    t.reset();
    if let Some(error) = t.take_error() {
        return Err(mmio(error));
    }
    let function = |error| PciError::Function {
        name: name.into(),
        error: ::pci::PciError::Access(::pci::config::AccessError {
            at,
            reg: ::pci::config::COMMAND,
            write: true,
            error,
        }),
    };
    let cmd = config
        .read(at, ::pci::config::COMMAND, 2)
        .map_err(function)?;
    config
        .write(
            at,
            ::pci::config::COMMAND,
            2,
            cmd & !u32::from(::pci::config::CMD_BUS_MASTER),
        )
        .map_err(function)?;
    text.push_str("; not driven: device reset, bus mastering off");
    Ok(text)
}
