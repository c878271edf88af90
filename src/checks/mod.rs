//! The smoke checks, one module per kind of thing checked: [`platform`] (tree, memory,
//! console, RTAS, hcalls), [`block`] (any block device), [`fs`] (any file system), [`tpm`]
//! (a TPM). This
//! module walks the buses' adapters and hands each device to its kind's checks, under a
//! [`Scope`] named after the adapter, or after the adapter and the unit for an adapter with
//! several (a v-scsi LUN: `v-scsi@71000020 0:1:0`); what the units share is shut down last.

pub mod block;
pub mod cpus;
pub mod fs;
pub mod interrupts;
pub mod memtest;
pub mod platform;
pub mod services;
pub mod tpm;

use crate::bus;
use crate::dev::{multipath, AnyDevice, Device};
use crate::report::{self, Scope};
use alloc::boxed::Box;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use vioboot_core::inventory::Inventory;
use vioboot_core::options::{Groups, Options};

/// Whether `vioboot.checks` chose group `g`; when not, one skip line says so.
pub fn chosen(opts: &Options, g: Groups) -> bool {
    if opts.checks.contains(g) {
        return true;
    }
    report::skip(Groups::name(g), "not chosen by vioboot.checks");
    false
}

/// Opens every adapter, runs each of its devices' checks and shuts it down again.
pub fn devices(inv: &Inventory, opts: &Options) {
    let found = bus::enumerate(inv);
    for (kind, u) in &found.unusable {
        report::fail(kind, &format!("{u}"), &[]);
    }
    pci_hosts(&found);
    if !found.has_virtio_vio() {
        report::skip("virtio-vio", "no virtio-vio adapter under /vdevice");
    }
    let timeout_us = u64::from(opts.vio_timeout_ms) * 1000;
    // Every adapter first, so that one disk reached through several (multipath) is found.
    let mut adapters: Vec<(String, Option<Box<dyn Device>>)> = Vec::new();
    let mut units: Vec<Opened> = Vec::new();
    for a in &found.adapters {
        let s = Scope::new(a.name());
        let bound = match bus::bind(a, timeout_us) {
            Ok(b) => b,
            Err(e) => {
                let (key, value) = a.location();
                s.fail_with("", &e, &[(key, &value)]);
                continue;
            }
        };
        s.pass("", format_args!("{}", bound.summary));
        for (check, detail) in &bound.facts {
            s.pass(check, format_args!("{detail}"));
        }
        let owned = bound.shared.is_none();
        for unit in bound.units {
            let name = unit.name.unwrap_or_else(|| a.name().into());
            let us = Scope::new(&name);
            match unit.device {
                Ok(device) => units.push(Opened {
                    name,
                    owned,
                    device,
                }),
                Err((kind, e)) if e.unusable_device() => us.skip(kind, &format!("{e}")),
                Err((kind, e)) => us.fail(kind, &e),
            }
        }
        adapters.push((a.name().into(), bound.shared));
    }
    let joined = multipath::join(
        units,
        u64::from(opts.path_probe_ms) * 1000,
        |u| match &mut u.device {
            AnyDevice::Block(b) => Some(b),
            _ => None,
        },
        |u| match u.device {
            AnyDevice::Block(b) => Some(b),
            _ => None,
        },
    );
    for c in &joined.conflicts {
        report::fail("multipath", c, &[]);
    }
    let mut disks = joined.disks.into_iter().peekable();
    for (i, u) in joined.rest {
        while let Some((_, mut m, _)) = disks.next_if(|(first, _, _)| *first < i) {
            check_multipath(&mut m, opts);
        }
        check_unit(u, opts);
    }
    for (_, mut m, _) in disks {
        check_multipath(&mut m, opts);
    }
    for (name, shared) in adapters {
        if let Some(mut shared) = shared {
            let s = Scope::new(&name);
            match shared.shut_down() {
                Ok(()) => s.pass("shutdown", format_args!("CRQ freed, every TCE cleared")),
                Err(e) => s.fail("shutdown", &e),
            }
        }
    }
}

