//! Booting from disks: vioboot reads the partition table of a virtio-vio disk served by the VIO
//! server (read-only), mounts an ext4 partition and boots Debian's kernel and the busybox
//! initramfs from it, under SLOF and as -bios. The images are built here, once per run, with
//! Debian's tools (`sgdisk`, `sfdisk`, `mkfs.ext4 -d`; `cargo xtask test` installs them):
//!
//! - `gpt.img`: GPT with a PReP boot partition (1), an ext4 XBOOTLDR partition "boot" holding
//!   `/loader/entries` (2), and an ext4 root "root" holding `/boot/loader/entries` (3);
//! - `gpt-bad-primary.img`: the same with the primary header's CRC broken;
//! - `gpt4k.img`: GPT in 4096-byte sectors (`fdisk -b 4096`), PReP and the ext4 /boot, served
//!   with `--block-size 4096`;
//! - `mbr.img`: MBR with PReP (type 0x41), an ext4 partition whose only entry names a kernel
//!   that is not there, and in an extended partition a logical ext4 root (5) that boots.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;
use vioboot_harness::{Boot, Qemu, Run, VioServer, INITRAMFS_MARKER};

const TIMEOUT: Duration = Duration::from_secs(300);
const SECTOR: u64 = 512;
/// Partition sizes in MiB: the kernel is 43 MiB.
const PREP_MIB: u64 = 1;
const FS_MIB: u64 = 52;
const BOOT_UUID: &str = "8c1d5a36-1b3c-4f3e-9d35-0d5ae2f0b001";
const ROOT_FS_UUID: &str = "8c1d5a36-1b3c-4f3e-9d35-0d5ae2f0b002";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn dir() -> PathBuf {
    root().join("target/test-disk")
}

