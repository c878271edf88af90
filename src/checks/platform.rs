//! The platform's checks: the device tree and the properties vioboot reads, the machine
//! inventory, memory (heap and DMA page pool), the console, RTAS, and hcalls with a TCE round
//! trip in a real DMA window.

use crate::console::{self, Sink};
use crate::firmware::{Firmware, Regions, Tree};
use crate::hcall::{self, HcallError, Ioba, Liobn, UnitAddress};
use crate::{cprintln, mem, report, rtas};
use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;
use papr::status::H_PARAMETER;
use papr::tce::{TCE_READ, TCE_WRITE};
use vioboot_core::fdt_write::Summary;
use vioboot_core::inventory::Inventory;
use vioboot_core::options::Options;
use vioboot_core::pages::PageError;
use vioboot_core::ranges::Range;

/// RTAS services vioboot expects `/rtas` to list.
const RTAS_SERVICES: [&str; 3] = ["power-off", "ibm,os-term", "system-reboot"];

/// Runs every platform check.
pub fn run(
    fw: &dyn Firmware,
    tree: &Tree,
    summary: &Summary,
    inv: &Inventory,
    regions: &Regions,
    opts: &Options,
) {
    device_tree(summary, tree.source, inv);
    print_inventory(inv);
    memory(inv, regions, tree.blob.as_ptr() as u64);
    console(
        fw,
        inv,
        opts.console == vioboot_core::options::ConsoleChoice::Hvterm,
    );
    rtas(fw, inv, opts);
    hcalls(inv);
}

fn device_tree(s: &Summary, source: &str, inv: &Inventory) {
    report::pass(
        "fdt",
        format_args!(
            "{} bytes from {source}, {} nodes, {} properties, {} reservations",
            s.totalsize, s.nodes, s.properties, s.reservations
        ),
    );
    if inv.problems.is_empty() {
        report::pass(
            "fdt-properties",
            format_args!("every property vioboot reads is well formed"),
        );
    } else {
        let list: Vec<String> = inv.problems.iter().map(|p| format!("{p}")).collect();
        report::fail("fdt-properties", &list.join("; "), &[]);
    }
    match &inv.chosen {
        Some(_) => report::pass("chosen", format_args!("/chosen present")),
        None => report::fail(
            "chosen",
            "the device tree has no /chosen: no bootargs, options left at defaults",
            &[],
        ),
    }
}

fn print_inventory(inv: &Inventory) {
    let window = |w: Option<vioboot_core::inventory::DmaWindow>| {
        w.map_or(String::from("-"), |w| {
            format!("liobn {:#x} ioba {:#x} size {:#x}", w.liobn, w.ioba, w.size)
        })
    };
    cprintln!("# ---- machine inventory ----");
    for r in inv.memory.ranges() {
        cprintln!("# memory    {r}  {} MiB", r.size() >> 20);
    }
    for r in &inv.reserved {
        cprintln!("# reserved  {r}");
    }
    for c in &inv.cpus {
        cprintln!(
            "# cpu       {:<24} reg {:#x}, {} threads",
            c.name,
            c.reg,
            c.threads
        );
    }
    if let Some(hz) = inv.timebase_hz {
        cprintln!("# timebase  {hz} Hz");
    }
    for d in inv.vdevices.as_deref().unwrap_or_default() {
        cprintln!(
            "# vdevice   {:<20} unit {:#x} compatible {:<16} irq {:<6} dma {}",
            d.name,
            d.unit,
            d.compatible.first().map_or("-", |s| s.as_str()),
            d.irq.map_or(String::from("-"), |i| format!("{i:#x}")),
            window(d.dma)
        );
    }
    for p in &inv.phbs {
        cprintln!(
            "# pci       {:<20} buid {:#x} dma {}",
            p.name,
            p.buid,
            window(p.dma)
        );
    }
    if let Some(r) = &inv.rtas {
        cprintln!(
            "# rtas      {} tokens, rtas-size {:#x}",
            r.tokens.len(),
            r.size.unwrap_or(0)
        );
    }
    cprintln!("# ---------------------------");
}

