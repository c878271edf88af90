//! PCI end to end: vioboot in QEMU (Debian's) with QEMU's own devices on the pseries host
//! bridge: a pci-bridge with a transitional virtio-blk-pci and a vhost-user-fs-pci (served by
//! Debian's virtiofsd) behind it, a modern-only virtio-blk-pci with `iommu_platform=on` and a
//! virtio-net-pci on the root bus. Under SLOF (firmware's BAR addresses kept), VOF
//! and -bios (vioboot assigns them), every function is listed with its BARs and
//! capabilities, and each virtio device's structures are found and its common configuration
//! read through H_LOGICAL_CI_LOAD/STORE. Each virtio-blk-pci disk (a pattern disk) then gets
//! the same block checks as a virtio-vio disk through the same driver: with real addresses
//! (iommu_platform off) and with IOBAs in the host bridge's TCE window (on), every buffer
//! unmapped after its request, and a shutdown that resets the device. The virtio-fs share gets
//! the virtio-vio share's checks through the same driver; the network device is identified
//! (MAC, link) and left alone. Debian's kernel boots from a share on vhost-user-fs-pci, picked
//! by `vioboot.fs-tag`; a virtiofsd stopped or killed mid-run, and a virtio-blk-pci disk
//! throttled until it never completes in time, are named failures within
//! `vioboot.vio-timeout`, never a hang.
//!
//! Debian's QEMU is used: the project's own build has no vhost-user. Needs the image (`cargo
//! xtask image`; `cargo xtask test` builds it) and virtiofsd (qemu-system-common).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use vioboot_harness::{Boot, Qemu, Run, Virtiofsd, INITRAMFS_MARKER};

const TIMEOUT: Duration = Duration::from_secs(120);

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn scratch(name: &str) -> PathBuf {
    vioboot_harness::scratch(&root(), "pci", name)
}

fn qemu(boot: Boot) -> Qemu {
    let dir = vioboot_harness::image_dir(&root());
    assert!(
        dir.join("vioboot.elf").exists(),
        "no image: run `cargo xtask image` first"
    );
    Qemu::new(boot, dir)
}

/// The MAC the virtio-net-pci device is given.
const MAC: &str = "52:54:00:12:34:56";

/// A bridge with a transitional virtio-blk-pci at 01:03.0 and a vhost-user-fs-pci at 01:04.0
/// (tag "pcishare", the test share), a modern-only virtio-blk-pci with iommu_platform=on at
/// 00:01.0, and a virtio-net-pci at 00:02.0 (Debian has no efi-virtio.rom: `romfile=`).
fn devices(q: &mut Qemu, dir: &Path) -> Virtiofsd {
    let (a, b) = (dir.join("a.img"), dir.join("b.img"));
    vioboot_harness::pattern_disk(&a, 8).expect("disk a");
    vioboot_harness::pattern_disk(&b, 8).expect("disk b");
    for arg in [
        "-device".into(),
        "pci-bridge,id=br1,chassis_nr=1,addr=0".into(),
        "-drive".into(),
        format!("file={},if=none,id=d0,format=raw", a.display()),
        "-device".into(),
        "virtio-blk-pci,drive=d0,bus=br1,addr=3".into(),
        "-drive".into(),
        format!("file={},if=none,id=d1,format=raw", b.display()),
        "-device".into(),
        "virtio-blk-pci,drive=d1,addr=1,disable-legacy=on,iommu_platform=on".into(),
        "-device".into(),
        format!("virtio-net-pci,addr=2,romfile=,mac={MAC}"),
    ] {
        q.extra.push(arg);
    }
    let share = dir.join("share");
    vioboot_harness::test_share(&share, 16).expect("share");
    let fsd = Virtiofsd::start(dir, "fs0", &share).expect("virtiofsd");
    q.extra
        .extend(fsd.qemu_args("fs0", "pcishare", "bus=br1,addr=4"));
    q.shared_memory = true;
    fsd
}

/// The descriptions of every line named `check` (several `file` lines, say).
fn lines(run: &Run, check: &str) -> Vec<String> {
    run.report()
        .lines
        .iter()
        .filter(|l| l.description.starts_with(&format!("{check}:")))
        .map(|l| l.description.clone())
        .collect()
}