fn sh(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| {
        panic!(
            "{cmd:?}: {e} (install e2fsprogs, gdisk and fdisk: `cargo xtask test` does it as root)"
        )
    });
    assert!(
        out.status.success(),
        "{cmd:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Makes an ext4 file system of `FS_MIB` from `content` at byte `offset` of `img`.
fn mkfs(img: &Path, offset: u64, label: &str, uuid: &str, content: &Path) {
    sh(Command::new("mkfs.ext4")
        .args(["-q", "-F", "-b", "4096", "-L", label, "-U", uuid, "-d"])
        .arg(content)
        .args(["-E", &format!("offset={offset}")])
        .arg(img)
        .arg(format!("{}k", FS_MIB * 1024)));
}

/// A directory holding the kernel, the initramfs and entries under `loader` (relative).
fn content(name: &str, loader: &str, files: &str, entries: &[(&str, String)]) -> PathBuf {
    let l = vioboot_harness::debian_linux(&root()).expect("Debian's kernel and busybox");
    let d = dir().join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(d.join(loader).join("entries")).expect("mkdir");
    std::fs::create_dir_all(d.join(files)).expect("mkdir");
    std::fs::copy(&l.vmlinux, d.join(files).join("vmlinux")).expect("kernel");
    let initrd = vioboot_harness::initramfs(&std::fs::read(&l.busybox).expect("busybox"));
    std::fs::write(d.join(files).join("initrd.img"), initrd).expect("initrd");
    for (id, text) in entries {
        std::fs::write(d.join(loader).join(format!("entries/{id}.conf")), text).expect("entry");
    }
    std::fs::write(d.join(loader).join("loader.conf"), "timeout 0\n").expect("loader.conf");
    d
}

fn entry(title: &str, linux: &str, initrd: &str, options: &str) -> String {
    format!("title {title}\nlinux {linux}\ninitrd {initrd}\noptions console=hvc0 {options}\n")
}

struct Images {
    gpt: PathBuf,
    gpt_bad: PathBuf,
    /// `gpt.img` whose /boot partition ends 4 MiB in, cutting its ext4 file system short.
    truncated: PathBuf,
    gpt4k: PathBuf,
    mbr: PathBuf,
}

/// Partition starts in sectors: PReP at 1 MiB, then the file systems.
fn starts() -> (u64, u64, u64) {
    let mib = (1 << 20) / SECTOR;
    (mib, mib * (1 + PREP_MIB), mib * (1 + PREP_MIB + FS_MIB))
}

fn build() -> Images {
    std::fs::create_dir_all(dir()).expect("dir");
    let mib = (1 << 20) / SECTOR;
    let (p1, p2, p3) = starts();
    let fs = FS_MIB * mib;

    // GPT: PReP, XBOOTLDR "boot" with /loader/entries, root "root" with /boot/loader/entries.
    let gpt = dir().join("gpt.img");
    let f = std::fs::File::create(&gpt).expect("image");
    f.set_len((p3 + fs + mib) * SECTOR).expect("size");
    drop(f);
    sh(Command::new("sgdisk")
        .args(["-o", "-U", "11111111-2222-3333-4444-555555555555"])
        .args(["-n", &format!("1:{p1}:{}", p2 - 1), "-c", "1:PReP"])
        .args(["-t", "1:9E1A2D38-C612-4316-AA26-8B49521E5A8B"])
        .args(["-n", &format!("2:{p2}:{}", p3 - 1), "-c", "2:boot"])
        .args(["-t", "2:BC13C2FF-59E6-4262-A352-B275FD6F7172"])
        .args(["-u", "2:0d4c5b6a-0000-4000-8000-00000000b002"])
        .args(["-n", &format!("3:{p3}:{}", p3 + fs - 1), "-c", "3:root"])
        .args(["-t", "3:0FC63DAF-8483-4772-8E79-3D69D8477DE4"])
        .arg(&gpt));
    let boot = content(
        "boot-fs",
        "loader",
        "",
        &[(
            "debian",
            entry(
                "Debian (boot partition)",
                "/vmlinux",
                "/initrd.img",
                "from=boot",
            ),
        )],
    );
    mkfs(&gpt, p2 * SECTOR, "boot", BOOT_UUID, &boot);
    let rootfs = content(
        "root-fs",
        "boot/loader",
        "boot",
        &[(
            "debian",
            entry(
                "Debian (root)",
                "/boot/vmlinux",
                "/boot/initrd.img",
                "from=root",
            ),
        )],
    );
    mkfs(&gpt, p3 * SECTOR, "root", ROOT_FS_UUID, &rootfs);

    // The same with the primary header's CRC broken (a byte of its reserved field flipped).
    let gpt_bad = dir().join("gpt-bad-primary.img");
    std::fs::copy(&gpt, &gpt_bad).expect("copy");
    {
        use std::io::{Read, Seek, SeekFrom, Write};
        let mut f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&gpt_bad)
            .expect("open");
        let mut b = [0u8; 1];
        f.seek(SeekFrom::Start(SECTOR + 20)).expect("seek");
        f.read_exact(&mut b).expect("read");
        f.seek(SeekFrom::Start(SECTOR + 20)).expect("seek");
        f.write_all(&[b[0] ^ 0xff]).expect("write");
    }

    // The same with the /boot partition cut to 4 MiB in the table: its ext4 file system (52
    // MiB, as its superblock says) is truncated, and its entries must not be read past the end.
    let truncated = dir().join("gpt-truncated-ext4.img");
    std::fs::copy(&gpt, &truncated).expect("copy");
    sh(Command::new("sgdisk")
        .args(["-d", "2"])
        .args([
            "-n",
            &format!("2:{p2}:{}", p2 + 4 * mib - 1),
            "-c",
            "2:boot",
        ])
        .args(["-t", "2:BC13C2FF-59E6-4262-A352-B275FD6F7172"])
        .args(["-u", "2:0d4c5b6a-0000-4000-8000-00000000b002"])
        .arg(&truncated));

    // GPT in 4096-byte sectors: PReP at 1 MiB, the /boot file system after it. sfdisk and
    // sgdisk take the sector size from the device; fdisk -b sets it for an image file.
    let gpt4k = dir().join("gpt4k.img");
    let (q1, q2) = (256u64, 512u64);
    let qfs = FS_MIB * 256;
    let f = std::fs::File::create(&gpt4k).expect("image");
    f.set_len((q2 + qfs + 256) * 4096).expect("size");
    drop(f);
    let script = format!(
        "g\nn\n1\n{q1}\n{}\nt\n9E1A2D38-C612-4316-AA26-8B49521E5A8B\n\
         n\n2\n{q2}\n{}\nt\n2\nBC13C2FF-59E6-4262-A352-B275FD6F7172\n\
         x\nn\n1\nPReP\nn\n2\nboot\nr\nw\n",
        q2 - 1,
        q2 + qfs - 1
    );
    let mut child = Command::new("fdisk")
        .args(["-b", "4096"])
        .arg(&gpt4k)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("fdisk");
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), script.as_bytes()).expect("script");
    assert!(
        child.wait().expect("fdisk").success(),
        "fdisk -b 4096 failed"
    );
    mkfs(&gpt4k, q2 * 4096, "boot", BOOT_UUID, &boot);

    // MBR: PReP (0x41), Linux (0x83) whose one entry names a missing kernel, and an extended
    // partition holding a logical Linux root (5) with /boot/loader/entries.
    let mbr = dir().join("mbr.img");
    let f = std::fs::File::create(&mbr).expect("image");
    f.set_len((p3 + fs + 3 * mib) * SECTOR).expect("size");
    drop(f);
    let script = format!(
        "label: dos\nlabel-id: 0x5eed0001\n\
         start={p1}, size={}, type=41\n\
         start={p2}, size={fs}, type=83\n\
         start={p3}, size={}, type=5\n\
         start={}, size={fs}, type=83\n",
        p2 - p1,
        fs + 2 * mib,
        p3 + mib,
    );
    let mut c = Command::new("sfdisk");
    c.arg("-q").arg(&mbr).stdin(std::process::Stdio::piped());
    let mut child = c
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("sfdisk (fdisk package)");
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), script.as_bytes()).expect("script");
    assert!(child.wait().expect("sfdisk").success(), "sfdisk failed");
    let mbrfs = content(
        "mbr-fs",
        "loader",
        "",
        &[(
            "a-gone",
            entry("Missing kernel", "/vmlinux-gone", "/initrd.img", ""),
        )],
    );
    mkfs(&mbr, p2 * SECTOR, "mbrboot", BOOT_UUID, &mbrfs);
    let mbrroot = content(
        "mbr-root",
        "boot/loader",
        "boot",
        &[(
            "debian",
            entry(
                "Debian (MBR root)",
                "/boot/vmlinux",
                "/boot/initrd.img",
                "from=mbr",
            ),
        )],
    );
    mkfs(&mbr, (p3 + mib) * SECTOR, "mbrroot", ROOT_FS_UUID, &mbrroot);
    Images {
        gpt,
        gpt_bad,
        truncated,
        gpt4k,
        mbr,
    }
}

fn images() -> &'static Images {
    static IMAGES: OnceLock<Images> = OnceLock::new();
    IMAGES.get_or_init(build)
}

/// Boots vioboot with `img` as a read-only virtio-vio disk at 0x71000010.
fn run(name: &str, boot: Boot, img: &Path, append: &str) -> (Run, String) {
    run_with(name, boot, img, append, &[])
}

