//! `cargo xtask bench`: vioboot and its peers side by side, in one run.
//!
//! Each round boots, one after the other on the same machine: vioboot on a virtio-vio disk; the
//! Linux peer (Debian's kernel, busybox initramfs with its virtio modules) and vioboot on the
//! same virtio-blk-pci disk image with `iommu_platform` off, then on; vioboot's virtio-fs
//! benchmark; vioboot booting Debian's kernel from virtio-fs (both handoffs); vioboot alone
//! under SLOF. Rounds interleave vioboot and the peer so that the machine's load falls on both;
//! the table gives medians with the spread (min..max) over the rounds, and the ratio
//! vioboot / peer of the medians.

use crate::{ensure_tools, image, root, Result, VioSetup};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use vioboot_harness::bench::{self as hb, BlkPhase};
use vioboot_harness::{Boot, Qemu};

/// The Linux peer's modules: virtio-pci and virtio-blk (and what they need, from `depends=`).
const PEER_MODULES: [&str; 2] = ["virtio_pci", "virtio_blk"];

/// QEMU trace events of TCE hcalls on the PCI host bridge's window.
const PCI_TCE_EVENTS: &str = "spapr_iommu_pci_*";

/// One figure of the table: its values per round, for vioboot and for the peer.
struct Row {
    key: String,
    label: String,
    unit: &'static str,
    peer_name: &'static str,
    vioboot: Vec<f64>,
    peer: Vec<f64>,
}

#[derive(Default)]
struct Table {
    rows: Vec<Row>,
}

impl Table {
    /// Adds this round's values to the row `key` (made on first use, in that order).
    fn add(
        &mut self,
        key: &str,
        label: &str,
        unit: &'static str,
        peer_name: &'static str,
        vioboot: Option<f64>,
        peer: Option<f64>,
    ) {
        let at = match self.rows.iter().position(|r| r.key == key) {
            Some(i) => i,
            None => {
                self.rows.push(Row {
                    key: key.into(),
                    label: label.into(),
                    unit,
                    peer_name,
                    vioboot: Vec::new(),
                    peer: Vec::new(),
                });
                self.rows.len() - 1
            }
        };
        let r = &mut self.rows[at];
        r.vioboot.extend(vioboot);
        r.peer.extend(peer);
    }
}

fn cell(v: &[f64]) -> String {
    match hb::median_spread(v) {
        None => "-".into(),
        Some((m, lo, hi)) if v.len() > 1 => format!("{} ({}..{})", num(m), num(lo), num(hi)),
        Some((m, _, _)) => num(m),
    }
}

/// A figure with about three significant digits.
fn num(x: f64) -> String {
    if x.abs() >= 100.0 {
        format!("{x:.0}")
    } else if x.abs() >= 10.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.2}")
    }
}

fn ratio(r: &Row) -> Option<f64> {
    let v = hb::median_spread(&r.vioboot)?.0;
    let p = hb::median_spread(&r.peer)?.0;
    (p != 0.0).then_some(v / p)
}

fn now_epoch() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// What `--only` chooses among: block I/O (virtio-vio, virtio-blk-pci and the Linux peer),
/// virtio-fs, kernel boots from virtio-fs, kernel loads from ext4 (and the GRUB peer), and
/// vioboot alone (entry to verdict).
const GROUPS: [&str; 5] = ["blk", "fs", "boot", "ext4", "entry"];

/// The row both the Linux peer (group `blk`) and vioboot's boot (group `boot`) fill.
const FIRST_LINE_LABEL: &str =
    "QEMU start to the kernel's first line (vioboot: -bios, kernel from virtio-fs; Linux: -kernel under SLOF)";