/// The share's checks passed on `d`: the same as on virtio-vio (tests/vio.rs).
fn share_checked(run: &Run, d: &str) {
    run.assert_lines(&[
        (d, "1af4:105a class 018000"),
        (&format!("{d} virtio"), "virtio file system (id 26)"),
        (
            &format!("{d} features"),
            "no VIRTIO_F_ACCESS_PLATFORM: real addresses",
        ),
        (&format!("{d} mount"), "tag \"pcishare\", FUSE 7."),
        (&format!("{d} list"), "entries"),
        (&format!("{d} eloop"), "ELOOP"),
        (&format!("{d} unmount"), "DESTROY sent"),
        (&format!("{d} shutdown"), "device reset, bus mastering off"),
    ]);
    let files = lines(run, &format!("{d} file"));
    for want in [
        "/hello.txt",
        "/big.bin: 16777216 bytes, sha256 matches",
        "/link",
        "/abslink",
        "leaf.txt",
    ] {
        assert!(
            files.iter().any(|l| l.contains(want)),
            "no passing file check for {want}:\n{}",
            run.output
        );
    }
    let dirs = lines(run, &format!("{d} dir"));
    assert!(
        dirs.iter().any(|l| l.contains("/many: all 10000 entries")),
        "{}",
        run.output
    );
    assert_eq!(
        lines(run, &format!("{d} enoent")).len(),
        2,
        "{}",
        run.output
    );
}

fn functions(boot: Boot, who: &str) {
    let dir = scratch(boot.name());
    let mut q = qemu(boot);
    let fsd = devices(&mut q, &dir);
    let run = vioboot_harness::run(&q, TIMEOUT).expect("run QEMU");
    drop(fsd);
    run.assert_pass();
    share_checked(&run, "pci 0000:01:04.0");
    run.assert_lines(&[
        ("pci 0000:00:02.0", "1af4:1000 class 020000 (network)"),
        ("pci 0000:00:02.0 virtio", "virtio network (id 1)"),
        (
            "pci 0000:00:02.0 net",
            &format!(
                "MAC {MAC}, link up (status 0x1); not driven: device reset, bus mastering off"
            ),
        ),
    ]);
    run.assert_lines(&[
        ("pci@800000020000000", "5 function(s) on 2 bus(es)"),
        ("pci@800000020000000", who),
        ("pci@800000020000000", "DMA window liobn 0x80000000"),
        ("pci 0000:00:00.0", "1b36:0001 class 060400 (bridge)"),
        ("pci 0000:00:00.0", "PCI-to-PCI bridge to bus 01"),
        ("pci 0000:01:03.0", "1af4:1001 class 010000 (mass storage)"),
        ("pci 0000:01:03.0 bars", "BAR4 mem64 pref 0x4000 bytes at"),
        ("pci 0000:01:03.0 capabilities", "0x98 MSI-X, 0x84 vendor"),
        (
            "pci 0000:01:03.0 virtio",
            "virtio block (id 2): common BAR4+0x0",
        ),
        (
            "pci 0000:01:03.0 virtio",
            "notify BAR4+0x3000..+0x1000 (x4)",
        ),
        ("pci 0000:01:03.0 virtio", "1 queue(s)"),
        ("pci 0000:00:01.0", "1af4:1042 class 010000"),
        ("pci 0000:00:01.0 virtio", "virtio block (id 2)"),
        // The same block checks as on virtio-vio, over virtio-pci.
        (
            "pci 0000:01:03.0 features",
            "no VIRTIO_F_ACCESS_PLATFORM: real addresses",
        ),
        (
            "pci 0000:00:01.0 features",
            "VIRTIO_F_ACCESS_PLATFORM accepted: IOBAs in TCE window liobn 0x80000000",
        ),
        (
            "pci 0000:01:03.0 capacity",
            "16384 sectors (8 MiB), read-write",
        ),
        (
            "pci 0000:00:01.0 capacity",
            "16384 sectors (8 MiB), read-write",
        ),
        ("pci 0000:01:03.0 read", "test pattern"),
        ("pci 0000:00:01.0 read", "test pattern"),
        ("pci 0000:01:03.0 write", ""),
        ("pci 0000:00:01.0 write", ""),
        ("pci 0000:00:01.0 flush", "completed"),
        (
            "pci 0000:00:01.0 unmapped",
            "no buffer left in the TCE window",
        ),
        (
            "pci 0000:00:01.0 shutdown",
            "device reset, bus mastering off",
        ),
        (
            "pci 0000:01:03.0 shutdown",
            "device reset, bus mastering off",
        ),
    ]);
    // The modern device with iommu_platform=on offers VIRTIO_F_ACCESS_PLATFORM (bit 33), the
    // transitional one does not: both read through MMIO, in the right byte order.
    let features = |check: &str| {
        let l = run.line(check);
        let hex = l
            .split("device features 0x")
            .nth(1)
            .and_then(|t| t.split(',').next())
            .unwrap_or_else(|| panic!("no features in `{l}`"));
        u64::from_str_radix(hex, 16).expect("hex features")
    };
    let (legacy, modern) = (
        features("pci 0000:01:03.0 virtio"),
        features("pci 0000:00:01.0 virtio"),
    );
    assert_ne!(legacy & 1 << 32, 0, "VERSION_1 offered: {legacy:#x}");
    assert_eq!(legacy & 1 << 33, 0, "{legacy:#x}");
    assert_ne!(modern & 1 << 33, 0, "ACCESS_PLATFORM offered: {modern:#x}");
}

