//! virtio-vio end to end: vioboot in QEMU with the spapr-virtio-vio device model, served by the
//! VIO server process, over real CRQs, TCE windows and remote DMA.
//!
//! Needs the image (`cargo xtask image`), the QEMU built by `host/qemu/build.sh` and the VIO
//! server (`cargo build --release -p vio-server`); `cargo xtask test` prepares all three.

use std::path::{Path, PathBuf};
use std::time::Duration;
use vioboot_harness::{Boot, Qemu, Run, VioServer};

const TIMEOUT: Duration = Duration::from_secs(240);

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn scratch(name: &str) -> PathBuf {
    vioboot_harness::scratch(&root(), "vio", name)
}

fn qemu(boot: Boot) -> Qemu {
    let dir = vioboot_harness::image_dir(&root());
    assert!(
        dir.join("vioboot.elf").exists(),
        "no image: run `cargo xtask image` first"
    );
    let mut q = Qemu::new(boot, dir);
    q.binary = vioboot_harness::built_qemu(&root()).expect("QEMU with the virtio-vio device model");
    q
}

fn server(dir: &Path, n: u32, disk_mib: u64, extra: &[&str]) -> (VioServer, Vec<String>) {
    let disk = dir.join(format!("disk{n}.img"));
    vioboot_harness::pattern_disk(&disk, disk_mib).expect("disk image");
    let socket = dir.join(format!("v{n}.sock"));
    let bin = vioboot_harness::vio_server_binary(&root());
    assert!(
        bin.exists(),
        "{} missing: run `cargo build --release -p vio-server`",
        bin.display()
    );
    let disk_arg = disk.display().to_string();
    let serial = format!("disk-{n}");
    let mut args = vec!["--blk", disk_arg.as_str(), "--serial", serial.as_str()];
    args.extend_from_slice(extra);
    let s = VioServer::start(&bin, &socket, &args, &dir.join(format!("server{n}.log")))
        .expect("server starts");
    let dev = vioboot_harness::virtio_vio_device(&format!("v{n}"), &socket, 0x7100_0010 + n);
    (s, dev)
}

#[test]
fn blk_smoke_checks_pass_under_slof() {
    let dir = scratch("smoke");
    let (srv, dev) = server(&dir, 0, 8, &[]);
    let mut q = qemu(Boot::Slof);
    q.extra = dev;
    let run = vioboot_harness::run(&q, TIMEOUT).expect("QEMU runs");
    run.assert_pass();
    // Each check of the adapter, and what its line must say.
    for (check, want) in [
        ("virtio@71000010", "CRQ handshake and PROBE"),
        ("virtio@71000010", "device id 2"),
        (
            "virtio@71000010 capacity",
            "16384 sectors (8 MiB), read-write",
        ),
        ("virtio@71000010 id", "serial \"disk-0\""),
        ("virtio@71000010 read", "hold the test pattern"),
        ("virtio@71000010 write", "wrote and read back"),
        ("virtio@71000010 flush", "completed"),
        ("virtio@71000010 unmapped", "no buffer left"),
        ("virtio@71000010 shutdown", "every TCE cleared"),
    ] {
        assert!(
            run.line(check).contains(want),
            "`{check}` lacks `{want}`:\n{}",
            run.output
        );
    }
    drop(srv);
}

#[test]
fn blk_under_vof_and_without_firmware() {
    for boot in [Boot::Vof, Boot::Bios] {
        let dir = scratch(boot.name());
        let (_srv, dev) = server(&dir, 0, 4, &[]);
        let mut q = qemu(boot);
        q.extra = dev;
        let run = vioboot_harness::run(&q, TIMEOUT).expect("QEMU runs");
        run.assert_pass();
        assert!(
            run.line("virtio@71000010 write")
                .contains("wrote and read back"),
            "{}",
            run.output
        );
    }
}

