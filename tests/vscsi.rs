//! v-scsi end to end: vioboot in QEMU with QEMU's own spapr-vscsi adapters and scsi-hd /
//! scsi-cd devices: two adapters, several targets and LUNs, 512- and 4096-byte logical blocks,
//! a sparse disk larger than 2 TiB (READ CAPACITY(16), READ/WRITE(16)), a read-only disk and
//! an empty CD, under SLOF and as -bios.
//!
//! Needs the image (`cargo xtask image`) and the QEMU built by `host/qemu/build.sh` (it has
//! spapr-vscsi, as Debian's does); `cargo xtask test` prepares both.

use std::path::{Path, PathBuf};
use std::time::Duration;
use vioboot_harness::{Boot, Qemu, ScsiAddress};

const TIMEOUT: Duration = Duration::from_secs(240);
/// Bytes of the sparse disk: 2 TiB and 1 MiB, so its last blocks lie past 2^32 sectors.
const BIG: u64 = (2 << 40) + (1 << 20);

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn scratch(name: &str) -> PathBuf {
    vioboot_harness::scratch(&root(), "vscsi", name)
}

fn qemu(boot: Boot) -> Qemu {
    let dir = vioboot_harness::image_dir(&root());
    assert!(
        dir.join("vioboot.elf").exists(),
        "no image: run `cargo xtask image` first"
    );
    let mut q = Qemu::new(boot, dir);
    q.binary = vioboot_harness::built_qemu(&root()).expect("QEMU with spapr-vscsi");
    q
}

fn at(channel: u32, target: u32, lun: u32) -> ScsiAddress {
    ScsiAddress {
        channel,
        target,
        lun,
    }
}

#[test]
fn two_adapters_many_luns_under_slof() {
    let dir = scratch("slof");
    let d = |n: &str| dir.join(n);
    vioboot_harness::pattern_disk(&d("a0.img"), 8).expect("disk");
    vioboot_harness::pattern_disk(&d("a1.img"), 8).expect("disk");
    vioboot_harness::pattern_disk(&d("a3.img"), 4).expect("disk");
    vioboot_harness::sparse_pattern_disk(&d("big.img"), BIG).expect("sparse disk");
    let mut q = qemu(Boot::Slof);
    let args = [
        vioboot_harness::vscsi_adapter("s0", 0x7100_0020),
        vioboot_harness::scsi_disk("s0", "a0", &d("a0.img"), at(0, 0, 0), "serial=vs-a0", false),
        vioboot_harness::scsi_disk(
            "s0",
            "a1",
            &d("a1.img"),
            at(0, 1, 0),
            "logical_block_size=4096,physical_block_size=4096",
            false,
        ),
        vioboot_harness::scsi_disk("s0", "a3", &d("a3.img"), at(0, 0, 3), "", true),
        vioboot_harness::vscsi_adapter("s1", 0x7100_0021),
        vioboot_harness::scsi_disk("s1", "big", &d("big.img"), at(0, 2, 0), "", false),
        vioboot_harness::scsi_cd_empty("s1", "cd", at(0, 3, 0)),
    ];
    q.extra = args.concat();
    let run = vioboot_harness::run(&q, TIMEOUT).expect("QEMU runs");
    run.assert_pass();
    let big_sectors = BIG / 512;
    run.assert_lines(&[
        ("v-scsi@71000020", "SRP login"),
        ("v-scsi@71000020", "TCE bypass off"),
        ("v-scsi@71000020 adapter", "SRP version 16.a"),
        ("v-scsi@71000020 adapter", "max transfer 2048 KiB"),
        ("v-scsi@71000020 login", "request limit 22"),
        ("v-scsi@71000020 luns", "3 LUN(s)"),
        (
            "v-scsi@71000020 luns",
            "0:0:0 disk \"QEMU QEMU HARDDISK\" 16384 x 512",
        ),
        ("v-scsi@71000020 luns", "0:0:3 disk"),
        (
            "v-scsi@71000020 luns",
            "0:1:0 disk \"QEMU QEMU HARDDISK\" 2048 x 4096",
        ),
        (
            "v-scsi@71000020 0:0:0 capacity",
            "16384 sectors (8 MiB), read-write",
        ),
        (
            "v-scsi@71000020 0:0:0 id",
            "QEMU QEMU HARDDISK, serial vs-a0",
        ),
        ("v-scsi@71000020 0:0:0 read", "hold the test pattern"),
        (
            "v-scsi@71000020 0:0:0 write",
            "wrote and read back sectors 16256..16384",
        ),
        (
            "v-scsi@71000020 0:0:0 flush",
            "SYNCHRONIZE CACHE(10) completed",
        ),
        ("v-scsi@71000020 0:0:0 unmapped", "no buffer left"),
        (
            "v-scsi@71000020 0:1:0 capacity",
            "16384 sectors (8 MiB), read-write, 4096-byte blocks",
        ),
        ("v-scsi@71000020 0:1:0 write", "wrote and read back"),
        (
            "v-scsi@71000020 0:0:3 capacity",
            "8192 sectors (4 MiB), read-only",
        ),
        ("v-scsi@71000020 0:0:3 read", "hold the test pattern"),
        ("v-scsi@71000020 shutdown", "CRQ freed, every TCE cleared"),
        (
            "v-scsi@71000021 luns",
            "0:3:0 cd-rom \"QEMU QEMU CD-ROM\" (no medium)",
        ),
        (
            "v-scsi@71000021 0:2:0 capacity",
            &format!("{big_sectors} sectors (2097153 MiB), read-write"),
        ),
        (
            "v-scsi@71000021 0:2:0 write",
            &format!(
                "wrote and read back sectors {}..{big_sectors}",
                big_sectors - 128
            ),
        ),
        ("v-scsi@71000021 shutdown", "CRQ freed, every TCE cleared"),
    ]);
    // The read-only disk is never written, and the empty CD is listed, not opened.
    assert!(
        run.output.contains("v-scsi@71000020 0:0:3 write # SKIP"),
        "{}",
        run.output
    );
    assert!(
        run.report()
            .check("v-scsi@71000021 0:3:0 capacity")
            .is_none(),
        "{}",
        run.output
    );
}

