//! The boot path (target only): [`vioboot_entry`] is called by `boot/entry.S`.

extern crate alloc;

use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use fdt::Fdt;
use vioboot::console::{self, Sink};
use vioboot::hcall::{self, Ioba, Liobn, UnitAddress};
use vioboot::of::{self, Ihandle, Of};
use vioboot::virtio::blk::Blk;
use vioboot::virtio::fs::{self, VirtioFs};
use vioboot::virtio::VioTransport;
use vioboot::{arch, cprintln, exit, loader, mem, report, rtas, time, vio};
use vioboot_core::checks::{self, Check};
use vioboot_core::fdt_write::{self, Summary};
use vioboot_core::inventory::{self, Inventory};
use vioboot_core::options::{self, ConsoleChoice, FdtChoice, Inject, Mode, Options, RtasChoice};
use vioboot_core::pattern;
use vioboot_core::ranges::Range;
use vioboot_core::sha256::{self, Sha256};

/// Largest device tree accepted (QEMU's own limit is 1 MiB).
const FDT_MAX: usize = 1 << 20;

/// Who started vioboot, from the entry registers.
enum Entry {
    /// Open Firmware's client interface in r5 (SLOF, VOF, PowerVM); initrd in r3/r4.
    OpenFirmware { of: Of },
    /// A flattened tree in r3 and no firmware (QEMU `-bios`, kexec).
    Fdt { fdt: u64 },
}

/// Called once by the entry code, on the boot stack, relocated, in 64-bit little-endian mode.
#[unsafe(no_mangle)]
extern "C" fn vioboot_entry(r3: u64, _r4: u64, r5: u64, base: u64, msr: u64) -> ! {
    time::mark_start();
    let entry = if r5 != 0 {
        // SAFETY: a nonzero r5 at entry is Open Firmware's client-interface entry (PAPR, IEEE 1275).
        let of = unsafe { Of::install(r5) };
        Entry::OpenFirmware { of }
    } else {
        Entry::Fdt { fdt: r3 }
    };
    let pass = run(entry, base, msr);
    exit::finish(pass)
}

fn run(entry: Entry, base: u64, msr: u64) -> bool {
    let (image_start, _, image_end) = arch::image_bounds();
    // Console and RTAS first, so that every later failure can be seen and can terminate.
    let early_tree = match &entry {
        Entry::OpenFirmware { of } => {
            early_of(of);
            None
        }
        Entry::Fdt { fdt } => Some(early_fdt(*fdt, base)),
    };
    cprintln!(
        "# vioboot {} entered at {base:#x} by {}, MSR {msr:#x}",
        env!("CARGO_PKG_VERSION"),
        match &entry {
            Entry::OpenFirmware { .. } => "Open Firmware",
            Entry::Fdt { .. } => "a flattened device tree (no firmware)",
        }
    );
    report::phase("entry");

    // Memory for the heap and the DMA page pool.
    let regions = match &entry {
        Entry::OpenFirmware { of } => claim_regions(of),
        Entry::Fdt { .. } => place_regions(
            early_tree.unwrap_or(&[]),
            Range {
                start: image_start,
                end: image_end,
            },
        ),
    };
    let (heap, pool) = match regions {
        Ok(r) => r,
        Err(e) => exit::terminate(&format!("vioboot: no memory for heap and page pool: {e}")),
    };
    // SAFETY: both regions were claimed from OF or placed clear of everything else in use.
    unsafe {
        mem::init_heap(heap);
        mem::init_pool(pool, heap);
    }
    report::phase("memory");

    // The device tree, as a blob we own.
    let (blob, source) = match obtain_tree(&entry, early_tree) {
        Ok(t) => t,
        Err(e) => {
            report::fail("fdt", &e, &[]);
            report::finish();
            exit::terminate(&format!("vioboot: no usable device tree: {e}"));
        }
    };
    let summary = match fdt_write::validate(&blob) {
        Ok(s) => s,
        Err(e) => {
            report::fail(
                "fdt",
                &format!("device tree from {source} is malformed: {e}"),
                &[],
            );
            report::finish();
            exit::terminate("vioboot: malformed device tree");
        }
    };
    report::phase("fdt");
    let fdt = match Fdt::new(&blob) {
        Ok(f) => f,
        Err(e) => exit::terminate(&format!("vioboot: device tree rejected: {e:?}")),
    };
    let inv = inventory::read(&fdt);
    if let Some(hz) = inv.timebase_hz {
        time::set_frequency(hz);
    }
    if let Some(r) = &inv.rtas {
        rtas::set_tokens(
            r.token("power-off"),
            r.token("ibm,os-term"),
            r.token("system-reboot"),
        );
    }
    report::phase("inventory");

    // Options.
    let bootargs = inv
        .chosen
        .as_ref()
        .and_then(|c| c.bootargs.clone())
        .unwrap_or_default();
    let (opts, option_errors) = options::parse(&bootargs);
    console::init_log(opts.log);
    log::info!("bootargs: \"{bootargs}\"");
    log::debug!("image {image_start:#x}..{image_end:#x}, heap {heap}, page pool {pool}");
    log::debug!(
        "device tree: {} bytes from {source}, copy at {:#x}",
        blob.len(),
        blob.as_ptr() as u64
    );
    log::debug!(
        "console on {}, RTAS by {:?}",
        console::sink(),
        rtas::method()
    );

    report::begin();
    report::pass(
        "entry",
        format_args!(
            "{} at {base:#x}, image {:#x}..{image_end:#x}",
            entry_name(&entry),
            image_start
        ),
    );
    if option_errors.is_empty() {
        report::pass(
            "options",
            format_args!(
                "{} vioboot options, {} kernel words",
                opts.understood,
                opts.kernel_args.len()
            ),
        );
    } else {
        let list: Vec<String> = option_errors.iter().map(|e| format!("{e}")).collect();
        for e in &list {
            cprintln!("# vioboot: {e}");
        }
        report::fail("options", &list.join("; "), &[("bootargs", &bootargs)]);
    }
    check_tree(&summary, source, &inv);
    print_inventory(&inv);
    check_memory(
        &inv,
        heap,
        pool,
        Range {
            start: image_start,
            end: image_end,
        },
        blob.as_ptr() as u64,
    );
    check_console(&entry, &inv, opts.console);
    check_rtas(&entry, &inv, opts.rtas);
    check_hcalls(&inv);
    if opts.mode == Mode::Smoke {
        check_virtio(&inv, &opts);
    }
    match opts.inject {
        Some(Inject::Fail) => {
            report::fail("inject", "failure injected by vioboot.inject=fail", &[])
        }
        Some(Inject::Panic) => panic!("panic injected by vioboot.inject=panic"),
        Some(Inject::Exception) => arch::illegal_instruction(),
        None => {}
    }
    report::phase("checks");

    if opts.mode == Mode::Boot {
        report::phase("checks");
        boot_kernel(
            &entry,
            &inv,
            &opts,
            &blob,
            [
                Range {
                    start: image_start,
                    end: image_end,
                },
                heap,
                pool,
            ],
        );
        // Only a failed boot returns: the report says why.
        return report::finish();
    }
    if let (Entry::OpenFirmware { of }, Mode::Smoke) = (&entry, opts.mode) {
        let vty = inv.console_vty().map(|v| UnitAddress(v.unit));
        let quiesced = of.quiesce();
        // OF's stdout is gone with OF: the vty takes over before anything more is printed.
        if let Some(v) = vty {
            console::set_sink(Sink::Hvterm(v));
        }
        match quiesced {
            Ok(()) => report::pass(
                "quiesce",
                format_args!("Open Firmware quiesced; console on {}", console::sink()),
            ),
            Err(e) => report::fail("quiesce", &format!("{e}"), &[]),
        }
    }
    report::phase("quiesce");
    report::finish()
}