#[test]
fn two_devices_at_once() {
    let dir = scratch("two");
    let (_s0, d0) = server(&dir, 0, 4, &[]);
    let (_s1, d1) = server(&dir, 1, 8, &["--read-only"]);
    let mut q = qemu(Boot::Slof);
    q.extra = d0;
    q.extra.extend(d1);
    let run = vioboot_harness::run(&q, TIMEOUT).expect("QEMU runs");
    run.assert_pass();
    assert!(
        run.line("virtio@71000010 capacity")
            .contains("8192 sectors"),
        "{}",
        run.output
    );
    assert!(
        run.line("virtio@71000011 capacity")
            .contains("16384 sectors (8 MiB), read-only"),
        "{}",
        run.output
    );
    assert!(
        run.line("virtio@71000011 id").contains("disk-1"),
        "{}",
        run.output
    );
    assert!(
        run.line("virtio@71000011 write").contains("SKIP"),
        "{}",
        run.output
    );
}

#[test]
fn verify_64_mib_survives_a_server_restart() {
    let dir = scratch("restart");
    let (mut srv, dev) = server(&dir, 0, 80, &[]);
    let mut q = qemu(Boot::Bios).append("vioboot.blk-verify=64");
    q.extra = dev;
    let mut restarts = 0;
    let run = vioboot_harness::run_watch(&q, TIMEOUT, |l| {
        // Kill the server in the middle of the writes and again in the middle of the reads.
        if l.contains("wrote 32 of 64 MiB") || l.contains("read 16 of 64 MiB") {
            srv.restart().expect("server restarts");
            restarts += 1;
        }
    })
    .expect("QEMU runs");
    assert_eq!(restarts, 2, "{}", run.output);
    run.assert_pass();
    assert!(
        run.line("virtio@71000010 verify")
            .contains("64 MiB written"),
        "{}",
        run.output
    );
    assert!(
        run.line("virtio@71000010 verify").contains("intact"),
        "{}",
        run.output
    );
    let unmapped = run.line("virtio@71000010 unmapped");
    assert!(
        !unmapped.contains(" 0 resets"),
        "the restarts were not noticed: {unmapped}\n{}",
        run.output
    );
}

/// A server that stalls for seconds (a busy host) is waited for, and the wait is visible on
/// the console each second; nothing fails before the bound.
#[test]
fn a_stalled_server_is_waited_for_and_the_wait_is_shown() {
    let dir = scratch("stall");
    let (srv, dev) = server(&dir, 0, 40, &[]);
    let mut q = qemu(Boot::Bios).append("vioboot.blk-verify=16");
    q.extra = dev;
    let mut stalls = 0;
    let run = vioboot_harness::run_watch(&q, TIMEOUT, |l| {
        if l.contains("wrote 8 of 16 MiB") {
            srv.stall_for(Duration::from_millis(3500));
            stalls += 1;
        }
    })
    .expect("QEMU runs");
    assert_eq!(stalls, 1, "{}", run.output);
    run.assert_pass();
    assert!(
        run.output
            .lines()
            .any(|l| l.contains("USED for queue 0: still waiting") && l.contains(" s of 30 s")),
        "the wait was not shown:\n{}",
        run.output
    );
    assert!(
        run.line("virtio@71000010 verify").contains("intact"),
        "{}",
        run.output
    );
}

/// The virtio-fs server is killed and restarted at moments spread over the share's checks
/// (the 16 MiB file among them): each read goes on in the new session from where it stopped,
/// and every check still passes.
#[test]
fn fs_reads_survive_server_restarts_at_any_moment() {
    for (i, delay_ms) in [0u64, 60].into_iter().enumerate() {
        let dir = scratch(&format!("fs-restart-{i}"));
        let share = dir.join("share");
        vioboot_harness::test_share(&share, 16).expect("share");
        let (mut srv, dev) = fs_server(&dir, 0, &share, "share0");
        let mut q = qemu(Boot::Bios);
        q.extra = dev;
        let mut restarts = 0;
        let run = vioboot_harness::run_watch(&q, TIMEOUT, |l| {
            if l.contains("virtio@71000010 list:") && restarts == 0 {
                std::thread::sleep(Duration::from_millis(delay_ms));
                srv.restart().expect("server restarts");
                restarts += 1;
            }
        })
        .expect("QEMU runs");
        assert_eq!(restarts, 1, "{}", run.output);
        run.assert_pass();
        assert!(
            fs_lines(&run, "virtio@71000010 file")
                .iter()
                .any(|l| l.contains("/big.bin: 16777216 bytes, sha256 matches")),
            "{}",
            run.output
        );
    }
}

