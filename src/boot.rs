//! `vioboot.mode=boot`: boot entries from a file system, the menu, the chosen kernel loaded (the
//! next entry on failure), every device quiesced, and the handoff. Each step is a report line;
//! the pieces live in `loader/` and report nothing themselves.
//!
//! Every file system vioboot can read is a candidate source: each virtio-fs share, and each
//! ext2/3/4 and FAT partition of each disk (`volume`). Block devices that are paths of one disk
//! are joined first (`dev::multipath`, as the smoke checks do), so such a disk's partitions
//! are candidates once, read through the disk with failover between its paths. `vioboot.source` picks one (a share's tag, a
//! disk and partition number, `label=`, `uuid=`), `vioboot.fs-tag` a share by its tag; by
//! default the first, in adapter order, that holds `/loader/entries` or `/boot/loader/entries`.
//!
//! With a vTPM and no firmware keeping the event log, the loaded kernel, initrd and command
//! line are measured (`loader::measure`) before the devices are quiesced, and the event log
//! goes to the kernel with the handoff. Open Firmware keeps its own log (`sml-handover`), so
//! there the vTPM is left to its driver and the measurements go through it
//! (`2hash-ext-log`, as GRUB on POWER does), or, where it has none (VOF), the `boot measure`
//! line says so.

use crate::bus;
use crate::dev::{multipath, AnyDevice, Device, FileSystem, Tpm};
use crate::error::Error;
use crate::firmware::{Firmware, FirmwareError, Regions};
use crate::hcall::UnitAddress;
use crate::loader::{entries, load, measure, menu, EventLog, Loaded};
use crate::volume::{self, ext4::Ext4Fs, fat::FatFs, partition::Partition};
use crate::{cprintln, report};
use alloc::boxed::Box;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use disk::probe::FsKind;
use disk::BootRole;
use vioboot_core::inventory::Inventory;
use vioboot_core::options::{Options, Source};

/// Where a candidate file system lives.
enum Place {
    Share,
    Partition {
        disk: String,
        /// The paths of a multipath disk (`disk` is then `disk <identifier>`): `DISK:N` may
        /// name it by any of them.
        paths: Vec<String>,
        number: u32,
        /// GPT partition name, partition UUID, file system UUID.
        name: String,
        part_uuid: String,
        fs_uuid: String,
        /// The partition's part in the Boot Loader Specification (ESP, XBOOTLDR), if any.
        role: Option<BootRole>,
    },
}

/// A file system boot entries may come from.
struct Candidate {
    fs: Box<dyn FileSystem>,
    place: Place,
    /// What mounting it said, once mounted.
    mounted: Option<String>,
}

impl Candidate {
    fn matches(&self, s: &Source) -> bool {
        let label = self.fs.label();
        match (&self.place, *s) {
            (Place::Share, Source::Tag(t)) => label == t,
            (
                Place::Partition {
                    disk,
                    paths,
                    number,
                    ..
                },
                Source::Partition { disk: d, number: n },
            ) => (disk == d || paths.iter().any(|p| p == d)) && *number == n,
            (Place::Partition { name, .. }, Source::Label(l)) => label == l || name == l,
            (
                Place::Partition {
                    part_uuid, fs_uuid, ..
                },
                Source::Uuid(u),
            ) => part_uuid.eq_ignore_ascii_case(u) || fs_uuid.eq_ignore_ascii_case(u),
            _ => false,
        }
    }

    /// Mounts it once; reports a failure under `boot share` (a share) or `boot source`.
    fn mount(&mut self) -> bool {
        if self.mounted.is_some() {
            return true;
        }
        match self.fs.mount() {
            Ok(m) => {
                self.mounted = Some(m);
                true
            }
            Err(e) => {
                let line = match self.place {
                    Place::Share => "boot share",
                    Place::Partition { .. } => "boot source",
                };
                report::fail(line, &format!("{}: {e}", self.fs.name()), &[]);
                false
            }
        }
    }
}

/// Every candidate, and what several of them may share (a v-scsi adapter's session), kept
/// until the handoff quiesces it.
struct Sources {
    cands: Vec<Candidate>,
    shared: Vec<Box<dyn Device>>,
    /// The TPM the kernel is measured into (the first vTPM), until the quiesce.
    tpm: Option<Box<dyn Tpm>>,
    /// A vTPM left to the firmware, which keeps the event log.
    tpm_left: Option<String>,
}

