//! `cargo xtask <command>`: vioboot's project commands.
//!
//! - `image`: build the firmware into `target/image/vioboot.{elf,bin}`
//! - `run`:   build and boot it in QEMU (the main job)
//! - `test`:  every check and test: fmt, clippy, host tests, QEMU boots
//! - `bench`: vioboot next to its peers, side by side (see `bench.rs`)
//! - `fuzz`:  the fuzz targets in `fuzz/` (see `fuzz.rs`)
//!
//! `run` and `test` install what they need on a fresh machine (qemu-system-ppc with apt,
//! rust-src with rustup) or say exactly what is missing.

mod bench;
mod fuzz;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use vioboot_core::elf;
use vioboot_harness::{Boot, Qemu};

type Result<T = ()> = std::result::Result<T, String>;

const USAGE: &str = "usage: cargo xtask <command>
  image                      build target/image/vioboot.elf and vioboot.bin
  run [options] [-- QEMU..]  build vioboot and boot it in QEMU with a virtio-vio disk and a
                             virtio-fs share holding Debian's kernel and a busybox initramfs;
                             vioboot boots that kernel (QEMU with the device model is built
                             once, cached; the kernel is fetched once, cached)
      --boot slof|vof|bios   how QEMU starts it (default slof)
      --smoke                the smoke checks instead of the bootloader (disk + test share)
      --plain                Debian's QEMU, no virtio-vio adapter, no server
      --append \"WORDS\"       command line: vioboot options, e.g. \"vioboot.log=debug\"
      --kernel-addr ADDR     load address for slof/vof (64 KiB aligned)
  test                       fmt, clippy, host tests and QEMU boot tests
  bench [--runs N] [--json] [--only GROUP,..]
                             vioboot next to its peers (Linux on the same virtio-blk-pci disk,
                             GRUB, SLOF), N interleaved rounds (default 3): medians, spread,
                             ratios; groups: blk, fs, boot, ext4, entry (default: all)
  fuzz [--time S] [TARGET..] run the fuzz targets (default: all, 60 s each)";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("image") => image().map(|_| ExitCode::SUCCESS),
        Some("run") => run(&args[1..]),
        Some("test") => test().map(|_| ExitCode::SUCCESS),
        Some("bench") => bench::command(&args[1..]).map(|_| ExitCode::SUCCESS),
        Some("fuzz") => fuzz::command(&args[1..]).map(|_| ExitCode::SUCCESS),
        _ => Err(USAGE.to_string()),
    };
    result.unwrap_or_else(|e| {
        eprintln!("xtask: {e}");
        ExitCode::FAILURE
    })
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

fn cargo() -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(root());
    c
}

fn status(what: &str, c: &mut Command) -> Result {
    eprintln!("xtask: {what}");
    let s = c
        .status()
        .map_err(|e| format!("{what}: cannot start: {e}"))?;
    if s.success() {
        Ok(())
    } else {
        Err(format!("{what}: failed ({s})"))
    }
}

fn have(cmd: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {cmd} >/dev/null 2>&1")])
        .status()
        .is_ok_and(|s| s.success())
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"))
}

/// Installs Debian packages if missing (as root), else names them.
pub fn ensure_apt(packages: &[&str], why: &str) -> Result {
    let missing: Vec<&str> = packages
        .iter()
        .copied()
        .filter(|p| {
            !Command::new("dpkg-query")
                .args(["-W", "-f=${Status}", p])
                .output()
                .is_ok_and(|o| o.stdout.starts_with(b"install ok installed"))
        })
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    if !is_root() || !have("apt-get") {
        return Err(format!(
            "{why} needs the Debian packages {}: run `apt-get install {}` as root",
            missing.join(" "),
            missing.join(" ")
        ));
    }
    let list = missing.join(" ");
    status(
        &format!("installing {list} ({why})"),
        Command::new("sh").args(["-c", &format!("(apt-get install -y --no-install-recommends {list} || (apt-get update && apt-get install -y --no-install-recommends {list})) >/dev/null")]),
    )
}

fn ensure_tools() -> Result {
    ensure_apt(&["qemu-system-ppc"], "booting vioboot")?;
    let sysroot = cargo_rustc_sysroot()?;
    if !sysroot.join("lib/rustlib/src/rust/library/core").exists() {
        status(
            "installing rust-src",
            Command::new("rustup")
                .current_dir(root())
                .args(["component", "add", "rust-src"]),
        )?;
    }
    Ok(())
}