pub fn command(args: &[String]) -> Result {
    let (mut runs, mut json) = (3usize, false);
    let mut only: Option<Vec<String>> = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--runs" => {
                let n = it.next().ok_or("--runs needs a number")?;
                runs = n
                    .parse()
                    .ok()
                    .filter(|&n| n > 0)
                    .ok_or_else(|| format!("--runs {n}: not a positive number"))?;
            }
            "--json" => json = true,
            "--only" => {
                let v = it.next().ok_or("--only needs groups")?;
                let groups: Vec<String> = v.split(',').map(String::from).collect();
                if let Some(g) = groups.iter().find(|g| !GROUPS.contains(&g.as_str())) {
                    return Err(format!(
                        "--only: no group {g:?} (groups: {})",
                        GROUPS.join(", ")
                    ));
                }
                only = Some(groups);
            }
            _ => return Err(crate::USAGE.into()),
        }
    }
    ensure_tools()?;
    let dir = image()?;
    let bin_len = std::fs::metadata(dir.join("vioboot.bin"))
        .map_err(|e| e.to_string())?
        .len();
    let vio = VioSetup::prepare()?;
    let linux = vioboot_harness::debian_linux(&root()).map_err(|e| e.to_string())?;
    let work = root().join("target/bench");
    std::fs::create_dir_all(&work).map_err(|e| e.to_string())?;
    let initrd = peer_initramfs(&linux, &work)?;
    let boot_share = vio.demo_share()?;
    let fs_share = root().join("target/run/share");
    vioboot_harness::test_share(&fs_share, 64)
        .map_err(|e| format!("{}: {e}", fs_share.display()))?;

    let grub = grub_disk(&linux, &work)?;
    let mut t = Table::default();
    t.add(
        "image",
        "image size (vioboot.bin; GRUB: core.elf with the modules it needs here)",
        "bytes",
        "GRUB 2.06",
        Some(bin_len as f64),
        Some(grub.core_len as f64),
    );
    let want = |g: &str| only.as_ref().is_none_or(|o| o.iter().any(|x| x == g));
    // Per-request hcalls by kind, per transport and phase, from the last round.
    let mut kinds: BTreeMap<String, BTreeMap<String, BTreeMap<String, f64>>> = BTreeMap::new();
    for round in 1..=runs {
        eprintln!("xtask: bench round {round} of {runs}");
        // virtio-vio, then virtio-blk-pci off and on: the peer first, vioboot next, on the same
        // disk image.
        if want("blk") {
            let (vio_phases, rdma) = vioboot_vio_blk(&dir, &vio)?;
            blk_rows(&mut t, "vio", "virtio-vio", &vio_phases, None);
            if let Some(r) = rdma {
                t.add(
                    "vio-rdma",
                    "virtio-vio: server remote-DMA ops per request (whole run)",
                    "ops",
                    "",
                    Some(r),
                    None,
                );
            }
            kinds.insert("vioboot virtio-vio".into(), by_kind(&vio_phases));
            for iommu in [false, true] {
                let tag = if iommu { "pci-on" } else { "pci-off" };
                let what = if iommu {
                    "virtio-blk-pci, iommu_platform=on"
                } else {
                    "virtio-blk-pci, iommu_platform=off"
                };
                let peer = linux_blk(&vio, &linux, &initrd, &work, iommu, false)?;
                let ours = vioboot_pci_blk(&dir, &vio, &work, iommu)?;
                blk_rows(&mut t, tag, what, &ours, Some(&peer.phases));
                kinds.insert(format!("vioboot {what}"), by_kind(&ours));
                kinds.insert(format!("Linux {what}"), by_kind(&peer.phases));
                t.add(
                    "linux-first-line",
                    FIRST_LINE_LABEL,
                    "ms",
                    "Linux -kernel, SLOF",
                    None,
                    peer.first_line_ms,
                );
                if iommu {
                    // Linux maps all of memory once through a dynamic DMA window when QEMU offers
                    // one (ddw=on); with disable_ddw it maps every request in the default window,
                    // as vioboot does.
                    let tce = linux_blk(&vio, &linux, &initrd, &work, true, true)?;
                    let what = "virtio-blk-pci, iommu_platform=on, Linux disable_ddw";
                    blk_rows(&mut t, "pci-on-noddw", what, &ours, Some(&tce.phases));
                    kinds.insert(format!("Linux {what}"), by_kind(&tce.phases));
                }
            }
        }
        if want("fs") {
            for (tag, what, (file, files)) in [
                (
                    "fs",
                    "virtio-fs over virtio-vio (VIO server)",
                    vioboot_fs(&dir, &vio, &fs_share)?,
                ),
                (
                    "fs-pci",
                    "virtio-fs over vhost-user-fs-pci (Debian's QEMU and virtiofsd, cache=none)",
                    vioboot_fs_pci(&dir, &work, &fs_share)?,
                ),
            ] {
                t.add(
                    &format!("{tag}-file"),
                    &format!("{what}: one 64 MiB file"),
                    "MB/s",
                    "",
                    file,
                    None,
                );
                t.add(
                    &format!("{tag}-small"),
                    &format!("{what}: 1,000 files of 4 KiB"),
                    "files/s",
                    "",
                    files,
                    None,
                );
            }
        }
        if want("boot") {
            for boot in [Boot::Slof, Boot::Bios] {
                let b = vioboot_boot(&dir, &vio, &boot_share, boot)?;
                let handoff = if boot == Boot::Slof {
                    "Open Firmware handoff"
                } else {
                    "flattened-tree handoff"
                };
                t.add(
                    &format!("kernel-load-{}", boot.name()),
                    &format!("kernel load from virtio-fs (virtio-vio), {handoff}, SHA-256 pinned"),
                    "MB/s",
                    "",
                    b.kernel_mbps,
                    None,
                );
                if boot == Boot::Bios {
                    t.add(
                        "linux-first-line",
                        FIRST_LINE_LABEL,
                        "ms",
                        "",
                        Some(b.first_line_ms),
                        None,
                    );
                }
            }
        }
        if want("ext4") {
            let grub_mbps = grub_kernel_load(&vio, &grub)?;
            for kind in [DiskKind::VirtioBlkPci, DiskKind::Vscsi, DiskKind::VirtioVio] {
                let ours_mbps = vioboot_ext4_load(&dir, &vio, &grub, kind)?;
                let (key, label) = if kind == DiskKind::VirtioBlkPci {
                    (
                    "ext4-kernel-load".to_string(),
                    "kernel load from ext4 on virtio-blk-pci, no digest pinned, under SLOF (GRUB: from its PReP partition)".to_string(),
                )
                } else {
                    (
                    format!("ext4-kernel-load-{}", kind.key()),
                    format!(
                        "kernel load from ext4 on {}, no digest pinned, under SLOF (GRUB: the same disk on virtio-blk-pci)",
                        kind.label()
                    ),
                )
                };
                t.add(
                    &key,
                    &label,
                    "MB/s",
                    "GRUB 2.06",
                    Some(ours_mbps),
                    Some(grub_mbps),
                );
            }
        }
        if want("entry") {
            for boot in [Boot::Slof, Boot::Bios] {
                let e = vioboot_entry(&dir, &vio, boot, 4)?;
                t.add(
                    &format!("verdict-smp4-{}", boot.name()),
                    &format!(
                    "vioboot {}, 4 vCPUs, vioboot.checks=all (every quick check): entry to verdict",
                    match boot {
                        Boot::Slof => "under SLOF",
                        _ => "as -bios",
                    }
                ),
                    "ms",
                    "",
                    e.own_ms,
                    None,
                );
            }
            for boot in [Boot::Slof, Boot::Vof, Boot::Bios] {
                let e = vioboot_entry(&dir, &vio, boot, 1)?;
                let how = match boot {
                    Boot::Slof => "under SLOF (-kernel)",
                    Boot::Vof => "under VOF (x-vof=on)",
                    Boot::Bios => "as -bios (no firmware)",
                };
                t.add(
                    &format!("wall-{}", boot.name()),
                    &format!("vioboot {how}, no devices: QEMU start to power-off"),
                    "ms",
                    "",
                    Some(e.wall_ms),
                    None,
                );
                if boot == Boot::Slof {
                    t.add(
                    "slof-own",
                    "own time under SLOF, no devices (vioboot: entry to verdict; SLOF: QEMU start to the client's first line)",
                    "ms",
                    "SLOF",
                    e.own_ms,
                    e.first_line_ms,
                );
                } else {
                    t.add(
                        &format!("own-{}", boot.name()),
                        &format!("vioboot's own time {how}, no devices: entry to verdict"),
                        "ms",
                        "",
                        e.own_ms,
                        None,
                    );
                }
            }
        }
    }
    if json {
        print_json(&t, &kinds, runs);
    } else {
        print_table(&t, &kinds, runs);
    }
    Ok(())
}

