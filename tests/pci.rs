//! PCI end to end: vioboot in QEMU (Debian's) with QEMU's own devices on the pseries host
//! bridge: a pci-bridge with a transitional virtio-blk-pci behind it, and a modern-only one
//! with `iommu_platform=on` on the root bus. Under SLOF (firmware's BAR addresses kept), VOF
//! and -bios (vioboot assigns them), every function is listed with its BARs and
//! capabilities, and each virtio device's structures are found and its common configuration
//! read through H_LOGICAL_CI_LOAD/STORE. Each virtio-blk-pci disk (a pattern disk) then gets
//! the same block checks as a virtio-vio disk through the same driver: with real addresses
//! (iommu_platform off) and with IOBAs in the host bridge's TCE window (on), every buffer
//! unmapped after its request, and a shutdown that resets the device.
//!
//! Needs the image (`cargo xtask image`; `cargo xtask test` builds it).

use std::path::PathBuf;
use std::time::Duration;
use vioboot_harness::{Boot, Qemu};

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

/// A bridge with a transitional virtio-blk-pci at 01:03.0, and a modern-only one with
/// iommu_platform=on at 00:01.0.
fn devices(q: &mut Qemu, dir: &std::path::Path) {
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
    ] {
        q.extra.push(arg);
    }
}

fn functions(boot: Boot, who: &str) {
    let dir = scratch(boot.name());
    let mut q = qemu(boot);
    devices(&mut q, &dir);
    let run = vioboot_harness::run(&q, TIMEOUT).expect("run QEMU");
    run.assert_pass();
    run.assert_lines(&[
        ("pci@800000020000000", "3 function(s) on 2 bus(es)"),
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
