//! vioboot's boot path, start to finish, one named step a call: entry, console and RTAS,
//! memory, options, the device tree, the inventory, the checks, and then either the end of a
//! smoke run (quiesce, verdict, power-off) or the bootloader. How vioboot was booted (Open
//! Firmware or a bare flattened tree) is `firmware::Firmware`'s business, not this file's.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!(
        "vioboot is firmware: build it with `cargo xtask image`, boot it with `cargo xtask run`"
    );
    std::process::exit(2);
}

#[cfg(target_os = "none")]
extern crate alloc;

#[cfg(target_os = "none")]
use {
    alloc::{format, string::String, vec::Vec},
    fdt::Fdt,
    vioboot::console::{self, Sink},
    vioboot::firmware::{self, Firmware, Regions, Tree},
    vioboot::hcall::UnitAddress,
    vioboot::{arch, boot, checks, cprintln, exit, mem, report, time},
    vioboot_core::fdt_write::{self, Summary},
    vioboot_core::inventory::{self, Inventory},
    vioboot_core::options::{self, Groups, Inject, Mode, Options},
    vioboot_core::ranges::Range,
};

/// Called once by `boot/entry.S`, on the boot stack, relocated, in 64-bit little-endian mode.
#[cfg(target_os = "none")]
#[unsafe(no_mangle)]
extern "C" fn vioboot_entry(r3: u64, _r4: u64, r5: u64, base: u64, msr: u64) -> ! {
    time::mark_start();
    // SAFETY: r3 and r5 are the registers the firmware (or QEMU) entered vioboot with: a
    // nonzero r5 is Open Firmware's client interface (PAPR, IEEE 1275), else r3 is a tree.
    let pass = unsafe { firmware::with_entry(r3, r5, |fw| run(fw, base, msr)) };
    exit::finish(pass)
}

/// The boot path. Returns the verdict (only a smoke run or a failed boot returns).
#[cfg(target_os = "none")]
fn run(fw: &mut dyn Firmware, base: u64, msr: u64) -> bool {
    arch::on_exception(exit::exception);
    let vectors = arch::own_vectors(base);
    fw.early();
    cprintln!(
        "# vioboot {} entered at {base:#x} by {}, MSR {msr:#x}",
        env!("CARGO_PKG_VERSION"),
        fw.booted_by()
    );
    if !vectors {
        cprintln!("# vioboot: H_SET_MODE refused little-endian interrupts");
    }
    report::phase("entry");

    let regions = memory(fw);
    report::phase("memory");

    let bootargs = fw.bootargs();
    let (opts, option_errors) = options::parse(&bootargs);
    console::init_log(opts.log);
    let (tree, summary) = device_tree(fw, &opts);
    report::phase("fdt");

    let inv = inventory(&tree);
    report::phase("inventory");
    log::info!("bootargs: \"{bootargs}\"");
    log::debug!("regions {regions:?}; console on {}", console::sink());

    report::begin();
    check_entry(fw, base, &regions);
    check_options(&opts, &option_errors, &bootargs);
    checks::platform::run(fw, &tree, &summary, &inv, &regions, &opts);
    let chosen = |g| checks::chosen(&opts, g);
    if chosen(Groups::SERVICES) {
        checks::services::run(&inv);
    }
    if chosen(Groups::CPUS) {
        checks::cpus::run(&inv, summary.boot_cpuid_phys, opts.inject);
    }
    if chosen(Groups::INTERRUPTS) {
        checks::interrupts::run(&inv, summary.boot_cpuid_phys, opts.inject);
    }
    if chosen(Groups::MEMORY) {
        checks::memtest::run(fw, &inv, &regions, &opts);
    }
    if opts.mode == Mode::Smoke && chosen(Groups::DEVICES) {
        checks::devices(&inv, &opts);
    }
    inject(opts.inject);
    report::phase("checks");

    match opts.mode {
        // Returns only when no kernel could be booted.
        Mode::Boot => boot::linux(fw, &inv, &opts, &tree.blob, &regions),
        Mode::Smoke => quiesce(fw, &inv),
    }
    report::finish()
}

