//! The vTPM end to end: vioboot in Debian's QEMU (its tpm-spapr device; the project's own
//! QEMU build has no TPM) with a software TPM (swtpm) behind it, under SLOF and as -bios: the
//! adapter line, the TPM line (manufacturer, family, banks) and the PCR 16 extend round trip
//! checked against vioboot's own SHA-256, nothing left mapped. Then measured boot, in the
//! project's QEMU (`host/qemu/build.sh` builds it with TPM support; it also has the
//! virtio-vio device the share needs): Debian's kernel and a busybox initramfs from a virtio-fs
//! share, measured and booted as -bios with the event log in the tree, and the log Linux took
//! replayed against the PCRs Linux reads and the files' SHA-256; under SLOF the vTPM is left to
//! the firmware.
//!
//! Needs the image, the project's QEMU and the VIO server, Debian's `swtpm`, and Debian's
//! kernel and busybox (`cargo xtask test` prepares them all).

use std::path::{Path, PathBuf};
use std::time::Duration;
use vioboot_harness::{Boot, Qemu, Run, Swtpm, VioServer, INITRAMFS_MARKER};

const TIMEOUT: Duration = Duration::from_secs(180);
/// The vTPM's unit: low byte 0x04, clear of vty, nvram, l-lan and v-scsi.
const UNIT: u32 = 0x7100_0004;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn scratch(name: &str) -> PathBuf {
    vioboot_harness::scratch(&root(), "vtpm", name)
}

fn qemu(boot: Boot, tpm: &Swtpm) -> Qemu {
    let dir = vioboot_harness::image_dir(&root());
    assert!(
        dir.join("vioboot.elf").exists(),
        "no image: run `cargo xtask image` first"
    );
    let mut q = Qemu::new(boot, dir);
    // Debian's QEMU: it has tpm-spapr.
    q.binary = vioboot_harness::qemu_binary();
    q.extra.extend(tpm.qemu_args(UNIT));
    q
}

fn smoke(boot: Boot, name: &str) -> Run {
    let tpm = Swtpm::start(&scratch(name)).expect("swtpm");
    vioboot_harness::run(&qemu(boot, &tpm), TIMEOUT).expect("QEMU runs")
}

/// What the initramfs prints: the event log Linux took (as hex bytes between two markers) and
/// PCRs 8 and 9 of the SHA-256 bank as Linux reads them.
const LINUX_SHOWS_TPM: &str = "/bin/busybox mount -t sysfs sysfs /sys
/bin/busybox mount -t securityfs securityfs /sys/kernel/security
echo TPM-LOG-BEGIN
/bin/busybox od -An -tx1 -v /sys/kernel/security/tpm0/binary_bios_measurements
echo TPM-LOG-END
for b in sha1 sha256 sha384 sha512; do for p in 8 9; do echo \"TPM-PCR $b $p $(/bin/busybox cat /sys/class/tpm/tpm0/pcr-$b/$p)\"; done; done
";

/// A PCR value Linux read: the bank's algorithm, the PCR, its value.
type PcrValue = (u16, u32, Vec<u8>);