fn memory(inv: &Inventory, regions: &Regions, tree: u64) {
    let Regions { image, heap, pool } = *regions;
    let usable = inv.usable_memory();
    if inv.memory.ranges().is_empty() {
        report::fail("memory", "the device tree has no memory@ node", &[]);
    } else {
        report::pass(
            "memory",
            format_args!(
                "{} ranges, {} MiB usable, {} reservations",
                inv.memory.ranges().len(),
                usable.total() >> 20,
                inv.reserved.len()
            ),
        );
    }
    let inside = |r: Range| {
        usable
            .ranges()
            .iter()
            .any(|u| r.start >= u.start && r.end <= u.end)
    };
    let mut problems = Vec::new();
    for (name, r) in [("heap", heap), ("page pool", pool)] {
        if !inside(r) {
            problems.push(format!("{name} {r} is not inside usable memory"));
        }
        if r.overlaps(&image) {
            problems.push(format!("{name} {r} overlaps the image {image}"));
        }
    }
    if heap.overlaps(&pool) {
        problems.push(format!("heap {heap} overlaps page pool {pool}"));
    }
    // The heap works: a 256 KiB allocation holds a pattern, and the tree copy lives in the heap.
    let mut v = vec![0u8; 256 << 10];
    v.iter_mut()
        .enumerate()
        .for_each(|(i, b)| *b = (i * 7) as u8);
    if !v.iter().enumerate().all(|(i, b)| *b == (i * 7) as u8) {
        problems.push("heap memory does not hold a pattern".into());
    }
    drop(v);
    if !heap.contains(tree) {
        problems.push(format!("the tree copy at {tree:#x} is not in the heap"));
    }
    let (used, free) = mem::heap_usage();
    if problems.is_empty() {
        report::pass(
            "heap",
            format_args!("{heap}, {} KiB used, {} KiB free", used >> 10, free >> 10),
        );
    } else {
        report::fail("heap", &problems.join("; "), &[]);
    }
    report::check("pages", pages(pool));
}

/// What the page pool got wrong.
#[derive(Debug)]
enum PoolError {
    Exhausted { pages: usize },
    Misaligned { one: u64, many: u64 },
    Overlap,
    Free(PageError),
    DoubleFreeAccepted,
}

impl fmt::Display for PoolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PoolError::Exhausted { pages } => write!(f, "cannot allocate {pages} page(s)"),
            PoolError::Misaligned { one, many } => {
                write!(f, "pages not 4 KiB aligned: {one:#x}, {many:#x}")
            }
            PoolError::Overlap => write!(f, "pages overlap or lie outside the pool"),
            PoolError::Free(e) => write!(f, "free: {e:?}"),
            PoolError::DoubleFreeAccepted => write!(f, "a double free was not refused"),
        }
    }
}

fn pages(pool: Range) -> Result<String, PoolError> {
    let one = mem::alloc_pages(1).ok_or(PoolError::Exhausted { pages: 1 })?;
    let many = mem::alloc_pages(16).ok_or(PoolError::Exhausted { pages: 16 })?;
    let run = Range {
        start: many.0,
        end: many.0 + 16 * mem::PAGE_SIZE,
    };
    if one.0 % mem::PAGE_SIZE != 0 || many.0 % mem::PAGE_SIZE != 0 {
        return Err(PoolError::Misaligned {
            one: one.0,
            many: many.0,
        });
    }
    if run.contains(one.0) || !pool.contains(one.0) || run.end > pool.end {
        return Err(PoolError::Overlap);
    }
    mem::free_pages(one, 1).map_err(PoolError::Free)?;
    mem::free_pages(many, 16).map_err(PoolError::Free)?;
    if mem::free_pages(one, 1).is_ok() {
        return Err(PoolError::DoubleFreeAccepted);
    }
    let (used, total) = mem::pool_usage();
    Ok(format!(
        "{pool}, {total} pages of 4 KiB, {used} in use after alloc/free"
    ))
}

/// The hvterm vty takes output; it becomes the console now where there is no firmware
/// console or `vioboot.console=hvterm` asks for it.
fn console(fw: &dyn Firmware, inv: &Inventory, hvterm_now: bool) {
    let Some(vty) = inv.console_vty() else {
        report::fail(
            "console",
            "no hvterm vty in /vdevice: no console once Open Firmware is gone",
            &[],
        );
        return;
    };
    let unit = UnitAddress(vty.unit);
    if hvterm_now || fw.console_needs_vty() {
        console::set_sink(Sink::Hvterm(unit));
    }
    match hcall::put_term_char(unit, b"") {
        Ok(()) => report::pass(
            "console",
            format_args!(
                "{} (unit {:#x}), now on {}",
                vty.name,
                vty.unit,
                console::sink()
            ),
        ),
        Err(e) => report::fail(
            "console",
            &format!("{} does not take output: {e}", vty.name),
            &[],
        ),
    }
}