/// As `run`, with more arguments for the VIO server.
fn run_with(
    name: &str,
    boot: Boot,
    img: &Path,
    append: &str,
    server_args: &[&str],
) -> (Run, String) {
    let d = dir().join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("dir");
    let socket = d.join("v0.sock");
    let img_arg = img.display().to_string();
    let mut args = vec!["--blk", &img_arg, "--read-only", "--serial", "disk0"];
    args.extend_from_slice(server_args);
    let server = VioServer::start(
        &vioboot_harness::vio_server_binary(&root()),
        &socket,
        &args,
        &d.join("server.log"),
    )
    .expect("server");
    let mut q = Qemu::new(boot, vioboot_harness::image_dir(&root())).append(append);
    q.binary = vioboot_harness::built_qemu(&root()).expect("QEMU");
    q.extra = vioboot_harness::virtio_vio_device("v0", &socket, 0x7100_0010);
    let run = vioboot_harness::run(&q, TIMEOUT).expect("QEMU runs");
    // Kept for a reader of a failure (and for the load speed it prints).
    let _ = std::fs::write(d.join("console.log"), &run.output);
    let log = server.log();
    (run, log)
}

/// `check`'s line passed and names each of `parts`.
fn passed_naming(run: &Run, check: &str, parts: &[&str]) {
    let (ok, text) = line(run, check);
    assert!(ok, "{text}");
    for part in parts {
        assert!(text.contains(part), "{part:?} in {text}");
    }
}

fn line(run: &Run, check: &str) -> (bool, String) {
    let r = run.report();
    let l = r
        .check(check)
        .unwrap_or_else(|| panic!("no `{check}` line:\n{}", run.output));
    (l.ok, l.description.clone())
}

fn cmdline(run: &Run) -> String {
    run.output
        .lines()
        .find(|l| l.contains(INITRAMFS_MARKER))
        .unwrap_or_else(|| panic!("the initramfs never ran:\n{}", run.output))
        .split("cmdline=[")
        .nth(1)
        .unwrap_or("")
        .to_string()
}

#[test]
fn gpt_boot_partition_under_slof() {
    let (run, log) = run("gpt-slof", Boot::Slof, &images().gpt, "vioboot.mode=boot");
    assert_eq!(run.report().verdict, Some(true), "{}\n{log}", run.output);
    passed_naming(
        &run,
        "boot disk",
        &[
            "GPT (",
            "3 partitions",
            "1: 1 MiB PReP boot, name \"PReP\"",
            "2: 52 MiB Linux /boot (XBOOTLDR), ext4 \"boot\", name \"boot\"",
            "3: 52 MiB Linux filesystem, ext4 \"root\"",
        ],
    );
    let (_, src) = line(&run, "boot source");
    assert!(
        src.starts_with("boot source: virtio@71000010:2: ext4 \"boot\""),
        "{src}"
    );
    assert!(
        run.output.contains("entries on virtio@71000010:2"),
        "{}",
        run.output
    );
    assert!(cmdline(&run).contains("from=boot"), "{}", run.output);
    assert!(
        run.output.contains("# bench kernel-load-MBps"),
        "{}",
        run.output
    );
    assert_eq!(run.exit_code(), Some(0), "{}", run.output);
}

#[test]
fn root_file_system_chosen_by_source_without_firmware() {
    let uuid = format!("uuid={}", ROOT_FS_UUID.to_uppercase());
    for (n, source) in [
        (0, "virtio@71000010:3"),
        (1, "label=root"),
        (2, uuid.as_str()),
    ] {
        let (run, log) = run(
            &format!("gpt-root-{n}"),
            Boot::Bios,
            &images().gpt,
            &format!("vioboot.mode=boot vioboot.source={source}"),
        );
        assert_eq!(
            run.report().verdict,
            Some(true),
            "{source}: {}\n{log}",
            run.output
        );
        let (_, src) = line(&run, "boot source");
        assert!(src.contains("entries under /boot"), "{src}");
        assert!(
            cmdline(&run).contains("from=root"),
            "{source}: {}",
            run.output
        );
    }
    // The GPT partition GUID of the boot partition picks it.
    let (run, _) = run(
        "gpt-partuuid",
        Boot::Bios,
        &images().gpt,
        "vioboot.mode=boot vioboot.source=uuid=0D4C5B6A-0000-4000-8000-00000000B002",
    );
    assert!(cmdline(&run).contains("from=boot"), "{}", run.output);
}

#[test]
fn gpt_with_4096_byte_sectors() {
    let (run, log) = run_with(
        "gpt4k",
        Boot::Bios,
        &images().gpt4k,
        "vioboot.mode=boot",
        &["--block-size", "4096"],
    );
    assert_eq!(run.report().verdict, Some(true), "{}\n{log}", run.output);
    let (_, disk) = line(&run, "boot disk");
    assert!(
        disk.contains("blocks of 4096 bytes), 2 partitions")
            && disk.contains("1: 1 MiB PReP boot")
            && disk.contains("2: 52 MiB Linux /boot (XBOOTLDR), ext4 \"boot\""),
        "{disk}"
    );
    assert!(cmdline(&run).contains("from=boot"), "{}", run.output);
}

#[test]
fn damaged_primary_gpt_falls_back_to_the_backup() {
    let (run, log) = run(
        "gpt-bad",
        Boot::Bios,
        &images().gpt_bad,
        "vioboot.mode=boot",
    );
    let (ok, disk) = line(&run, "boot disk");
    assert!(
        !ok && disk.contains("primary header damaged: header CRC32")
            && disk.contains("backup was used"),
        "{disk}"
    );
    assert_eq!(run.report().verdict, Some(false), "a fallback says FAIL");
    assert!(cmdline(&run).contains("from=boot"), "{}\n{log}", run.output);
}