/// The table rows of one transport's block phases. Linux's buffered 1 MiB reads stand next to
/// vioboot's 1 MiB reads (vioboot has no cache: every read goes to the device).
fn blk_rows(t: &mut Table, tag: &str, what: &str, ours: &[BlkPhase], peer: Option<&[BlkPhase]>) {
    let find = |p: Option<&[BlkPhase]>, name: &str| {
        p.and_then(|p| p.iter().find(|x| x.name == name).cloned())
    };
    let peer_name = if peer.is_some() { "Linux O_DIRECT" } else { "" };
    // The disable_ddw peer stands next to the same vioboot run as the default one: only the
    // figures that differ in kind are repeated.
    let full = tag != "pci-on-noddw";
    for (name, label) in [
        ("read-1m", "sequential read, 1 MiB requests"),
        ("read-256k", "sequential read, 256 KiB requests"),
        ("write-1m", "sequential write, 1 MiB requests"),
        ("write-256k", "sequential write, 256 KiB requests"),
    ]
    .into_iter()
    .filter(|(name, _)| full || name.starts_with("read"))
    {
        t.add(
            &format!("{tag}-{name}"),
            &format!("{what}: {label}"),
            "MB/s",
            peer_name,
            find(Some(ours), name).map(|p| p.mbps()),
            find(peer, name).map(|p| p.mbps()),
        );
    }
    if peer.is_some() {
        t.add(
            &format!("{tag}-read-buffered"),
            &format!("{what}: sequential read 1 MiB (Linux: buffered, page cache dropped)"),
            "MB/s",
            "Linux buffered",
            find(Some(ours), "read-1m").map(|p| p.mbps()),
            find(peer, "read-buffered-1m").map(|p| p.mbps()),
        );
    }
    t.add(
        &format!("{tag}-read-4k"),
        &format!("{what}: 4 KiB reads one at a time (vioboot random, Linux sequential)"),
        "reads/s",
        peer_name,
        find(Some(ours), "read-4k").map(|p| p.iops()),
        find(peer, "read-4k").map(|p| p.iops()),
    );
    // Hcalls per 4 KiB request: vioboot counts every hcall; for Linux the TCE hcalls come from
    // QEMU's trace (its MMIO and interrupt hcalls are not counted: see the docs).
    let tce = |p: &BlkPhase| {
        ["H_PUT_TCE", "H_PUT_TCE_INDIRECT", "H_STUFF_TCE"]
            .iter()
            .map(|k| p.per_request(k))
            .sum::<f64>()
    };
    if full {
        t.add(
            &format!("{tag}-hcalls-4k"),
            &format!("{what}: hcalls per 4 KiB read (vioboot: all; Linux: not counted)"),
            "hcalls",
            "",
            find(Some(ours), "read-4k").map(|p| p.per_request("hcalls")),
            None,
        );
    }
    if tag != "pci-off" {
        t.add(
            &format!("{tag}-tce-4k"),
            &format!("{what}: TCE hcalls per 4 KiB read"),
            "hcalls",
            if peer.is_some() { "Linux O_DIRECT" } else { "" },
            find(Some(ours), "read-4k").map(|p| tce(&p)),
            find(peer, "read-4k").map(|p| tce(&p)),
        );
        t.add(
            &format!("{tag}-tce-1m"),
            &format!("{what}: TCE hcalls per 1 MiB read"),
            "hcalls",
            if peer.is_some() { "Linux O_DIRECT" } else { "" },
            find(Some(ours), "read-1m").map(|p| tce(&p)),
            find(peer, "read-1m").map(|p| tce(&p)),
        );
    }
}

/// Per phase, the per-request count of each hcall kind (and `requests`).
fn by_kind(phases: &[BlkPhase]) -> BTreeMap<String, BTreeMap<String, f64>> {
    phases
        .iter()
        .map(|p| {
            let mut m: BTreeMap<String, f64> = p
                .counts
                .keys()
                .map(|k| (k.clone(), p.per_request(k)))
                .collect();
            m.insert("requests".into(), p.requests as f64);
            (p.name.clone(), m)
        })
        .collect()
}

/// Fails with the run's output unless vioboot passed.
fn passed(what: &str, r: &vioboot_harness::Run) -> Result {
    if r.exit_code() != Some(0) || r.report().verdict != Some(true) {
        return Err(format!("{what}: the run did not pass:\n{}", r.output));
    }
    Ok(())
}

/// vioboot's block benchmark on a virtio-vio disk; also the server's remote-DMA operations per
/// request over the whole run.
fn vioboot_vio_blk(dir: &Path, vio: &VioSetup) -> Result<(Vec<BlkPhase>, Option<f64>)> {
    let mut server = vio.start_server(&[])?;
    let q = Qemu {
        binary: vio.qemu.clone(),
        extra: vioboot_harness::virtio_vio_device("v0", &vio.socket, 0x7100_0010),
        ..Qemu::new(Boot::Bios, dir).append("vioboot.bench=on")
    };
    let r = vioboot_harness::run(&q, Duration::from_secs(300)).map_err(|e| e.to_string())?;
    server.stop();
    passed("vioboot, virtio-vio block benchmark", &r)?;
    let phases = hb::parse_blk(&r.output);
    if phases.len() != 5 {
        return Err(format!(
            "virtio-vio: {} bench lines:\n{}",
            phases.len(),
            r.output
        ));
    }
    let log = server.log();
    let rdma = log
        .lines()
        .rev()
        .find_map(|l| l.split_once("stats: ").map(|(_, s)| s.to_string()))
        .and_then(|stats| {
            let num = |key: &str| -> Option<f64> {
                stats
                    .split(key)
                    .nth(1)?
                    .split_whitespace()
                    .next()?
                    .parse()
                    .ok()
            };
            Some((num("rdma reads ")? + num("writes ")?) / num("requests ")?)
        });
    Ok((phases, rdma))
}