/// The log's bytes and the PCRs (8, 9 of each bank) the initramfs printed.
fn linux_tpm(run: &Run) -> (Vec<u8>, Vec<PcrValue>) {
    let out = &run.output;
    let begin = out
        .find("TPM-LOG-BEGIN\n")
        .unwrap_or_else(|| panic!("no event log printed:\n{out}"));
    let end = out[begin..].find("TPM-LOG-END").expect("log end") + begin;
    let hex = |s: &str| -> Vec<u8> {
        (0..s.len() / 2)
            .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).expect("hex"))
            .collect()
    };
    // od's lines: 16 two-digit hex bytes each (a kernel message may come in between).
    let is_od = |l: &&str| {
        let t: Vec<&str> = l.split_whitespace().collect();
        !t.is_empty()
            && t.iter()
                .all(|b| b.len() == 2 && u8::from_str_radix(b, 16).is_ok())
    };
    let log: Vec<u8> = out[begin + 14..end]
        .lines()
        .filter(is_od)
        .flat_map(str::split_whitespace)
        .flat_map(&hex)
        .collect();
    let alg = |name: &str| match name {
        "sha1" => tpm::ALG_SHA1,
        "sha256" => tpm::ALG_SHA256,
        "sha384" => tpm::ALG_SHA384,
        "sha512" => tpm::ALG_SHA512,
        n => panic!("bank {n}"),
    };
    let pcrs = out
        .lines()
        .filter_map(|l| l.trim().strip_prefix("TPM-PCR "))
        .map(|l| {
            let mut w = l.split_whitespace();
            let (b, n, v) = (w.next(), w.next(), w.next());
            let (Some(b), Some(n), Some(v)) = (b, n, v) else {
                panic!("pcr line {l}")
            };
            (alg(b), n.parse().expect("pcr"), hex(v))
        })
        .collect();
    (log, pcrs)
}

/// Replays PCR `n` of bank `alg` from the log, as the TPM computed it.
fn replayed(log: &tpm::log::Parsed, n: u32, alg: u16) -> Vec<u8> {
    tpm::log::replay(log, n, alg, |old, d| {
        vioboot::loader::digest::extended(alg, old, d).expect("an algorithm vioboot hashes")
    })
    .unwrap_or_else(|| panic!("bank {alg:#x} missing from the log"))
}

/// Boots vioboot (mode boot) from a virtio-fs share holding Debian's kernel, an initramfs
/// that shows the TPM, and one entry, with a vTPM; in the project's QEMU (it has both
/// spapr-virtio-vio and tpm-spapr). Returns the run and the share.
fn measured_boot(boot: Boot, name: &str) -> (Run, PathBuf) {
    let dir = scratch(name);
    let l = vioboot_harness::debian_linux(&root()).expect("Debian's kernel and busybox");
    let share = dir.join("share");
    let entry =
        "title Debian\nlinux /vmlinux\ninitrd /initrd.img\noptions console=hvc0 measured=yes\n";
    vioboot_harness::boot_share(&share, &l, &[("debian", entry.into())], Some("timeout 0\n"))
        .expect("share");
    let initrd = vioboot_harness::initramfs_running(
        &std::fs::read(&l.busybox).expect("busybox"),
        LINUX_SHOWS_TPM,
    );
    std::fs::write(share.join("initrd.img"), initrd).expect("initrd");
    let socket = dir.join("v0.sock");
    let share_arg = share.display().to_string();
    let _server = VioServer::start(
        &vioboot_harness::vio_server_binary(&root()),
        &socket,
        &["--fs", &share_arg, "--tag", "boot"],
        &dir.join("server.log"),
    )
    .expect("server");
    let tpm = Swtpm::start(&dir.join("tpm")).expect("swtpm");
    let mut q = qemu(boot, &tpm).append("vioboot.mode=boot");
    q.binary = vioboot_harness::built_qemu(&root()).expect("the project's QEMU");
    q.extra.extend(vioboot_harness::virtio_vio_device(
        "v0",
        &socket,
        0x7100_0010,
    ));
    (vioboot_harness::run(&q, TIMEOUT).expect("QEMU runs"), share)
}

