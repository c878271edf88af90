//! The virtio-pci driver: a modern virtio-pci block device over `virtio::pci::PciTransport`,
//! through the same `drivers::virtio_blk` as on virtio-vio. A device that offers
//! VIRTIO_F_ACCESS_PLATFORM gets IOBAs in its host bridge's TCE window (`ibm,dma-window`,
//! one `vio::tce` window per bridge, buffers mapped per request through `VioHal`); one that
//! does not gets real addresses (`RealHal`). Shutdown resets the device, turns its bus
//! mastering off, and leaves none of its TCEs mapped.

use super::virtio_blk::{
    plausible_block_size, Attach, VirtioBlk, BLK_SIZE_OFFSET, VIRTIO_BLK_F_BLK_SIZE,
};
use crate::dev::{AnyDevice, DeviceError, TransportStats};
use crate::pci::{Mmio, MmioError, PciError, RtasConfig};
use crate::vio::tce;
use crate::virtio::hal::{RealHal, VioHal};
use crate::virtio::pci::{self as vpci, PciTransport, Regions, ACCESS_PLATFORM, VERSION_1};
use ::pci::{Bdf, ConfigSpace};
use alloc::boxed::Box;
use alloc::rc::Rc;
use alloc::string::String;
use core::cell::Cell;
use vioboot_core::inventory::DmaWindow;
use virtio_drivers::transport::DeviceType;

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

/// Sets up the block device of a virtio-pci function whose structures are `r`; `dma` is its
/// host bridge's window. Returns the device and what was negotiated, for the report.
pub fn block(
    name: &str,
    config: RtasConfig,
    at: Bdf,
    r: Regions,
    dma: Option<DmaWindow>,
) -> Result<(AnyDevice, String), DeviceError> {
    let mmio = |error| PciError::Mmio {
        name: name.into(),
        error,
    };
    let t = PciTransport::new(r, DeviceType::Block).map_err(mmio)?;
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
    let at = PciAttachment {
        name: name.into(),
        window,
        error: t.error_cell(),
        notifies: t.notify_counter(),
        common: r.common,
        config,
        at,
        rings: 0,
    };
    // QEMU keeps the device configuration in the legacy byte order until VERSION_1 is
    // negotiated: blk_size is read once the device is set up.
    let block_size = |dev: Option<Mmio>| {
        dev.filter(|_| offered & VIRTIO_BLK_F_BLK_SIZE != 0)
            .and_then(|d| d.read32(BLK_SIZE_OFFSET as u64).ok())
            .and_then(plausible_block_size)
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
    let dev: Box<dyn crate::dev::BlockDevice> = if iommu {
        let mut b = VirtioBlk::<VioHal, PciTransport, PciAttachment>::start(at, t, 512)?;
        if let Some(bs) = block_size(r.device) {
            b.set_block_size(bs);
        }
        Box::new(b)
    } else {
        let mut b = VirtioBlk::<RealHal, PciTransport, PciAttachment>::start(at, t, 512)?;
        if let Some(bs) = block_size(r.device) {
            b.set_block_size(bs);
        }
        Box::new(b)
    };
    Ok((AnyDevice::Block(dev), detail))
}