/// The virtio-blk-pci device and its drive, the same for vioboot and the peer.
fn pci_disk_args(disk: &Path, iommu: bool) -> Vec<String> {
    let mut dev = String::from("virtio-blk-pci,drive=d0,addr=1");
    if iommu {
        dev.push_str(",disable-legacy=on,iommu_platform=on");
    }
    vec![
        "-drive".into(),
        format!("file={},if=none,id=d0,format=raw", disk.display()),
        "-device".into(),
        dev,
    ]
}

fn trace_args(log: &Path) -> Vec<String> {
    vec![
        "-trace".into(),
        PCI_TCE_EVENTS.into(),
        "-msg".into(),
        "timestamp=on".into(),
        "-D".into(),
        log.display().to_string(),
    ]
}

/// vioboot's block benchmark on virtio-blk-pci (the same disk image as the peer's). QEMU
/// traces its TCE hcalls as in the peer's runs, so that both pay the trace's cost; vioboot's own
/// counts (by opcode, in the guest) are the exact ones.
fn vioboot_pci_blk(dir: &Path, vio: &VioSetup, work: &Path, iommu: bool) -> Result<Vec<BlkPhase>> {
    let log = work.join("vioboot-pci-trace.log");
    let _ = std::fs::remove_file(&log);
    let mut extra = pci_disk_args(&vio.disk, iommu);
    extra.extend(trace_args(&log));
    let q = Qemu {
        binary: vio.qemu.clone(),
        extra,
        ..Qemu::new(Boot::Bios, dir).append("vioboot.bench=on")
    };
    let r = vioboot_harness::run(&q, Duration::from_secs(300)).map_err(|e| e.to_string())?;
    passed("vioboot, virtio-blk-pci block benchmark", &r)?;
    let phases = hb::parse_blk(&r.output);
    if phases.len() != 5 {
        return Err(format!(
            "virtio-blk-pci: {} bench lines:\n{}",
            phases.len(),
            r.output
        ));
    }
    Ok(phases)
}

/// The peer's initramfs: busybox, Debian's virtio modules under /mod in load order, and the
/// benchmark script.
fn peer_initramfs(linux: &vioboot_harness::DebianLinux, work: &Path) -> Result<PathBuf> {
    let (_, tree) = hb::module_tree(&linux.vmlinux).ok_or_else(|| {
        format!(
            "{}: not a Debian vmlinux-<release>",
            linux.vmlinux.display()
        )
    })?;
    let modules = hb::modules_in_order(&tree, &PEER_MODULES)?;
    let names: Vec<String> = modules.iter().map(|(n, _)| n.clone()).collect();
    let script = hb::linux_peer_script(&names);
    let init = format!(
        "#!/bin/sh\n/bin/busybox mount -t proc proc /proc\n{script}echo \"{} done\"\n/bin/busybox poweroff -f\n",
        hb::PEER_MARK
    );
    let mut files: Vec<(String, u32, Vec<u8>)> = modules
        .into_iter()
        .map(|(n, b)| (format!("mod/{n}.ko"), 0o644, b))
        .collect();
    let tools = peer_tools()?;
    let read = |p: &str| std::fs::read(tools.join(p)).map_err(|e| format!("{p}: {e}"));
    files.push((hb::PEER_DD.into(), 0o755, read("bin/dd")?));
    for lib in ["ld64.so.2", "libc.so.6"] {
        let bytes = read(&format!("lib/powerpc64le-linux-gnu/{lib}"))?;
        files.push((format!("{}/{lib}", hb::PEER_LIBS), 0o755, bytes));
    }
    let busybox = std::fs::read(&linux.busybox).map_err(|e| e.to_string())?;
    let path = work.join("peer-initrd.img");
    std::fs::write(
        &path,
        vioboot_harness::initramfs_with(&busybox, &init, &files),
    )
    .map_err(|e| e.to_string())?;
    Ok(path)
}

/// GNU dd and its C library for ppc64le (`host/linux/fetch-peer-tools.sh`, cached).
fn peer_tools() -> Result<PathBuf> {
    let out = std::process::Command::new("bash")
        .arg(root().join("host/linux/fetch-peer-tools.sh"))
        .stderr(std::process::Stdio::inherit())
        .output()
        .map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&out.stdout);
    match text.lines().rfind(|l| l.starts_with('/')) {
        Some(dir) if out.status.success() => Ok(dir.into()),
        _ => Err(format!(
            "host/linux/fetch-peer-tools.sh failed ({})",
            out.status
        )),
    }
}

struct PeerRun {
    phases: Vec<BlkPhase>,
    first_line_ms: Option<f64>,
}

