//! The machine as the device tree describes it: memory, CPUs, VIO devices, PCI host bridges, RTAS.
//!
//! Reads a blob that [`fdt_write::validate`](crate::fdt_write::validate) accepted. A property that is
//! missing where it is optional gives `None`; one that is malformed (truncated, wrong cell count) is
//! recorded as a [`Problem`] naming the node and the property, and the rest of the tree is still read.

use crate::cells::{self, CellError, Cells};
use crate::ranges::{Range, RangeSet};
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;
use fdt::node::FdtNode;
use fdt::Fdt;

/// A malformed property: where, and what was wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub node: String,
    pub property: &'static str,
    pub error: CellError,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: property `{}` {}",
            self.node, self.property, self.error
        )
    }
}

/// A DMA (TCE) window: what the device may address, through which table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DmaWindow {
    pub liobn: u32,
    pub ioba: u64,
    pub size: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cpu {
    pub name: String,
    pub reg: u32,
    /// Hardware threads (`ibm,ppc-interrupt-server#s` entries).
    pub threads: usize,
    /// The threads' interrupt server numbers (`ibm,ppc-interrupt-server#s`, else `reg`): how
    /// RTAS `start-cpu`, `query-cpu-stopped-state` and H_PROD name a thread.
    pub servers: Vec<u32>,
}

/// A child of `/vdevice`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VioDevice {
    /// Node name with unit address, e.g. `vty@71000000`.
    pub name: String,
    /// The unit address (`reg`): the handle hcalls take.
    pub unit: u32,
    pub compatible: Vec<String>,
    pub device_type: Option<String>,
    pub dma: Option<DmaWindow>,
    pub irq: Option<u32>,
}

impl VioDevice {
    pub fn is_compatible(&self, c: &str) -> bool {
        self.compatible.iter().any(|x| x == c)
    }

    /// A hypervisor virtual terminal (H_PUT_TERM_CHAR / H_GET_TERM_CHAR).
    pub fn is_vty(&self) -> bool {
        self.is_compatible("hvterm1") || self.is_compatible("hvterm-protocol")
    }
}

/// A PCI host bridge at the root of the tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Phb {
    pub name: String,
    pub buid: u64,
    pub dma: Option<DmaWindow>,
    /// `ranges`: which PCI addresses appear where to the processor.
    pub ranges: Vec<PciRange>,
}

/// One entry of a host bridge's `ranges` (IEEE 1275 PCI binding: a 3-cell PCI address whose
/// first cell carries the space code in bits 24..25).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PciRange {
    /// 1 I/O, 2 32-bit memory, 3 64-bit memory (0 configuration: not a window).
    pub space: u8,
    pub prefetchable: bool,
    pub pci: u64,
    pub cpu: u64,
    pub size: u64,
}

/// Reads `ranges` of a PCI host bridge: 3 PCI address cells, the parent's address cells, 2
/// size cells (the bridge's `#size-cells`).
fn pci_ranges(
    value: &[u8],
    parent_cells: u32,
    size_cells: u32,
) -> Result<Vec<PciRange>, CellError> {
    let mut c = Cells::new(value);
    let mut out = Vec::new();
    while !c.is_empty() {
        let hi = c.u32()?;
        let pci = c.number(2)?;
        let cpu = c.number(parent_cells)?;
        let size = c.number(size_cells)?;
        out.push(PciRange {
            space: ((hi >> 24) & 3) as u8,
            prefetchable: hi & 0x4000_0000 != 0,
            pci,
            cpu,
            size,
        });
    }
    Ok(out)
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RtasInfo {
    /// Service name and token, as `/rtas` lists them.
    pub tokens: Vec<(String, u32)>,
    pub size: Option<u32>,
}

impl RtasInfo {
    pub fn token(&self, name: &str) -> Option<u32> {
        self.tokens.iter().find(|(n, _)| n == name).map(|(_, t)| *t)
    }
}

/// Properties of `/rtas` that hold one cell but are not service tokens.
const RTAS_NOT_TOKENS: &[&str] = &[
    "rtas-size",
    "rtas-version",
    "rtas-event-scan-rate",
    "rtas-error-log-max",
    "linux,rtas-base",
    "linux,rtas-entry",
    "phandle",
    "linux,phandle",
    "ibm,#dma-address-cells",
    "ibm,#dma-size-cells",
    "ibm,extended-os-term",
];

/// Which interrupt controller the root's `interrupt-controller` node describes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IntcKind {
    /// XICS (`IBM,ppc-xicp`, device_type `PowerPC-External-Interrupt-Presentation`): H_XIRR,
    /// H_EOI, H_CPPR, H_IPI; sources routed by RTAS `ibm,set-xive`.
    Xics,
    /// XIVE exploitation mode (`ibm,power-ivpe`): the H_INT_* hcalls, which vioboot does not
    /// drive.
    Xive,
    /// Something else: its `compatible` (or device_type).
    Other(String),
}