fn entry_name(e: &Entry) -> &'static str {
    match e {
        Entry::OpenFirmware { .. } => "Open Firmware client interface",
        Entry::Fdt { .. } => "flattened device tree",
    }
}

/// With Open Firmware: console on OF's stdout, RTAS tokens from `/rtas`.
fn early_of(of: &Of) {
    if let Some(ih) = of
        .finddevice(c"/chosen")
        .ok()
        .and_then(|c| of.getprop_u32(c, c"stdout").ok().flatten())
    {
        let ih = Ihandle(ih);
        // The vty behind stdout, if it is one: the console's fallback and its home after quiesce.
        let vty = of.instance_to_package(ih).ok().and_then(|p| {
            let mut compat = [0u8; 64];
            let n = of.getprop(p, c"compatible", &mut compat).ok().flatten()?;
            let is_vty =
                vioboot_core::cells::string_list(&compat[..n.min(64)]).any(|c| c == "hvterm1");
            is_vty
                .then(|| of.getprop_u32(p, c"reg").ok().flatten())
                .flatten()
                .map(UnitAddress)
        });
        console::set_sink(Sink::Of(ih, vty));
    }
    if let Ok(r) = of.finddevice(c"/rtas") {
        let t = |n| of.getprop_u32(r, n).ok().flatten();
        rtas::set_tokens(t(c"power-off"), t(c"ibm,os-term"), t(c"system-reboot"));
        rtas::probe_hcall();
    }
}

/// Without firmware: check the tree in place (no heap yet), then console on its vty and
/// RTAS tokens from it. A bad tree leaves nothing to print to: halt.
fn early_fdt(at: u64, base: u64) -> &'static [u8] {
    let mut header = [0u8; 8];
    // SAFETY: r3 points at the tree QEMU placed in RAM; its 8-byte header is readable.
    unsafe { core::ptr::copy_nonoverlapping(at as *const u8, header.as_mut_ptr(), 8) };
    let size = fdt_write::total_size(&header).filter(|&s| (s as usize) <= FDT_MAX);
    let Some(size) = size else { arch::halt() };
    // SAFETY: the header's totalsize (bounded by FDT_MAX) says how many bytes the blob spans.
    let blob: &'static [u8] =
        unsafe { core::slice::from_raw_parts(at as *const u8, size as usize) };
    if fdt_write::validate(blob).is_err() {
        arch::halt()
    }
    let Ok(fdt) = Fdt::new(blob) else {
        arch::halt()
    };
    // At 0 the exception vectors are ours (boot/entry.S); they are little-endian code.
    if base == 0 {
        let _ = hcall::set_little_endian_interrupts(true);
    }
    if let Some(vdev) = fdt.find_node("/vdevice") {
        let vty = vdev.children().find(|n| {
            n.property("compatible")
                .is_some_and(|p| vioboot_core::cells::string_list(p.value).any(|c| c == "hvterm1"))
        });
        if let Some(unit) = vty
            .and_then(|v| v.property("reg"))
            .and_then(|p| vioboot_core::cells::single_u32(p.value).ok())
        {
            console::set_sink(Sink::Hvterm(UnitAddress(unit)));
        }
    }
    if let Some(r) = fdt.find_node("/rtas") {
        let t = |n| {
            r.property(n)
                .and_then(|p| vioboot_core::cells::single_u32(p.value).ok())
        };
        rtas::set_tokens(t("power-off"), t("ibm,os-term"), t("system-reboot"));
        rtas::probe_hcall();
    }
    blob
}