/// Boots the Linux peer (`-kernel` under SLOF) on the virtio-blk-pci disk; each phase's TCE
/// hcalls are the trace events stamped between its begin and end lines.
fn linux_blk(
    vio: &VioSetup,
    linux: &vioboot_harness::DebianLinux,
    initrd: &Path,
    work: &Path,
    iommu: bool,
    disable_ddw: bool,
) -> Result<PeerRun> {
    let log = work.join("linux-trace.log");
    let _ = std::fs::remove_file(&log);
    let mut extra = vec!["-initrd".into(), initrd.display().to_string()];
    extra.extend(pci_disk_args(&vio.disk, iommu));
    extra.extend(trace_args(&log));
    let q = Qemu {
        binary: vio.qemu.clone(),
        kernel: Some(linux.vmlinux.clone()),
        extra,
        ..Qemu::new(Boot::Slof, root().join("target/image")).append(if disable_ddw {
            "console=hvc0 quiet disable_ddw"
        } else {
            "console=hvc0 quiet"
        })
    };
    let start = Instant::now();
    let mut first_line = None;
    let mut marks: Vec<(String, f64)> = Vec::new();
    let r = vioboot_harness::run_watch(&q, Duration::from_secs(600), |l| {
        if first_line.is_none() && l.contains("Linux version") {
            first_line = Some(start.elapsed().as_secs_f64() * 1000.0);
        }
        if let Some(rest) = l.split(hb::PEER_MARK).nth(1) {
            marks.push((rest.trim().to_string(), now_epoch()));
        }
    })
    .map_err(|e| e.to_string())?;
    let failed = r
        .output
        .lines()
        .find(|l| l.starts_with("insmod ") || l.starts_with("dd "));
    let done = marks.iter().any(|(m, _)| m == "done");
    if r.exit_code() != Some(0) || !done || failed.is_some() {
        return Err(format!(
            "Linux peer ({}): {}:\n{}",
            if iommu { "iommu on" } else { "iommu off" },
            failed.unwrap_or("did not finish"),
            r.output
        ));
    }
    let trace = std::fs::read_to_string(&log).unwrap_or_default();
    let mut phases = hb::parse_blk(&r.output);
    for p in &mut phases {
        let at = |what: &str| {
            let want = format!("{what} {}", p.name);
            marks.iter().find(|(m, _)| *m == want).map(|&(_, t)| t)
        };
        let (Some(from), Some(to)) = (at("begin"), at("end")) else {
            return Err(format!("Linux peer: no begin/end marks for {}", p.name));
        };
        for (event, n) in hb::count_trace(&trace, from, to) {
            let kind = match event.as_str() {
                "spapr_iommu_pci_put" => "H_PUT_TCE",
                "spapr_iommu_pci_indirect" => "H_PUT_TCE_INDIRECT",
                "spapr_iommu_pci_stuff" => "H_STUFF_TCE",
                "spapr_iommu_pci_get" => "H_GET_TCE",
                _ => continue,
            };
            p.counts.insert(kind.into(), n);
        }
    }
    if phases.len() != hb::LINUX_PHASES.len() {
        return Err(format!(
            "Linux peer: {} bench lines:\n{}",
            phases.len(),
            r.output
        ));
    }
    Ok(PeerRun {
        phases,
        first_line_ms: first_line,
    })
}

/// The figures of vioboot's virtio-fs benchmark in a run's output: (64 MiB file MB/s, small
/// files per second).
fn fs_figures(output: &str) -> (Option<f64>, Option<f64>) {
    let value = |key: &str| {
        output.lines().find_map(|l| {
            l.split(key)
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse::<f64>()
                .ok()
        })
    };
    (
        value("# bench fs-file-MBps "),
        value("# bench fs-small-files-per-s "),
    )
}

/// vioboot's virtio-fs benchmark over vhost-user-fs-pci, the same share served by Debian's
/// virtiofsd (`-o cache=none`). Debian's QEMU: the project's build has no vhost-user.
fn vioboot_fs_pci(dir: &Path, work: &Path, share: &Path) -> Result<(Option<f64>, Option<f64>)> {
    crate::ensure_apt(&["qemu-system-common"], "virtiofsd for vhost-user-fs-pci")?;
    let fsd = vioboot_harness::Virtiofsd::start(&work.join("virtiofsd"), "bench", share)
        .map_err(|e| e.to_string())?;
    let mut q = Qemu::new(Boot::Bios, dir).append("vioboot.bench=on");
    q.extra.extend(fsd.qemu_args("fs0", "bench", "addr=5"));
    q.shared_memory = true;
    let r = vioboot_harness::run(&q, Duration::from_secs(300)).map_err(|e| e.to_string())?;
    drop(fsd);
    passed("vioboot, virtio-fs benchmark over vhost-user-fs-pci", &r)?;
    Ok(fs_figures(&r.output))
}

/// vioboot's virtio-fs benchmark over virtio-vio: (64 MiB file MB/s, small files per second).
fn vioboot_fs(dir: &Path, vio: &VioSetup, share: &Path) -> Result<(Option<f64>, Option<f64>)> {
    let (mut server, socket) = vio.start_fs_server(share, "fs", "bench")?;
    let q = Qemu {
        binary: vio.qemu.clone(),
        extra: vioboot_harness::virtio_vio_device("v0", &socket, 0x7100_0010),
        ..Qemu::new(Boot::Bios, dir).append("vioboot.bench=on")
    };
    let r = vioboot_harness::run(&q, Duration::from_secs(300)).map_err(|e| e.to_string())?;
    server.stop();
    passed("vioboot, virtio-fs benchmark", &r)?;
    Ok(fs_figures(&r.output))
}

struct BootRun {
    first_line_ms: f64,
    kernel_mbps: Option<f64>,
}

