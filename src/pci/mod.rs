//! The PCI buses of a pseries partition: each host bridge (PHB) in the tree, its config space
//! through RTAS ([`config`]), its functions found, their BARs sized and given addresses or
//! firmware's kept (the `pci` crate's logic), and their registers reached through
//! H_LOGICAL_CI_LOAD/STORE ([`mmio`]), which work in real mode where plain loads do not.

pub mod config;
pub mod mmio;

use crate::rtas::RtasError;
use ::pci::enumerate::{scan, Policy};
use ::pci::{Bdf, Window, WindowKind};
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use vioboot_core::inventory::{DmaWindow, Inventory};

pub use config::RtasConfig;
pub use mmio::{Mmio, MmioError};

/// A function as found on a host bridge (errors are RTAS's).
pub type Function = ::pci::Function<RtasError>;

/// One host bridge and what its scan found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    /// Its place among the tree's host bridges: the domain in a function's name.
    pub domain: u16,
    /// The tree node's name (`pci@800000020000000`).
    pub name: String,
    pub buid: u64,
    /// Its config space.
    pub config: RtasConfig,
    /// `ibm,dma-window`: the TCE window its devices' DMA goes through when they use one.
    pub dma: Option<DmaWindow>,
    pub windows: Vec<Window>,
    pub functions: Vec<Function>,
    /// What kept part of a bus from being scanned.
    pub problems: Vec<::pci::PciError<RtasError>>,
    /// Whether vioboot gave the BARs addresses (else firmware's were kept).
    pub assigned: bool,
}

impl Host {
    /// The name a function is reported under: `pci 0000:01:03.0`.
    pub fn function_name(&self, at: Bdf) -> String {
        alloc::format!("pci {:04x}:{at}", self.domain)
    }
}

/// Why a PCI function or host bridge cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PciError {
    /// `/rtas` lacks a config-space service.
    NoConfigAccess {
        host: String,
        service: &'static str,
    },
    /// Found, but not usable: a BAR, its capability list or a config access.
    Function {
        name: String,
        error: ::pci::PciError<RtasError>,
    },
    /// A virtio device whose capabilities cannot be used.
    VirtioCaps {
        name: String,
        error: ::pci::virtio::VirtioCapError<RtasError>,
    },
    Mmio {
        name: String,
        error: MmioError,
    },
    /// A virtio device that does not offer VIRTIO_F_VERSION_1 (legacy only).
    Legacy {
        name: String,
        offered: u64,
    },
    /// A device that translates through a TCE window its host bridge does not describe.
    NoDmaWindow {
        name: String,
    },
    /// virtio-drivers refused or failed a request.
    Driver {
        name: String,
        error: virtio_drivers::Error,
    },
    /// A request after the device was shut down.
    ShutDown {
        name: String,
    },
    /// A device reset that did not read back 0 within the bound.
    ResetTimeout {
        name: String,
        waited_ms: u64,
    },
}

impl fmt::Display for PciError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PciError::NoConfigAccess { host, service } => {
                write!(f, "{host}: /rtas has no `{service}`")
            }
            PciError::Function { name, error } => write!(f, "{name}: {error}"),
            PciError::VirtioCaps { name, error } => write!(f, "{name}: {error}"),
            PciError::Mmio { name, error } => write!(f, "{name}: {error}"),
            PciError::Legacy { name, offered } => write!(
                f,
                "{name}: a legacy virtio device (features {offered:#x}, no VIRTIO_F_VERSION_1)"
            ),
            PciError::NoDmaWindow { name } => write!(
                f,
                "{name}: offers VIRTIO_F_ACCESS_PLATFORM but its host bridge has no ibm,dma-window"
            ),
            PciError::Driver { name, error } => write!(f, "{name}: {error}"),
            PciError::ShutDown { name } => write!(f, "{name}: the device was shut down"),
            PciError::ResetTimeout { name, waited_ms } => write!(
                f,
                "{name}: device status still not 0 {waited_ms} ms after a reset"
            ),
        }
    }
}

const READ_CONFIG: &str = "ibm,read-pci-config";
const WRITE_CONFIG: &str = "ibm,write-pci-config";

/// The windows of a host bridge, from its `ranges`.
fn windows(ranges: &[vioboot_core::inventory::PciRange]) -> Vec<Window> {
    ranges
        .iter()
        .filter_map(|r| {
            let kind = match r.space {
                1 => WindowKind::Io,
                2 => WindowKind::Mem32,
                3 => WindowKind::Mem64,
                _ => return None,
            };
            Some(Window {
                kind,
                pci: r.pci,
                cpu: r.cpu,
                size: r.size,
            })
        })
        .collect()
}

/// Scans every host bridge in the tree: functions found, BARs assigned where nobody did,
/// memory decoding and bus mastering on for every usable function.
pub fn discover(inv: &Inventory) -> (Vec<Host>, Vec<PciError>) {
    let mut hosts = Vec::new();
    let mut bad = Vec::new();
    let token = |s| inv.rtas.as_ref().and_then(|r| r.token(s));
    for (i, p) in inv.phbs.iter().enumerate() {
        let (Some(read), Some(write)) = (token(READ_CONFIG), token(WRITE_CONFIG)) else {
            let service = if token(READ_CONFIG).is_none() {
                READ_CONFIG
            } else {
                WRITE_CONFIG
            };
            bad.push(PciError::NoConfigAccess {
                host: p.name.clone(),
                service,
            });
            continue;
        };
        let windows = windows(&p.ranges);
        let mut cfg = RtasConfig {
            buid: p.buid,
            read,
            write,
        };
        let s = scan(&mut cfg, 0, &windows, Policy::Auto);
        hosts.push(Host {
            domain: i as u16,
            name: p.name.clone(),
            buid: p.buid,
            config: cfg,
            dma: p.dma,
            windows,
            functions: s.functions,
            problems: s.problems,
            assigned: s.assigned,
        });
    }
    (hosts, bad)
}

/// The registers of BAR `index` of `f`, if it is a memory BAR with an address and `f` is
/// usable (its memory decoding was turned on by the scan).
pub fn bar_registers(f: &Function, index: u8) -> Option<Mmio> {
    if f.problem.is_some() {
        return None;
    }
    let b = f.bar(index)?;
    let cpu = b.cpu?;
    if !b.kind.is_memory() {
        return None;
    }
    // SAFETY: a memory BAR of a usable function: the scan gave it (or kept) an address inside
    // a host bridge window, translated it to the processor's address, and turned memory
    // decoding on, so `cpu..cpu + size` are that function's registers.
    Some(unsafe { Mmio::new(cpu, b.size) })
}
