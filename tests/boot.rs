//! The bootloader end to end: vioboot loads Debian's real ppc64le kernel and a busybox
//! initramfs from a virtio-fs share served by the VIO server, and hands over through Open
//! Firmware (SLOF) or with a flattened tree (no firmware). The initramfs prints a marker with
//! /proc/cmdline and powers off.
//!
//! Needs the image, the QEMU built with the device model, the VIO server (`cargo xtask test`
//! prepares them) and Debian's kernel and busybox (`host/linux/fetch.sh`, run here).

use std::path::{Path, PathBuf};
use std::time::Duration;
use vioboot_harness::{Boot, DebianLinux, Qemu, Run, VioServer, INITRAMFS_MARKER};

const TIMEOUT: Duration = Duration::from_secs(300);

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn linux() -> DebianLinux {
    vioboot_harness::debian_linux(&root()).expect("Debian's ppc64le kernel and busybox")
}

fn scratch(name: &str) -> PathBuf {
    vioboot_harness::scratch(&root(), "boot", name)
}

/// Boots vioboot (mode boot) with a share holding `entries`, and returns the run.
fn boot(name: &str, boot: Boot, entries: &[(&str, String)], append: &str) -> (Run, String) {
    boot_with(name, boot, entries, append, |_| {})
}

/// As `boot`, letting `extra` add files to the share.
fn boot_with(
    name: &str,
    boot: Boot,
    entries: &[(&str, String)],
    append: &str,
    extra: impl FnOnce(&Path),
) -> (Run, String) {
    boot_typing(name, boot, entries, append, extra, None)
}

/// As `boot_with`, typing `input` on the console when its trigger line appears.
fn boot_typing(
    name: &str,
    boot: Boot,
    entries: &[(&str, String)],
    append: &str,
    extra: impl FnOnce(&Path),
    input: Option<(&str, &[u8])>,
) -> (Run, String) {
    boot_in(
        Guest {
            memory: "1G",
            args: &[],
        },
        name,
        boot,
        entries,
        append,
        extra,
        input,
    )
}

/// The guest's memory (QEMU's `-m`) and further QEMU arguments.
struct Guest<'a> {
    memory: &'a str,
    args: &'a [&'a str],
}

/// As `boot_typing`, in `guest`.
fn boot_in(
    guest: Guest,
    name: &str,
    boot: Boot,
    entries: &[(&str, String)],
    append: &str,
    extra: impl FnOnce(&Path),
    input: Option<(&str, &[u8])>,
) -> (Run, String) {
    let dir = scratch(name);
    let share = dir.join("share");
    let l = linux();
    vioboot_harness::boot_share(&share, &l, entries, Some("timeout 0\n")).expect("share");
    extra(&share);
    let socket = dir.join("v0.sock");
    let share_arg = share.display().to_string();
    let server = VioServer::start(
        &vioboot_harness::vio_server_binary(&root()),
        &socket,
        &["--fs", &share_arg, "--tag", "boot"],
        &dir.join("server.log"),
    )
    .expect("server");
    let mut q = Qemu::new(boot, vioboot_harness::image_dir(&root()))
        .append(&format!("vioboot.mode=boot {append}"));
    q.binary = vioboot_harness::built_qemu(&root()).expect("QEMU");
    q.memory = guest.memory.into();
    q.extra = vioboot_harness::virtio_vio_device("v0", &socket, 0x7100_0010);
    q.extra.extend(guest.args.iter().map(|a| a.to_string()));
    q.input = input.map(|(t, b)| (t.to_string(), b.to_vec()));
    let run = vioboot_harness::run(&q, TIMEOUT).expect("QEMU runs");
    let log = server.log();
    (run, log)
}

fn entry(title: &str, linux: &str, initrd: Option<&str>, options: &str, extra: &str) -> String {
    format!(
        "title {title}\nlinux {linux}\n{}options {options}\n{extra}",
        initrd.map_or(String::new(), |i| format!("initrd {i}\n"))
    )
}

fn marker_cmdline(run: &Run) -> String {
    // vioboot's report ends with its verdict line before it enters the kernel.
    assert!(
        run.report().verdict.is_some(),
        "no verdict line before the kernel:\n{}",
        run.output
    );
    let l = run
        .output
        .lines()
        .find(|l| l.contains(INITRAMFS_MARKER))
        .unwrap_or_else(|| panic!("the initramfs never ran:\n{}", run.output));
    l.split("cmdline=[")
        .nth(1)
        .unwrap_or("")
        .trim_end_matches(']')
        .to_string()
}

fn good() -> String {
    let l = linux();
    let sha = vioboot_harness::sha256_file(&l.vmlinux).expect("sha");
    entry(
        "Debian",
        "/vmlinux",
        Some("/initrd.img"),
        "console=hvc0 vioboot-test=yes",
        &format!("sha256 {sha}\n"),
    )
}