/// vioboot boots Debian's kernel from a virtio-fs share: wall time from QEMU start to the
/// kernel's first console line, and the kernel load MB/s measured in the guest.
fn vioboot_boot(dir: &Path, vio: &VioSetup, share: &Path, boot: Boot) -> Result<BootRun> {
    let (mut server, socket) = vio.start_fs_server(share, "boot", "boot")?;
    let q = Qemu {
        binary: vio.qemu.clone(),
        extra: vioboot_harness::virtio_vio_device("v0", &socket, 0x7100_0010),
        ..Qemu::new(boot, dir).append("vioboot.mode=boot vioboot.timeout=0")
    };
    let start = Instant::now();
    let (mut entered, mut first, mut marker) = (false, None, false);
    let r = vioboot_harness::run_watch(&q, Duration::from_secs(300), |l| {
        if entered && first.is_none() && !l.trim().is_empty() {
            first = Some(start.elapsed());
        }
        if l.contains("# vioboot: entering the kernel") {
            entered = true;
        }
        marker |= l.contains(vioboot_harness::INITRAMFS_MARKER);
    })
    .map_err(|e| e.to_string())?;
    server.stop();
    let (Some(first), true) = (first, marker) else {
        return Err(format!(
            "{}: the kernel did not reach the initramfs:\n{}",
            boot.name(),
            r.output
        ));
    };
    let kernel_mbps = r.output.lines().find_map(|l| {
        l.strip_prefix("# bench kernel-load-MBps ")?
            .trim()
            .parse()
            .ok()
    });
    Ok(BootRun {
        first_line_ms: first.as_secs_f64() * 1000.0,
        kernel_mbps,
    })
}

/// GRUB's lines around its `linux` command: the host stamps them as they arrive.
const GRUB_ROOT: &str = "GRUB-PEER-ROOT";
const GRUB_LOADED: &str = "GRUB-PEER-LOADED";

/// A disk for the GRUB peer and vioboot: MBR with a PReP partition (type 0x41) holding GRUB's
/// core.elf, and an ext4 partition holding Debian's kernel, the busybox initramfs and one boot
/// entry.
struct GrubDisk {
    disk: PathBuf,
    kernel_len: u64,
    core_len: u64,
}

/// MiB: where the PReP partition starts, its size, the ext4 partition's size.
const GRUB_PREP_AT: u64 = 1;
const GRUB_PREP_MIB: u64 = 4;
const GRUB_FS_MIB: u64 = 100;

fn sh(what: &str, c: &mut std::process::Command) -> Result {
    let out = c.output().map_err(|e| format!("{what}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{what}: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(())
}

fn grub_disk(linux: &vioboot_harness::DebianLinux, work: &Path) -> Result<GrubDisk> {
    crate::ensure_apt(
        &["grub-common", "e2fsprogs", "fdisk"],
        "the benchmark's GRUB peer (grub-mkimage, mkfs.ext4, sfdisk)",
    )?;
    let modules = peer_tools()?.join("usr/lib/grub/powerpc-ieee1275");
    let cfg = work.join("grub-embed.cfg");
    // The kernel is loaded only (never booted): GRUB's time is the `linux` command's.
    std::fs::write(
        &cfg,
        format!(
            "search --no-floppy --file --set=root /vmlinux\necho {GRUB_ROOT} $root\n\
             linux /vmlinux console=hvc0\necho {GRUB_LOADED}\nhalt\n"
        ),
    )
    .map_err(|e| e.to_string())?;
    let core = work.join("grub-core.elf");
    sh(
        "grub-mkimage",
        std::process::Command::new("grub-mkimage")
            .args(["-O", "powerpc-ieee1275", "-d"])
            .arg(&modules)
            .arg("-o")
            .arg(&core)
            .arg("-c")
            .arg(&cfg)
            .args(["-p", "/boot/grub"])
            .args([
                "normal",
                "echo",
                "search",
                "search_fs_file",
                "ext2",
                "part_msdos",
                "part_gpt",
                "linux",
                "halt",
            ]),
    )?;
    let content = work.join("ext4-content");
    let _ = std::fs::remove_dir_all(&content);
    std::fs::create_dir_all(content.join("loader/entries")).map_err(|e| e.to_string())?;
    std::fs::copy(&linux.vmlinux, content.join("vmlinux")).map_err(|e| e.to_string())?;
    let busybox = std::fs::read(&linux.busybox).map_err(|e| e.to_string())?;
    std::fs::write(
        content.join("initrd.img"),
        vioboot_harness::initramfs(&busybox),
    )
    .map_err(|e| e.to_string())?;
    std::fs::write(
        content.join("loader/entries/debian.conf"),
        "title Debian\nlinux /vmlinux\ninitrd /initrd.img\noptions console=hvc0\n",
    )
    .map_err(|e| e.to_string())?;
    let disk = work.join("ext4-boot.img");
    let _ = std::fs::remove_file(&disk);
    let f = std::fs::File::create(&disk).map_err(|e| e.to_string())?;
    f.set_len((GRUB_PREP_AT + GRUB_PREP_MIB + GRUB_FS_MIB + 1) << 20)
        .map_err(|e| e.to_string())?;
    drop(f);
    let fs_at = GRUB_PREP_AT + GRUB_PREP_MIB;
    let table = format!(
        "label: dos\nstart={}, size={}, type=41, bootable\nstart={}, size={}, type=83\n",
        GRUB_PREP_AT << 11,
        GRUB_PREP_MIB << 11,
        fs_at << 11,
        GRUB_FS_MIB << 11
    );
    let mut c = std::process::Command::new("sfdisk");
    c.arg("-q").arg(&disk).stdin(std::process::Stdio::piped());
    let mut child = c.spawn().map_err(|e| format!("sfdisk: {e}"))?;
    if let Some(mut i) = child.stdin.take() {
        use std::io::Write;
        i.write_all(table.as_bytes()).map_err(|e| e.to_string())?;
    }
    if !child.wait().map_err(|e| e.to_string())?.success() {
        return Err("sfdisk failed".into());
    }
    sh(
        "mkfs.ext4",
        std::process::Command::new("mkfs.ext4")
            .args(["-q", "-F", "-b", "4096", "-d"])
            .arg(&content)
            .args(["-E", &format!("offset={}", fs_at << 20)])
            .arg(&disk)
            .arg(format!("{}k", GRUB_FS_MIB << 10)),
    )?;
    let core_bytes = std::fs::read(&core).map_err(|e| e.to_string())?;
    if core_bytes.len() as u64 > GRUB_PREP_MIB << 20 {
        return Err("GRUB's core.elf does not fit its PReP partition".into());
    }
    {
        use std::io::{Seek, SeekFrom, Write};
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open(&disk)
            .map_err(|e| e.to_string())?;
        f.seek(SeekFrom::Start(GRUB_PREP_AT << 20))
            .and_then(|_| f.write_all(&core_bytes))
            .map_err(|e| e.to_string())?;
    }
    Ok(GrubDisk {
        disk,
        kernel_len: std::fs::metadata(&linux.vmlinux)
            .map_err(|e| e.to_string())?
            .len(),
        core_len: core_bytes.len() as u64,
    })
}

/// SLOF boots GRUB from the disk's PReP partition; GRUB finds the ext4 partition and loads the
/// kernel. MB/s = kernel bytes / time between the two marker lines as they reach the host.
fn grub_kernel_load(vio: &VioSetup, g: &GrubDisk) -> Result<f64> {
    let q = Qemu {
        binary: vio.qemu.clone(),
        firmware_boots_disk: true,
        extra: pci_disk_args(&g.disk, false),
        ..Qemu::new(Boot::Slof, root().join("target/image"))
    };
    let start = Instant::now();
    let (mut found, mut loaded) = (None, None);
    let r = vioboot_harness::run_watch(&q, Duration::from_secs(300), |l| {
        if l.contains(GRUB_ROOT) && found.is_none() {
            found = Some(start.elapsed());
        }
        if l.contains(GRUB_LOADED) && loaded.is_none() {
            loaded = Some(start.elapsed());
        }
    })
    .map_err(|e| e.to_string())?;
    match (found, loaded) {
        (Some(a), Some(b)) if b > a => {
            Ok(g.kernel_len as f64 / (1 << 20) as f64 / (b - a).as_secs_f64())
        }
        _ => Err(format!("GRUB peer: no kernel loaded:\n{}", r.output)),
    }
}

/// The block device kinds a disk can reach vioboot through.
#[derive(Clone, Copy, PartialEq, Eq)]
enum DiskKind {
    VirtioBlkPci,
    Vscsi,
    VirtioVio,
}

impl DiskKind {
    fn label(self) -> &'static str {
        match self {
            DiskKind::VirtioBlkPci => "virtio-blk-pci",
            DiskKind::Vscsi => "v-scsi (spapr-vscsi, scsi-hd)",
            DiskKind::VirtioVio => "virtio-vio (VIO server)",
        }
    }

    fn key(self) -> &'static str {
        match self {
            DiskKind::VirtioBlkPci => "pci",
            DiskKind::Vscsi => "vscsi",
            DiskKind::VirtioVio => "vio",
        }
    }
}