#[test]
fn vscsi_disk_without_firmware() {
    let dir = scratch("bios");
    vioboot_harness::pattern_disk(&dir.join("d.img"), 8).expect("disk");
    vioboot_harness::pattern_disk(&dir.join("cd.iso"), 4).expect("CD image");
    // A 4 MiB write/read/verify: written in 256 KiB requests, read back in 1 MiB ones, each a
    // single command with indirect descriptors of 128 KiB (QEMU's v-scsi misplaces the pieces
    // of any larger descriptor: with 1 MiB descriptors this verify fails at sector 2048).
    let mut q = qemu(Boot::Bios).append("vioboot.blk-verify=4");
    q.extra = [
        vioboot_harness::vscsi_adapter("s0", 0x7100_0020),
        vioboot_harness::scsi_disk("s0", "d", &dir.join("d.img"), at(0, 0, 1), "", false),
        vioboot_harness::scsi_cd("s0", "cd", &dir.join("cd.iso"), at(0, 4, 0)),
    ]
    .concat();
    let run = vioboot_harness::run(&q, TIMEOUT).expect("QEMU runs");
    run.assert_pass();
    run.assert_lines(&[
        (
            "v-scsi@71000020 adapter",
            "commands of up to 1024 KiB (indirect descriptors)",
        ),
        ("v-scsi@71000020 luns", "0:0:0 no device, 0:0:1 disk"),
        ("v-scsi@71000020 0:0:1 write", "wrote and read back"),
        ("v-scsi@71000020 0:0:1 verify", "intact"),
        (
            "v-scsi@71000020 0:0:1 flush",
            "SYNCHRONIZE CACHE(10) completed",
        ),
        ("v-scsi@71000020 shutdown", "CRQ freed"),
        // QEMU's tree has ibm,set-tce-bypass without SLOF too; turning it off is harmless.
        ("v-scsi@71000020", "TCE bypass off"),
    ]);
}

/// A `scsi-hd` with device id `id` on `adapter` at `a`, backed by `file` without QEMU's image
/// lock (two adapters reach one image), naming the disk by `wwn`.
fn shared_disk(adapter: &str, id: &str, file: &Path, wwn: &str, a: ScsiAddress) -> Vec<String> {
    vec![
        "-drive".into(),
        format!(
            "file={},if=none,id={id}d,format=raw,file.locking=off,cache=writethrough",
            file.display()
        ),
        "-device".into(),
        format!(
            "scsi-hd,id={id},drive={id}d,bus={adapter}.0,channel={},scsi-id={},lun={},wwn={wwn}",
            a.channel, a.target, a.lun
        ),
    ]
}

#[test]
fn one_disk_on_two_adapters_is_one_disk() {
    let dir = scratch("multipath");
    let img = dir.join("d.img");
    vioboot_harness::pattern_disk(&img, 24).expect("disk");
    let other = dir.join("other.img");
    vioboot_harness::pattern_disk(&other, 24).expect("disk");
    // Both adapters reach d.img under one WWN: one disk of two paths, checked once (a 16 MiB
    // write/read/verify). A third LUN with its own WWN stays a disk of its own.
    let mut q = qemu(Boot::Bios).append("vioboot.blk-verify=16");
    q.extra = [
        vioboot_harness::vscsi_adapter("s0", 0x7100_0020),
        shared_disk("s0", "hd0", &img, "0x5000c50015ea71ac", at(0, 0, 0)),
        shared_disk("s0", "hd2", &other, "0x5000c50015ea71ad", at(0, 1, 0)),
        vioboot_harness::vscsi_adapter("s1", 0x7100_0030),
        shared_disk("s1", "hd1", &img, "0x5000c50015ea71ac", at(0, 0, 0)),
    ]
    .concat();
    let run = vioboot_harness::run(&q, TIMEOUT).expect("QEMU runs");
    run.assert_pass();
    let disk = "disk naa:5000c50015ea71ac";
    run.assert_lines(&[
        (&format!("{disk} verify"), "intact"),
        (
            &format!("{disk} paths"),
            "2 paths: v-scsi@71000020 0:0:0 (active), v-scsi@71000030 0:0:0; 0 failover(s)",
        ),
        (&format!("{disk} unmapped"), "no buffer left"),
        ("v-scsi@71000020 0:1:0 verify", "intact"),
    ]);
    // No path of the joined disk was checked on its own.
    for path in [
        "v-scsi@71000020 0:0:0 verify",
        "v-scsi@71000030 0:0:0 verify",
    ] {
        assert!(!run.output.contains(path), "{path}:\n{}", run.output);
    }
}