#[test]
fn boots_linux_through_open_firmware() {
    let (run, log) = boot("of", Boot::Slof, &[("debian", good())], "");
    assert_eq!(run.report().verdict, Some(true), "{}", run.output);
    let cmdline = marker_cmdline(&run);
    assert!(
        cmdline.contains("console=hvc0 vioboot-test=yes"),
        "{cmdline}\n{}",
        run.output
    );
    assert!(
        run.output.contains("ok ") && run.output.contains("boot handoff: Open Firmware"),
        "{}",
        run.output
    );
    assert!(run.output.contains("sha256 verified"), "{}", run.output);
    assert_eq!(run.exit_code(), Some(0), "{}\n{log}", run.output);
}

#[test]
fn boots_linux_with_a_flattened_tree() {
    let (run, log) = boot("fdt", Boot::Bios, &[("debian", good())], "");
    assert_eq!(run.report().verdict, Some(true), "{}", run.output);
    let cmdline = marker_cmdline(&run);
    assert!(
        cmdline.contains("vioboot-test=yes"),
        "{cmdline}\n{}",
        run.output
    );
    assert!(
        run.output.contains("boot handoff: flattened tree"),
        "{}",
        run.output
    );
    assert_eq!(run.exit_code(), Some(0), "{}\n{log}", run.output);
}

#[test]
fn bad_entries_are_named_and_the_next_one_boots() {
    let l = linux();
    let sha = vioboot_harness::sha256_file(&l.vmlinux).expect("sha");
    let zeros = "0".repeat(64);
    let entries = [
        (
            "a-missing",
            entry(
                "Missing kernel",
                "/no-such-vmlinux",
                None,
                "",
                "sort-key a\n",
            ),
        ),
        (
            "b-badsha",
            entry(
                "Wrong sha256",
                "/vmlinux",
                None,
                "",
                &format!("sort-key b\nsha256 {zeros}\n"),
            ),
        ),
        (
            "c-corrupt",
            entry("Corrupt ELF", "/corrupt.elf", None, "", "sort-key c\n"),
        ),
        (
            "d-x86",
            entry("x86 kernel", "/x86.elf", None, "", "sort-key d\n"),
        ),
        (
            "e-truncated",
            entry(
                "Truncated initrd",
                "/vmlinux",
                Some("/truncated.img"),
                "",
                &format!("sort-key e\ninitrd-sha256 {zeros}\n"),
            ),
        ),
        (
            "f-nolinux",
            "title No linux key\nsort-key f\noptions x\n".to_string(),
        ),
        (
            "z-good",
            entry(
                "Debian",
                "/vmlinux",
                Some("/initrd.img"),
                "console=hvc0 fallback=ok",
                &format!("sort-key z\nsha256 {sha}\n"),
            ),
        ),
    ];
    let dir = scratch("fallback-files");
    let _ = dir;
    let (run, log) = boot_with("fallback", Boot::Bios, &entries, "", |share| {
        std::fs::write(share.join("corrupt.elf"), b"\x7fELF\x02\x01\x01garbage").expect("write");
        let x86 = vioboot_core::elf::build_test_elf(62, 0x40_0000, &[0x90; 64]);
        std::fs::write(share.join("x86.elf"), x86).expect("write");
        let initrd = std::fs::read(share.join("initrd.img")).expect("read");
        std::fs::write(share.join("truncated.img"), &initrd[..initrd.len() / 2]).expect("write");
    });
    let r = run.report();
    assert_eq!(
        r.verdict,
        Some(false),
        "failed entries make the verdict FAIL:\n{}",
        run.output
    );
    for (id, why) in [
        ("a-missing", "/no-such-vmlinux: ENOENT"),
        ("b-badsha", "does not match the entry's"),
        ("c-corrupt", "/corrupt.elf:"),
        ("d-x86", "an x86-64 ELF, not PowerPC 64"),
        ("e-truncated", "truncated or replaced"),
        ("f-nolinux", "the entry has no `linux` key"),
    ] {
        let l = r
            .check(&format!("boot entry {id}"))
            .unwrap_or_else(|| panic!("no line for {id}:\n{}", run.output));
        assert!(
            !l.ok && l.description.contains(why),
            "{id}: {}\n{}",
            l.description,
            run.output
        );
    }
    assert!(
        marker_cmdline(&run).contains("fallback=ok"),
        "{}\n{log}",
        run.output
    );
    assert_eq!(run.exit_code(), Some(0), "{}", run.output);
}