/// vioboot boots the same disk's entry under SLOF, the disk reached as `kind`; kernel load
/// MB/s measured in the guest.
fn vioboot_ext4_load(dir: &Path, vio: &VioSetup, g: &GrubDisk, kind: DiskKind) -> Result<f64> {
    let mut server = None;
    let extra = match kind {
        DiskKind::VirtioBlkPci => pci_disk_args(&g.disk, false),
        DiskKind::Vscsi => vec![
            "-device".into(),
            "spapr-vscsi,id=scsi0,reg=0x71000020".into(),
            "-drive".into(),
            format!(
                "file={},if=none,id=d0,format=raw,readonly=on",
                g.disk.display()
            ),
            "-device".into(),
            "scsi-hd,drive=d0,bus=scsi0.0,channel=0,scsi-id=0,lun=0".into(),
        ],
        DiskKind::VirtioVio => {
            let socket = dir.join("ext4-bench.sock");
            let disk = g.disk.display().to_string();
            server = Some(
                vioboot_harness::VioServer::start(
                    &vio.server,
                    &socket,
                    &["--blk", &disk, "--serial", "ext4-bench"],
                    &socket.with_extension("log"),
                )
                .map_err(|e| e.to_string())?,
            );
            vioboot_harness::virtio_vio_device("e0", &socket, 0x7100_0010)
        }
    };
    let q = Qemu {
        binary: vio.qemu.clone(),
        extra,
        ..Qemu::new(Boot::Slof, dir).append("vioboot.mode=boot vioboot.timeout=0")
    };
    let r = vioboot_harness::run(&q, Duration::from_secs(300)).map_err(|e| e.to_string());
    drop(server);
    let r = r?;
    let mbps = r.output.lines().find_map(|l| {
        l.strip_prefix("# bench kernel-load-MBps ")?
            .trim()
            .parse()
            .ok()
    });
    match mbps {
        Some(m) if r.output.contains(vioboot_harness::INITRAMFS_MARKER) => Ok(m),
        _ => Err(format!(
            "vioboot from ext4 on {}: no boot:\n{}",
            kind.label(),
            r.output
        )),
    }
}

/// vioboot alone, no devices, entered by `boot`, on `cpus` vCPUs (one core each).
struct EntryRun {
    /// QEMU start to power-off.
    wall_ms: f64,
    /// QEMU start to vioboot's first line: the firmware's (and QEMU's) time before vioboot.
    first_line_ms: Option<f64>,
    /// vioboot's own time, entry to verdict by the guest's timebase (`# phase total`).
    own_ms: Option<f64>,
}