fn rtas(fw: &dyn Firmware, inv: &Inventory, opts: &Options) {
    let Some(info) = &inv.rtas else {
        report::fail(
            "rtas",
            "the device tree has no /rtas: vioboot cannot power off or report failure",
            &[],
        );
        return;
    };
    if let Err(e) = fw.prepare_rtas(info, opts.rtas) {
        report::fail("rtas", &format!("{e}"), &[]);
        return;
    }
    let method = match rtas::method() {
        rtas::Method::None => {
            report::fail(
                "rtas",
                "no way to call RTAS: no H_RTAS and no Open Firmware to instantiate it",
                &[],
            );
            return;
        }
        rtas::Method::Hcall => String::from("H_RTAS"),
        rtas::Method::Instantiated { base, entry } => {
            format!("instantiated at {base:#x}, entry {entry:#x}")
        }
    };
    let missing: Vec<&str> = RTAS_SERVICES
        .into_iter()
        .filter(|n| info.token(n).is_none())
        .collect();
    if missing.is_empty() {
        report::pass(
            "rtas",
            format_args!("{} tokens, called by {method}", info.tokens.len()),
        );
    } else {
        report::fail("rtas", &format!("/rtas lacks {}", missing.join(", ")), &[]);
    }
}

fn hcalls(inv: &Inventory) {
    // A TCE table that cannot exist must be refused with H_PARAMETER, as a typed error.
    match hcall::get_tce(Liobn(u32::MAX), Ioba(0)) {
        Err(e) if e.is(H_PARAMETER) => {
            report::pass("hcall", format_args!("H_GET_TCE on a missing window: {e}"))
        }
        Err(e) => report::fail(
            "hcall",
            &format!("H_GET_TCE on a missing window: expected H_PARAMETER, got {e}"),
            &[],
        ),
        Ok(v) => report::fail(
            "hcall",
            &format!("H_GET_TCE on a missing window succeeded with {v:#x}"),
            &[],
        ),
    }
    // A real window: map a pool page at its last IOBA, read the TCE back, clear it.
    let window = inv
        .vdevices
        .as_deref()
        .unwrap_or_default()
        .iter()
        .find_map(|d| Some((d, d.dma.filter(|w| w.size >= 4096)?)));
    let Some((dev, w)) = window else {
        report::skip("tce", "no VIO device with a DMA window");
        return;
    };
    report::check(
        "tce",
        tce_round_trip(Liobn(w.liobn), Ioba(w.ioba + w.size - 4096), &dev.name),
    );
}

/// What a TCE round trip found.
#[derive(Debug)]
enum TceTripError {
    NoPage,
    Hcall(HcallError),
    ReadBack { wrote: u64, got: u64, cleared: u64 },
}

impl fmt::Display for TceTripError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TceTripError::NoPage => write!(f, "no page"),
            TceTripError::Hcall(e) => write!(f, "{e}"),
            TceTripError::ReadBack {
                wrote,
                got,
                cleared,
            } => write!(
                f,
                "TCE read back {got:#x} (wrote {wrote:#x}), after clearing {cleared:#x}"
            ),
        }
    }
}

fn tce_round_trip(liobn: Liobn, ioba: Ioba, name: &str) -> Result<String, TceTripError> {
    let page = mem::alloc_pages(1).ok_or(TceTripError::NoPage)?;
    let tce = page.0 | TCE_READ | TCE_WRITE;
    let result = (|| {
        hcall::put_tce(liobn, ioba, tce).map_err(TceTripError::Hcall)?;
        let got = hcall::get_tce(liobn, ioba).map_err(TceTripError::Hcall)?;
        hcall::put_tce(liobn, ioba, 0).map_err(TceTripError::Hcall)?;
        let cleared = hcall::get_tce(liobn, ioba).map_err(TceTripError::Hcall)?;
        if got != tce || cleared != 0 {
            return Err(TceTripError::ReadBack {
                wrote: tce,
                got,
                cleared,
            });
        }
        Ok(format!(
            "{name}: H_PUT_TCE/H_GET_TCE round trip at liobn {:#x} ioba {:#x}",
            liobn.0, ioba.0
        ))
    })();
    let _ = mem::free_pages(page, 1);
    result
}