fn claim_regions(of: &Of) -> Result<(Range, Range), String> {
    let heap = of
        .claim(mem::HEAP_SIZE, mem::REGION_ALIGN)
        .map_err(|e| format!("heap: {e}"))?;
    let pool = of
        .claim(mem::POOL_SIZE, mem::REGION_ALIGN)
        .map_err(|e| format!("page pool: {e}"))?;
    Ok((
        Range {
            start: heap,
            end: heap + mem::HEAP_SIZE,
        },
        Range {
            start: pool,
            end: pool + mem::POOL_SIZE,
        },
    ))
}

fn place_regions(blob: &[u8], image: Range) -> Result<(Range, Range), String> {
    let fdt = Fdt::new(blob).map_err(|e| format!("{e:?}"))?;
    let tree = Range {
        start: blob.as_ptr() as u64,
        end: blob.as_ptr() as u64 + blob.len() as u64,
    };
    let fits = |r: Range| {
        fdt.all_nodes()
            .filter(|n| n.name.starts_with("memory"))
            .flat_map(|n| n.reg().into_iter().flatten())
            .any(|m| {
                let start = m.starting_address as u64;
                m.size
                    .is_some_and(|s| r.start >= start && r.end <= start + s as u64)
            })
    };
    let taken = |r: Range, extra: Option<Range>| {
        let mut fixed = [Some(image), Some(tree), extra].into_iter().flatten();
        let rsv = fdt
            .memory_reservations()
            .filter_map(|m| Range::from_base_size(m.address() as u64, m.size() as u64));
        fixed
            .find(|x| x.overlaps(&r))
            .or_else(|| rsv.into_iter().find(|x| x.overlaps(&r)))
            .map(|x| x.end)
    };
    // Real mode reaches the RMA only; the first memory node is the RMA on pseries. Stay below 4 GiB.
    let limit = 1 << 32;
    let heap = mem::place(image.end, mem::HEAP_SIZE, limit, fits, |r| taken(r, None))
        .ok_or("no room for the heap")?;
    let pool = mem::place(heap.end, mem::POOL_SIZE, limit, fits, |r| {
        taken(r, Some(heap))
    })
    .ok_or("no room for the page pool")?;
    Ok((heap, pool))
}

fn obtain_tree(entry: &Entry, early: Option<&[u8]>) -> Result<(Vec<u8>, &'static str), String> {
    match entry {
        Entry::Fdt { .. } => Ok((early.unwrap_or(&[]).to_vec(), "r3 at entry")),
        Entry::OpenFirmware { of } => {
            // Options are needed before the tree exists: read bootargs from OF directly.
            let walk_only = options::parse(&of_bootargs(of)).0.fdt == FdtChoice::Walk;
            if !walk_only && of.has(c"fdt-fetch") {
                let mut buf = vec![0u8; FDT_MAX];
                of.fdt_fetch(&mut buf).map_err(|e| format!("{e}"))?;
                let size = fdt_write::total_size(&buf).ok_or("fdt-fetch returned no device tree")?
                    as usize;
                buf.truncate(size.min(FDT_MAX));
                buf.shrink_to_fit();
                Ok((buf, "Open Firmware fdt-fetch"))
            } else {
                let blob =
                    of::flatten(of).map_err(|e| format!("walking the Open Firmware tree: {e}"))?;
                Ok((blob, "a walk of the Open Firmware tree"))
            }
        }
    }
}

/// `/chosen/bootargs` straight from OF (needed before the tree is flattened).
fn of_bootargs(of: &Of) -> String {
    let Ok(chosen) = of.finddevice(c"/chosen") else {
        return String::new();
    };
    let mut buf = vec![0u8; 1024];
    match of.getprop(chosen, c"bootargs", &mut buf) {
        Ok(Some(n)) => {
            buf.truncate(n.min(1024));
            String::from_utf8_lossy(&buf).trim_end_matches('\0').into()
        }
        _ => String::new(),
    }
}

