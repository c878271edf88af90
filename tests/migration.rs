//! Live migration in the middle of I/O: vioboot runs a 64 MiB write/read/verify on a virtio-vio
//! disk while QEMU migrates the partition to a second QEMU started with `-incoming`, on this
//! machine. The destination's device is served by a VIO server of its own on the same disk
//! file. The partition resumes there, vioboot takes the CRQ's "partner migrated" event
//! (H_ENABLE_CRQ, INIT, the device set up again with the new server session, the queues resumed
//! from their used indices) and every block must read back intact.
//!
//! Needs the image (`cargo xtask image`), the QEMU built by `host/qemu/build.sh` and the VIO
//! server (`cargo build --release -p vio-server`); `cargo xtask test` prepares all three.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use vioboot_harness::{Boot, Qemu, VioServer};

const TIMEOUT: Duration = Duration::from_secs(300);

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Sends one HMP command and returns what the monitor printed within `wait`.
fn hmp(mon: &mut UnixStream, cmd: &str, wait: Duration) -> String {
    mon.write_all(format!("{cmd}\n").as_bytes())
        .expect("monitor write");
    let mut out = Vec::new();
    let end = Instant::now() + wait;
    let mut buf = [0u8; 4096];
    while Instant::now() < end {
        match mon.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(_) => {}
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Migrates the source QEMU (monitor at `mon`) to `to`, waits for the migration to complete
/// and ends the source, as a management stack does. Returns what the monitor said.
fn migrate(mon: &Path, to: &Path) -> Result<String, String> {
    let mut m = UnixStream::connect(mon).map_err(|e| format!("monitor {}: {e}", mon.display()))?;
    m.set_read_timeout(Some(Duration::from_millis(100)))
        .map_err(|e| e.to_string())?;
    let mut said = hmp(&mut m, "", Duration::from_millis(50));
    // QEMU 7.2 limits migration to 32 MiB/s by default; the guest is on the same machine.
    said += &hmp(
        &mut m,
        "migrate_set_parameter max-bandwidth 4G",
        Duration::from_millis(50),
    );
    said += &hmp(
        &mut m,
        &format!("migrate -d unix:{}", to.display()),
        Duration::from_millis(50),
    );
    let end = Instant::now() + Duration::from_secs(120);
    loop {
        let info = hmp(&mut m, "info migrate", Duration::from_millis(500));
        if info.contains("Migration status: completed") {
            said += &info;
            break;
        }
        if info.contains("Migration status: failed") || Instant::now() > end {
            return Err(format!("{said}{info}"));
        }
    }
    said += &hmp(&mut m, "quit", Duration::from_millis(300));
    Ok(said)
}

/// Boots vioboot with `blk-verify=64` in a source QEMU (`src_devices`) and a destination
/// QEMU started with `-incoming` (`dst_devices`: the same devices, each reaching its own
/// backend where it has one); migrates when the verify of `disk` has written 8 MiB and ends
/// the source. Returns the partition's whole console (the source's lines, then the
/// destination's) as one run, and what the monitor said.
fn migrate_during_verify(
    dir: &Path,
    src_devices: Vec<String>,
    dst_devices: Vec<String>,
    disk: &str,
) -> (vioboot_harness::Run, String) {
    let image = vioboot_harness::image_dir(&root());
    assert!(
        image.join("vioboot.elf").exists(),
        "no image: run `cargo xtask image` first"
    );
    let mut base = Qemu::new(Boot::Bios, image).append("vioboot.blk-verify=64");
    base.binary =
        vioboot_harness::built_qemu(&root()).expect("QEMU with the virtio-vio device model");
    let (mon, mig) = (dir.join("monitor.sock"), dir.join("migrate.sock"));
    let mut src = base.clone();
    src.extra = src_devices;
    src.extra.extend([
        "-monitor".into(),
        format!("unix:{},server=on,wait=off", mon.display()),
    ]);
    let mut dst = base;
    dst.extra = dst_devices;
    dst.extra
        .extend(["-incoming".into(), format!("unix:{}", mig.display())]);

    let destination = std::thread::spawn(move || vioboot_harness::run(&dst, TIMEOUT));
    let waited = Instant::now();
    while !mig.exists() && waited.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(mig.exists(), "the destination QEMU never listened");

    let trigger = format!("# verify {disk}: wrote 8 of 64 MiB");
    let mut migration = None;
    let source = vioboot_harness::run_watch(&src, TIMEOUT, |l| {
        if migration.is_none() && l.contains(&trigger) {
            let (mon, mig) = (mon.clone(), mig.clone());
            migration = Some(std::thread::spawn(move || migrate(&mon, &mig)));
        }
    })
    .expect("source QEMU runs");
    let migration = migration
        .unwrap_or_else(|| panic!("no line {trigger:?}:\n{}", source.output))
        .join()
        .expect("migration thread");
    let said = migration.unwrap_or_else(|e| {
        panic!(
            "the migration did not complete:\n{e}\nsource:\n{}",
            source.output
        )
    });
    assert!(
        !source.output.contains("vioboot verdict"),
        "the source finished before it was migrated:\n{}",
        source.output
    );
    let run = destination
        .join()
        .expect("destination thread")
        .expect("destination QEMU runs");
    let _ = std::fs::write(dir.join("source.log"), &source.output);
    let _ = std::fs::write(dir.join("destination.log"), &run.output);
    let _ = std::fs::write(dir.join("monitor.log"), &said);
    // One console, one report: what the partition printed before it moved (the source's
    // console lines; QEMU's own messages are left out), then after.
    let before: String = source
        .output
        .lines()
        .take_while(|l| !l.starts_with("qemu-system-ppc64:"))
        .map(|l| format!("{l}\n"))
        .collect();
    assert!(
        before.contains(&trigger),
        "the source's part has no verify progress:\n{before}"
    );
    let run = vioboot_harness::Run {
        output: before + &run.output,
        status: run.status,
        wall: run.wall,
    };
    (run, said)
}

/// The partition moves to another QEMU while vioboot writes, reads and verifies 64 MiB on a
/// virtio-vio disk; the report must pass with the whole area intact and the migration handled
/// by the CRQ's "partner migrated" event, the destination's server serving the rest.
#[test]
fn a_migration_in_the_middle_of_a_virtio_vio_verify_loses_no_block() {
    let dir = vioboot_harness::scratch(&root(), "migration", "vio");
    let disk = dir.join("disk.img");
    vioboot_harness::pattern_disk(&disk, 80).expect("disk image");
    let bin = vioboot_harness::vio_server_binary(&root());
    let disk_arg = disk.display().to_string();
    let mut servers = Vec::new();
    let sockets = [dir.join("src.sock"), dir.join("dst.sock")];
    for (n, socket) in sockets.iter().enumerate() {
        servers.push(
            VioServer::start(
                &bin,
                socket,
                &["--blk", &disk_arg, "--serial", "mig-disk"],
                &dir.join(format!("server{n}.log")),
            )
            .expect("server starts"),
        );
    }
    let disk = "virtio@71000010";
    let (run, _) = migrate_during_verify(
        &dir,
        vioboot_harness::virtio_vio_device("v0", &sockets[0], 0x7100_0010),
        vioboot_harness::virtio_vio_device("v0", &sockets[1], 0x7100_0010),
        disk,
    );
    run.assert_pass();
    run.assert_lines(&[
        (&format!("{disk} verify"), "64 MiB written"),
        (&format!("{disk} verify"), "intact"),
        (
            &format!("{disk} unmapped"),
            "1 resets (1 after the partition migrated)",
        ),
    ]);
    assert!(
        run.output
            .contains("the partition migrated; re-enabling the CRQ"),
        "{}",
        run.output
    );
    // The destination's server took the guest's INIT after the move and resumed the queue
    // where the source's server had left it (not at 0: the verify was under way).
    let log = servers[1].log();
    assert!(
        log.contains("guest INIT answered with INIT COMPLETE: ready"),
        "destination server log:\n{log}"
    );
    let resumed = log
        .lines()
        .find_map(|l| l.split("resuming at ").nth(1))
        .and_then(|n| n.trim().parse::<u64>().ok());
    assert!(
        resumed.is_some_and(|n| n > 0),
        "destination server log:\n{log}"
    );
}

/// The same with a virtio-blk-pci disk behind the PCI host bridge's TCE window
/// (`iommu_platform=on`): QEMU moves the device, its in-flight request and the TCE table;
/// vioboot sees nothing of it and every block arrives intact.
#[test]
fn a_migration_in_the_middle_of_a_virtio_blk_pci_verify_loses_no_block() {
    let dir = vioboot_harness::scratch(&root(), "migration", "pci");
    let disk = dir.join("disk.img");
    vioboot_harness::pattern_disk(&disk, 80).expect("disk image");
    let devices = vec![
        "-drive".to_string(),
        format!("file={},if=none,id=d0,format=raw", disk.display()),
        "-device".into(),
        "virtio-blk-pci,drive=d0,addr=1,disable-legacy=on,iommu_platform=on".into(),
    ];
    let name = "pci 0000:00:01.0";
    let (run, said) = migrate_during_verify(&dir, devices.clone(), devices, name);
    assert!(said.contains("Migration status: completed"), "{said}");
    run.assert_pass();
    run.assert_lines(&[
        (&format!("{name} verify"), "64 MiB written"),
        (&format!("{name} verify"), "intact"),
        (&format!("{name} unmapped"), "no buffer left"),
    ]);
}