/// The heap and the DMA page pool, from the firmware; without them nothing else can run.
#[cfg(target_os = "none")]
fn memory(fw: &dyn Firmware) -> Regions {
    let (start, _, end) = arch::image_bounds();
    let regions = match fw.regions(Range { start, end }) {
        Ok(r) => r,
        Err(e) => exit::terminate(&format!("vioboot: no memory for heap and page pool: {e}")),
    };
    // SAFETY: both regions were claimed from OF or placed clear of everything else in use.
    unsafe {
        mem::init_heap(regions.heap);
        mem::init_pool(regions.pool);
    }
    regions
}

/// The device tree as a blob vioboot owns, validated (every offset and length) before anything
/// reads it. Without one there is nothing to check: the report ends here.
#[cfg(target_os = "none")]
fn device_tree(fw: &dyn Firmware, opts: &Options) -> (Tree, Summary) {
    let tree = fw.tree(opts.fdt).and_then(|t| {
        let summary =
            fdt_write::validate(&t.blob).map_err(|error| firmware::FirmwareError::Malformed {
                source: t.source,
                error,
            })?;
        Ok((t, summary))
    });
    match tree {
        Ok(t) => t,
        Err(e) => {
            report::fail("fdt", &format!("{e}"), &[]);
            report::finish();
            exit::terminate(&format!("vioboot: no usable device tree: {e}"))
        }
    }
}

/// What the tree says about the machine; the timebase frequency is used at once.
#[cfg(target_os = "none")]
fn inventory(tree: &Tree) -> Inventory {
    let inv = match Fdt::new(&tree.blob) {
        Ok(f) => inventory::read(&f),
        Err(e) => exit::terminate(&format!("vioboot: device tree rejected: {e:?}")),
    };
    if let Some(hz) = inv.timebase_hz {
        time::set_frequency(hz);
    }
    inv
}

#[cfg(target_os = "none")]
fn check_entry(fw: &dyn Firmware, base: u64, regions: &Regions) {
    report::pass(
        "entry",
        format_args!(
            "{} at {base:#x}, image {:#x}..{:#x}",
            fw.interface(),
            regions.image.start,
            regions.image.end
        ),
    );
}

/// A typo in the options fails the run instead of being ignored.
#[cfg(target_os = "none")]
fn check_options(opts: &Options, errors: &[options::OptionError], bootargs: &str) {
    if errors.is_empty() {
        report::pass(
            "options",
            format_args!(
                "{} vioboot options, {} kernel words",
                opts.understood,
                opts.kernel_args.len()
            ),
        );
        return;
    }
    let list: Vec<String> = errors.iter().map(|e| format!("{e}")).collect();
    for e in &list {
        cprintln!("# vioboot: {e}");
    }
    report::fail("options", &list.join("; "), &[("bootargs", bootargs)]);
}

/// `vioboot.inject`: a deliberate failure, panic or exception, to test the exit protocol.
#[cfg(target_os = "none")]
fn inject(what: Option<Inject>) {
    match what {
        Some(Inject::Fail) => {
            report::fail("inject", "failure injected by vioboot.inject=fail", &[])
        }
        Some(Inject::Panic) => panic!("panic injected by vioboot.inject=panic"),
        Some(Inject::Exception) => arch::illegal_instruction(),
        // Taken by the vCPU and interrupt checks.
        Some(Inject::LostCpu) | Some(Inject::LostIpi) | None => {}
    }
}

/// The end of a smoke run: the firmware is left, and the console moves to the vty first.
#[cfg(target_os = "none")]
fn quiesce(fw: &dyn Firmware, inv: &Inventory) {
    let vty = inv.console_vty().map(|v| UnitAddress(v.unit));
    if let Some(quiesced) = fw.quiesce() {
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
}
