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
    let (ok, disk) = line(&run, "boot disk");
    assert!(ok, "{disk}");
    for part in [
        "GPT (",
        "3 partitions",
        "1: 1 MiB PReP boot, name \"PReP\"",
        "2: 52 MiB Linux /boot (XBOOTLDR), ext4 \"boot\", name \"boot\"",
        "3: 52 MiB Linux filesystem, ext4 \"root\"",
    ] {
        assert!(disk.contains(part), "{part:?} in {disk}");
    }
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

#[test]
fn mbr_disk_a_missing_kernel_and_the_next_source() {
    let (run, log) = run("mbr", Boot::Bios, &images().mbr, "vioboot.mode=boot");
    let (ok, disk) = line(&run, "boot disk");
    assert!(ok, "{disk}");
    for part in [
        "MBR (",
        "3 partitions",
        "1: 1 MiB PReP boot",
        "2: 52 MiB Linux, ext4 \"mbrboot\"",
        "5: 52 MiB Linux, ext4 \"mbrroot\"",
    ] {
        assert!(disk.contains(part), "{part:?} in {disk}");
    }
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
    let (ok, disk) = line(&run, "boot disk");
    assert!(ok && disk.contains("ext4 \"boot\""), "{disk}");
    let (_, src) = line(&run, "boot source");
    assert!(
        src.starts_with("boot source: v-scsi@71000020 0:0:0:2:"),
        "{src}"
    );
    assert!(cmdline(&run).contains("from=boot"), "{}", run.output);
    assert_eq!(run.exit_code(), Some(0), "{}", run.output);
}