#[test]
fn no_server_is_a_clear_failure() {
    let dir = scratch("noserver");
    let socket = dir.join("nobody.sock");
    let mut q = qemu(Boot::Bios).append("vioboot.vio-timeout=500");
    q.extra = vioboot_harness::virtio_vio_device("v0", &socket, 0x7100_0010);
    let run = vioboot_harness::run(&q, TIMEOUT).expect("QEMU runs");
    let r = run.report();
    assert_eq!(r.verdict, Some(false), "{}", run.output);
    assert_eq!(run.exit_code(), Some(1), "{}", run.output);
    let l = r.check("virtio@71000010").expect("a line for the adapter");
    assert!(
        !l.ok && l.description.contains("did not answer INIT within 500 ms"),
        "{}",
        run.output
    );
}

/// A VIO server sharing `share` as virtio-fs with `tag`, as adapter `n`.
fn fs_server(dir: &Path, n: u32, share: &Path, tag: &str) -> (VioServer, Vec<String>) {
    let socket = dir.join(format!("v{n}.sock"));
    let bin = vioboot_harness::vio_server_binary(&root());
    let share_arg = share.display().to_string();
    let args = ["--fs", share_arg.as_str(), "--tag", tag];
    let s = VioServer::start(&bin, &socket, &args, &dir.join(format!("server{n}.log")))
        .expect("server starts");
    let dev = vioboot_harness::virtio_vio_device(&format!("v{n}"), &socket, 0x7100_0010 + n);
    (s, dev)
}

fn fs_lines(run: &Run, check: &str) -> Vec<String> {
    run.report()
        .lines
        .iter()
        .filter(|l| l.description.starts_with(&format!("{check}:")))
        .map(|l| l.description.clone())
        .collect()
}