fn cargo_rustc_sysroot() -> Result<PathBuf> {
    let o = Command::new("rustc")
        .current_dir(root())
        .args(["--print", "sysroot"])
        .output()
        .map_err(|e| format!("rustc: {e}"))?;
    Ok(PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()))
}

/// The cargo arguments that build the firmware for the bare-metal target.
fn firmware_args(sub: &str) -> Vec<String> {
    [
        sub,
        "--release",
        "-p",
        "vioboot",
        "--bin",
        "vioboot",
        "--target",
        "targets/powerpc64le-none.json",
        "-Zbuild-std=core,alloc",
        "-Zbuild-std-features=compiler-builtins-mem",
        "-Zjson-target-spec",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// Builds the image; returns its folder.
fn image() -> Result<PathBuf> {
    let sysroot = cargo_rustc_sysroot()?;
    if !sysroot.join("lib/rustlib/src/rust/library/core").exists() {
        ensure_tools()?;
    }
    status(
        "building the firmware",
        cargo().args(firmware_args("build")),
    )?;
    let elf_path = root().join("target/powerpc64le-none/release/vioboot");
    let bytes = std::fs::read(&elf_path).map_err(|e| format!("{}: {e}", elf_path.display()))?;
    let (bin, span, relocations) =
        raw_image(&bytes).map_err(|e| format!("{}: {e}", elf_path.display()))?;
    let out = vioboot_harness::image_dir(&root());
    std::fs::create_dir_all(&out).map_err(|e| e.to_string())?;
    std::fs::write(out.join("vioboot.elf"), &bytes).map_err(|e| e.to_string())?;
    std::fs::write(out.join("vioboot.bin"), &bin).map_err(|e| e.to_string())?;
    eprintln!(
        "xtask: target/image/vioboot.elf ({} bytes), vioboot.bin ({} bytes, {} KiB in memory with BSS), {relocations} relocations",
        bytes.len(),
        bin.len(),
        span / 1024,
    );
    Ok(out)
}

/// Checks the firmware ELF and lays it out as a raw image: a little-endian PPC64 ELF linked at
/// 0 whose relocations are all R_PPC64_RELATIVE (the only kind the entry code applies). Returns
/// the raw image, the bytes it spans in memory (BSS included) and the number of relocations.
fn raw_image(bytes: &[u8]) -> Result<(Vec<u8>, u64, usize)> {
    let image = elf::parse(bytes, bytes.len() as u64).map_err(|e| e.to_string())?;
    if image.segments.iter().map(|s| s.paddr).min() != Some(0) || image.base != 0 {
        return Err("the image is not linked at address 0".into());
    }
    let relocations = elf::relocations(bytes).map_err(|e| e.to_string())?;
    if let Some(r) = relocations.iter().find(|r| r.kind != elf::R_PPC64_RELATIVE) {
        return Err(format!(
            "relocation of type {} at {:#x}: the entry code applies only R_PPC64_RELATIVE",
            r.kind, r.offset
        ));
    }
    let bin = elf::raw_binary(bytes, &image.segments).map_err(|e| e.to_string())?;
    Ok((bin, image.span, relocations.len()))
}

fn run(args: &[String]) -> Result<ExitCode> {
    let (ours, qemu_extra) = match args.iter().position(|a| a == "--") {
        Some(i) => (&args[..i], &args[i + 1..]),
        None => (args, &[][..]),
    };
    let mut boot = Boot::Slof;
    let mut plain = false;
    let mut smoke = false;
    let mut append = String::new();
    let mut kernel_addr = None;
    let mut it = ours.iter();
    while let Some(a) = it.next() {
        let mut value = || {
            it.next()
                .cloned()
                .ok_or(format!("{a} needs a value\n{USAGE}"))
        };
        match a.as_str() {
            "--boot" => {
                let v = value()?;
                boot = Boot::parse(&v).ok_or(format!("--boot {v}: expected slof, vof or bios"))?;
            }
            "--append" => append = value()?,
            "--plain" => plain = true,
            "--smoke" => smoke = true,
            "--kernel-addr" => {
                let v = value()?;
                let n = parse_number(&v).ok_or(format!("--kernel-addr {v}: not a number"))?;
                if n % 0x10000 != 0 {
                    return Err(format!("--kernel-addr {v}: must be 64 KiB aligned"));
                }
                kernel_addr = Some(n);
            }
            other => return Err(format!("unknown argument {other}\n{USAGE}")),
        }
    }
    ensure_tools()?;
    let dir = image()?;
    let mut q = Qemu::new(boot, dir);
    q.kernel_addr = kernel_addr;
    let mut servers = Vec::new();
    if !plain {
        let vio = VioSetup::prepare()?;
        q.binary = vio.qemu.clone();
        // A virtio-vio disk, and a virtio-fs share: the demo boot share (Debian's kernel and a
        // busybox initramfs) for the bootloader, the test share for the smoke checks.
        q.extra = vioboot_harness::virtio_vio_device("v0", &vio.socket, 0x7100_0010);
        servers.push(vio.start_server(&[])?);
        let share = if smoke {
            vio.test_share()?
        } else {
            vio.demo_share()?
        };
        let tag = if smoke { "test" } else { "boot" };
        let (server, fs_socket) = vio.start_fs_server(&share, "run-fs", tag)?;
        servers.push(server);
        q.extra.extend(vioboot_harness::virtio_vio_device(
            "v1",
            &fs_socket,
            0x7100_0011,
        ));
        if !smoke {
            q = q.append("vioboot.mode=boot");
        }
    }
    q = q.append(&append);
    q.extra.extend(qemu_extra.iter().cloned());
    eprintln!("xtask: {} {}", q.binary.display(), q.args().join(" "));
    let s = q
        .command()
        .status()
        .map_err(|e| format!("cannot start {}: {e}", q.binary.display()))?;
    Ok(ExitCode::from(s.code().unwrap_or(1) as u8))
}

fn parse_number(s: &str) -> Option<u64> {
    match s.strip_prefix("0x") {
        Some(h) => u64::from_str_radix(h, 16).ok(),
        None => s.parse().ok(),
    }
}

/// How long `cargo xtask test` runs each fuzz target.
const FUZZ_SECONDS_IN_TEST: u64 = 8;

fn test() -> Result {
    ensure_tools()?;
    ensure_apt(
        &["e2fsprogs", "gdisk", "fdisk", "dosfstools", "mtools"],
        "the disk boot tests (tests/disk.rs) and the FAT reader's tests",
    )?;
    ensure_apt(&["swtpm"], "the vTPM tests (tests/vtpm.rs)")?;
    ensure_apt(
        &["qemu-system-common"],
        "virtiofsd for the vhost-user-fs-pci tests (tests/pci.rs)",
    )?;
    status(
        "cargo fmt --check",
        cargo().args(["fmt", "--all", "--check"]),
    )?;
    fuzz::fmt_check()?;
    status(
        "clippy (host)",
        cargo().args([
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ]),
    )?;
    let mut fw = firmware_args("clippy");
    fw.extend(["--".into(), "-D".into(), "warnings".into()]);
    status("clippy (firmware)", cargo().args(fw))?;
    image()?;
    let vio = VioSetup::prepare()?;
    eprintln!("xtask: host and QEMU tests");
    let (mut passed, mut failed) = cargo_test_counting(
        cargo()
            .args(["test", "--workspace", "--no-fail-fast"])
            .env("VIOBOOT_BUILT_QEMU", &vio.qemu)
            .env("VIOBOOT_VIO_SERVER", &vio.server),
    )?;
    // Every fuzz target briefly: a crash found is a failed test.
    for o in fuzz::run(FUZZ_SECONDS_IN_TEST, &fuzz::all())? {
        if o.passed {
            passed += 1;
        } else {
            failed += 1;
        }
    }
    // One closing line for the whole run, in the plain form CI systems read.
    println!("vioboot-tests: {passed} passed, {failed} failed");
    if failed > 0 || passed == 0 {
        return Err(format!("{failed} tests failed, {passed} passed"));
    }
    Ok(())
}

/// Runs `cargo test`, echoing its output, and adds up its `test result:` lines.
fn cargo_test_counting(c: &mut Command) -> Result<(usize, usize)> {
    use std::io::{BufRead, BufReader};
    let mut child = c
        .stdout(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("cargo test: cannot start: {e}"))?;
    let (mut passed, mut failed) = (0, 0);
    if let Some(out) = child.stdout.take() {
        for line in BufReader::new(out)
            .lines()
            .map_while(std::result::Result::ok)
        {
            println!("{line}");
            if let Some(rest) = line.strip_prefix("test result: ") {
                let count = |word: &str| {
                    rest.split(';').find_map(|p| {
                        p.trim()
                            .strip_suffix(word)?
                            .trim()
                            .rsplit(' ')
                            .next()?
                            .parse::<usize>()
                            .ok()
                    })
                };
                passed += count("passed").unwrap_or(0);
                failed += count("failed").unwrap_or(0);
            }
        }
    }
    let s = child.wait().map_err(|e| e.to_string())?;
    if !s.success() && failed == 0 {
        return Err(format!("cargo test failed ({s})"));
    }
    Ok((passed, failed))
}

/// What a virtio-vio boot needs: the QEMU with the device model, the VIO server, a disk.
struct VioSetup {
    qemu: PathBuf,
    server: PathBuf,
    disk: PathBuf,
    socket: PathBuf,
}

/// MiB of the demo disk: room for the pattern checks and a 64 MiB verify run.
const DEMO_DISK_MIB: u64 = 80;

impl VioSetup {
    fn prepare() -> Result<VioSetup> {
        eprintln!("xtask: QEMU with the virtio-vio device model (host/qemu/build.sh: about 4 minutes the first time, cached after)");
        let qemu = vioboot_harness::built_qemu(&root()).map_err(|e| e.to_string())?;
        status(
            "building the VIO server",
            cargo().args(["build", "--release", "-p", "vio-server"]),
        )?;
        let run = root().join("target/run");
        std::fs::create_dir_all(&run).map_err(|e| e.to_string())?;
        let disk = run.join("disk0.img");
        if std::fs::metadata(&disk).map(|m| m.len()).unwrap_or(0) != DEMO_DISK_MIB << 20 {
            vioboot_harness::pattern_disk(&disk, DEMO_DISK_MIB)
                .map_err(|e| format!("{}: {e}", disk.display()))?;
        }
        let socket = run.join("v0.sock");
        let _ = std::fs::remove_file(&socket);
        Ok(VioSetup {
            qemu,
            server: vioboot_harness::vio_server_binary(&root()),
            disk,
            socket,
        })
    }

    /// The bootloader demo share: Debian's ppc64le kernel, a busybox initramfs, one entry.
    fn demo_share(&self) -> Result<PathBuf> {
        let linux = vioboot_harness::debian_linux(&root()).map_err(|e| e.to_string())?;
        let sha = vioboot_harness::sha256_file(&linux.vmlinux).map_err(|e| e.to_string())?;
        let entry = format!(
            "title Debian GNU/Linux (demo)\nversion {}\nlinux /vmlinux\ninitrd /initrd.img\noptions console=hvc0\nsha256 {sha}\n",
            linux.vmlinux.file_name().map(|n| n.to_string_lossy().trim_start_matches("vmlinux-").to_string()).unwrap_or_default()
        );
        let share = root().join("target/run/boot-share");
        vioboot_harness::boot_share(&share, &linux, &[("debian", entry)], Some("timeout 3\n"))
            .map_err(|e| e.to_string())?;
        Ok(share)
    }

    /// The smoke checks' share (vioboot_harness::test_share), with a 64 MiB file.
    fn test_share(&self) -> Result<PathBuf> {
        let share = root().join("target/run/test-share");
        vioboot_harness::test_share(&share, 64).map_err(|e| e.to_string())?;
        Ok(share)
    }

    /// A VIO server sharing `share` as virtio-fs with `tag`, on `target/run/<name>.sock`.
    fn start_fs_server(
        &self,
        share: &Path,
        name: &str,
        tag: &str,
    ) -> Result<(vioboot_harness::VioServer, PathBuf)> {
        let socket = root().join("target/run").join(format!("{name}.sock"));
        let _ = std::fs::remove_file(&socket);
        let share_arg = share.display().to_string();
        let server = vioboot_harness::VioServer::start(
            &self.server,
            &socket,
            &["--fs", &share_arg, "--tag", tag],
            &socket.with_extension("log"),
        )
        .map_err(|e| e.to_string())?;
        Ok((server, socket))
    }

    fn start_server(&self, extra: &[&str]) -> Result<vioboot_harness::VioServer> {
        let disk = self.disk.display().to_string();
        let mut args = vec!["--blk", disk.as_str(), "--serial", "vioboot-demo"];
        args.extend_from_slice(extra);
        let log = self.socket.with_extension("log");
        vioboot_harness::VioServer::start(&self.server, &self.socket, &args, &log)
            .map_err(|e| e.to_string())
    }
}