/// A truncated ext4 file system (its partition ends long before the superblock's block count)
/// is refused by name before anything is read from it, and the next source boots.
#[test]
fn truncated_ext4_is_named_and_the_next_source_boots() {
    let (run, log) = run(
        "ext4-truncated",
        Boot::Bios,
        &images().truncated,
        "vioboot.mode=boot",
    );
    passed_naming(
        &run,
        "boot disk",
        &["2: 4 MiB Linux /boot (XBOOTLDR), ext4 \"boot\""],
    );
    let sources: Vec<(bool, String)> = run
        .report()
        .lines
        .iter()
        .filter(|l| l.description.starts_with("boot source:"))
        .map(|l| (l.ok, l.description.clone()))
        .collect();
    assert!(
        sources.iter().any(|(ok, d)| !ok
            && d.contains("virtio@71000010:2")
            && d.contains("do not fit the 4194304 bytes of the partition")),
        "{sources:?}"
    );
    assert!(
        sources
            .iter()
            .any(|(ok, d)| *ok && d.contains("virtio@71000010:3: ext4 \"root\"")),
        "{sources:?}"
    );
    assert!(cmdline(&run).contains("from=root"), "{}\n{log}", run.output);
    assert_eq!(run.report().verdict, Some(false), "a fallback says FAIL");
}

#[test]
fn mbr_disk_a_missing_kernel_and_the_next_source() {
    let (run, log) = run("mbr", Boot::Bios, &images().mbr, "vioboot.mode=boot");
    passed_naming(
        &run,
        "boot disk",
        &[
            "MBR (",
            "3 partitions",
            "1: 1 MiB PReP boot",
            "2: 52 MiB Linux, ext4 \"mbrboot\"",
            "5: 52 MiB Linux, ext4 \"mbrroot\"",
        ],
    );
    let (ok, gone) = line(&run, "boot entry a-gone");
    assert!(!ok && gone.contains("/vmlinux-gone: ENOENT"), "{gone}");
    // Nothing on partition 2 boots: the next source with entries, the logical partition.
    let sources: Vec<String> = run
        .report()
        .lines
        .iter()
        .filter(|l| l.description.starts_with("boot source:"))
        .map(|l| l.description.clone())
        .collect();
    assert_eq!(sources.len(), 2, "{sources:?}");
    assert!(
        sources[1].contains("virtio@71000010:5: ext4 \"mbrroot\""),
        "{sources:?}"
    );
    assert!(cmdline(&run).contains("from=mbr"), "{}\n{log}", run.output);
    assert_eq!(run.report().verdict, Some(false), "a fallback says FAIL");
}

#[test]
fn a_source_that_is_not_there_is_named() {
    let (run, _) = run(
        "no-source",
        Boot::Bios,
        &images().gpt,
        "vioboot.mode=boot vioboot.source=virtio@71000010:1",
    );
    let (ok, src) = line(&run, "boot source");
    assert!(
        !ok && src.contains("virtio@71000010:1 holds PReP boot"),
        "{src}"
    );
    assert_eq!(run.exit_code(), Some(1), "{}", run.output);
}

#[test]
fn smoke_lists_the_partitions() {
    let (run, log) = run("smoke", Boot::Bios, &images().gpt, "");
    assert_eq!(run.report().verdict, Some(true), "{}\n{log}", run.output);
    let (ok, p) = line(&run, "virtio@71000010 partitions");
    assert!(
        ok && p.contains("GPT (") && p.contains("ext4 \"root\""),
        "{p}"
    );
}

/// The same GPT disk as a v-scsi LUN (QEMU's spapr-vscsi and scsi-hd): the bootloader reads
/// its partitions through the v-scsi driver exactly as through virtio-vio, and boots from its
/// /boot partition. (Transfers are 128 KiB at most: QEMU's v-scsi writes each 128 KiB piece of
/// a larger direct transfer at the start of the buffer.)
#[test]
fn gpt_boot_partition_on_a_vscsi_disk() {
    let d = dir().join("vscsi");
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("dir");
    let img = d.join("gpt.img");
    std::fs::copy(&images().gpt, &img).expect("copy");
    let mut q =
        Qemu::new(Boot::Bios, vioboot_harness::image_dir(&root())).append("vioboot.mode=boot");
    q.binary = vioboot_harness::built_qemu(&root()).expect("QEMU");
    q.extra = [
        "-device",
        "spapr-vscsi,id=scsi9,reg=0x71000020",
        "-drive",
        &format!(
            "file={},if=none,id=d9,format=raw,readonly=on",
            img.display()
        ),
        "-device",
        "scsi-hd,drive=d9,bus=scsi9.0,channel=0,scsi-id=0,lun=0",
    ]
    .map(String::from)
    .to_vec();
    let run = vioboot_harness::run(&q, TIMEOUT).expect("QEMU runs");
    let _ = std::fs::write(d.join("console.log"), &run.output);
    assert_eq!(run.report().verdict, Some(true), "{}", run.output);
    passed_naming(&run, "boot disk", &["ext4 \"boot\""]);
    let (_, src) = line(&run, "boot source");
    assert!(
        src.starts_with("boot source: v-scsi@71000020 0:0:0:2:"),
        "{src}"
    );
    assert!(cmdline(&run).contains("from=boot"), "{}", run.output);
    assert_eq!(run.exit_code(), Some(0), "{}", run.output);
}

// ---- FAT, a Fedora-style /boot, damaged FAT volumes, virtio-blk-pci ----
//
// `gpt-fat.img`: GPT with a PReP boot partition (1), a FAT32 EFI system partition "ESP" (2)
// holding `/loader/entries` (its entry loads two initrds and names a devicetree; entries for
// another architecture and an EFI program are there too), and an ext4 XBOOTLDR partition
// "fedora" (3) laid out as Fedora's kernel-install does: several kernel versions and a rescue
// entry, named `<machine-id>-<version>.conf`, with GRUB's own keys.
// `gpt-fat-damaged.img`: the same disk whose FAT holds entries that must each fail by name (a
// path climbing out of the file system, a directory naming its parent, a looping cluster
// chain) before the last one boots. Both FAT volumes have the serial 5EED-0FA7.