#[test]
fn fs_share_mounts_lists_and_verifies() {
    let dir = scratch("fs");
    let share = dir.join("share");
    vioboot_harness::test_share(&share, 64).expect("share");
    let (srv, dev) = fs_server(&dir, 0, &share, "share0");
    let mut q = qemu(Boot::Bios);
    q.extra = dev;
    let run = vioboot_harness::run(&q, TIMEOUT).expect("QEMU runs");
    run.assert_pass();
    let d = "virtio@71000010";
    assert!(run.line(d).contains("device id 26"), "{}", run.output);
    assert!(
        run.line(&format!("{d} mount")).contains("tag \"share0\""),
        "{}",
        run.output
    );
    assert!(
        run.line(&format!("{d} list")).contains("entries"),
        "{}",
        run.output
    );
    let files = fs_lines(&run, &format!("{d} file"));
    for want in [
        "/hello.txt",
        "/big.bin: 67108864 bytes, sha256 matches",
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
    let dirs = fs_lines(&run, &format!("{d} dir"));
    assert!(
        dirs.iter().any(|l| l.contains("/many: all 10000 entries")),
        "{}",
        run.output
    );
    assert_eq!(
        fs_lines(&run, &format!("{d} enoent")).len(),
        2,
        "{}",
        run.output
    );
    assert!(
        run.line(&format!("{d} eloop")).contains("ELOOP"),
        "{}",
        run.output
    );
    assert!(
        run.line(&format!("{d} unmount")).contains("no buffer left"),
        "{}",
        run.output
    );
    assert!(
        run.line(&format!("{d} shutdown"))
            .contains("every TCE cleared"),
        "{}\n{}",
        run.output,
        srv.log()
    );
}

#[test]
fn fs_and_blk_side_by_side_under_slof() {
    let dir = scratch("fsblk");
    let share = dir.join("share");
    vioboot_harness::test_share(&share, 1).expect("share");
    let (_b, d0) = server(&dir, 0, 4, &[]);
    let (_f, d1) = fs_server(&dir, 1, &share, "boot");
    let mut q = qemu(Boot::Slof);
    q.extra = d0;
    q.extra.extend(d1);
    let run = vioboot_harness::run(&q, TIMEOUT).expect("QEMU runs");
    run.assert_pass();
    assert!(
        run.line("virtio@71000010 write")
            .contains("wrote and read back"),
        "{}",
        run.output
    );
    assert!(
        run.line("virtio@71000011 mount").contains("tag \"boot\""),
        "{}",
        run.output
    );
}

#[test]
fn a_lying_fs_server_is_a_named_failure_not_a_hang() {
    for (fault, want) in [
        ("fs-wrong-unique", "bad reply: reply for request"),
        ("fs-dirent-overrun", "directory entry at byte"),
    ] {
        let dir = scratch(fault);
        let share = dir.join("share");
        vioboot_harness::test_share(&share, 1).expect("share");
        let socket = dir.join("v0.sock");
        let bin = vioboot_harness::vio_server_binary(&root());
        let share_arg = share.display().to_string();
        let _s = VioServer::start(
            &bin,
            &socket,
            &["--fs", &share_arg, "--tag", "bad", "--fault", fault],
            &dir.join("server.log"),
        )
        .expect("server");
        let mut q = qemu(Boot::Bios);
        q.extra = vioboot_harness::virtio_vio_device("v0", &socket, 0x7100_0010);
        let run = vioboot_harness::run(&q, TIMEOUT).expect("QEMU runs");
        let r = run.report();
        assert_eq!(r.verdict, Some(false), "{fault}: {}", run.output);
        assert_eq!(run.exit_code(), Some(1), "{fault}: {}", run.output);
        assert!(
            r.failures().iter().any(|l| l.description.contains(want)),
            "{fault}: no failure naming `{want}`:\n{}",
            run.output
        );
        assert!(
            run.line("virtio@71000010 shutdown")
                .contains("every TCE cleared"),
            "{fault}: {}",
            run.output
        );
    }
}

#[test]
fn fs_survives_a_server_restart_with_a_new_fuse_session() {
    let dir = scratch("fsrestart");
    let share = dir.join("share");
    vioboot_harness::test_share(&share, 16).expect("share");
    let (mut srv, dev) = fs_server(&dir, 0, &share, "share0");
    let mut q = qemu(Boot::Bios);
    q.extra = dev;
    let mut restarted = false;
    let run = vioboot_harness::run_watch(&q, TIMEOUT, |l| {
        // Right after the mount: the server's FUSE session is lost under the listing.
        if !restarted && l.contains("virtio@71000010 mount:") {
            srv.restart().expect("server restarts");
            std::thread::sleep(Duration::from_millis(300));
            restarted = true;
        }
    })
    .expect("QEMU runs");
    assert!(restarted, "{}", run.output);
    run.assert_pass();
    assert!(
        fs_lines(&run, "virtio@71000010 file")
            .iter()
            .any(|l| l.contains("/big.bin: 16777216 bytes, sha256 matches")),
        "{}",
        run.output
    );
}

/// A pattern disk of `mib` MiB in `dir` exported by two VIO servers under one serial
/// (`mp-disk`), as adapters 0x71000010 and 0x71000011 of `q`: one disk of two paths.
fn one_disk_on_two_servers(dir: &Path, mib: u64, q: &mut Qemu) -> Vec<VioServer> {
    let disk = dir.join("shared.img");
    vioboot_harness::pattern_disk(&disk, mib).expect("disk image");
    let bin = vioboot_harness::vio_server_binary(&root());
    let disk_arg = disk.display().to_string();
    (0..2u32)
        .map(|n| {
            let socket = dir.join(format!("v{n}.sock"));
            q.extra.extend(vioboot_harness::virtio_vio_device(
                &format!("v{n}"),
                &socket,
                0x7100_0010 + n,
            ));
            VioServer::start(
                &bin,
                &socket,
                &["--blk", &disk_arg, "--serial", "mp-disk"],
                &dir.join(format!("server{n}.log")),
            )
            .expect("server starts")
        })
        .collect()
}

/// Two VIO servers export one disk under one serial: one disk of two paths. The first server
/// is killed for good in the middle of a 64 MiB write/read/verify: its request fails within the
/// bound, the request is sent again on the other path, and every block reads back intact.
#[test]
fn a_disk_on_two_servers_survives_losing_one_for_good() {
    let mut q = qemu(Boot::Bios).append("vioboot.blk-verify=64 vioboot.vio-timeout=3000");
    let mut servers = one_disk_on_two_servers(&scratch("multipath"), 80, &mut q);
    let mut killed = false;
    let run = vioboot_harness::run_watch(&q, TIMEOUT, |l| {
        if !killed && l.contains("wrote 16 of 64 MiB") {
            servers[0].kill();
            killed = true;
        }
    })
    .expect("QEMU runs");
    assert!(killed, "the verify never reached 16 MiB:\n{}", run.output);
    run.assert_pass();
    let disk = "disk serial:mp-disk";
    run.assert_lines(&[
        (&format!("{disk} verify"), "64 MiB written"),
        (&format!("{disk} verify"), "intact"),
        (
            &format!("{disk} paths"),
            "2 paths: virtio@71000010 (failed: ",
        ),
        (
            &format!("{disk} paths"),
            "virtio@71000011 (active); 1 failover(s)",
        ),
        (&format!("{disk} paths"), "I/O continues on virtio@71000011"),
        (&format!("{disk} unmapped"), "no buffer left"),
    ]);
}

/// Two VIO servers export one disk under one serial. The first is killed mid-verify; once its
/// request has moved to the second path, it is started again on the same disk file: the
/// failed path is set up again (a new CRQ session, the device reset, a new queue) at the next
/// probe (`vioboot.path-probe=500`), checked to be the same disk, and rejoins, by name. Then
/// the second server is killed for good, before the verify's writes end: the rest of the
/// writes and every read back go through the first path, and all 256 MiB read back intact.
#[test]
fn a_killed_server_that_comes_back_rejoins_and_carries_the_disk() {
    let mut q = qemu(Boot::Bios)
        .append("vioboot.blk-verify=256 vioboot.vio-timeout=3000 vioboot.path-probe=500");
    let mut servers = one_disk_on_two_servers(&scratch("multipath-rejoin"), 272, &mut q);
    let (mut killed, mut restarted, mut second_killed) = (false, false, false);
    let run = vioboot_harness::run_watch(&q, TIMEOUT, |l| {
        if !killed && l.contains("wrote 16 of 256 MiB") {
            servers[0].kill();
            killed = true;
        } else if killed && !restarted && l.contains("I/O continues on virtio@71000011") {
            servers[0].restart().expect("the first server starts again");
            restarted = true;
        } else if restarted && !second_killed && l.contains("virtio@71000010 set up again") {
            servers[1].kill();
            second_killed = true;
        }
    })
    .expect("QEMU runs");
    assert!(
        killed && restarted && second_killed,
        "killed {killed}, restarted {restarted}, second killed {second_killed}:\n{}",
        run.output
    );
    run.assert_pass();
    let disk = "disk serial:mp-disk";
    run.assert_lines(&[
        (&format!("{disk} verify"), "256 MiB written"),
        (&format!("{disk} verify"), "intact"),
        (
            &format!("{disk} paths"),
            "2 paths: virtio@71000010 (active), virtio@71000011 (failed: ",
        ),
        (&format!("{disk} paths"), "2 failover(s): virtio@71000010 failed ("),
        (
            &format!("{disk} paths"),
            "I/O continues on virtio@71000011; virtio@71000010 set up again (new session, device reset, new queue) and rejoined; virtio@71000011 failed (",
        ),
        (&format!("{disk} paths"), "I/O continues on virtio@71000010"),
        (&format!("{disk} unmapped"), "no buffer left"),
    ]);
    // The rejoin is said on the console as it happens, and the second server died while the
    // verify was still writing: every read back went through the first path.
    let at = |text: &str| {
        run.output
            .find(text)
            .unwrap_or_else(|| panic!("no `{text}`:\n{}", run.output))
    };
    assert!(
        at("# multipath disk serial:mp-disk: virtio@71000010 set up again")
            < at("virtio@71000011 failed (")
    );
    assert!(
        at("virtio@71000011 failed (") < at("read 4 of 256 MiB"),
        "the second path failed only once the reads began:\n{}",
        run.output
    );
}