/// A partition vioboot cannot read, kept to name it when `vioboot.source` asks for it.
struct Unreadable {
    name: String,
    what: String,
    label: String,
    part_name: String,
    part_uuid: String,
}

/// Boots a kernel. Returns only when none could be booted (the report says why).
pub fn linux(fw: &dyn Firmware, inv: &Inventory, opts: &Options, tree: &[u8], regions: &Regions) {
    let (mut src, unreadable) = candidates(fw, inv, opts);
    let Some((i, root)) = choose(&mut src.cands, &unreadable, opts) else {
        quiesce(&mut src);
        return;
    };
    // Unless one file system was asked for, the ESP and XBOOTLDR of one disk are one menu.
    let explicit = opts.source.is_some() || opts.fs_tag.is_some() || opts.boot.is_some();
    let mut tried: Vec<usize> = Vec::new();
    let mut group = if explicit {
        alloc::vec![(i, root)]
    } else {
        with_partner(&mut src.cands, i, root, &tried)
    };
    let mut first = true;
    loop {
        tried.extend(group.iter().map(|g| g.0));
        // Returns only if no entry of this source could be booted.
        if let Outcome::Stop = from_source(fw, inv, opts, tree, regions, &mut src, &group, first) {
            return;
        }
        first = false;
        // Unless a source was asked for, the next one holding entries.
        let next = (!explicit)
            .then(|| next_source(&mut src.cands, &tried))
            .flatten();
        let Some((j, r)) = next else { break };
        log::info!(
            "boot: nothing on {} could be booted; trying {}",
            src.cands[group[0].0].fs.name(),
            src.cands[j].fs.name()
        );
        group = with_partner(&mut src.cands, j, r, &tried);
    }
    report::fail("boot", "no boot entry could be loaded", &[]);
    quiesce(&mut src);
}

/// Candidate `i` (entries under `root`) and, if it is the EFI system partition or the
/// extended boot loader partition of a disk whose other one also holds entries, that one
/// too: the specification reads both as one set of entries. The ESP comes first (its
/// `loader.conf` counts first).
fn with_partner(
    cands: &mut [Candidate],
    i: usize,
    root: &'static str,
    tried: &[usize],
) -> Vec<(usize, &'static str)> {
    let mut group = alloc::vec![(i, root)];
    let Place::Partition {
        disk,
        role: Some(role),
        ..
    } = &cands[i].place
    else {
        return group;
    };
    let (disk, want) = (disk.clone(), role.partner());
    for (j, c) in cands.iter_mut().enumerate() {
        let same = matches!(&c.place, Place::Partition { disk: d, role: Some(r), .. } if *d == disk && *r == want);
        if j == i || !same || tried.contains(&j) || !c.mount() {
            continue;
        }
        if let Some(r) = entries::locate(c.fs.as_mut()) {
            group.push((j, r));
            break;
        }
    }
    if want == BootRole::Esp && group.len() == 2 {
        group.swap(0, 1);
    }
    group
}

/// The first candidate not yet tried that mounts and holds entries.
fn next_source(cands: &mut [Candidate], tried: &[usize]) -> Option<(usize, &'static str)> {
    for (j, c) in cands.iter_mut().enumerate() {
        if tried.contains(&j) || !c.mount() {
            continue;
        }
        if let Some(root) = entries::locate(c.fs.as_mut()) {
            return Some((j, root));
        }
    }
    None
}

/// Why `from_source` returned.
enum Outcome {
    /// No entry of the source could be loaded: another source may be tried.
    Exhausted,
    /// The devices are quiesced (a handoff failed): nothing more can be tried.
    Stop,
}

