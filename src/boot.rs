//! `vioboot.mode=boot`: boot entries from a file system (the first virtio-fs share, or the one
//! `vioboot.fs-tag` names), the menu, the chosen kernel loaded (the next entry on failure),
//! every device quiesced, and the handoff. Each step is a report line; the pieces live in
//! `loader/` and report nothing themselves.

use crate::bus;
use crate::dev::{AnyDevice, FileSystem};
use crate::error::Error;
use crate::firmware::{Firmware, Regions};
use crate::hcall::UnitAddress;
use crate::loader::{entries, load, menu, Loaded};
use crate::{cprintln, report};
use alloc::boxed::Box;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use vioboot_core::inventory::Inventory;
use vioboot_core::options::Options;

/// Boots a kernel. Returns only when none could be booted (the report says why).
pub fn linux(fw: &dyn Firmware, inv: &Inventory, opts: &Options, tree: &[u8], regions: &Regions) {
    let Some(mut fs) = find_share(inv, opts) else {
        return;
    };
    let name = String::from(fs.name());
    if let Err(e) = fs.mount() {
        report::fail("boot share", &format!("{name}: {e}"), &[]);
        let _ = fs.as_device().shut_down();
        return;
    }
    report::pass("boot share", format_args!("{name}, tag \"{}\"", fs.label()));
    let cmdline = opts.kernel_args.join(" ");
    let found = entries::read(
        fs.as_mut(),
        &entries::Wanted {
            boot: opts.boot,
            initrd: opts.initrd,
            options: &cmdline,
            default: opts.default,
        },
    );
    for n in &found.notes {
        cprintln!("# boot: {n}");
    }
    let mut list = found.list;
    if list.is_empty() {
        report::fail(
            "boot entries",
            "no boot entry: /loader/entries holds no .conf file and vioboot.boot is not set",
            &[],
        );
        quiesce(fs.as_mut());
        return;
    }
    report::pass(
        "boot entries",
        format_args!("{} entries, default {}", list.len(), list[found.default].id),
    );
    let vty = inv.console_vty().map(|v| UnitAddress(v.unit));
    let timeout = opts.timeout.or(found.timeout).unwrap_or(0);
    let (chosen, edited) = menu::menu(&list, found.default, timeout, vty);
    if let Some(o) = edited {
        log::info!("boot: options of {} edited to \"{o}\"", list[chosen].id);
        list[chosen].options = o;
    }
    let mut handoff = fw.handoff(tree, inv, regions);
    let order = core::iter::once(chosen).chain((0..list.len()).filter(|&i| i != chosen));
    for i in order {
        let e = &list[i];
        handoff.rewind();
        match load::load(fs.as_mut(), e, handoff.as_mut()) {
            Ok(loaded) => {
                report_load(e.display_title(), e.sha256.is_some(), &loaded);
                quiesce(fs.as_mut());
                match handoff.prepare(&loaded) {
                    Ok(jump) => {
                        report::pass("boot handoff", format_args!("{}", jump.summary));
                        report::phase("boot");
                        report::finish();
                        cprintln!("# vioboot: entering the kernel");
                        jump.go()
                    }
                    Err(err) => report::fail("boot handoff", &format!("{err}"), &[]),
                }
                return;
            }
            Err(err) => report::fail(
                &format!("boot entry {}", e.id),
                &format!("{err}"),
                &[("title", e.display_title())],
            ),
        }
    }
    report::fail("boot", "no boot entry could be loaded", &[]);
    quiesce(fs.as_mut());
}

/// The share to boot from: the first file system, or the one with `vioboot.fs-tag`. Every
/// other device opened on the way is shut down again.
fn find_share(inv: &Inventory, opts: &Options) -> Option<Box<dyn FileSystem>> {
    let timeout_us = u64::from(opts.vio_timeout_ms) * 1000;
    for a in &bus::enumerate(inv).adapters {
        if !a.may_offer_file_system() {
            continue;
        }
        let Ok(bound) = bus::bind(a, timeout_us) else {
            continue;
        };
        let mut found = None;
        for unit in bound.units {
            match unit.device {
                Ok(AnyDevice::FileSystem(fs))
                    if found.is_none() && opts.fs_tag.is_none_or(|t| t == fs.label()) =>
                {
                    found = Some(fs)
                }
                Ok(mut other) => {
                    let _ = other.device().shut_down();
                }
                Err(("fs", e)) => report::fail("boot share", &format!("{e}"), &[]),
                Err(_) => {}
            }
        }
        if found.is_some() {
            return found;
        }
        if let Some(mut shared) = bound.shared {
            let _ = shared.shut_down();
        }
    }
    report::fail(
        "boot share",
        &format!(
            "no virtio-fs share{} to boot from",
            opts.fs_tag
                .map_or(String::new(), |t| format!(" with tag \"{t}\""))
        ),
        &[],
    );
    None
}

fn report_load(title: &str, pinned: bool, l: &Loaded) {
    let mbps = l.bytes as f64 / l.load_us as f64;
    report::pass(
        "boot load",
        format_args!(
            "{title}: {} ({} bytes, {mbps:.1} MB/s{}) at {:#x}{}",
            l.path,
            l.bytes,
            if pinned { ", sha256 verified" } else { "" },
            l.kernel.start,
            l.initrd.map_or(String::new(), |r| format!(
                ", initrd {} bytes at {:#x}",
                r.size(),
                r.start
            ))
        ),
    );
    cprintln!("# bench kernel-load-MBps {mbps:.1}");
}

/// Ends the share's session and resets the device: nothing may reach memory once the kernel
/// owns it.
fn quiesce(fs: &mut dyn FileSystem) {
    let name = String::from(fs.name());
    let unmount = fs.unmount().map_err(Error::from);
    let down = fs.as_device().shut_down().map_err(Error::from);
    let failed: Vec<String> = [unmount.err(), down.err()]
        .into_iter()
        .flatten()
        .map(|e| format!("{e}"))
        .collect();
    if failed.is_empty() {
        report::pass(
            "boot quiesce",
            format_args!("{name}: DESTROY sent, device reset, CRQ freed, every TCE cleared"),
        );
    } else {
        report::fail(
            "boot quiesce",
            &format!("{name}: {}", failed.join("; ")),
            &[],
        );
    }
}