fn check_tree(s: &Summary, source: &str, inv: &Inventory) {
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
        let dma = d.dma.map_or(String::from("-"), |w| {
            format!("liobn {:#x} ioba {:#x} size {:#x}", w.liobn, w.ioba, w.size)
        });
        cprintln!(
            "# vdevice   {:<20} unit {:#x} compatible {:<16} irq {:<6} dma {dma}",
            d.name,
            d.unit,
            d.compatible.first().map_or("-", |s| s.as_str()),
            d.irq.map_or(String::from("-"), |i| format!("{i:#x}")),
        );
    }
    for p in &inv.phbs {
        let dma = p.dma.map_or(String::from("-"), |w| {
            format!("liobn {:#x} ioba {:#x} size {:#x}", w.liobn, w.ioba, w.size)
        });
        cprintln!("# pci       {:<20} buid {:#x} dma {dma}", p.name, p.buid);
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

fn check_memory(inv: &Inventory, heap: Range, pool: Range, image: Range, tree: u64) {
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
    let clear = |r: Range| !r.overlaps(&image);
    let mut problems = Vec::new();
    for (name, r) in [("heap", heap), ("page pool", pool)] {
        if !inside(r) {
            problems.push(format!("{name} {r} is not inside usable memory"));
        }
        if !clear(r) {
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
    if !(heap.start..heap.end).contains(&tree) {
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
    report::check("pages", check_pages(pool));
}

fn check_pages(pool: Range) -> Result<String, String> {
    let one = mem::alloc_pages(1).ok_or("cannot allocate 1 page")?;
    let many = mem::alloc_pages(16).ok_or("cannot allocate 16 pages")?;
    let run = Range {
        start: many.0,
        end: many.0 + 16 * mem::PAGE_SIZE,
    };
    if one.0 % mem::PAGE_SIZE != 0 || many.0 % mem::PAGE_SIZE != 0 {
        return Err(format!(
            "pages not 4 KiB aligned: {:#x}, {:#x}",
            one.0, many.0
        ));
    }
    if run.contains(one.0) || !(pool.start..pool.end).contains(&one.0) || run.end > pool.end {
        return Err("pages overlap or lie outside the pool".into());
    }
    mem::free_pages(one, 1).map_err(|e| format!("free: {e:?}"))?;
    mem::free_pages(many, 16).map_err(|e| format!("free: {e:?}"))?;
    if mem::free_pages(one, 1).is_ok() {
        return Err("a double free was not refused".into());
    }
    let (used, total) = mem::pool_usage();
    Ok(format!(
        "{pool}, {total} pages of 4 KiB, {used} in use after alloc/free"
    ))
}

fn check_console(entry: &Entry, inv: &Inventory, choice: ConsoleChoice) {
    let Some(vty) = inv.console_vty() else {
        report::fail(
            "console",
            "no hvterm vty in /vdevice: no console once Open Firmware is gone",
            &[],
        );
        return;
    };
    let unit = UnitAddress(vty.unit);
    if choice == ConsoleChoice::Hvterm || matches!(entry, Entry::Fdt { .. }) {
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

fn check_rtas(entry: &Entry, inv: &Inventory, choice: RtasChoice) {
    let Some(info) = &inv.rtas else {
        report::fail(
            "rtas",
            "the device tree has no /rtas: vioboot cannot power off or report failure",
            &[],
        );
        return;
    };
    let missing: Vec<&str> = ["power-off", "ibm,os-term", "system-reboot"]
        .into_iter()
        .filter(|n| info.token(n).is_none())
        .collect();
    if let (Entry::OpenFirmware { of }, RtasChoice::Of) = (entry, choice) {
        if let Err(e) = rtas::instantiate(of, info.size) {
            report::fail("rtas", &format!("instantiate-rtas: {e}"), &[]);
            return;
        }
    } else if rtas::method() == rtas::Method::None {
        if let Entry::OpenFirmware { of } = entry {
            if let Err(e) = rtas::instantiate(of, info.size) {
                report::fail(
                    "rtas",
                    &format!("no H_RTAS and instantiate-rtas failed: {e}"),
                    &[],
                );
                return;
            }
        }
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
    if missing.is_empty() {
        report::pass(
            "rtas",
            format_args!("{} tokens, called by {method}", info.tokens.len()),
        );
    } else {
        report::fail("rtas", &format!("/rtas lacks {}", missing.join(", ")), &[]);
    }
}

fn check_hcalls(inv: &Inventory) {
    // A TCE table that cannot exist must be refused with H_PARAMETER, as a typed error.
    match hcall::get_tce(Liobn(u32::MAX), Ioba(0)) {
        Err(e) if e.is(vioboot_core::hstatus::PARAMETER) => {
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
    let dev = inv
        .vdevices
        .as_deref()
        .unwrap_or_default()
        .iter()
        .find(|d| d.dma.is_some_and(|w| w.size >= 4096));
    let Some(dev) = dev else {
        report::skip("tce", "no VIO device with a DMA window");
        return;
    };
    let w = dev.dma.unwrap_or(inventory::DmaWindow {
        liobn: 0,
        ioba: 0,
        size: 0,
    });
    report::check(
        "tce",
        tce_round_trip(Liobn(w.liobn), Ioba(w.ioba + w.size - 4096), &dev.name),
    );
}

fn tce_round_trip(liobn: Liobn, ioba: Ioba, name: &str) -> Result<String, String> {
    let page = mem::alloc_pages(1).ok_or("no page")?;
    let tce = page.0 | 3;
    let result = (|| {
        hcall::put_tce(liobn, ioba, tce).map_err(|e| format!("{e}"))?;
        let got = hcall::get_tce(liobn, ioba).map_err(|e| format!("{e}"))?;
        hcall::put_tce(liobn, ioba, 0).map_err(|e| format!("{e}"))?;
        let cleared = hcall::get_tce(liobn, ioba).map_err(|e| format!("{e}"))?;
        if got != tce || cleared != 0 {
            return Err(format!(
                "TCE read back {got:#x} (wrote {tce:#x}), after clearing {cleared:#x}"
            ));
        }
        Ok(format!(
            "{name}: H_PUT_TCE/H_GET_TCE round trip at liobn {:#x} ioba {:#x}",
            liobn.0, ioba.0
        ))
    })();
    let _ = mem::free_pages(page, 1);
    result
}

/// The virtio-vio checks: every adapter on the VIO bus is opened and, for block devices, read,
/// written (only disks that carry the test pattern), flushed and shut down again.
fn check_virtio(inv: &Inventory, opts: &Options) {
    let (adapters, unusable) = vio::discover(inv);
    for u in &unusable {
        report::fail("virtio-vio", &format!("{u}"), &[]);
    }
    if adapters.is_empty() {
        if unusable.is_empty() {
            report::skip("virtio-vio", "no virtio-vio adapter under /vdevice");
        }
        return;
    }
    let timeout_us = u64::from(opts.vio_timeout_ms) * 1000;
    for a in &adapters {
        let tag = a.name.clone();
        let errmsg = |e: &dyn core::fmt::Display| {
            let text = format!("{e}");
            text.strip_prefix(&format!("{}: ", a.name))
                .map(String::from)
                .unwrap_or(text)
        };
        let start = time::now_us();
        let t = match VioTransport::open(a, timeout_us) {
            Ok(t) => t,
            Err(e) => {
                report::fail(&tag, &errmsg(&e), &[("unit", &format!("{:#x}", a.unit))]);
                continue;
            }
        };
        let h = t.handle().header();
        report::pass(
            &tag,
            format_args!(
                "CRQ handshake and PROBE in {} us: device id {}, {} queue(s), liobn {:#x} window {:#x}+{:#x}",
                time::now_us() - start,
                h.device_id,
                h.num_queues,
                a.window.liobn,
                a.window.ioba,
                a.window.size
            ),
        );
        if h.device_id == fs::DEVICE_ID {
            match VirtioFs::over(a.name.clone(), t) {
                Ok(dev) => fs_checks(&tag, dev, opts),
                Err(e) => report::fail(&format!("{tag} fs"), &errmsg(&e), &[]),
            }
            continue;
        }
        let mut blk = match Blk::over(a.name.clone(), t) {
            Ok(b) => b,
            Err(e) => {
                report::fail(&format!("{tag} blk"), &errmsg(&e), &[]);
                continue;
            }
        };
        blk_checks(&tag, &mut blk, opts);
        let name = blk.name.clone();
        match blk.shut_down() {
            Ok(()) => report::pass(
                &format!("{tag} shutdown"),
                format_args!("{name}: device reset, CRQ freed, every TCE cleared"),
            ),
            Err(e) => report::fail(&format!("{tag} shutdown"), &errmsg(&e), &[]),
        }
    }
}

fn blk_checks(tag: &str, blk: &mut Blk, opts: &Options) {
    let features = blk.handle().negotiated_features().unwrap_or(0);
    report::pass(
        &format!("{tag} features"),
        format_args!(
            "negotiated {features:#x} of offered {:#x}",
            blk.handle().header().device_features
        ),
    );
    let sectors = blk.capacity_sectors();
    report::pass(
        &format!("{tag} capacity"),
        format_args!(
            "{sectors} sectors ({} MiB), {}",
            (sectors * 512) >> 20,
            if blk.readonly() {
                "read-only"
            } else {
                "read-write"
            }
        ),
    );
    match blk.serial() {
        Ok(s) => report::pass(&format!("{tag} id"), format_args!("serial \"{s}\"")),
        Err(e) => report::fail(&format!("{tag} id"), &format!("{e}"), &[]),
    }
    // The pattern the test harness wrote; a disk without it is never written.
    let mut buf = vec![0u8; 64 * pattern::SECTOR];
    let pattern_disk = match blk.read(0, &mut buf) {
        Err(e) => {
            report::fail(&format!("{tag} read"), &format!("{e}"), &[]);
            return;
        }
        Ok(()) if buf.starts_with(pattern::MAGIC) => {
            let bad = pattern::check_run(0, 0, &buf).err();
            match bad {
                None => report::pass(
                    &format!("{tag} read"),
                    format_args!("sectors 0..64 hold the test pattern"),
                ),
                Some((l, o)) => report::fail(
                    &format!("{tag} read"),
                    &format!("sector {l} differs from the pattern at byte {o}"),
                    &[],
                ),
            }
            true
        }
        Ok(()) => {
            report::pass(
                &format!("{tag} read"),
                format_args!("read sectors 0..64 (no test pattern: the disk will not be written)"),
            );
            false
        }
    };
    if pattern_disk && !blk.readonly() && sectors > 256 {
        report::check(
            &format!("{tag} write"),
            write_read_back(blk, sectors - 128, 128),
        );
        match blk.flush() {
            Ok(()) => report::pass(
                &format!("{tag} flush"),
                format_args!("VIRTIO_BLK_T_FLUSH completed"),
            ),
            Err(e) => report::fail(&format!("{tag} flush"), &format!("{e}"), &[]),
        }
        if opts.blk_verify_mib > 0 {
            report::check(&format!("{tag} verify"), verify(blk, opts.blk_verify_mib));
        }
        if opts.bench {
            report::check(&format!("{tag} bench"), bench(blk));
        }
    } else {
        report::skip(
            &format!("{tag} write"),
            "read-only, too small, or no test pattern",
        );
    }
    let left = blk.pages_left_mapped();
    let (link, crq) = blk.handle().stats();
    if left == 0 {
        report::pass(
            &format!("{tag} unmapped"),
            format_args!("no buffer left in the TCE window; {} requests, {} notifies, {} CRQ entries received, {} protocol errors, {} resets", link.requests, link.notifies, crq.received, link.protocol_errors, link.resets),
        );
    } else {
        report::fail(
            &format!("{tag} unmapped"),
            &format!("{left} IOBA pages still mapped after the requests finished"),
            &[],
        );
    }
}

/// Writes `count` sectors from `first` with a fresh pattern, reads them back and compares.
fn write_read_back(blk: &mut Blk, first: u64, count: u64) -> Result<String, String> {
    let seed = arch::timebase() | 1;
    let mut out = vec![0u8; count as usize * pattern::SECTOR];
    pattern::fill_run(seed, first, &mut out);
    blk.write(first, &out).map_err(|e| format!("write: {e}"))?;
    let mut back = vec![0u8; out.len()];
    blk.read(first, &mut back)
        .map_err(|e| format!("read back: {e}"))?;
    match pattern::check_run(seed, first, &back).err() {
        None => Ok(format!(
            "wrote and read back sectors {first}..{}",
            first + count
        )),
        Some((l, o)) => Err(format!("sector {l} read back differs at byte {o}")),
    }
}

/// Writes `mib` MiB from sector 2048 in 256 KiB requests, then reads all back and verifies it.
/// Prints progress lines, so a test can stop the server in the middle.
fn verify(blk: &mut Blk, mib: u32) -> Result<String, String> {
    const CHUNK: usize = 256 << 10;
    let first = 2048u64;
    let total = u64::from(mib) << 20;
    if first * 512 + total > blk.capacity_sectors() * 512 {
        return Err(format!(
            "{mib} MiB from sector {first} does not fit the disk"
        ));
    }
    let seed = arch::timebase() | 1;
    let sectors_per_chunk = (CHUNK / pattern::SECTOR) as u64;
    let chunks = total / CHUNK as u64;
    let mut buf = vec![0u8; CHUNK];
    let start = time::now_us();
    for c in 0..chunks {
        let lba = first + c * sectors_per_chunk;
        pattern::fill_run(seed, lba, &mut buf);
        blk.write(lba, &buf)
            .map_err(|e| format!("write at sector {lba}: {e}"))?;
        if (c + 1) % 16 == 0 {
            cprintln!(
                "# verify {}: wrote {} of {mib} MiB",
                blk.name,
                ((c + 1) * CHUNK as u64) >> 20
            );
        }
    }
    let written_us = time::now_us() - start;
    for c in 0..chunks {
        let lba = first + c * sectors_per_chunk;
        blk.read(lba, &mut buf)
            .map_err(|e| format!("read at sector {lba}: {e}"))?;
        if let Err((bad, o)) = pattern::check_run(seed, lba, &buf) {
            return Err(format!(
                "sector {bad} differs at byte {o} after write and read"
            ));
        }
        if (c + 1) % 16 == 0 {
            cprintln!(
                "# verify {}: read {} of {mib} MiB",
                blk.name,
                ((c + 1) * CHUNK as u64) >> 20
            );
        }
    }
    let read_us = time::now_us() - start - written_us;
    Ok(format!(
        "{mib} MiB written ({} ms) and read back ({} ms) intact",
        written_us / 1000,
        read_us / 1000
    ))
}

/// Sequential write and read MB/s (256 KiB requests over 32 MiB), 4 KiB random-read IOPS and
/// hcalls per request, by the timebase. Prints `# bench ...` lines that `cargo xtask bench`
/// collects.
fn bench(blk: &mut Blk) -> Result<String, String> {
    const CHUNK: usize = 256 << 10;
    const TOTAL: u64 = 32 << 20;
    const RANDOM: u64 = 2000;
    let first = 2048u64;
    if first * 512 + TOTAL > blk.capacity_sectors() * 512 {
        return Err("the disk is smaller than the 32 MiB benchmark area".into());
    }
    let mut buf = vec![0x5au8; CHUNK];
    let per = (CHUNK / 512) as u64;
    let n = TOTAL / CHUNK as u64;
    let mbps = |us: u64| (TOTAL as f64 / (1 << 20) as f64) / (us.max(1) as f64 / 1e6);

    let (h0, t0) = (hcall::count(), time::now_us());
    for c in 0..n {
        blk.write(first + c * per, &buf)
            .map_err(|e| format!("write: {e}"))?;
    }
    let (h1, t1) = (hcall::count(), time::now_us());
    for c in 0..n {
        blk.read(first + c * per, &mut buf)
            .map_err(|e| format!("read: {e}"))?;
    }
    let (h2, t2) = (hcall::count(), time::now_us());
    let mut small = vec![0u8; 4096];
    let span = TOTAL / 4096;
    let mut x = 0x2545_f491_4f6c_dd1du64;
    for _ in 0..RANDOM {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        blk.read(first + (x % span) * 8, &mut small)
            .map_err(|e| format!("random read: {e}"))?;
    }
    let (h3, t3) = (hcall::count(), time::now_us());
    let (w_us, r_us, rr_us) = (t1 - t0, t2 - t1, t3 - t2);
    let iops = RANDOM as f64 / (rr_us.max(1) as f64 / 1e6);
    cprintln!("# bench seq-write-MBps {:.1}", mbps(w_us));
    cprintln!("# bench seq-read-MBps {:.1}", mbps(r_us));
    cprintln!("# bench rand-read-4k-IOPS {iops:.0}");
    cprintln!(
        "# bench hcalls-per-256k-write {:.1}",
        (h1 - h0) as f64 / n as f64
    );
    cprintln!(
        "# bench hcalls-per-256k-read {:.1}",
        (h2 - h1) as f64 / n as f64
    );
    cprintln!(
        "# bench hcalls-per-4k-read {:.1}",
        (h3 - h2) as f64 / RANDOM as f64
    );
    cprintln!("# bench requests {}", 2 * n + RANDOM);
    Ok(format!(
        "write {:.1} MB/s, read {:.1} MB/s, 4 KiB random read {iops:.0} IOPS",
        mbps(w_us),
        mbps(r_us)
    ))
}

/// The virtio-fs checks: mount by tag, list the root, run the share's check list
/// (`/vioboot-checks.txt`), statfs, and unmount; no buffer may stay mapped.
fn fs_checks(tag: &str, dev: VirtioFs, opts: &Options) {
    let share = dev.tag.clone();
    let queues = dev.request_queues;
    let mut fs = dev.into_fs();
    match fs.mount() {
        Ok(i) => report::pass(
            &format!("{tag} mount"),
            format_args!(
                "tag \"{share}\", FUSE {}.{}, {queues} request queue(s), READDIRPLUS {}",
                i.major,
                i.minor,
                if i.readdirplus { "yes" } else { "no" }
            ),
        ),
        Err(e) => {
            report::fail(&format!("{tag} mount"), &format!("{e}"), &[]);
            fs_shut_down(tag, fs.into_transport());
            return;
        }
    }
    match fs.list_dir("/") {
        Ok(l) => {
            let names: Vec<&str> = l.iter().take(8).map(|e| e.name.as_str()).collect();
            report::pass(
                &format!("{tag} list"),
                format_args!(
                    "/ holds {} entries: {}{}",
                    l.len(),
                    names.join(", "),
                    if l.len() > 8 { ", ..." } else { "" }
                ),
            )
        }
        Err(e) => report::fail(&format!("{tag} list"), &format!("{e}"), &[]),
    }
    match fs.read_file("/vioboot-checks.txt", &mut |_| {}) {
        Err(e) if e.errno() == Some(fuse_client::fs::errno::ENOENT) => {
            report::skip(
                &format!("{tag} checks"),
                "the share has no /vioboot-checks.txt",
            );
        }
        Err(e) => report::fail(&format!("{tag} checks"), &format!("{e}"), &[]),
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes).into_owned();
            let (list, bad) = checks::parse(&text);
            for b in &bad {
                report::fail(&format!("{tag} checks"), &format!("{b}"), &[]);
            }
            for c in &list {
                run_fs_check(tag, &mut fs, c, opts);
            }
        }
    }
    match fs.statfs() {
        Ok((blocks, free, bsize, files)) => report::pass(
            &format!("{tag} statfs"),
            format_args!("{blocks} blocks of {bsize} bytes, {free} free, {files} files"),
        ),
        Err(e) => report::fail(&format!("{tag} statfs"), &format!("{e}"), &[]),
    }
    let unmount = fs.unmount();
    let stats = fs.stats;
    let dev = fs.into_transport();
    let left = dev.pages_left_mapped();
    match unmount {
        Ok(()) if left == 0 => report::pass(
            &format!("{tag} unmount"),
            format_args!("DESTROY sent; {} FUSE requests, {} FORGETs, {} bytes read; no buffer left in the TCE window", stats.requests, stats.forgets, stats.bytes_read),
        ),
        Ok(()) => report::fail(&format!("{tag} unmount"), &format!("{left} IOBA pages still mapped after the requests finished"), &[]),
        Err(e) => report::fail(&format!("{tag} unmount"), &format!("{e}"), &[]),
    }
    fs_shut_down(tag, dev);
}

fn fs_shut_down(tag: &str, dev: VirtioFs) {
    match dev.shut_down() {
        Ok(()) => report::pass(
            &format!("{tag} shutdown"),
            format_args!("device reset, CRQ freed, every TCE cleared"),
        ),
        Err(e) => report::fail(&format!("{tag} shutdown"), &format!("{e}"), &[]),
    }
}

fn run_fs_check(tag: &str, fs: &mut fuse_client::Fs<VirtioFs>, c: &Check, opts: &Options) {
    match c {
        Check::File {
            sha256: want,
            size,
            path,
        } => {
            let start = time::now_us();
            let mut h = Sha256::new();
            match fs.read_stream(path, None, &mut |piece| h.update(piece)) {
                Err(e) => report::fail(&format!("{tag} file"), &format!("{e}"), &[]),
                Ok((len, read)) if len != *size || read != *size => report::fail(
                    &format!("{tag} file"),
                    &format!("{path}: {read} bytes read, file size {len}, expected {size}"),
                    &[],
                ),
                Ok(_) => {
                    let got = h.finish();
                    let us = (time::now_us() - start).max(1);
                    if got == *want {
                        report::pass(
                            &format!("{tag} file"),
                            format_args!(
                                "{path}: {size} bytes, sha256 matches ({:.1} MB/s)",
                                *size as f64 / us as f64
                            ),
                        )
                    } else {
                        report::fail(
                            &format!("{tag} file"),
                            &format!(
                                "{path}: sha256 {} differs from {}",
                                sha256::hex(&got),
                                sha256::hex(want)
                            ),
                            &[],
                        )
                    }
                }
            }
        }
        Check::Enoent { path } => match fs.stat(path) {
            Err(e) if e.errno() == Some(fuse_client::fs::errno::ENOENT) => {
                report::pass(&format!("{tag} enoent"), format_args!("{e}, as expected"))
            }
            Err(e) => report::fail(
                &format!("{tag} enoent"),
                &format!("expected ENOENT, got {e}"),
                &[],
            ),
            Ok(_) => report::fail(&format!("{tag} enoent"), &format!("{path} exists"), &[]),
        },
        Check::Eloop { path } => match fs.stat(path) {
            Err(e) if e.errno() == Some(fuse_client::fs::errno::ELOOP) => {
                report::pass(&format!("{tag} eloop"), format_args!("{e}, as expected"))
            }
            Err(e) => report::fail(
                &format!("{tag} eloop"),
                &format!("expected ELOOP, got {e}"),
                &[],
            ),
            Ok(_) => report::fail(
                &format!("{tag} eloop"),
                &format!("{path} resolved despite its loop"),
                &[],
            ),
        },
        Check::Dir { count, path } => {
            let start = time::now_us();
            match fs.list_dir(path) {
                Ok(l) if l.len() == *count => report::pass(
                    &format!("{tag} dir"),
                    format_args!(
                        "{path}: all {count} entries listed in {} ms",
                        (time::now_us() - start) / 1000
                    ),
                ),
                Ok(l) => report::fail(
                    &format!("{tag} dir"),
                    &format!("{path}: {} entries listed, expected {count}", l.len()),
                    &[],
                ),
                Err(e) => report::fail(&format!("{tag} dir"), &format!("{e}"), &[]),
            }
        }
        Check::BenchFile { path } if opts.bench => {
            let start = time::now_us();
            match fs.read_stream(path, None, &mut |_| {}) {
                Ok((_, n)) => {
                    let mbps = n as f64 / (time::now_us() - start).max(1) as f64;
                    cprintln!("# bench fs-file-MBps {mbps:.1}");
                    report::pass(
                        &format!("{tag} bench"),
                        format_args!("{path}: {n} bytes at {mbps:.1} MB/s"),
                    )
                }
                Err(e) => report::fail(&format!("{tag} bench"), &format!("{e}"), &[]),
            }
        }
        Check::BenchDir { path } if opts.bench => {
            let start = time::now_us();
            let r = fs.list_dir(path).and_then(|l| {
                for e in &l {
                    fs.read_stream(&format!("{path}/{}", e.name), None, &mut |_| {})?;
                }
                Ok(l.len())
            });
            match r {
                Ok(n) => {
                    let fps = n as f64 / ((time::now_us() - start).max(1) as f64 / 1e6);
                    cprintln!("# bench fs-small-files-per-s {fps:.0}");
                    report::pass(
                        &format!("{tag} bench"),
                        format_args!("{path}: {n} files read, {fps:.0} files/s"),
                    )
                }
                Err(e) => report::fail(&format!("{tag} bench"), &format!("{e}"), &[]),
            }
        }
        Check::BenchFile { .. } | Check::BenchDir { .. } => {}
    }
}

/// `vioboot.mode=boot`: boot entries from the first virtio-fs share (or the one
/// `vioboot.fs-tag` names), load the chosen kernel, hand over. Returns only when nothing could
/// be booted.
fn boot_kernel(entry: &Entry, inv: &Inventory, opts: &Options, blob: &[u8], taken: [Range; 3]) {
    let timeout_us = u64::from(opts.vio_timeout_ms) * 1000;
    let (adapters, _) = vio::discover(inv);
    let mut share = None;
    for a in &adapters {
        let Ok(t) = VioTransport::open(a, timeout_us) else {
            continue;
        };
        if t.handle().header().device_id != fs::DEVICE_ID {
            let _ = t.handle().shut_down();
            continue;
        }
        match VirtioFs::over(a.name.clone(), t) {
            Ok(dev) if opts.fs_tag.is_none_or(|want| want == dev.tag) => {
                share = Some(dev);
                break;
            }
            Ok(dev) => {
                let _ = dev.shut_down();
            }
            Err(e) => report::fail("boot share", &format!("{e}"), &[]),
        }
    }
    let Some(dev) = share else {
        report::fail(
            "boot share",
            &format!(
                "no virtio-fs share{} to boot from",
                opts.fs_tag
                    .map_or(String::new(), |t| format!(" with tag \"{t}\""))
            ),
            &[],
        );
        return;
    };
    let (name, tag) = (dev.name.clone(), dev.tag.clone());
    let mut fs = dev.into_fs();
    if let Err(e) = fs.mount() {
        report::fail("boot share", &format!("{name}: {e}"), &[]);
        let _ = fs.into_transport().shut_down();
        return;
    }
    report::pass("boot share", format_args!("{name}, tag \"{tag}\""));
    let cmdline = opts.kernel_args.join(" ");
    let (list, default, conf_timeout, notes) =
        loader::entries(&mut fs, opts.boot, opts.initrd, &cmdline, opts.default);
    for n in &notes {
        cprintln!("# boot: {n}");
    }
    if list.is_empty() {
        report::fail(
            "boot entries",
            "no boot entry: /loader/entries holds no .conf file and vioboot.boot is not set",
            &[],
        );
        let _ = fs.unmount();
        let _ = fs.into_transport().shut_down();
        return;
    }
    report::pass(
        "boot entries",
        format_args!("{} entries, default {}", list.len(), list[default].id),
    );
    let vty = inv.console_vty().map(|v| UnitAddress(v.unit));
    let (chosen, edited) = loader::menu(
        &list,
        default,
        opts.timeout.or(conf_timeout).unwrap_or(0),
        vty,
    );
    let mut list = list;
    if let Some(o) = edited {
        log::info!("boot: options of {} edited to \"{o}\"", list[chosen].id);
        list[chosen].options = o;
    }
    let handoff = match entry {
        Entry::OpenFirmware { of } => loader::Handoff::Of(*of),
        Entry::Fdt { .. } => {
            let mut usable = inv.usable_memory();
            let mut reserved = inv.reserved.clone();
            for r in taken {
                usable.remove(r);
                reserved.push(r);
            }
            loader::Handoff::Fdt {
                blob,
                usable,
                reserved,
            }
        }
    };
    let first_free = taken
        .iter()
        .map(|r| r.end)
        .max()
        .unwrap_or(0)
        .next_multiple_of(1 << 20);
    // Real mode reaches the first memory range (the RMA); stay below 4 GiB for OF too.
    let limit = inv
        .memory
        .ranges()
        .first()
        .map_or(1 << 30, |r| r.end)
        .min(1 << 32);
    let order = core::iter::once(chosen).chain((0..list.len()).filter(|&i| i != chosen));
    for i in order {
        let e = &list[i];
        match loader::load(&mut fs, e, &handoff, first_free, limit) {
            Ok(loaded) => {
                let unmount = fs.unmount();
                let dev = fs.into_transport();
                match (unmount, dev.shut_down()) {
                    (Ok(()), Ok(())) => report::pass(
                        "boot quiesce",
                        format_args!(
                            "{name}: DESTROY sent, device reset, CRQ freed, every TCE cleared"
                        ),
                    ),
                    (u, d) => report::fail(
                        "boot quiesce",
                        &format!("{name}: {:?} {:?}", u.err(), d.err()),
                        &[],
                    ),
                }
                if let Err(err) = loader::enter(
                    &loaded,
                    &handoff,
                    loaded
                        .initrd
                        .map_or(loaded.kernel.end, |r| r.end)
                        .next_multiple_of(1 << 20),
                    limit,
                ) {
                    report::fail("boot handoff", &err, &[]);
                }
                return;
            }
            Err(err) => report::fail(
                &format!("boot entry {}", e.id),
                &err,
                &[("title", e.display_title())],
            ),
        }
    }
    report::fail("boot", "no boot entry could be loaded", &[]);
    let _ = fs.unmount();
    let _ = fs.into_transport().shut_down();
}