/// The interrupt controller node at the root of the tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterruptController {
    /// The node's name, e.g. `interrupt-controller`.
    pub name: String,
    pub kind: IntcKind,
    /// `ibm,interrupt-server-ranges`: (first server, count) pairs.
    pub server_ranges: Vec<(u32, u32)>,
}

impl InterruptController {
    /// Whether `server` lies in one of the ranges.
    pub fn serves(&self, server: u32) -> bool {
        self.server_ranges.iter().any(|&(first, n)| {
            server >= first && u64::from(server) < u64::from(first) + u64::from(n)
        })
    }

    /// The number of servers the ranges cover.
    pub fn servers(&self) -> u64 {
        self.server_ranges.iter().map(|&(_, n)| u64::from(n)).sum()
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Chosen {
    pub bootargs: Option<String>,
    pub stdout_path: Option<String>,
}

/// Everything vioboot learns from the tree.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Inventory {
    /// `memory@` nodes, merged.
    pub memory: RangeSet,
    /// FDT reservations and `/reserved-memory` children.
    pub reserved: Vec<Range>,
    pub cpus: Vec<Cpu>,
    pub timebase_hz: Option<u64>,
    /// `None` when the tree has no `/vdevice`.
    pub vdevices: Option<Vec<VioDevice>>,
    pub phbs: Vec<Phb>,
    pub rtas: Option<RtasInfo>,
    /// `None` when the tree has no `/chosen`.
    pub chosen: Option<Chosen>,
    /// The root's interrupt controller node; `None` when the tree has none.
    pub intc: Option<InterruptController>,
    pub problems: Vec<Problem>,
}

impl Inventory {
    /// Memory that exists and is not reserved.
    pub fn usable_memory(&self) -> RangeSet {
        let mut m = self.memory.clone();
        for r in &self.reserved {
            m.remove(*r);
        }
        m
    }

    /// The vty the console should use: the one `/chosen` names, else the first one.
    pub fn console_vty(&self) -> Option<&VioDevice> {
        let vtys = self.vdevices.as_deref().unwrap_or_default();
        let named = self.chosen.as_ref().and_then(|c| c.stdout_path.as_deref());
        named
            .and_then(|p| p.rsplit('/').next())
            .and_then(|leaf| vtys.iter().find(|d| d.is_vty() && d.name == leaf))
            .or_else(|| vtys.iter().find(|d| d.is_vty()))
    }
}

struct Reader {
    inv: Inventory,
}

impl Reader {
    fn problem(&mut self, node: &str, property: &'static str, error: CellError) {
        self.inv.problems.push(Problem {
            node: node.to_string(),
            property,
            error,
        });
    }