/// FAT partition size in MiB (the kernel is 43 MiB): 512-byte clusters, FAT32.
const FAT_MIB: u64 = 96;
const MACHINE_ID: &str = "4098b3f648d74c13b1f04ccfba7798e8";
/// Fedora-style kernel versions, in the order the menu must show them.
const FEDORA: [&str; 3] = [
    "6.10.3-200.fc40.ppc64le",
    "6.9.12-200.fc40.ppc64le",
    "6.8.5-301.fc40.ppc64le",
];

struct FatImages {
    gpt: PathBuf,
    damaged: PathBuf,
}

fn mtools(cmd: &str) -> Command {
    let mut c = Command::new(cmd);
    c.env("MTOOLS_SKIP_CHECK", "1");
    c
}

/// A second initrd: a newc cpio archive holding `/extra.txt`.
fn extra_cpio() -> Vec<u8> {
    let mut a = Vec::new();
    let mut add = |name: &str, mode: u32, data: &[u8]| {
        let head = format!(
            "070701{:08x}{mode:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}",
            900,
            0,
            0,
            1,
            0,
            data.len(),
            0,
            0,
            0,
            0,
            name.len() + 1,
            0
        );
        a.extend_from_slice(head.as_bytes());
        a.extend_from_slice(name.as_bytes());
        a.push(0);
        while a.len() % 4 != 0 {
            a.push(0);
        }
        a.extend_from_slice(data);
        while a.len() % 4 != 0 {
            a.push(0);
        }
    };
    add("extra.txt", 0o100644, b"second-initrd-ok\n");
    add("TRAILER!!!", 0, &[]);
    a
}

/// A FAT32 volume of `FAT_MIB` labelled ESP holding `dirs` and `files` (path, bytes).
fn fat_volume(name: &str, dirs: &[&str], files: &[(&str, Vec<u8>)]) -> PathBuf {
    let d = dir().join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("dir");
    let img = d.join("fat.img");
    sh(Command::new("mkfs.vfat")
        .args(["-C", "-F", "32", "-s", "1", "-n", "ESP", "-i", "5EED0FA7"])
        .arg(&img)
        .arg((FAT_MIB * 1024).to_string()));
    let i = img.display().to_string();
    for dir in dirs {
        sh(mtools("mmd").args(["-i", &i, &format!("::{dir}")]));
    }
    for (n, (path, bytes)) in files.iter().enumerate() {
        let f = d.join(format!("file{n}"));
        std::fs::write(&f, bytes).expect("file");
        sh(mtools("mcopy")
            .args(["-i", &i])
            .arg(&f)
            .arg(format!("::{path}")));
    }
    img
}

/// The clusters (first, last) mtools says `path` occupies on `img` (contiguous on a new volume).
fn clusters(img: &Path, path: &str) -> (u32, u32) {
    let out = mtools("mshowfat")
        .args(["-i", &img.display().to_string(), &format!("::{path}")])
        .output()
        .expect("mshowfat (mtools)");
    let text = String::from_utf8_lossy(&out.stdout);
    let runs = text.split_once('<').expect("clusters").1;
    let nums: Vec<u32> = runs
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().unwrap())
        .collect();
    (nums[0], *nums.last().unwrap())
}

/// FAT32 geometry from a boot sector: (FAT offset, FAT bytes, FATs, data offset, cluster bytes).
fn fat32_geometry(b: &[u8]) -> (usize, usize, usize, usize, usize) {
    let bps = u16::from_le_bytes([b[11], b[12]]) as usize;
    let spc = b[13] as usize;
    let reserved = u16::from_le_bytes([b[14], b[15]]) as usize;
    let nfats = b[16] as usize;
    let fat_sectors = u32::from_le_bytes([b[36], b[37], b[38], b[39]]) as usize;
    (
        reserved * bps,
        fat_sectors * bps,
        nfats,
        (reserved + nfats * fat_sectors) * bps,
        spc * bps,
    )
}

/// A GPT disk: PReP, `fat` copied into a FAT partition, and the Fedora-style ext4 /boot.
fn fat_disk(name: &str, fat: &Path, fedora: &Path) -> PathBuf {
    let mib = (1 << 20) / SECTOR;
    let p1 = mib;
    let p2 = p1 + PREP_MIB * mib;
    let p3 = p2 + FAT_MIB * mib;
    let img = dir().join(name);
    let f = std::fs::File::create(&img).expect("image");
    f.set_len((p3 + FS_MIB * mib + mib) * SECTOR).expect("size");
    drop(f);
    sh(Command::new("sgdisk")
        .args(["-o"])
        .args(["-n", &format!("1:{p1}:{}", p2 - 1), "-c", "1:PReP"])
        .args(["-t", "1:9E1A2D38-C612-4316-AA26-8B49521E5A8B"])
        .args(["-n", &format!("2:{p2}:{}", p3 - 1), "-c", "2:EFI System"])
        .args(["-t", "2:C12A7328-F81F-11D2-BA4B-00A0C93EC93B"])
        .args([
            "-n",
            &format!("3:{p3}:{}", p3 + FS_MIB * mib - 1),
            "-c",
            "3:fedora-boot",
        ])
        .args(["-t", "3:BC13C2FF-59E6-4262-A352-B275FD6F7172"])
        .arg(&img));
    {
        use std::io::{Seek, SeekFrom, Write};
        let bytes = std::fs::read(fat).expect("FAT volume");
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open(&img)
            .expect("open");
        f.seek(SeekFrom::Start(p2 * SECTOR)).expect("seek");
        f.write_all(&bytes).expect("write");
    }
    mkfs(&img, p3 * SECTOR, "fedora", BOOT_UUID, fedora);
    img
}