#[test]
fn functions_under_slof_keep_firmware_addresses() {
    functions(Boot::Slof, "as firmware assigned them");
}

#[test]
fn functions_as_bios_get_addresses_from_vioboot() {
    functions(Boot::Bios, "assigned by vioboot");
}

#[test]
fn functions_under_vof_get_addresses_from_vioboot() {
    functions(Boot::Vof, "assigned by vioboot");
}

#[test]
fn no_pci_function_adds_one_comment() {
    let run = vioboot_harness::run(&qemu(Boot::Bios), TIMEOUT).expect("run QEMU");
    run.assert_pass();
    assert!(
        run.output
            .contains("# pci: no function behind 1 host bridge(s)"),
        "{}",
        run.output
    );
    assert!(
        !run.report()
            .lines
            .iter()
            .any(|l| l.description.starts_with("pci")),
        "{}",
        run.output
    );
}

/// Debian's kernel and busybox (host/linux/fetch.sh, cached).
fn linux() -> vioboot_harness::DebianLinux {
    vioboot_harness::debian_linux(&root()).expect("Debian's kernel and busybox")
}

/// A boot entry for Debian's kernel on a boot share, with `options`.
fn entry(l: &vioboot_harness::DebianLinux, options: &str) -> String {
    let sha = vioboot_harness::sha256_file(&l.vmlinux).expect("sha256");
    format!(
        "title Debian\nlinux /vmlinux\ninitrd /initrd.img\noptions console=hvc0 {options}\nsha256 {sha}\n"
    )
}

/// Two boot shares on vhost-user-fs-pci, "a" and "b", each with one entry; `vioboot.fs-tag=b`
/// picks the second. The kernel's initramfs reports the command line of b's entry; `handoff`
/// is how vioboot entered it.
fn boot_from_pci_share(boot: Boot, handoff: &str) {
    let dir = scratch(&format!("boot-{}", boot.name()));
    let l = linux();
    let mut daemons = Vec::new();
    let mut q = qemu(boot).append("vioboot.mode=boot vioboot.fs-tag=b");
    for (tag, addr) in [("a", 3), ("b", 4)] {
        let share = dir.join(format!("share-{tag}"));
        vioboot_harness::boot_share(
            &share,
            &l,
            &[("debian", entry(&l, &format!("pick={tag}")))],
            Some("timeout 0\n"),
        )
        .expect("boot share");
        let fsd = Virtiofsd::start(&dir, &format!("fs-{tag}"), &share).expect("virtiofsd");
        q.extra
            .extend(fsd.qemu_args(&format!("fs{tag}"), tag, &format!("addr={addr}")));
        daemons.push(fsd);
    }
    q.shared_memory = true;
    let run = vioboot_harness::run(&q, TIMEOUT).expect("run QEMU");
    drop(daemons);
    // vioboot's report ends with its verdict line before it enters the kernel.
    assert_eq!(run.report().verdict, Some(true), "{}", run.output);
    assert!(
        run.output.contains("tag \"b\""),
        "the share tagged b was not the source:\n{}",
        run.output
    );
    assert!(run.output.contains("sha256 verified"), "{}", run.output);
    assert!(
        run.output.contains(&format!("boot handoff: {handoff}")),
        "{}",
        run.output
    );
    let marker = run
        .output
        .lines()
        .find(|l| l.contains(INITRAMFS_MARKER))
        .unwrap_or_else(|| panic!("the initramfs never ran:\n{}", run.output));
    assert!(
        marker.contains("console=hvc0 pick=b"),
        "{marker}\n{}",
        run.output
    );
    assert_eq!(run.exit_code(), Some(0), "{}", run.output);
}

#[test]
fn boots_linux_from_a_pci_share_with_a_flattened_tree() {
    boot_from_pci_share(Boot::Bios, "flattened tree");
}

#[test]
fn boots_linux_from_a_pci_share_through_open_firmware() {
    boot_from_pci_share(Boot::Slof, "Open Firmware");
}