#[test]
fn no_bootable_entry_is_a_failing_report() {
    let entries = [("only", entry("Missing", "/nothing-here", None, "", ""))];
    let (run, _) = boot("none", Boot::Bios, &entries, "");
    let r = run.report();
    assert_eq!(r.verdict, Some(false), "{}", run.output);
    assert!(
        r.check("boot")
            .is_some_and(|l| !l.ok && l.description.contains("no boot entry could be loaded")),
        "{}",
        run.output
    );
    assert_eq!(run.exit_code(), Some(1), "{}", run.output);
    assert!(!run.output.contains(INITRAMFS_MARKER));
}

#[test]
fn the_command_line_picks_the_default_entry() {
    let entries = [
        (
            "a",
            entry(
                "First",
                "/vmlinux",
                Some("/initrd.img"),
                "console=hvc0 pick=a",
                "sort-key a\n",
            ),
        ),
        (
            "b",
            entry(
                "Second",
                "/vmlinux",
                Some("/initrd.img"),
                "console=hvc0 pick=b",
                "sort-key b\n",
            ),
        ),
    ];
    let (run, _) = boot("default", Boot::Bios, &entries, "vioboot.default=b");
    assert!(marker_cmdline(&run).contains("pick=b"), "{}", run.output);
}

#[test]
fn vioboot_boot_names_a_kernel_directly() {
    let (run, _) = boot(
        "direct",
        Boot::Slof,
        &[],
        "vioboot.boot=/vmlinux vioboot.initrd=/initrd.img console=hvc0 direct=1",
    );
    let c = marker_cmdline(&run);
    assert!(
        c.contains("console=hvc0 direct=1") && !c.contains("vioboot."),
        "{c}\n{}",
        run.output
    );
    assert_eq!(run.exit_code(), Some(0), "{}", run.output);
}

#[test]
fn the_menu_picks_by_number_and_edits_options() {
    let entries = [
        (
            "a",
            entry(
                "First",
                "/vmlinux",
                Some("/initrd.img"),
                "console=hvc0 pick=a",
                "sort-key a\n",
            ),
        ),
        (
            "b",
            entry(
                "Second",
                "/vmlinux",
                Some("/initrd.img"),
                "console=hvc0 pick=b",
                "sort-key b\n",
            ),
        ),
    ];
    // Pick 2, edit its options: delete "pick=b", type "edited=yes", Enter.
    let mut keys = b"2e".to_vec();
    keys.extend([0x7f; 6]);
    keys.extend(b"edited=yes\r");
    let (run, _) = boot_typing(
        "menu",
        Boot::Bios,
        &entries,
        "vioboot.timeout=60",
        |_| {},
        Some(("---- boot menu ----", &keys)),
    );
    assert!(
        run.output.contains("*  1) First [a]") && run.output.contains("   2) Second [b]"),
        "{}",
        run.output
    );
    let c = marker_cmdline(&run);
    assert_eq!(c.trim(), "console=hvc0 edited=yes", "{}", run.output);
    assert_eq!(run.exit_code(), Some(0), "{}", run.output);
}

/// The VIO server is killed and restarted in the middle of the kernel load: the read goes on
/// in the new server session from where it stopped, the SHA-256 the entry pins still matches,
/// and the kernel boots.
#[test]
fn a_server_restart_mid_kernel_load_is_survived() {
    let dir = scratch("restart-load");
    let share = dir.join("share");
    let l = linux();
    vioboot_harness::boot_share(&share, &l, &[("debian", good())], Some("timeout 0\n"))
        .expect("share");
    let socket = dir.join("v0.sock");
    let share_arg = share.display().to_string();
    let mut server = VioServer::start(
        &vioboot_harness::vio_server_binary(&root()),
        &socket,
        &["--fs", &share_arg, "--tag", "boot"],
        &dir.join("server.log"),
    )
    .expect("server");
    let mut q =
        Qemu::new(Boot::Bios, vioboot_harness::image_dir(&root())).append("vioboot.mode=boot");
    q.binary = vioboot_harness::built_qemu(&root()).expect("QEMU");
    q.extra = vioboot_harness::virtio_vio_device("v0", &socket, 0x7100_0010);
    let mut restarts = 0;
    let run = vioboot_harness::run_watch(&q, TIMEOUT, |line| {
        if line.contains("# loading /vmlinux: 8 of") && restarts == 0 {
            server.restart().expect("server restarts");
            restarts += 1;
        }
    })
    .expect("QEMU runs");
    assert_eq!(restarts, 1, "{}", run.output);
    assert_eq!(run.report().verdict, Some(true), "{}", run.output);
    assert!(run.output.contains("sha256 verified"), "{}", run.output);
    let cmdline = marker_cmdline(&run);
    assert!(cmdline.contains("vioboot-test=yes"), "{cmdline}");
}