/// A device opened on an adapter, waiting for its checks.
struct Opened {
    name: String,
    /// Its adapter has no part of its own to shut down after it.
    owned: bool,
    device: AnyDevice,
}

/// Runs a device's checks and shuts it down.
fn check_unit(u: Opened, opts: &Options) {
    let us = Scope::new(&u.name);
    let mut dev = u.device;
    match &mut dev {
        AnyDevice::Block(b) => {
            block::run(&us, b.as_mut(), opts);
            partitions(&us, b.as_mut());
            unmapped(&us, b.as_device());
        }
        AnyDevice::FileSystem(f) => fs::run(&us, f.as_mut(), opts),
        AnyDevice::Tpm(t) => {
            tpm::run(&us, t.as_mut());
            unmapped(&us, t.as_device());
        }
    }
    let r = dev.device().shut_down();
    let detail = dev.device().shutdown_detail();
    match r {
        Ok(()) if u.owned => us.pass("shutdown", format_args!("{detail}")),
        Ok(()) => {}
        Err(e) => us.fail("shutdown", &e),
    }
}

/// A disk of several paths: the block checks once, then its paths and failovers.
fn check_multipath(m: &mut multipath::Multipath, opts: &Options) {
    let name = String::from(m.name());
    let s = Scope::new(&name);
    block::run(&s, m, opts);
    partitions(&s, m);
    unmapped(&s, m);
    s.pass("paths", format_args!("{}", m.summary()));
    if let Err(e) = m.shut_down() {
        s.fail("shutdown", &e);
    }
}

/// One line per PCI host bridge with functions (how many, who assigned their BARs), one per
/// bus it could not scan; a machine with no PCI function gets a comment saying so.
fn pci_hosts(found: &bus::Found) {
    for e in &found.pci_unusable {
        report::fail("pci", &format!("{e}"), &[]);
    }
    let functions: usize = found.pci_hosts.iter().map(|h| h.functions.len()).sum();
    if functions == 0 {
        crate::cprintln!(
            "# pci: no function behind {} host bridge(s)",
            found.pci_hosts.len()
        );
    }
    for h in found.pci_hosts.iter().filter(|h| !h.functions.is_empty()) {
        let buses = h
            .functions
            .iter()
            .map(|f| f.at.bus)
            .collect::<alloc::collections::BTreeSet<_>>()
            .len();
        let dma = h.dma.map_or(String::from("none"), |w| {
            format!("liobn {:#x} {:#x}+{:#x}", w.liobn, w.ioba, w.size)
        });
        report::pass(
            &h.name,
            format_args!(
                "buid {:#x}: {} function(s) on {buses} bus(es), BARs {}; DMA window {dma}",
                h.buid,
                h.functions.len(),
                if h.assigned {
                    "assigned by vioboot"
                } else {
                    "as firmware assigned them"
                }
            ),
        );
        for e in &h.problems {
            report::fail(&h.name, &format!("{e}"), &[]);
        }
    }
}

/// Nothing the device was given may stay mapped once its requests are done.
fn unmapped(s: &Scope, dev: &mut dyn Device) {
    let left = dev.pages_left_mapped();
    let t = dev.stats();
    if left == 0 {
        s.pass(
            "unmapped",
            format_args!(
                "no buffer left in the TCE window; {} requests, {} notifies, {} CRQ entries received, {} protocol errors, {} resets{}",
                t.requests,
                t.notifies,
                t.received,
                t.protocol_errors,
                t.resets,
                if t.migrations > 0 {
                    alloc::format!(" ({} after the partition migrated)", t.migrations)
                } else {
                    alloc::string::String::new()
                }
            ),
        );
    } else {
        s.fail(
            "unmapped",
            &format_args!("{left} IOBA pages still mapped after the requests finished"),
        );
    }
}

/// The disk's partition table and what each partition holds (read only), one line.
fn partitions(s: &Scope, dev: &mut dyn crate::dev::BlockDevice) {
    let l = crate::volume::layout(dev);
    if l.failed() {
        s.fail("partitions", &l.summary());
    } else {
        s.pass("partitions", format_args!("{}", l.summary()));
    }
}