fn assert_tpm(run: &Run) {
    let r = run.report();
    assert!(!run.timed_out(), "QEMU timed out:\n{}", run.output);
    assert!(r.is_complete(), "incomplete report:\n{}", run.output);
    assert!(
        r.failures().is_empty(),
        "{:?}:\n{}",
        r.failures(),
        run.output
    );
    assert_eq!(r.verdict, Some(true), "{}", run.output);
    assert_eq!(run.exit_code(), Some(0), "{}", run.output);
    let a = run.line("vtpm@71000004");
    assert!(a.contains("TPM 2.0, 4096-byte command buffer"), "{a}");
    let t = run.line("vtpm@71000004 tpm");
    assert!(t.contains("manufacturer \"IBM\", family \"2.0\""), "{t}");
    assert!(
        t.contains("banks: sha1 active, sha256 active, sha384 active, sha512 active"),
        "{t}"
    );
    let e = run.line("vtpm@71000004 extend");
    assert!(
        e.contains("PCR 16 sha256") && e.ends_with("as computed; sha1, sha384, sha512 likewise"),
        "{e}"
    );
    let u = run.line("vtpm@71000004 unmapped");
    assert!(u.contains("0 protocol errors"), "{u}");
    run.line("vtpm@71000004 shutdown");
}

#[test]
fn smoke_under_slof() {
    let run = smoke(Boot::Slof, "slof");
    assert_tpm(&run);
    // SLOF starts the TPM itself.
    assert!(run.line("vtpm@71000004 tpm").contains("already started"));
}

#[test]
fn smoke_as_bios() {
    let run = smoke(Boot::Bios, "bios");
    assert_tpm(&run);
    // Nobody started it before vioboot.
    assert!(run
        .line("vtpm@71000004 tpm")
        .contains("Startup(SU_CLEAR) done"));
}

/// With the vTPM as the only CRQ adapter (`-nodefaults`: no v-scsi), the `vio-irq` check
/// takes the vTPM's interrupt: GET_VERSION's answer, queued with H_VIO_SIGNAL on, raises
/// source 0x1104 at vector 0x500; afterwards the vTPM's own checks still pass.
#[test]
fn the_vtpm_answer_raises_its_interrupt() {
    let tpm = Swtpm::start(&scratch("irq")).expect("swtpm");
    let mut q = qemu(Boot::Bios, &tpm);
    q.extra.extend(
        [
            "-nodefaults",
            "-chardev",
            "stdio,id=con",
            "-device",
            "spapr-vty,chardev=con",
        ]
        .map(String::from),
    );
    let run = vioboot_harness::run(&q, TIMEOUT).expect("QEMU runs");
    run.assert_pass();
    let l = run.line("vio-irq");
    assert!(
        l.contains("vtpm@71000004: source 0x1104 routed to server 0x0 at priority 5")
            && l.contains("taken at vector 0x500 after")
            && l.contains("XIRR 0xff001104, H_EOI; GET_VERSION answered 2")
            && l.contains("signalling off and the source masked"),
        "{}",
        run.output
    );
    assert!(
        run.line("vtpm@71000004 shutdown")
            .contains("CRQ freed, every TCE cleared"),
        "{}",
        run.output
    );
}

/// The kernel reached the initramfs after vioboot's PASS verdict, and the report has no
/// failure.
fn booted_cleanly(run: &Run) {
    assert!(
        run.output.contains(INITRAMFS_MARKER),
        "the kernel did not reach the initramfs:\n{}",
        run.output
    );
    let r = run.report();
    assert!(
        r.failures().is_empty(),
        "{:?}:\n{}",
        r.failures(),
        run.output
    );
    assert_eq!(r.verdict, Some(true), "{}", run.output);
}

