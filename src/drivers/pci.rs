//! PCI functions: each identified and reported (vendor, device, class, BARs, capabilities);
//! for a virtio device its structures checked (common, notify, ISR, device configuration, each
//! inside its BAR) and its common configuration read through MMIO; a virtio block or
//! file-system device handed to `drivers::virtio_pci`, a network device identified there (MAC,
//! link) and left alone. A function the scan could not use fails naming why; a virtio device
//! whose structures are missing or outside a BAR is skipped naming why.

use super::virtio_pci::{VIRTIO_BLOCK, VIRTIO_FS, VIRTIO_NET};
use super::{Bound, Unit};
use crate::pci::{self, Function, PciError};
use crate::virtio::pci::Regions;
use ::pci::virtio::{self as vpci, Layout};
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::Write;
use vioboot_core::inventory::DmaWindow;

/// What a base class is (PCI code and ID assignment, the classes seen on pseries).
fn class_name(class: u32) -> &'static str {
    match class >> 16 {
        0x01 => "mass storage",
        0x02 => "network",
        0x03 => "display",
        0x06 => "bridge",
        0x07 => "communication",
        0x0c => "serial bus",
        0xff => "unassigned class",
        _ => "other",
    }
}

/// virtio device ids vioboot names.
fn virtio_name(id: u16) -> &'static str {
    match id {
        1 => "network",
        2 => "block",
        3 => "console",
        4 => "entropy",
        8 => "SCSI host",
        26 => "file system",
        _ => "device",
    }
}

/// A virtio-pci driver: the device and what was negotiated.
type Driver = fn(
    &str,
    pci::RtasConfig,
    ::pci::Bdf,
    Regions,
    Option<DmaWindow>,
    u64,
) -> Result<(crate::dev::AnyDevice, String), crate::dev::DeviceError>;

/// Identifies `f`; `assigned` says whether vioboot gave its BARs their addresses.
pub fn bind(
    name: &str,
    cfg: pci::RtasConfig,
    f: &Function,
    assigned: bool,
    dma: Option<DmaWindow>,
    timeout_us: u64,
) -> Result<Bound, PciError> {
    if let Some(error) = &f.problem {
        return Err(PciError::Function {
            name: name.into(),
            error: error.clone(),
        });
    }
    let mut summary = format!(
        "{:04x}:{:04x} class {:06x} ({}) rev {}",
        f.vendor,
        f.device,
        f.class,
        class_name(f.class),
        f.revision
    );
    if let Some(sec) = f.secondary {
        let _ = write!(summary, ", PCI-to-PCI bridge to bus {sec:02x}");
    }
    let mut facts = Vec::new();
    if !f.bars.is_empty() {
        let who = if assigned { "vioboot" } else { "firmware" };
        let bars: Vec<String> = f.bars.iter().map(|b| format!("{b}")).collect();
        facts.push((
            "bars",
            format!("{} (addresses from {who})", bars.join(", ")),
        ));
    }
    if !f.caps.is_empty() {
        let caps: Vec<String> = f
            .caps
            .iter()
            .map(|c| format!("{:#x} {}", c.offset, cap_name(c.id)))
            .collect();
        facts.push(("capabilities", caps.join(", ")));
    }
    let mut units = Vec::new();
    if let Some(id) = vpci::device_id(f.vendor, f.device, f.subsystem) {
        let (text, regions) = match virtio(name, cfg, f, id) {
            Ok(v) => v,
            // Structures missing or outside their BAR: the device is skipped, the rest of
            // the function reported.
            Err(e @ PciError::VirtioCaps { .. }) => {
                units.push(Unit {
                    name: None,
                    device: Err(("virtio", e.into())),
                });
                return Ok(Bound {
                    summary,
                    facts,
                    units,
                    shared: None,
                });
            }
            Err(e) => return Err(e),
        };
        facts.push(("virtio", text));
        let attach = match id {
            VIRTIO_BLOCK => Some(("blk", super::virtio_pci::block as Driver)),
            VIRTIO_FS => Some(("fs", super::virtio_pci::fs as Driver)),
            _ => None,
        };
        if let Some((kind, driver)) = attach {
            let device = driver(name, cfg, f.at, regions, dma, timeout_us).map(|(d, features)| {
                facts.push(("features", features));
                d
            });
            units.push(Unit {
                name: None,
                device: device.map_err(|e| (kind, e)),
            });
        } else if id == VIRTIO_NET {
            facts.push((
                "net",
                super::virtio_pci::net_identity(name, cfg, f.at, regions)?,
            ));
        }
    }
    Ok(Bound {
        summary,
        facts,
        units,
        shared: None,
    })
}

fn cap_name(id: u8) -> String {
    let name = match id {
        0x01 => "power management",
        0x05 => "MSI",
        0x09 => "vendor",
        0x0c => "hot-plug",
        0x0d => "bridge subsystem",
        0x10 => "PCI Express",
        0x11 => "MSI-X",
        _ => return format!("id {id:#x}"),
    };
    name.into()
}

/// The virtio structures of `f` and what its common configuration says.
fn virtio(
    name: &str,
    mut cfg: pci::RtasConfig,
    f: &Function,
    id: u16,
) -> Result<(String, Regions), PciError> {
    let l: Layout = ::pci::virtio::layout(&mut cfg, f.at, &f.caps, &f.bars).map_err(|error| {
        PciError::VirtioCaps {
            name: name.into(),
            error,
        }
    })?;
    let mmio = |error| PciError::Mmio {
        name: name.into(),
        error,
    };
    let region = |r: vpci::Region| {
        pci::bar_registers(f, r.bar)
            .and_then(|m| m.sub(r.offset.into(), r.length.into()))
            .ok_or(PciError::VirtioCaps {
                name: name.into(),
                error: vpci::VirtioCapError::NoSuchBar {
                    at: f.at,
                    cap: 0,
                    bar: r.bar,
                },
            })
    };
    let common = region(l.common)?;
    // virtio 1.2 4.1.4.3: device_feature_select, device_feature, num_queues, device_status.
    common.write32(0, 1).map_err(mmio)?;
    let hi = common.read32(4).map_err(mmio)?;
    common.write32(0, 0).map_err(mmio)?;
    let lo = common.read32(4).map_err(mmio)?;
    let queues = common.read16(0x12).map_err(mmio)?;
    let status = common.read8(0x14).map_err(mmio)?;
    let mut s = format!(
        "virtio {} (id {id}): common {}, notify {} (x{}), ISR {}",
        virtio_name(id),
        l.common,
        l.notify,
        l.notify_multiplier,
        l.isr
    );
    if let Some(d) = l.device {
        let _ = write!(s, ", device {d}");
    }
    // The device configuration is not read here: before VERSION_1 is negotiated QEMU keeps
    // it in the legacy byte order (big-endian on pseries).
    let _ = write!(
        s,
        "; {queues} queue(s), device features {:#x}, status {status:#x}",
        u64::from(hi) << 32 | u64::from(lo)
    );
    let device = l.device.map(region).transpose()?;
    let regions = Regions {
        common,
        notify: region(l.notify)?,
        notify_multiplier: l.notify_multiplier,
        isr: region(l.isr)?,
        device,
    };
    Ok((s, regions))
}