/// A share whose virtiofsd is signalled with `signal` once vioboot reports the mount: the next
/// request gets no answer, and after `vioboot.vio-timeout` (3 s) the device is given up with
/// a failure naming the device, the queue and the bound; every later request fails at once;
/// the run ends with a FAIL verdict, never a hang. A stopped daemon is killed once the failure
/// is reported (QEMU's reset of a vhost-user device waits for its daemon).
fn silent_daemon(name: &str, signal: &'static str) -> (Run, Duration) {
    let dir = scratch(name);
    let share = dir.join("share");
    vioboot_harness::test_share(&share, 16).expect("share");
    let fsd = Virtiofsd::start(&dir, "fs0", &share).expect("virtiofsd");
    let mut q = qemu(Boot::Bios).append("vioboot.vio-timeout=3000");
    q.extra.extend(fsd.qemu_args("fs0", "pcishare", "addr=5"));
    q.shared_memory = true;
    let mut silenced: Option<Instant> = None;
    let mut failed: Option<Instant> = None;
    let run = vioboot_harness::run_watch(&q, TIMEOUT, |l| {
        if silenced.is_none() && l.contains("pci 0000:00:05.0 mount:") {
            fsd.signal(signal);
            silenced = Some(Instant::now());
        }
        if failed.is_none() && l.contains("no completion within") {
            failed = Some(Instant::now());
            fsd.signal("KILL");
        }
    })
    .expect("run QEMU");
    let (Some(s), Some(f)) = (silenced, failed) else {
        panic!("no mount, or no failure:\n{}\n{}", run.output, fsd.log());
    };
    assert!(!run.timed_out(), "QEMU hung:\n{}", run.output);
    let r = run.report();
    assert!(r.is_complete(), "incomplete report:\n{}", run.output);
    assert_eq!(r.verdict, Some(false), "{}", run.output);
    assert_eq!(run.exit_code(), Some(1), "{}", run.output);
    let failures = r.failures();
    let first = failures.first().expect("a failing check");
    // Whichever request was in flight: a FORGET on queue 0, or one or several on queue 1.
    let d = &first.description;
    assert!(
        d.starts_with("pci 0000:00:05.0 ")
            && d.contains("pci 0000:00:05.0: queue ")
            && d.contains(": no completion within 3000 ms (")
            && d.ends_with("request(s) in flight): the device is given up"),
        "{first:?}\n{}",
        run.output
    );
    assert!(
        failures[1..].iter().all(|l| l
            .description
            .contains("the device was given up after leaving a request uncompleted")),
        "{}",
        run.output
    );
    assert!(
        run.output
            .lines()
            .any(|l| l.starts_with("# pci 0000:00:05.0 queue ")
                && l.ends_with(": still waiting, 1 s of 3 s")),
        "{}",
        run.output
    );
    (run, f - s)
}

#[test]
fn a_stopped_virtiofsd_is_a_named_failure_within_the_bound() {
    let (run, waited) = silent_daemon("stopped", "STOP");
    // The bound is 3 s; a loaded machine may add some, a hang would add the run's 120 s.
    assert!(
        waited < Duration::from_secs(30),
        "{waited:?}\n{}",
        run.output
    );
    run.assert_lines(&[(
        "pci 0000:00:05.0 shutdown",
        "device reset, bus mastering off",
    )]);
}

#[test]
fn a_killed_virtiofsd_is_a_named_failure_within_the_bound() {
    let (run, waited) = silent_daemon("killed", "KILL");
    assert!(
        waited < Duration::from_secs(30),
        "{waited:?}\n{}",
        run.output
    );
}

/// A virtio-blk-pci disk throttled to 1 byte/s (QEMU's `throttling.bps-total`) never completes
/// a read within `vioboot.vio-timeout` (3 s): virtio-drivers would spin on its used ring for
/// ever, so vioboot stops with a panic naming the device, the queue and the bound (os-term,
/// exit 1). The disk translates through the TCE window (iommu_platform=on), so the wait finds
/// its ring through H_GET_TCE.
#[test]
fn a_blk_pci_request_that_never_completes_stops_vioboot_by_name() {
    let dir = scratch("blk-stall");
    let disk = dir.join("slow.img");
    vioboot_harness::pattern_disk(&disk, 8).expect("disk");
    let mut q = qemu(Boot::Bios).append("vioboot.vio-timeout=3000");
    q.extra.extend([
        "-drive".into(),
        format!(
            "file={},if=none,id=d0,format=raw,throttling.bps-total=1",
            disk.display()
        ),
        "-device".into(),
        "virtio-blk-pci,drive=d0,addr=6,disable-legacy=on,iommu_platform=on".into(),
    ]);
    let run = vioboot_harness::run(&q, TIMEOUT).expect("run QEMU");
    assert!(!run.timed_out(), "QEMU hung:\n{}", run.output);
    let r = run.report();
    assert!(r.is_complete(), "incomplete report:\n{}", run.output);
    assert_eq!(r.verdict, Some(false), "{}", run.output);
    assert_eq!(run.exit_code(), Some(1), "{}", run.output);
    run.assert_lines(&[
        (
            "pci 0000:00:06.0 features",
            "VIRTIO_F_ACCESS_PLATFORM accepted",
        ),
        (
            "panic",
            "pci 0000:00:06.0: queue 0: no completion within 3000 ms (1 request(s) in flight)",
        ),
    ]);
}