/// The Fedora-style /boot: a kernel and initramfs per version (hard links to Debian's, which
/// `mkfs.ext4 -d` keeps as one inode), entries as kernel-install writes them, and a rescue one.
fn fedora_boot() -> PathBuf {
    let l = vioboot_harness::debian_linux(&root()).expect("Debian's kernel and busybox");
    let d = dir().join("fedora-fs");
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(d.join("loader/entries")).expect("mkdir");
    std::fs::copy(&l.vmlinux, d.join("vmlinux.base")).expect("kernel");
    let initrd = vioboot_harness::initramfs(&std::fs::read(&l.busybox).expect("busybox"));
    std::fs::write(d.join("initrd.base"), initrd).expect("initrd");
    let rescue = format!("0-rescue-{MACHINE_ID}");
    for ver in FEDORA.iter().copied().chain([rescue.as_str()]) {
        std::fs::hard_link(d.join("vmlinux.base"), d.join(format!("vmlinuz-{ver}"))).unwrap();
        std::fs::hard_link(
            d.join("initrd.base"),
            d.join(format!("initramfs-{ver}.img")),
        )
        .unwrap();
        let title = if ver.starts_with("0-rescue") {
            format!("Fedora Linux ({ver}) 40 (Forty) rescue")
        } else {
            format!("Fedora Linux ({ver}) 40 (Forty)")
        };
        let id = if ver.starts_with("0-rescue") {
            format!("{MACHINE_ID}-0-rescue")
        } else {
            format!("{MACHINE_ID}-{ver}")
        };
        std::fs::write(
            d.join(format!("loader/entries/{id}.conf")),
            format!(
                "title {title}\nversion {ver}\nlinux /vmlinuz-{ver}\ninitrd /initramfs-{ver}.img\n\
                 options root=UUID={ROOT_FS_UUID} ro console=hvc0 ver={ver}\n\
                 grub_users $grub_users\ngrub_arg --unrestricted\ngrub_class fedora\n"
            ),
        )
        .expect("entry");
    }
    std::fs::remove_file(d.join("vmlinux.base")).unwrap();
    std::fs::remove_file(d.join("initrd.base")).unwrap();
    std::fs::write(
        d.join("loader/loader.conf"),
        "# loader.conf as systemd-boot reads it\ntimeout 0\ndefault *-6.9.12-*\neditor no\n",
    )
    .expect("loader.conf");
    d
}

fn build_fat() -> FatImages {
    std::fs::create_dir_all(dir()).expect("dir");
    let l = vioboot_harness::debian_linux(&root()).expect("Debian's kernel and busybox");
    let kernel = std::fs::read(&l.vmlinux).expect("kernel");
    let busybox = std::fs::read(&l.busybox).expect("busybox");
    let initrd = vioboot_harness::initramfs_running(
        &busybox,
        "echo \"EXTRA=$(/bin/busybox cat /extra.txt)\"\n",
    );
    let fedora = fedora_boot();
    let esp = fat_volume(
        "esp",
        &["/loader", "/loader/entries", "/EFI", "/EFI/BOOT"],
        &[
            ("/vmlinux", kernel.clone()),
            ("/initrd.img", initrd.clone()),
            ("/extra.cpio", extra_cpio()),
            ("/EFI/BOOT/BOOTAA64.EFI", b"MZ".to_vec()),
            (
                "/loader/loader.conf",
                b"# the ESP\ntimeout 0\ndefault fat-*\n".to_vec(),
            ),
            ("/loader/entries.srel", b"type1\n".to_vec()),
            (
                "/loader/entries/fat-debian-6.1.conf",
                b"title Debian (FAT)\nversion 6.1\narchitecture ppc64le\nlinux /vmlinux\n\
                  initrd /initrd.img\ninitrd extra.cpio\noptions console=hvc0\noptions from=fat\n\
                  devicetree /board.dtb\n"
                    .to_vec(),
            ),
            (
                "/loader/entries/other-architecture.conf",
                b"title Other\narchitecture aa64\nlinux /vmlinux\n".to_vec(),
            ),
            (
                "/loader/entries/shim.conf",
                b"title Shim\nefi /EFI/BOOT/BOOTAA64.EFI\n".to_vec(),
            ),
        ],
    );
    let gpt = fat_disk("gpt-fat.img", &esp, &fedora);

    let good = |title: &str, key: &str, linux: &str, initrd: &str, from: &str| {
        format!(
            "title {title}\nsort-key {key}\nlinux {linux}\ninitrd {initrd}\noptions console=hvc0 from={from}\n"
        )
        .into_bytes()
    };
    let bad = fat_volume(
        "esp-damaged",
        &["/loader", "/loader/entries", "/deep", "/deep/sub"],
        &[
            ("/vmlinux", kernel),
            ("/initrd.img", vioboot_harness::initramfs(&busybox)),
            ("/loopy.img", vec![7u8; 8000]),
            ("/deep/sub/note", b"x".to_vec()),
            ("/loader/loader.conf", b"timeout 0\n".to_vec()),
            (
                "/loader/entries/1-outside.conf",
                good("Outside", "1", "/../vmlinux", "/initrd.img", "outside"),
            ),
            (
                "/loader/entries/2-dirloop.conf",
                good(
                    "Directory loop",
                    "2",
                    "/deep/sub/sub/vmlinux",
                    "/initrd.img",
                    "dirloop",
                ),
            ),
            (
                "/loader/entries/3-badchain.conf",
                good("Bad chain", "3", "/vmlinux", "/loopy.img", "badchain"),
            ),
            (
                "/loader/entries/4-good.conf",
                good("Good", "4", "/vmlinux", "/initrd.img", "fat-fallback"),
            ),
        ],
    );
    // Damage: /loopy.img's last cluster points back at its first; /deep/sub points at /deep.
    let (first, last) = clusters(&bad, "/loopy.img");
    assert!(last > first, "/loopy.img spans several clusters");
    let (deep, _) = clusters(&bad, "/deep");
    let mut b = std::fs::read(&bad).expect("FAT volume");
    let (fat_at, fat_bytes, nfats, data_at, cluster) = fat32_geometry(&b);
    for n in 0..nfats {
        let at = fat_at + n * fat_bytes + 4 * last as usize;
        b[at..at + 4].copy_from_slice(&first.to_le_bytes());
    }
    let deep_at = data_at + (deep as usize - 2) * cluster;
    let sub = (deep_at..deep_at + cluster)
        .step_by(32)
        .find(|&at| &b[at..at + 11] == b"SUB        ")
        .expect("the entry of /deep/sub");
    b[sub + 20..sub + 22].copy_from_slice(&((deep >> 16) as u16).to_le_bytes());
    b[sub + 26..sub + 28].copy_from_slice(&(deep as u16).to_le_bytes());
    std::fs::write(&bad, &b).expect("damaged FAT");
    let damaged = fat_disk("gpt-fat-damaged.img", &bad, &fedora);
    FatImages { gpt, damaged }
}