/// Reads the entries of the candidates in `group` (each with where its `loader/` is), shows
/// the menu (on the first source only) and loads entries until one boots; returns if none
/// could be booted.
#[allow(clippy::too_many_arguments)] // one call site; the boot's whole state, passed down
fn from_source(
    fw: &dyn Firmware,
    inv: &Inventory,
    opts: &Options,
    tree: &[u8],
    regions: &Regions,
    src: &mut Sources,
    group: &[(usize, &'static str)],
    first: bool,
) -> Outcome {
    let mut said = Vec::new();
    let mut wheres = Vec::new();
    let mut names = Vec::new();
    for &(i, root) in group {
        let c = &src.cands[i];
        let name = String::from(c.fs.name());
        names.push(name.clone());
        let root_text = if root.is_empty() { "/" } else { root };
        match &c.place {
            Place::Share => {
                said.push(format!("{name}, tag \"{}\"", c.fs.label()));
                wheres.push(format!("share {name} (tag \"{}\")", c.fs.label()));
            }
            Place::Partition { role, .. } => {
                let m = c.mounted.as_deref().unwrap_or("");
                let role = match role {
                    Some(r) if group.len() > 1 => format!(" ({})", r.name()),
                    _ => String::new(),
                };
                said.push(format!("{name}: {m}{role}; entries under {root_text}"));
                wheres.push(format!("{name} ({m})"));
            }
        }
    }
    let line = match src.cands[group[0].0].place {
        Place::Share => "boot share",
        Place::Partition { .. } => "boot source",
    };
    let merged_note = if group.len() > 1 {
        " (the ESP and XBOOTLDR partitions of one disk: one menu)"
    } else {
        ""
    };
    report::pass(
        line,
        format_args!("{}{merged_note}", said.join("; merged with ")),
    );
    let cmdline = opts.kernel_args.join(" ");
    let mut parts = Vec::new();
    let mut other_format = None;
    for &(i, root) in group {
        let found = entries::read(
            src.cands[i].fs.as_mut(),
            &entries::Wanted {
                boot: opts.boot,
                initrd: opts.initrd,
                options: &cmdline,
                root,
            },
        );
        for n in &found.notes {
            cprintln!("# boot: {n}");
        }
        if let Some(f) = &found.other_format {
            other_format.get_or_insert(format!("{root}/loader/entries.srel says \"{f}\""));
        }
        parts.push(found);
    }
    let merged = entries::merge(parts, opts.default);
    let mut list = merged.list;
    if list.is_empty() {
        let root = group[0].1;
        let why = match other_format {
            Some(f) => format!("no boot entry: {f}: the entries follow another specification than the Boot Loader Specification's Type #1, and vioboot.boot is not set"),
            None => format!("no boot entry: {root}/loader/entries holds no .conf file and vioboot.boot is not set"),
        };
        report::fail("boot entries", &why, &[]);
        return Outcome::Exhausted;
    }
    report::pass(
        "boot entries",
        format_args!(
            "{} entries, default {}{}",
            list.len(),
            list[merged.default].id,
            if group.len() > 1 {
                format!(", from {} file systems", group.len())
            } else {
                String::new()
            }
        ),
    );
    let vty = inv.console_vty().map(|v| UnitAddress(v.unit));
    let timeout = if first {
        opts.timeout.or(merged.timeout).unwrap_or(0)
    } else {
        0
    };
    // Where each entry lives, when the menu shows entries of several file systems.
    let places: Vec<&str> = if group.len() > 1 {
        merged.from.iter().map(|&k| names[k].as_str()).collect()
    } else {
        Vec::new()
    };
    let from = wheres.join(" and ");
    let (chosen, edited) = menu::menu(&list, merged.default, timeout, vty, &from, &places);
    if let Some(o) = edited {
        log::info!("boot: options of {} edited to \"{o}\"", list[chosen].id);
        list[chosen].options = o;
    }
    // What to hash the files with while they load: the firmware that keeps the log wants
    // the SHA-256 to check its copy; a TPM of vioboot's own, every active bank (if asking
    // fails, SHA-256, and the measurement then fails by name).
    let algs: Vec<u16> = match (&src.tpm_left, src.tpm.as_mut()) {
        (Some(_), _) => alloc::vec![tpm::ALG_SHA256],
        (None, Some(t)) => {
            measure::algorithms(t.as_mut()).unwrap_or_else(|_| alloc::vec![tpm::ALG_SHA256])
        }
        (None, None) => Vec::new(),
    };
    let mut handoff = fw.handoff(tree, inv, regions);
    let order = core::iter::once(chosen).chain((0..list.len()).filter(|&k| k != chosen));
    for k in order {
        let e = &list[k];
        let i = group[merged.from[k]].0;
        handoff.rewind();
        match load::load_measured(src.cands[i].fs.as_mut(), e, handoff.as_mut(), &algs) {
            Ok(mut loaded) => {
                report_load(e.display_title(), e.sha256.is_some(), &loaded);
                measure_into(fw, src, i, &mut loaded);
                quiesce(src);
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
                // The devices are quiesced: nothing more can be read.
                return Outcome::Stop;
            }
            Err(err) => report::fail(
                &format!("boot entry {}", e.id),
                &format!("{err}"),
                &[("title", e.display_title())],
            ),
        }
    }
    Outcome::Exhausted
}

/// Opens every adapter: each share is a candidate (unless `vioboot.fs-tag` names another), each
/// disk's ext partitions are (a virtio-vio disk or a v-scsi LUN alike); block devices that are
/// paths of one disk are joined into one disk first; a disk's table is a `boot disk` report
/// line. Devices that hold no candidate are shut down again, and an adapter's shared part
/// when none of its units holds one.
fn candidates(fw: &dyn Firmware, inv: &Inventory, opts: &Options) -> (Sources, Vec<Unreadable>) {
    let timeout_us = u64::from(opts.vio_timeout_ms) * 1000;
    let mut src = Sources {
        cands: Vec::new(),
        shared: Vec::new(),
        tpm: None,
        tpm_left: None,
    };
    let mut unreadable = Vec::new();
    // Every adapter's devices first (with the adapter each came from), so that one disk
    // reached through several is found.
    let mut units: Vec<(usize, AnyDevice)> = Vec::new();
    let mut shared: Vec<(usize, Box<dyn Device>)> = Vec::new();
    for (ai, a) in bus::enumerate(inv).adapters.iter().enumerate() {
        if let bus::Adapter::Vtpm { adapter, .. } = a {
            if fw.keeps_tpm_log() {
                src.tpm_left.get_or_insert_with(|| adapter.name.clone());
                continue;
            }
        }
        let bound = match bus::bind(a, timeout_us) {
            Ok(b) => b,
            // A TPM that cannot be opened fails the measurement it was there for.
            Err(e) if matches!(a, bus::Adapter::Vtpm { .. }) => {
                report::fail("boot measure", &format!("{e}"), &[]);
                continue;
            }
            Err(_) => continue,
        };
        for unit in bound.units {
            match unit.device {
                Ok(d) => units.push((ai, d)),
                Err(("fs", e)) => report::fail("boot share", &format!("{e}"), &[]),
                Err(_) => {}
            }
        }
        if let Some(s) = bound.shared {
            shared.push((ai, s));
        }
    }
    let adapter_of: Vec<usize> = units.iter().map(|(ai, _)| *ai).collect();
    let joined = multipath::join(
        units,
        u64::from(opts.path_probe_ms) * 1000,
        |u| match &mut u.1 {
            AnyDevice::Block(b) => Some(b),
            _ => None,
        },
        |u| match u.1 {
            AnyDevice::Block(b) => Some(b),
            _ => None,
        },
    );
    for c in &joined.conflicts {
        report::fail("boot multipath", c, &[]);
    }
    // Adapters some candidate came from: their shared parts stay until the quiesce.
    let mut holding: Vec<usize> = Vec::new();
    let mut disks = joined.disks.into_iter().peekable();
    let mut rest = joined.rest.into_iter().peekable();
    loop {
        let disk_first = match (disks.peek(), rest.peek()) {
            (None, None) => break,
            (Some((d, _, _)), Some((r, _))) => d < r,
            (Some(_), None) => true,
            (None, Some(_)) => false,
        };
        let before = src.cands.len();
        let from: Vec<usize> = if disk_first {
            let Some((_, m, members)) = disks.next() else {
                break;
            };
            let paths = m.path_names().into_iter().map(String::from).collect();
            scan_disk(Box::new(m), paths, &mut src.cands, &mut unreadable);
            members.iter().map(|&i| adapter_of[i]).collect()
        } else {
            let Some((i, (ai, device))) = rest.next() else {
                break;
            };
            match device {
                AnyDevice::FileSystem(fs) if opts.fs_tag.is_none_or(|t| t == fs.label()) => {
                    src.cands.push(Candidate {
                        fs,
                        place: Place::Share,
                        mounted: None,
                    })
                }
                AnyDevice::Block(b) => scan_disk(b, Vec::new(), &mut src.cands, &mut unreadable),
                AnyDevice::Tpm(t) if src.tpm.is_none() => src.tpm = Some(t),
                mut other => {
                    let _ = other.device().shut_down();
                }
            }
            alloc::vec![adapter_of.get(i).copied().unwrap_or(ai)]
        };
        if src.cands.len() > before {
            holding.extend(from);
        }
    }
    for (ai, mut s) in shared {
        if holding.contains(&ai) {
            src.shared.push(s);
        } else {
            let _ = s.shut_down();
        }
    }
    (src, unreadable)
}

/// A disk's partition table as a `boot disk` line (a multipath disk's with its `paths`); its
/// ext and FAT partitions become candidates, the others are kept to be named. A disk with no
/// candidate is shut down.
fn scan_disk(
    b: Box<dyn crate::dev::BlockDevice>,
    paths: Vec<String>,
    cands: &mut Vec<Candidate>,
    unreadable: &mut Vec<Unreadable>,
) {
    let scan = volume::scan(b);
    let name = String::from(scan.disk.borrow().name());
    let shown = if paths.is_empty() {
        name.clone()
    } else {
        format!("{name} (paths {})", paths.join(", "))
    };
    let l = &scan.layout;
    let damaged = matches!(
        &l.table,
        Ok(disk::Table {
            kind: disk::TableKind::Gpt {
                primary_damaged: Some(_),
                ..
            },
            ..
        })
    );
    if l.failed() || damaged {
        report::fail("boot disk", &format!("{shown}: {}", l.summary()), &[]);
    } else {
        report::pass("boot disk", format_args!("{shown}: {}", l.summary()));
    }
    let before = cands.len();
    for v in &l.volumes {
        let p = Partition::new(scan.disk.clone(), &v.part);
        match &v.fs {
            FsKind::Ext(sb) => cands.push(Candidate {
                place: Place::Partition {
                    disk: name.clone(),
                    paths: paths.clone(),
                    number: v.part.number,
                    name: v.part.name.clone(),
                    part_uuid: v.part.uuid.clone(),
                    fs_uuid: sb.uuid.clone(),
                    role: v.part.kind.boot_role(),
                },
                fs: Box::new(Ext4Fs::new(Box::new(p), sb.clone())),
                mounted: None,
            }),
            FsKind::Fat { label, uuid, .. } => cands.push(Candidate {
                place: Place::Partition {
                    disk: name.clone(),
                    paths: paths.clone(),
                    number: v.part.number,
                    name: v.part.name.clone(),
                    part_uuid: v.part.uuid.clone(),
                    fs_uuid: uuid.clone(),
                    role: v.part.kind.boot_role(),
                },
                fs: Box::new(FatFs::new(Box::new(p), label)),
                mounted: None,
            }),
            other => unreadable.push(Unreadable {
                name: format!("{name}:{}", v.part.number),
                what: v.describe(),
                label: String::from(other.label()),
                part_name: v.part.name.clone(),
                part_uuid: v.part.uuid.clone(),
            }),
        }
    }
    if cands.len() == before {
        let _ = scan.disk.borrow_mut().shut_down();
    }
}

/// The candidate to boot from, and where its `loader/` is.
fn choose(
    cands: &mut [Candidate],
    unreadable: &[Unreadable],
    opts: &Options,
) -> Option<(usize, &'static str)> {
    if let Some(src) = opts.source {
        let Some(i) = cands.iter().position(|c| c.matches(&src)) else {
            let why = unreadable
                .iter()
                .find(|u| match src {
                    Source::Partition { disk, number } => u.name == format!("{disk}:{number}"),
                    Source::Label(l) => u.label == l || u.part_name == l,
                    Source::Uuid(x) => u.part_uuid.eq_ignore_ascii_case(x),
                    Source::Tag(_) => false,
                })
                .map_or(String::from("no share or readable partition matches"), |u| {
                    format!("{} holds {}, which vioboot does not read (ext2/3/4, FAT and virtio-fs only)", u.name, u.what)
                });
            report::fail("boot source", &format!("vioboot.source={src}: {why}"), &[]);
            return None;
        };
        if !cands[i].mount() {
            return None;
        }
        let root = entries::locate(cands[i].fs.as_mut()).unwrap_or("");
        return Some((i, root));
    }
    let mut first_mounted = None;
    for (i, c) in cands.iter_mut().enumerate() {
        if !c.mount() {
            continue;
        }
        first_mounted.get_or_insert(i);
        if let Some(path) = opts.boot {
            // A kernel named directly: the first file system holding it.
            if c.fs.stat(path).is_ok() {
                return Some((i, ""));
            }
            continue;
        }
        if let Some(root) = entries::locate(c.fs.as_mut()) {
            return Some((i, root));
        }
    }
    if let Some(i) = first_mounted {
        // None holds entries: the first, so the report names what is missing there.
        return Some((i, ""));
    }
    report::fail(
        "boot share",
        &format!(
            "no virtio-fs share{} or readable disk partition to boot from",
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

/// Measures the loaded kernel, initrd and command line into the TPM and keeps the event log
/// for the handoff; where the firmware keeps the log (SLOF), through the firmware, from
/// candidate `i`'s file system. One `boot measure` line (a skip when the firmware has no
/// driver for the TPM: QEMU's VOF).
fn measure_into(fw: &dyn Firmware, src: &mut Sources, i: usize, loaded: &mut Loaded) {
    if let Some(name) = &src.tpm_left {
        let node = format!("/vdevice/{name}");
        match measure::through_firmware(fw, &node, src.cands[i].fs.as_mut(), loaded) {
            Ok(summary) => report::pass("boot measure", format_args!("{name}: {summary}")),
            Err(measure::MeasureError::Firmware(FirmwareError::NoTpmDriver(e))) => report::skip(
                "boot measure",
                &format!("Open Firmware keeps the TPM event log but has no driver for {node} ({e}): nothing measured, and the kernel finds no log"),
            ),
            Err(e) => report::fail("boot measure", &format!("{name}: {e}"), &[]),
        }
        return;
    }
    let Some(t) = src.tpm.as_mut() else {
        return;
    };
    let r = measure::events(loaded).and_then(|ev| measure::measure(t.as_mut(), &ev));
    match r {
        Ok(m) => {
            report::pass("boot measure", format_args!("{}: {}", t.name(), m.summary));
            loaded.event_log = Some(EventLog {
                node: format!("/vdevice/{}", t.name()),
                bytes: m.log,
            });
        }
        Err(e) => report::fail("boot measure", &format!("{}: {e}", t.name()), &[]),
    }
}

/// Ends every file system's session and resets every device: nothing may reach memory once
/// the kernel owns it. One report line for all of them.
fn quiesce(src: &mut Sources) {
    let mut done: Vec<String> = Vec::new();
    let mut failed: Vec<String> = Vec::new();
    for c in src.cands.iter_mut() {
        let name = String::from(c.fs.name());
        let unmount = c
            .mounted
            .take()
            .map(|_| c.fs.unmount().map_err(Error::from));
        let down = c.fs.as_device().shut_down().map_err(Error::from);
        let errs: Vec<String> = [unmount.and_then(Result::err), down.err()]
            .into_iter()
            .flatten()
            .map(|e| format!("{e}"))
            .collect();
        if !errs.is_empty() {
            failed.push(format!("{name}: {}", errs.join("; ")));
            continue;
        }
        done.push(match c.place {
            Place::Share => {
                format!("{name}: DESTROY sent, device reset, CRQ freed, every TCE cleared")
            }
            Place::Partition { .. } => {
                format!("{name}: device reset, CRQ freed, every TCE cleared")
            }
        });
    }
    if let Some(t) = src.tpm.as_mut() {
        let name = String::from(t.name());
        match t.shut_down() {
            Ok(()) => done.push(format!("{name}: CRQ freed, every TCE cleared")),
            Err(e) => failed.push(format!("{name}: {e}")),
        }
    }
    for d in src.shared.iter_mut() {
        let name = String::from(d.name());
        match d.shut_down() {
            Ok(()) => done.push(format!("{name}: CRQ freed, every TCE cleared")),
            Err(e) => failed.push(format!("{name}: {e}")),
        }
    }
    if failed.is_empty() {
        report::pass("boot quiesce", format_args!("{}", done.join("; ")));
    } else {
        report::fail("boot quiesce", &failed.join("; "), &[]);
    }
}