/// The event log Linux took (vioboot's three events among it, after whatever the firmware
/// logged), checked: the events' SHA-256 digests are the files' and the command line's, and
/// replayed, every bank gives the PCRs Linux read. Returns the log's banks.
fn linux_log_matches(run: &Run, share: &Path) -> Vec<(u16, usize)> {
    let (bytes, pcrs) = linux_tpm(run);
    let log = tpm::log::parse(&bytes).unwrap_or_else(|e| panic!("{e}:\n{}", run.output));
    let l = vioboot_harness::debian_linux(&root()).expect("Debian's kernel");
    let kernel = vioboot_harness::sha256_file(&l.vmlinux).expect("sha");
    let initrd = vioboot_harness::sha256_file(&share.join("initrd.img")).expect("sha");
    let hexd = |d: &[u8]| d.iter().map(|b| format!("{b:02x}")).collect::<String>();
    let sha256 = |e: &tpm::log::Event| {
        e.digests
            .iter()
            .find(|d| d.0 == tpm::ALG_SHA256)
            .map(|d| hexd(d.1))
            .expect("a sha256 digest")
    };
    let e: Vec<&tpm::log::Event> = log
        .events
        .iter()
        .filter(|e| e.pcr == 8 || e.pcr == 9)
        .collect();
    assert_eq!(e.len(), 3, "{e:?}");
    assert_eq!((e[0].pcr, e[0].data), (9, &b"/vmlinux"[..]));
    assert_eq!(sha256(e[0]), kernel);
    assert_eq!((e[1].pcr, e[1].data), (9, &b"/initrd.img"[..]));
    assert_eq!(sha256(e[1]), initrd);
    let cmdline = b"kernel_cmdline: console=hvc0 measured=yes";
    assert_eq!((e[2].pcr, e[2].data), (8, &cmdline[..]));
    assert_eq!(sha256(e[2]), hexd(&vioboot_core::sha256::digest(cmdline)));
    assert_eq!(pcrs.len(), 8, "PCRs not printed:\n{}", run.output);
    for (alg, n, value) in pcrs {
        assert_eq!(replayed(&log, n, alg), value, "PCR {n} of bank {alg:#x}");
    }
    log.banks
}

#[test]
fn measured_boot_hands_the_event_log_over_in_the_tree() {
    let (run, share) = measured_boot(Boot::Bios, "boot-bios");
    booted_cleanly(&run);
    let m = run.line("boot measure");
    assert!(
        m.contains("vtpm@71000004: 3 events (kernel and initrd into PCR 9, command line into PCR 8) extended into sha1, sha256, sha384, sha512; event log"),
        "{m}"
    );
    let h = run.line("boot handoff");
    assert!(
        h.contains("TPM event log") && h.contains("linux,sml-base/size on /vdevice/vtpm@71000004"),
        "{h}"
    );
    assert!(run
        .line("boot quiesce")
        .contains("vtpm@71000004: CRQ freed"));
    // Linux took the log from the tree; vioboot's log names every bank.
    assert_eq!(
        linux_log_matches(&run, &share),
        [
            (tpm::ALG_SHA1, 20),
            (tpm::ALG_SHA256, 32),
            (tpm::ALG_SHA384, 48),
            (tpm::ALG_SHA512, 64)
        ]
    );
}

#[test]
fn under_slof_measurements_go_through_its_vtpm_driver_into_its_log() {
    let (run, share) = measured_boot(Boot::Slof, "boot-slof");
    booted_cleanly(&run);
    let m = run.line("boot measure");
    assert!(
        m.contains("vtpm@71000004: 3 events (kernel and initrd into PCR 9, command line into PCR 8) measured through Open Firmware's 2hash-ext-log into every active bank"),
        "{m}"
    );
    // Linux took SLOF's log (sml-handover): vioboot's three events are in it, hashed by SLOF
    // from the files' bytes, and replayed they give the PCRs Linux reads.
    let banks = linux_log_matches(&run, &share);
    assert!(banks.iter().any(|b| b.0 == tpm::ALG_SHA256), "{banks:?}");
}

#[test]
fn under_vof_nothing_is_measured_and_it_says_why() {
    let (run, _) = measured_boot(Boot::Vof, "boot-vof");
    assert!(
        run.output.contains(INITRAMFS_MARKER),
        "the kernel did not reach the initramfs:\n{}",
        run.output
    );
    let m = run
        .report()
        .lines
        .iter()
        .find(|l| l.description.starts_with("boot measure"))
        .map(|l| l.description.clone())
        .unwrap_or_else(|| panic!("no boot measure line:\n{}", run.output));
    assert!(
        m.contains("# SKIP Open Firmware keeps the TPM event log but has no driver for /vdevice/vtpm@71000004"),
        "{m}"
    );
}