fn fat_images() -> &'static FatImages {
    static IMAGES: OnceLock<FatImages> = OnceLock::new();
    IMAGES.get_or_init(build_fat)
}

#[test]
fn fat_esp_boots_with_two_initrds_under_slof_and_without_firmware() {
    for (name, boot) in [("fat-slof", Boot::Slof), ("fat-bios", Boot::Bios)] {
        let (run, log) = run(name, boot, &fat_images().gpt, "vioboot.mode=boot");
        assert_eq!(run.report().verdict, Some(true), "{}\n{log}", run.output);
        passed_naming(
            &run,
            "boot disk",
            &[
                "GPT (",
                "3 partitions",
                "1: 1 MiB PReP boot",
                "2: 96 MiB EFI system, vfat (FAT32) \"ESP\", name \"EFI System\"",
                "3: 52 MiB Linux /boot (XBOOTLDR), ext4 \"fedora\"",
            ],
        );
        let (_, src) = line(&run, "boot source");
        assert!(
            src.starts_with("boot source: virtio@71000010:2: FAT32 \"ESP\""),
            "{src}"
        );
        let out = &run.output;
        // The entries a loader must hide say why; the devicetree is named as unused.
        for said in [
            "other-architecture.conf: not offered: architecture aa64",
            "shim.conf: not offered: efi /EFI/BOOT/BOOTAA64.EFI",
            "devicetree /board.dtb ignored: on pseries the device tree comes from the platform",
        ] {
            assert!(out.contains(said), "{said:?} in\n{out}");
        }
        // The ESP and the XBOOTLDR partition of the disk are one menu, as the specification
        // reads them: the ESP's entry and Fedora's four, each shown with where it lives; the
        // ESP's loader.conf names the default.
        assert!(
            src.contains("; merged with virtio@71000010:3: ext4 \"fedora\"")
                && src.contains("(XBOOTLDR); entries under /"),
            "{src}"
        );
        let (_, entries) = line(&run, "boot entries");
        assert!(
            entries.contains("5 entries, default fat-debian-6.1, from 2 file systems"),
            "{entries}"
        );
        let menu: Vec<&str> = out
            .lines()
            .filter(|l| l.contains("] on virtio@71000010:"))
            .collect();
        assert_eq!(menu.len(), 5, "{out}");
        assert!(
            menu.iter().any(|l| l.contains("* ")
                && l.ends_with("Debian (FAT) [fat-debian-6.1] on virtio@71000010:2")),
            "{menu:?}"
        );
        assert_eq!(
            menu.iter()
                .filter(|l| l.contains("Fedora Linux (") && l.ends_with("] on virtio@71000010:3"))
                .count(),
            4,
            "{menu:?}"
        );
        // Both initrds reached Linux, in order: /init (first) read /extra.txt (second).
        assert!(out.contains("EXTRA=second-initrd-ok"), "{out}");
        assert!(cmdline(&run).contains("console=hvc0 from=fat"), "{out}");
        assert_eq!(run.exit_code(), Some(0), "{out}");
    }
}

#[test]
fn fedora_style_boot_partition_sorted_by_version_with_the_loader_conf_default() {
    for (name, boot) in [("fedora-bios", Boot::Bios), ("fedora-slof", Boot::Slof)] {
        let (run, log) = run(
            name,
            boot,
            &fat_images().gpt,
            "vioboot.mode=boot vioboot.source=label=fedora",
        );
        assert_eq!(run.report().verdict, Some(true), "{}\n{log}", run.output);
        let (_, src) = line(&run, "boot source");
        assert!(
            src.starts_with("boot source: virtio@71000010:3: ext4 \"fedora\""),
            "{src}"
        );
        // Newest first by the file names' version order (6.10 after 6.9 would be strcmp's),
        // the rescue entry last; loader.conf's `default *-6.9.12-*` marks the second.
        let menu: Vec<&str> = run
            .output
            .lines()
            .filter(|l| l.contains(") Fedora Linux ("))
            .collect();
        assert_eq!(menu.len(), 4, "{}", run.output);
        for (i, ver) in FEDORA.iter().enumerate() {
            let mark = if i == 1 { '*' } else { ' ' };
            let want = format!(
                "# {mark}  {}) Fedora Linux ({ver}) 40 (Forty) [{MACHINE_ID}-{ver}]",
                i + 1
            );
            assert_eq!(menu[i], want);
        }
        assert!(menu[3].contains("0-rescue"), "{}", menu[3]);
        let (_, entries) = line(&run, "boot entries");
        assert!(
            entries.contains(&format!("4 entries, default {MACHINE_ID}-6.9.12")),
            "{entries}"
        );
        // GRUB's own keys are tolerated and named.
        assert!(
            run.output.contains("unknown key `grub_users`"),
            "{}",
            run.output
        );
        assert!(
            cmdline(&run).contains("ver=6.9.12-200.fc40.ppc64le"),
            "{}",
            run.output
        );
    }
}