/// A share whose `/big.img` is the test initramfs followed by zeros up to 1 GiB (a sparse
/// file: the kernel's unpacker skips zero padding after an archive), and an entry using it.
fn big_initrd(name: &str, boot: Boot, memory: &str) -> (Run, String) {
    let e = entry(
        "Big",
        "/vmlinux",
        Some("/big.img"),
        "console=hvc0 big-initrd=yes",
        "",
    );
    boot_in(
        Guest { memory, args: &[] },
        name,
        boot,
        &[("big", e)],
        "",
        |share| {
            std::fs::copy(share.join("initrd.img"), share.join("big.img")).expect("copy");
            std::fs::OpenOptions::new()
                .write(true)
                .open(share.join("big.img"))
                .and_then(|f| f.set_len(1 << 30))
                .expect("1 GiB initrd");
        },
        None,
    )
}

/// A 1 GiB initrd in a 4 GiB guest, booted through `boot`'s handoff to the initramfs.
fn a_1_gib_initrd_boots(name: &str, boot: Boot) {
    let (run, log) = big_initrd(name, boot, "4G");
    assert!(
        marker_cmdline(&run).contains("big-initrd=yes"),
        "{}",
        run.output
    );
    let l = run.line("boot load");
    assert!(l.contains("initrd 1073741824 bytes"), "{l}");
    assert_eq!(run.exit_code(), Some(0), "{}\n{log}", run.output);
}

#[test]
fn a_1_gib_initrd_boots_through_open_firmware() {
    a_1_gib_initrd_boots("big-of", Boot::Slof);
}

#[test]
fn a_1_gib_initrd_boots_with_a_flattened_tree() {
    a_1_gib_initrd_boots("big-fdt", Boot::Bios);
}

#[test]
fn an_initrd_that_cannot_fit_says_what_memory_it_found() {
    // A 1 GiB initrd in a 1 GiB guest: refused before any of it is read, and before any jump.
    for (name, b, want) in [
        ("big-1g-fdt", Boot::Bios, "free memory found there: 0x"),
        (
            "big-1g-of",
            Boot::Slof,
            "Open Firmware gave no 1024 MiB (0x40000000 bytes) at any 16 MiB step from",
        ),
    ] {
        let (run, _) = big_initrd(name, b, "1G");
        let r = run.report();
        assert_eq!(r.verdict, Some(false), "{}", run.output);
        assert!(!run.output.contains(INITRAMFS_MARKER), "{}", run.output);
        let f = r
            .failures()
            .iter()
            .find(|l| l.description.starts_with("boot entry big"))
            .map(|l| l.description.clone())
            .unwrap_or_else(|| panic!("no failing boot entry line:\n{}", run.output));
        assert!(f.contains(want), "{name}: {f}");
    }
}

/// vioboot starts, checks and stops the secondary vCPU before the handoff, and Linux then
/// brings it up itself (RTAS start-cpu on a stopped thread): the initramfs counts 2 CPUs in
/// /proc/cpuinfo, through Open Firmware and with a flattened tree.
#[test]
fn linux_brings_up_every_vcpu_after_the_checks() {
    let busybox = std::fs::read(linux().busybox).expect("busybox");
    for (name, boot_path) in [("smp-of", Boot::Slof), ("smp-fdt", Boot::Bios)] {
        let (run, log) = boot_in(
            Guest {
                memory: "1G",
                args: &["-smp", "2,cores=2,threads=1"],
            },
            name,
            boot_path,
            &[("debian", good())],
            "",
            |share| {
                std::fs::write(
                    share.join("initrd.img"),
                    vioboot_harness::initramfs_running(
                        &busybox,
                        "echo \"VIOBOOT-CPUS $(/bin/busybox grep -c ^processor /proc/cpuinfo)\"\n",
                    ),
                )
                .expect("initramfs");
            },
            None,
        );
        assert_eq!(run.report().verdict, Some(true), "{}", run.output);
        let r = run.report();
        assert!(
            r.check("cpu 0x1").is_some_and(
                |l| l.ok && l.description.contains("stopped (query-cpu-stopped-state)")
            ),
            "{}",
            run.output
        );
        // The IPIs and the device interrupt were taken before the handoff, and the controller
        // was left as Linux expects it (CPPR 0, MFRR cleared, sources masked).
        for check in ["ipi", "vio-irq", "external-interrupts"] {
            assert!(
                r.check(check)
                    .is_some_and(|l| l.ok && !l.description.contains("# SKIP")),
                "{check}:\n{}",
                run.output
            );
        }
        marker_cmdline(&run);
        assert!(
            run.output.lines().any(|l| l.trim_end() == "VIOBOOT-CPUS 2"),
            "the initramfs does not see 2 CPUs:\n{}",
            run.output
        );
        assert_eq!(run.exit_code(), Some(0), "{}\n{log}", run.output);
    }
}