fn vioboot_entry(dir: &Path, vio: &VioSetup, boot: Boot, cpus: u32) -> Result<EntryRun> {
    let mut q = Qemu {
        binary: vio.qemu.clone(),
        ..Qemu::new(boot, dir)
    };
    if cpus > 1 {
        q = q.append("vioboot.checks=all");
        q.extra
            .extend(["-smp".into(), format!("{cpus},cores={cpus},threads=1")]);
    }
    let start = Instant::now();
    let mut first = None;
    let r = vioboot_harness::run_watch(&q, Duration::from_secs(120), |l| {
        if first.is_none() && l.starts_with("# vioboot ") {
            first = Some(start.elapsed().as_secs_f64() * 1000.0);
        }
    })
    .map_err(|e| e.to_string())?;
    passed(&format!("vioboot, {}", boot.name()), &r)?;
    // With several vCPUs the figure counts only if every secondary reported in.
    let reported = r
        .output
        .lines()
        .filter(|l| l.starts_with("ok ") && l.contains(" - cpu 0x"))
        .count();
    if cpus > 1 && reported != cpus as usize - 1 {
        return Err(format!(
            "vioboot, {}, {cpus} vCPUs: {reported} secondary vCPUs reported in:\n{}",
            boot.name(),
            r.output
        ));
    }
    let own = r.output.lines().find_map(|l| {
        l.strip_prefix("# phase total: ")?
            .strip_suffix(" us")?
            .parse::<f64>()
            .ok()
    });
    Ok(EntryRun {
        wall_ms: r.wall.as_secs_f64() * 1000.0,
        first_line_ms: first,
        own_ms: own.map(|us| us / 1000.0),
    })
}

fn print_table(
    t: &Table,
    kinds: &BTreeMap<String, BTreeMap<String, BTreeMap<String, f64>>>,
    runs: usize,
) {
    println!(
        "vioboot and its peers, {runs} interleaved round(s): median (min..max); ratio = vioboot / peer"
    );
    println!();
    println!("| figure | unit | vioboot | peer | ratio |");
    println!("|---|---|---|---|---|");
    for r in &t.rows {
        let peer = if r.peer.is_empty() {
            "-".to_string()
        } else {
            format!("{}: {}", r.peer_name, cell(&r.peer))
        };
        let ratio = ratio(r).map_or("-".into(), |x| format!("{x:.2}"));
        println!(
            "| {} | {} | {} | {peer} | {ratio} |",
            r.label,
            r.unit,
            cell(&r.vioboot)
        );
    }
    println!();
    println!("hcalls per request by kind (last round; Linux: TCE hcalls only, from QEMU's trace):");
    for (who, phases) in kinds {
        println!("  {who}:");
        for (phase, m) in phases {
            let list: Vec<String> = m
                .iter()
                .filter(|(k, _)| *k != "requests")
                .map(|(k, v)| format!("{k} {v:.2}"))
                .collect();
            println!(
                "    {phase:<18} {:>5} requests  {}",
                m.get("requests").copied().unwrap_or(0.0),
                if list.is_empty() {
                    "-".into()
                } else {
                    list.join(", ")
                }
            );
        }
    }
}

fn json_str(s: &str) -> String {
    let mut o = String::from('"');
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            c if (c as u32) < 0x20 => o.push_str(&format!("\\u{:04x}", c as u32)),
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

fn json_num(x: f64) -> String {
    if x.is_finite() {
        format!("{x}")
    } else {
        "null".into()
    }
}

fn json_series(v: &[f64]) -> String {
    match hb::median_spread(v) {
        None => "null".into(),
        Some((m, lo, hi)) => format!(
            "{{\"median\":{},\"min\":{},\"max\":{},\"values\":[{}]}}",
            json_num(m),
            json_num(lo),
            json_num(hi),
            v.iter().map(|x| json_num(*x)).collect::<Vec<_>>().join(",")
        ),
    }
}

fn print_json(
    t: &Table,
    kinds: &BTreeMap<String, BTreeMap<String, BTreeMap<String, f64>>>,
    runs: usize,
) {
    let rows: Vec<String> = t
        .rows
        .iter()
        .map(|r| {
            format!(
                "{{\"key\":{},\"figure\":{},\"unit\":{},\"peer_name\":{},\"vioboot\":{},\"peer\":{},\"ratio\":{}}}",
                json_str(&r.key),
                json_str(&r.label),
                json_str(r.unit),
                json_str(r.peer_name),
                json_series(&r.vioboot),
                json_series(&r.peer),
                ratio(r).map_or("null".into(), json_num)
            )
        })
        .collect();
    let kinds: Vec<String> = kinds
        .iter()
        .map(|(who, phases)| {
            let ph: Vec<String> = phases
                .iter()
                .map(|(p, m)| {
                    let kv: Vec<String> = m
                        .iter()
                        .map(|(k, v)| format!("{}:{}", json_str(k), json_num(*v)))
                        .collect();
                    format!("{}:{{{}}}", json_str(p), kv.join(","))
                })
                .collect();
            format!("{}:{{{}}}", json_str(who), ph.join(","))
        })
        .collect();
    println!(
        "{{\"runs\":{runs},\"rows\":[{}],\"hcalls_per_request\":{{{}}}}}",
        rows.join(","),
        kinds.join(",")
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_collect_rounds_and_give_ratios_of_medians() {
        let mut t = Table::default();
        for (v, p) in [(10.0, 5.0), (30.0, 5.0), (20.0, 10.0)] {
            t.add("k", "figure", "MB/s", "peer", Some(v), Some(p));
        }
        t.add("only", "vioboot only", "ms", "", Some(1.0), None);
        assert_eq!(t.rows.len(), 2);
        assert_eq!(t.rows[0].vioboot, [10.0, 30.0, 20.0]);
        assert_eq!(ratio(&t.rows[0]), Some(4.0));
        assert_eq!(ratio(&t.rows[1]), None);
        assert_eq!(cell(&t.rows[0].vioboot), "20.0 (10.0..30.0)");
        assert_eq!(cell(&t.rows[1].vioboot), "1.00");
        assert_eq!(cell(&[]), "-");
    }

    #[test]
    fn json_strings_and_numbers_are_escaped() {
        assert_eq!(json_str("a \"b\" \\ c\n"), "\"a \\\"b\\\" \\\\ c\\u000a\"");
        assert_eq!(json_num(f64::NAN), "null");
        assert_eq!(json_num(1.5), "1.5");
        assert_eq!(json_series(&[]), "null");
        assert_eq!(
            json_series(&[2.0, 1.0, 3.0]),
            "{\"median\":2,\"min\":1,\"max\":3,\"values\":[2,1,3]}"
        );
    }
}