#[test]
fn damaged_fat_entries_fail_by_name_and_fall_back() {
    // The FAT volume chosen by its serial, as Linux's UUID= names it.
    let (run, log) = run(
        "fat-damaged",
        Boot::Bios,
        &fat_images().damaged,
        "vioboot.mode=boot vioboot.source=uuid=5eed-0fa7",
    );
    let (_, src) = line(&run, "boot source");
    assert!(
        src.starts_with("boot source: virtio@71000010:2: FAT32 \"ESP\" 5EED-0FA7"),
        "{src}"
    );
    for (entry, why) in [
        (
            "1-outside",
            "linux /../vmlinux: points outside the file system",
        ),
        ("2-dirloop", "FAT directory loop: \"sub\" points at cluster"),
        ("3-badchain", "/loopy.img: "),
        ("3-badchain", "it loops"),
    ] {
        let (ok, said) = line(&run, &format!("boot entry {entry}"));
        assert!(!ok && said.contains(why), "{entry}: {why:?} in {said}");
    }
    assert!(
        cmdline(&run).contains("from=fat-fallback"),
        "{}\n{log}",
        run.output
    );
    assert_eq!(run.report().verdict, Some(false), "a fallback says FAIL");
}

/// The FAT disk on virtio-blk-pci (Debian's QEMU, no firmware): the same block-device path as
/// virtio-vio and v-scsi, so the ESP boots unchanged.
#[test]
fn fat_esp_on_a_virtio_blk_pci_disk() {
    let d = dir().join("blk-pci");
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("dir");
    let mut q =
        Qemu::new(Boot::Bios, vioboot_harness::image_dir(&root())).append("vioboot.mode=boot");
    q.extra = [
        "-drive",
        &format!(
            "file={},if=none,id=d7,format=raw,readonly=on",
            fat_images().gpt.display()
        ),
        "-device",
        "virtio-blk-pci,drive=d7,addr=5",
    ]
    .map(String::from)
    .to_vec();
    let run = vioboot_harness::run(&q, TIMEOUT).expect("QEMU runs");
    let _ = std::fs::write(d.join("console.log"), &run.output);
    assert_eq!(run.report().verdict, Some(true), "{}", run.output);
    passed_naming(&run, "boot disk", &["vfat (FAT32)"]);
    let (_, src) = line(&run, "boot source");
    assert!(src.contains(":2: FAT32 \"ESP\""), "{src}");
    assert!(
        run.output.contains("EXTRA=second-initrd-ok"),
        "{}",
        run.output
    );
    assert!(cmdline(&run).contains("from=fat"), "{}", run.output);
}

/// Boots from `img` served by two VIO servers under one serial (read-only), at 0x71000010 and
/// 0x71000011: two paths of one disk.
fn run_two_paths(name: &str, img: &Path, append: &str) -> Run {
    let d = dir().join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("dir");
    let img_arg = img.display().to_string();
    let mut q = Qemu::new(Boot::Bios, vioboot_harness::image_dir(&root())).append(append);
    q.binary = vioboot_harness::built_qemu(&root()).expect("QEMU");
    let mut servers = Vec::new();
    for n in 0..2u32 {
        let socket = d.join(format!("v{n}.sock"));
        servers.push(
            VioServer::start(
                &vioboot_harness::vio_server_binary(&root()),
                &socket,
                &["--blk", &img_arg, "--read-only", "--serial", "mp-boot"],
                &d.join(format!("server{n}.log")),
            )
            .expect("server"),
        );
        q.extra.extend(vioboot_harness::virtio_vio_device(
            &format!("v{n}"),
            &socket,
            0x7100_0010 + n,
        ));
    }
    let run = vioboot_harness::run(&q, TIMEOUT).expect("QEMU runs");
    let _ = std::fs::write(d.join("console.log"), &run.output);
    run
}

/// One disk reached through two virtio-vio adapters is one boot disk: its table is read
/// once, its partitions are candidates once (through the multipath disk), the menu lists each
/// entry once, and it boots; `vioboot.source` may name a partition by either path.
#[test]
fn a_disk_on_two_paths_is_one_boot_disk() {
    let run = run_two_paths("multipath", &images().gpt, "vioboot.mode=boot");
    assert_eq!(run.report().verdict, Some(true), "{}", run.output);
    let disks: Vec<&str> = run
        .output
        .lines()
        .filter(|l| l.contains(" - boot disk"))
        .collect();
    assert_eq!(disks.len(), 1, "{}", run.output);
    assert!(
        disks[0].contains(
            "boot disk: disk serial:mp-boot (paths virtio@71000010, virtio@71000011): GPT ("
        ),
        "{}",
        disks[0]
    );
    let (_, src) = line(&run, "boot source");
    assert!(
        src.starts_with("boot source: disk serial:mp-boot:2: ext4 \"boot\""),
        "{src}"
    );
    let menu: Vec<&str> = run
        .output
        .lines()
        .filter(|l| l.contains(") Debian (boot partition) ["))
        .collect();
    assert_eq!(menu.len(), 1, "{}", run.output);
    assert!(cmdline(&run).contains("from=boot"), "{}", run.output);
    assert_eq!(run.exit_code(), Some(0), "{}", run.output);

    let run = run_two_paths(
        "multipath-source",
        &images().gpt,
        "vioboot.mode=boot vioboot.source=virtio@71000011:3",
    );
    assert_eq!(run.report().verdict, Some(true), "{}", run.output);
    let (_, src) = line(&run, "boot source");
    assert!(
        src.starts_with("boot source: disk serial:mp-boot:3: ext4 \"root\""),
        "{src}"
    );
    assert!(cmdline(&run).contains("from=root"), "{}", run.output);
    assert_eq!(run.exit_code(), Some(0), "{}", run.output);
}