    /// A property that must hold a value of the right shape; malformed values are recorded.
    fn get<T>(
        &mut self,
        path: &str,
        node: &FdtNode,
        property: &'static str,
        parse: impl FnOnce(&[u8]) -> Result<T, CellError>,
    ) -> Option<T> {
        let p = node.property(property)?;
        match parse(p.value) {
            Ok(v) => Some(v),
            Err(e) => {
                self.problem(path, property, e);
                None
            }
        }
    }
}

fn cells_of(node: &FdtNode, name: &str) -> Option<u32> {
    node.property(name)
        .and_then(|p| cells::single_u32(p.value).ok())
}

fn dma_window(value: &[u8], addr_cells: u32, size_cells: u32) -> Result<DmaWindow, CellError> {
    let mut c = Cells::new(value);
    Ok(DmaWindow {
        liobn: c.u32()?,
        ioba: c.number(addr_cells)?,
        size: c.number(size_cells)?,
    })
}

fn string_prop(v: &[u8]) -> Result<String, CellError> {
    cells::string(v).map(ToString::to_string)
}

/// Reads the inventory. `fdt` must come from a validated blob.
pub fn read(fdt: &Fdt) -> Inventory {
    let mut r = Reader {
        inv: Inventory::default(),
    };
    let Some(root) = fdt.find_node("/") else {
        return r.inv;
    };
    let addr_cells = cells_of(&root, "#address-cells").unwrap_or(2);
    let size_cells = cells_of(&root, "#size-cells").unwrap_or(1);

    for rsv in fdt.memory_reservations() {
        if let Some(range) = Range::from_base_size(rsv.address() as u64, rsv.size() as u64) {
            r.inv.reserved.push(range);
        }
    }

    for node in root.children() {
        let path = alloc::format!("/{}", node.name);
        let base = node.name.split('@').next().unwrap_or("");
        let device_type = node
            .property("device_type")
            .and_then(|p| cells::string(p.value).ok());
        if base == "memory" || device_type == Some("memory") {
            let regs = r.get(&path, &node, "reg", |v| {
                let mut c = Cells::new(v);
                let mut out = Vec::new();
                while !c.is_empty() {
                    out.push((c.number(addr_cells)?, c.number(size_cells)?));
                }
                Ok(out)
            });
            for (b, s) in regs.unwrap_or_default() {
                match Range::from_base_size(b, s) {
                    Some(range) => r.inv.memory.add(range),
                    None => r.problem(&path, "reg", CellError::Truncated { need: 0, have: 0 }),
                }
            }
        } else if device_type == Some("pci") {
            let buid = r.get(&path, &node, "reg", |v| Cells::new(v).number(addr_cells));
            let dma = r.get(&path, &node, "ibm,dma-window", |v| {
                let ac = cells_of(&node, "ibm,#dma-address-cells").unwrap_or(2);
                let sc = cells_of(&node, "ibm,#dma-size-cells").unwrap_or(2);
                dma_window(v, ac, sc)
            });
            let ranges = r.get(&path, &node, "ranges", |v| {
                pci_ranges(v, addr_cells, cells_of(&node, "#size-cells").unwrap_or(2))
            });
            r.inv.phbs.push(Phb {
                name: node.name.to_string(),
                buid: buid.unwrap_or(0),
                dma,
                ranges: ranges.unwrap_or_default(),
            });
        } else {
            match base {
                "cpus" => read_cpus(&mut r, &node),
                "vdevice" => read_vdevice(&mut r, &node),
                "rtas" => read_rtas(&mut r, &node),
                "interrupt-controller" => read_intc(&mut r, &node),
                "chosen" => {
                    let bootargs = r.get(&path, &node, "bootargs", string_prop);
                    let stdout_path = r
                        .get(&path, &node, "linux,stdout-path", string_prop)
                        .or_else(|| r.get(&path, &node, "stdout-path", string_prop));
                    r.inv.chosen = Some(Chosen {
                        bootargs,
                        stdout_path,
                    });
                }
                "reserved-memory" => {
                    let ac = cells_of(&node, "#address-cells").unwrap_or(addr_cells);
                    let sc = cells_of(&node, "#size-cells").unwrap_or(size_cells);
                    for child in node.children() {
                        let cpath = alloc::format!("{path}/{}", child.name);
                        let reg = r.get(&cpath, &child, "reg", |v| {
                            let mut c = Cells::new(v);
                            Ok((c.number(ac)?, c.number(sc)?))
                        });
                        if let Some(range) = reg.and_then(|(b, s)| Range::from_base_size(b, s)) {
                            r.inv.reserved.push(range);
                        }
                    }
                }
                _ => {}
            }
        }
    }
    r.inv
}

fn read_cpus(r: &mut Reader, cpus: &FdtNode) {
    for cpu in cpus.children() {
        let path = alloc::format!("/cpus/{}", cpu.name);
        let is_cpu = cpu
            .property("device_type")
            .and_then(|p| cells::string(p.value).ok())
            == Some("cpu");
        if !is_cpu {
            continue;
        }
        let reg = r.get(&path, &cpu, "reg", cells::single_u32).unwrap_or(0);
        let servers = match cpu.property("ibm,ppc-interrupt-server#s") {
            Some(p) if !p.value.is_empty() && p.value.len() % 4 == 0 => p
                .value
                .chunks_exact(4)
                .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            Some(p) => {
                r.problem(
                    &path,
                    "ibm,ppc-interrupt-server#s",
                    CellError::Truncated {
                        need: p.value.len().next_multiple_of(4).max(4),
                        have: p.value.len(),
                    },
                );
                alloc::vec![reg]
            }
            None => alloc::vec![reg],
        };
        let threads = servers.len();
        if r.inv.timebase_hz.is_none() {
            r.inv.timebase_hz = r.get(&path, &cpu, "timebase-frequency", |v| {
                let mut c = Cells::new(v);
                c.number(if v.len() == 8 { 2 } else { 1 })
            });
        }
        r.inv.cpus.push(Cpu {
            name: cpu.name.to_string(),
            reg,
            threads,
            servers,
        });
    }
}

fn read_vdevice(r: &mut Reader, vdevice: &FdtNode) {
    let parent_ac = cells_of(vdevice, "ibm,#dma-address-cells");
    let parent_sc = cells_of(vdevice, "ibm,#dma-size-cells");
    let mut devices = Vec::new();
    for dev in vdevice.children() {
        let path = alloc::format!("/vdevice/{}", dev.name);
        let Some(unit) = r.get(&path, &dev, "reg", cells::single_u32) else {
            if dev.property("reg").is_none() {
                r.problem(&path, "reg", CellError::Truncated { need: 4, have: 0 });
            }
            continue;
        };
        let compatible = dev
            .property("compatible")
            .map(|p| {
                cells::string_list(p.value)
                    .map(ToString::to_string)
                    .collect()
            })
            .unwrap_or_default();
        let device_type = r.get(&path, &dev, "device_type", string_prop);
        let ac = cells_of(&dev, "ibm,#dma-address-cells")
            .or(parent_ac)
            .unwrap_or(2);
        let sc = cells_of(&dev, "ibm,#dma-size-cells")
            .or(parent_sc)
            .unwrap_or(2);
        let dma = r.get(&path, &dev, "ibm,my-dma-window", |v| dma_window(v, ac, sc));
        let irq = r.get(&path, &dev, "interrupts", |v| Cells::new(v).u32());
        devices.push(VioDevice {
            name: dev.name.to_string(),
            unit,
            compatible,
            device_type,
            dma,
            irq,
        });
    }
    r.inv.vdevices = Some(devices);
}

fn read_intc(r: &mut Reader, node: &FdtNode) {
    let path = alloc::format!("/{}", node.name);
    let compatible: Vec<&str> = node
        .property("compatible")
        .map(|p| cells::string_list(p.value).collect())
        .unwrap_or_default();
    let device_type = node
        .property("device_type")
        .and_then(|p| cells::string(p.value).ok());
    let kind = if compatible.contains(&"IBM,ppc-xicp")
        || device_type == Some("PowerPC-External-Interrupt-Presentation")
    {
        IntcKind::Xics
    } else if compatible.contains(&"ibm,power-ivpe") || device_type == Some("power-ivpe") {
        IntcKind::Xive
    } else {
        IntcKind::Other(
            compatible
                .first()
                .copied()
                .or(device_type)
                .unwrap_or("no compatible")
                .to_string(),
        )
    };
    let server_ranges = r
        .get(&path, node, "ibm,interrupt-server-ranges", |v| {
            let mut c = Cells::new(v);
            let mut out = Vec::new();
            if c.is_empty() {
                return Err(CellError::Truncated { need: 8, have: 0 });
            }
            while !c.is_empty() {
                out.push((c.u32()?, c.u32()?));
            }
            Ok(out)
        })
        .unwrap_or_default();
    r.inv.intc = Some(InterruptController {
        name: node.name.to_string(),
        kind,
        server_ranges,
    });
}

fn read_rtas(r: &mut Reader, rtas: &FdtNode) {
    let mut info = RtasInfo::default();
    for p in rtas.properties() {
        if p.name == "rtas-size" {
            info.size = cells::single_u32(p.value).ok();
        } else if p.value.len() == 4 && !RTAS_NOT_TOKENS.contains(&p.name) {
            info.tokens.push((
                p.name.to_string(),
                cells::single_u32(p.value).unwrap_or(u32::MAX),
            ));
        }
    }
    r.inv.rtas = Some(info);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fdt_write::{validate, FdtBuilder};

    fn tree(build: impl FnOnce(&mut FdtBuilder)) -> Vec<u8> {
        let mut b = FdtBuilder::new();
        b.begin_node("").unwrap();
        b.property_u32("#address-cells", 2).unwrap();
        b.property_u32("#size-cells", 2).unwrap();
        build(&mut b);
        b.end_node().unwrap();
        b.reserve(0x3000_0000, 0x10_0000);
        let blob = b.finish().unwrap();
        validate(&blob).unwrap();
        blob
    }

    fn memory(b: &mut FdtBuilder, name: &str, base: u64, size: u64) {
        b.begin_node(name).unwrap();
        b.property("device_type", b"memory\0").unwrap();
        let mut reg = Vec::new();
        reg.extend_from_slice(&base.to_be_bytes());
        reg.extend_from_slice(&size.to_be_bytes());
        b.property("reg", &reg).unwrap();
        b.end_node().unwrap();
    }

    fn pseries_like(b: &mut FdtBuilder) {
        memory(b, "memory@0", 0, 0x4000_0000);
        memory(b, "memory@40000000", 0x4000_0000, 0x4000_0000);
        b.begin_node("chosen").unwrap();
        b.property("bootargs", b"vioboot.log=debug\0").unwrap();
        b.property("linux,stdout-path", b"/vdevice/vty@71000000\0")
            .unwrap();
        b.end_node().unwrap();
        b.begin_node("cpus").unwrap();
        b.begin_node("PowerPC,POWER9@0").unwrap();
        b.property("device_type", b"cpu\0").unwrap();
        b.property_u32("reg", 0).unwrap();
        b.property_u32("timebase-frequency", 512_000_000).unwrap();
        b.property("ibm,ppc-interrupt-server#s", &[0, 0, 0, 0, 0, 0, 0, 1])
            .unwrap();
        b.end_node().unwrap();
        b.end_node().unwrap();
        b.begin_node("vdevice").unwrap();
        b.begin_node("vty@71000000").unwrap();
        b.property_u32("reg", 0x7100_0000).unwrap();
        b.property("compatible", b"hvterm1\0").unwrap();
        b.property("device_type", b"serial\0").unwrap();
        b.end_node().unwrap();
        b.begin_node("v-scsi@71000002").unwrap();
        b.property_u32("reg", 0x7100_0002).unwrap();
        b.property("compatible", b"IBM,v-scsi\0").unwrap();
        b.property_u32("ibm,#dma-address-cells", 2).unwrap();
        b.property_u32("ibm,#dma-size-cells", 2).unwrap();
        b.property(
            "ibm,my-dma-window",
            &[
                0, 0, 0, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10, 0, 0, 0,
            ],
        )
        .unwrap();
        b.property("interrupts", &[0, 0, 0x10, 0x01, 0, 0, 0, 0])
            .unwrap();
        b.end_node().unwrap();
        b.end_node().unwrap();
        b.begin_node("rtas").unwrap();
        b.property_u32("power-off", 0x2003).unwrap();
        b.property_u32("ibm,os-term", 0x201f).unwrap();
        b.property_u32("rtas-size", 0x2000).unwrap();
        b.property("ibm,hypertas-functions", b"hcall-pft\0")
            .unwrap();
        b.end_node().unwrap();
        b.begin_node("pci@800000020000000").unwrap();
        b.property("device_type", b"pci\0").unwrap();
        b.property("reg", &0x0800_0000_2000_0000_u64.to_be_bytes())
            .unwrap();
        b.property(
            "ibm,dma-window",
            &[
                0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x40, 0, 0, 0,
            ],
        )
        .unwrap();
        // QEMU's: I/O 64 KiB, 32-bit memory 2 GiB, 64-bit memory 1 TiB.
        let ranges: [u32; 21] = [
            0x0100_0000,
            0,
            0,
            0x2000,
            0,
            0,
            0x1_0000,
            0x0200_0000,
            0,
            0x8000_0000,
            0x2000,
            0x8000_0000,
            0,
            0x8000_0000,
            0x0300_0000,
            0x2100,
            0,
            0x2100,
            0,
            0x100,
            0,
        ];
        let bytes: Vec<u8> = ranges.iter().flat_map(|c| c.to_be_bytes()).collect();
        b.property("ranges", &bytes).unwrap();
        b.end_node().unwrap();
    }

    #[test]
    fn reads_a_pseries_like_tree() {
        let blob = tree(pseries_like);
        let fdt = Fdt::new(&blob).unwrap();
        let inv = read(&fdt);
        assert!(inv.problems.is_empty(), "{:?}", inv.problems);
        assert_eq!(
            inv.memory.ranges(),
            [Range {
                start: 0,
                end: 0x8000_0000
            }]
        );
        assert_eq!(
            inv.reserved,
            [Range {
                start: 0x3000_0000,
                end: 0x3010_0000
            }]
        );
        assert_eq!(inv.usable_memory().total(), 0x8000_0000 - 0x10_0000);
        assert_eq!(inv.cpus.len(), 1);
        assert_eq!(inv.cpus[0].threads, 2);
        assert_eq!(inv.cpus[0].servers, [0, 1]);
        assert_eq!(inv.timebase_hz, Some(512_000_000));
        let vdev = inv.vdevices.as_ref().unwrap();
        assert_eq!(vdev.len(), 2);
        assert_eq!(inv.console_vty().unwrap().unit, 0x7100_0000);
        assert_eq!(
            vdev[1].dma,
            Some(DmaWindow {
                liobn: 0x10,
                ioba: 0,
                size: 0x1000_0000
            })
        );
        assert_eq!(vdev[1].irq, Some(0x1001));
        let rtas = inv.rtas.as_ref().unwrap();
        assert_eq!(rtas.token("power-off"), Some(0x2003));
        assert_eq!(rtas.token("rtas-size"), None);
        assert_eq!(rtas.size, Some(0x2000));
        assert_eq!(
            inv.phbs[0].ranges[1],
            PciRange {
                space: 2,
                prefetchable: false,
                pci: 0x8000_0000,
                cpu: 0x2000_8000_0000,
                size: 0x8000_0000
            }
        );
        assert_eq!(inv.phbs[0].ranges[2].cpu, 0x2100_0000_0000);
        assert_eq!(inv.phbs[0].ranges[2].size, 0x100_0000_0000);
        assert_eq!(
            inv.phbs[0].dma,
            Some(DmaWindow {
                liobn: 0x8000_0000,
                ioba: 0,
                size: 0x4000_0000
            })
        );
        assert_eq!(
            inv.chosen.as_ref().unwrap().bootargs.as_deref(),
            Some("vioboot.log=debug")
        );
    }

    #[test]
    fn missing_nodes_read_as_absent() {
        let blob = tree(|_| {});
        let inv = read(&Fdt::new(&blob).unwrap());
        assert!(inv.memory.ranges().is_empty());
        assert!(inv.chosen.is_none() && inv.vdevices.is_none() && inv.rtas.is_none());
        assert!(inv.console_vty().is_none());
        assert!(inv.problems.is_empty());
    }

    #[test]
    fn malformed_properties_are_named() {
        let blob = tree(|b| {
            b.begin_node("memory@0").unwrap();
            b.property("device_type", b"memory\0").unwrap();
            b.property("reg", &[0; 12]).unwrap(); // 2+2 cells need 16 bytes
            b.end_node().unwrap();
            b.begin_node("vdevice").unwrap();
            b.begin_node("v-scsi@2").unwrap();
            b.property_u32("reg", 2).unwrap();
            b.property("ibm,my-dma-window", &[0, 0, 0, 1, 0, 0])
                .unwrap();
            b.end_node().unwrap();
            b.end_node().unwrap();
            b.begin_node("chosen").unwrap();
            b.property("bootargs", b"no terminator").unwrap();
            b.end_node().unwrap();
        });
        let inv = read(&Fdt::new(&blob).unwrap());
        let text: Vec<String> = inv.problems.iter().map(|p| alloc::format!("{p}")).collect();
        assert_eq!(text.len(), 3, "{text:?}");
        assert!(
            text[0].starts_with("/memory@0: property `reg` truncated"),
            "{text:?}"
        );
        assert!(
            text[1].starts_with("/vdevice/v-scsi@2: property `ibm,my-dma-window` truncated"),
            "{text:?}"
        );
        assert!(
            text[2].starts_with("/chosen: property `bootargs` not a NUL-terminated"),
            "{text:?}"
        );
        assert!(inv.memory.ranges().is_empty());
        let dev = &inv.vdevices.as_ref().unwrap()[0];
        assert_eq!(dev.dma, None);
    }

    #[test]
    fn interrupt_server_numbers_are_read_and_a_ragged_list_is_named() {
        let blob = tree(|b| {
            b.begin_node("cpus").unwrap();
            b.begin_node("PowerPC,POWER9@8").unwrap();
            b.property("device_type", b"cpu\0").unwrap();
            b.property_u32("reg", 8).unwrap();
            b.property(
                "ibm,ppc-interrupt-server#s",
                &[0, 0, 0, 8, 0, 0, 0, 9, 0, 0, 0, 10],
            )
            .unwrap();
            b.end_node().unwrap();
            b.begin_node("PowerPC,POWER9@10").unwrap();
            b.property("device_type", b"cpu\0").unwrap();
            b.property_u32("reg", 0x10).unwrap();
            b.property("ibm,ppc-interrupt-server#s", &[0, 0, 0, 0x10, 0, 0])
                .unwrap();
            b.end_node().unwrap();
            b.begin_node("PowerPC,POWER9@20").unwrap();
            b.property("device_type", b"cpu\0").unwrap();
            b.property_u32("reg", 0x20).unwrap();
            b.end_node().unwrap();
            b.end_node().unwrap();
        });
        let inv = read(&Fdt::new(&blob).unwrap());
        assert_eq!(inv.cpus[0].servers, [8, 9, 10]);
        assert_eq!(inv.cpus[0].threads, 3);
        // A list that is not whole cells: named, and the node's `reg` stands in.
        assert_eq!(inv.cpus[1].servers, [0x10]);
        let text: Vec<String> = inv.problems.iter().map(|p| alloc::format!("{p}")).collect();
        assert_eq!(text.len(), 1, "{text:?}");
        assert!(
            text[0].starts_with(
                "/cpus/PowerPC,POWER9@10: property `ibm,ppc-interrupt-server#s` truncated"
            ),
            "{text:?}"
        );
        // No list at all: one thread, `reg`.
        assert_eq!(inv.cpus[2].servers, [0x20]);
    }

    /// QEMU 7.2's own pseries tree (`-M pseries,dumpdtb=`, -smp 2 and a second v-scsi): XICS
    /// before CAS, two servers, each VIO device's interrupt source.
    #[test]
    fn qemu_pseries_tree_describes_xics_and_the_device_sources() {
        let blob = include_bytes!("../../../fuzz/seeds/fdt/pseries-smp2-vscsi.dtb");
        validate(blob).unwrap();
        let inv = read(&Fdt::new(blob).unwrap());
        assert!(inv.problems.is_empty(), "{:?}", inv.problems);
        let intc = inv.intc.as_ref().expect("an interrupt-controller node");
        assert_eq!(intc.name, "interrupt-controller");
        assert_eq!(intc.kind, IntcKind::Xics);
        assert_eq!(intc.server_ranges, [(0, 2)]);
        assert!(intc.serves(0) && intc.serves(1) && !intc.serves(2));
        assert_eq!(intc.servers(), 2);
        let irq = |n: &str| {
            inv.vdevices
                .as_ref()
                .unwrap()
                .iter()
                .find(|d| d.name == n)
                .and_then(|d| d.irq)
        };
        assert_eq!(irq("vty@71000000"), Some(0x1100));
        assert_eq!(irq("v-scsi@71000003"), Some(0x1103));
        assert_eq!(irq("v-scsi@71000004"), Some(0x1104));
    }

    fn intc_node(b: &mut FdtBuilder, compatible: &[u8], ranges: Option<&[u8]>) {
        b.begin_node("interrupt-controller").unwrap();
        b.property("compatible", compatible).unwrap();
        b.property("interrupt-controller", &[]).unwrap();
        if let Some(r) = ranges {
            b.property("ibm,interrupt-server-ranges", r).unwrap();
        }
        b.end_node().unwrap();
    }

    #[test]
    fn interrupt_controllers_are_told_apart_and_bad_ranges_named() {
        // No node: none.
        let blob = tree(pseries_like);
        assert_eq!(read(&Fdt::new(&blob).unwrap()).intc, None);
        // XIVE (ic-mode=xive, or after CAS chose it).
        let blob = tree(|b| intc_node(b, b"ibm,power-ivpe\0", None));
        let inv = read(&Fdt::new(&blob).unwrap());
        assert_eq!(inv.intc.as_ref().unwrap().kind, IntcKind::Xive);
        assert!(inv.intc.as_ref().unwrap().server_ranges.is_empty());
        // Several ranges; a server between them is not served.
        let blob = tree(|b| {
            intc_node(
                b,
                b"IBM,ppc-xicp\0",
                Some(&[0, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0, 8, 0, 0, 0, 2]),
            )
        });
        let inv = read(&Fdt::new(&blob).unwrap());
        let intc = inv.intc.unwrap();
        assert_eq!(intc.server_ranges, [(0, 4), (8, 2)]);
        assert!(intc.serves(9) && !intc.serves(5) && !intc.serves(10));
        // A range cut short, and an empty one: named problems, no ranges.
        for bad in [&[0u8, 0, 0, 0, 0, 0][..], &[][..]] {
            let blob = tree(|b| intc_node(b, b"IBM,ppc-xicp\0", Some(bad)));
            let inv = read(&Fdt::new(&blob).unwrap());
            let text: Vec<String> = inv.problems.iter().map(|p| alloc::format!("{p}")).collect();
            assert_eq!(text.len(), 1, "{text:?}");
            assert!(
                text[0].starts_with(
                    "/interrupt-controller: property `ibm,interrupt-server-ranges` truncated"
                ),
                "{text:?}"
            );
            assert_eq!(inv.intc.unwrap().kind, IntcKind::Xics);
        }
        // Something else: named by its compatible.
        let blob = tree(|b| intc_node(b, b"acme,pic\0", None));
        assert_eq!(
            read(&Fdt::new(&blob).unwrap()).intc.unwrap().kind,
            IntcKind::Other("acme,pic".into())
        );
    }
}
