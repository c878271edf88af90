//! Boots vioboot in qemu-system-ppc64 and reads what it printed.
//!
//! One place builds QEMU command lines for every way vioboot is booted ([`Boot`]), runs QEMU with
//! a hard timeout and kills it (and only it) when dropped or timed out ([`run`]), and parses the
//! TAP report and verdict line from the console ([`Report`]). `cargo xtask` and `tests/` share it.

pub mod bench;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The verdict line's prefix, as vioboot prints it (`vioboot_core::tap::VERDICT_PREFIX`).
pub const VERDICT_PREFIX: &str = "# vioboot verdict: ";

/// How QEMU starts vioboot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Boot {
    /// SLOF loads `vioboot.elf` with `-kernel` (QEMU's default firmware).
    Slof,
    /// QEMU's Virtual Open Firmware (`x-vof=on`) loads `vioboot.elf`.
    Vof,
    /// No firmware: `vioboot.bin` is QEMU's `-bios`, entered at 0x100 with a flattened tree.
    Bios,
}

impl Boot {
    pub fn parse(s: &str) -> Option<Boot> {
        match s {
            "slof" => Some(Boot::Slof),
            "vof" => Some(Boot::Vof),
            "bios" => Some(Boot::Bios),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Boot::Slof => "slof",
            Boot::Vof => "vof",
            Boot::Bios => "bios",
        }
    }
}

/// One QEMU invocation.
#[derive(Debug, Clone)]
pub struct Qemu {
    pub binary: PathBuf,
    pub boot: Boot,
    /// Folder holding `vioboot.elf` and `vioboot.bin`.
    pub image_dir: PathBuf,
    /// Kernel command line (`-append`): vioboot's options.
    pub append: String,
    /// Load address for `-kernel` (SLOF/VOF), QEMU's `kernel-addr`.
    pub kernel_addr: Option<u64>,
    pub memory: String,
    /// Further QEMU arguments, passed last.
    pub extra: Vec<String>,
    /// Typed on the console once a line containing the first string appears.
    pub input: Option<(String, Vec<u8>)>,
    /// Guest memory as a shared memfd (`memory-backend-memfd,share=on`), which a vhost-user
    /// daemon such as virtiofsd needs to reach the rings.
    pub shared_memory: bool,
    /// Another program for `-kernel` under SLOF or VOF instead of `vioboot.elf` (the
    /// benchmark's Linux peer).
    pub kernel: Option<PathBuf>,
    /// Under SLOF: no `-kernel` at all, SLOF boots from the disks (the benchmark's GRUB peer).
    pub firmware_boots_disk: bool,
}

impl Qemu {
    pub fn new(boot: Boot, image_dir: impl Into<PathBuf>) -> Qemu {
        Qemu {
            binary: qemu_binary(),
            boot,
            image_dir: image_dir.into(),
            append: String::new(),
            kernel_addr: None,
            memory: "1G".into(),
            extra: Vec::new(),
            input: None,
            shared_memory: false,
            kernel: None,
            firmware_boots_disk: false,
        }
    }

    pub fn append(mut self, a: &str) -> Self {
        if !self.append.is_empty() {
            self.append.push(' ');
        }
        self.append.push_str(a);
        self
    }

    pub fn kernel_addr(mut self, a: u64) -> Self {
        self.kernel_addr = Some(a);
        self
    }

    /// The argument list, without the binary.
    pub fn args(&self) -> Vec<String> {
        let mut machine = String::from("pseries");
        if self.boot == Boot::Vof {
            machine.push_str(",x-vof=on");
        }
        if let Some(a) = self.kernel_addr {
            machine.push_str(&format!(",kernel-addr={a:#x}"));
        }
        if self.shared_memory {
            machine.push_str(",memory-backend=mem");
        }
        let mut a: Vec<String> = vec![
            // Debian's SLOF and VOF, also for the QEMU built from source (it has none of its own).
            "-L".into(),
            "/usr/share/qemu".into(),
            "-M".into(),
            machine,
            "-m".into(),
            self.memory.clone(),
            "-nographic".into(),
            "-vga".into(),
            "none".into(),
            "-no-reboot".into(),
            // ibm,os-term makes QEMU exit 1 instead of pausing: a failure can never look like a hang.
            "-action".into(),
            "panic=exit-failure".into(),
        ];
        if self.shared_memory {
            a.push("-object".into());
            a.push(format!(
                "memory-backend-memfd,id=mem,size={},share=on",
                self.memory
            ));
        }
        match self.boot {
            Boot::Slof if self.firmware_boots_disk => {}
            Boot::Slof | Boot::Vof => {
                a.push("-kernel".into());
                let elf = self.image_dir.join("vioboot.elf");
                a.push(self.kernel.as_ref().unwrap_or(&elf).display().to_string());
            }
            Boot::Bios => {
                a.push("-bios".into());
                a.push(self.image_dir.join("vioboot.bin").display().to_string());
            }
        }
        if !self.append.is_empty() {
            if self.boot == Boot::Bios {
                // QEMU takes -append only with -kernel. The ELF is loaded as an inert "kernel"
                // (and reserved in the tree) so that the options reach /chosen/bootargs;
                // nothing jumps to it.
                a.push("-kernel".into());
                a.push(self.image_dir.join("vioboot.elf").display().to_string());
            }
            a.push("-append".into());
            a.push(self.append.clone());
        }
        a.extend(self.extra.iter().cloned());
        a
    }

    pub fn command(&self) -> Command {
        let mut c = Command::new(&self.binary);
        c.args(self.args());
        c
    }
}

/// qemu-system-ppc64 to use: `$VIOBOOT_QEMU`, else the one on PATH.
pub fn qemu_binary() -> PathBuf {
    std::env::var_os("VIOBOOT_QEMU")
        .map(PathBuf::from)
        .unwrap_or_else(|| "qemu-system-ppc64".into())
}

/// What one QEMU run printed and how it ended.
#[derive(Debug)]
pub struct Run {
    /// Console and QEMU's own messages, with "\r" removed.
    pub output: String,
    /// `None` when QEMU was killed at the timeout.
    pub status: Option<ExitStatus>,
    pub wall: Duration,
}

impl Run {
    pub fn timed_out(&self) -> bool {
        self.status.is_none()
    }

    pub fn exit_code(&self) -> Option<i32> {
        self.status.and_then(|s| s.code())
    }

    pub fn report(&self) -> Report {
        Report::parse(&self.output)
    }

    /// The description of the TAP line named `check`; panics (with the console) without one.
    pub fn line(&self, check: &str) -> String {
        self.report()
            .check(check)
            .map(|l| l.description.clone())
            .unwrap_or_else(|| {
                panic!(
                    "no `{check}` line:
{}",
                    self.output
                )
            })
    }

    /// A whole run that passed: QEMU ended on its own, the TAP report is complete with no
    /// failing check, the verdict is PASS and the exit status 0.
    pub fn assert_pass(&self) {
        let r = self.report();
        assert!(
            !self.timed_out(),
            "QEMU timed out:
{}",
            self.output
        );
        assert!(
            r.is_complete(),
            "incomplete report:
{}",
            self.output
        );
        assert!(
            r.failures().is_empty(),
            "failing checks {:?}:
{}",
            r.failures(),
            self.output
        );
        assert_eq!(r.verdict, Some(true), "{}", self.output);
        assert_eq!(self.exit_code(), Some(0), "{}", self.output);
    }

    /// Each named line is there and its description contains the text given with it.
    pub fn assert_lines(&self, want: &[(&str, &str)]) {
        for (check, text) in want {
            assert!(
                self.line(check).contains(text),
                "`{check}` lacks `{text}`:
{}",
                self.output
            );
        }
    }
}

/// An empty scratch folder for one test, `target/test-<group>/<name>` in the workspace:
/// disks, sockets, logs.
pub fn scratch(workspace: &Path, group: &str, name: &str) -> PathBuf {
    let d = workspace
        .join("target")
        .join(format!("test-{group}"))
        .join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("scratch dir");
    d
}

/// Kills the child when dropped, so no QEMU outlives its test.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs QEMU to its end or until `timeout`, capturing stdout and stderr.
pub fn run(q: &Qemu, timeout: Duration) -> std::io::Result<Run> {
    run_watch(q, timeout, |_| {})
}

/// As [`run`], calling `watch` with each console line as it arrives (to act in mid-run, e.g.
/// to kill the VIO server when vioboot reports progress).
pub fn run_watch(q: &Qemu, timeout: Duration, mut watch: impl FnMut(&str)) -> std::io::Result<Run> {
    let start = Instant::now();
    let mut cmd = q.command();
    let stdin = if q.input.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    };
    cmd.stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = KillOnDrop(cmd.spawn().map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!("cannot start {}: {e}", q.binary.display()),
        )
    })?);
    let mut console_in = child.0.stdin.take();
    let mut pending_input = q.input.clone();
    // Stdout (the console) and stderr (QEMU's own messages) are kept apart, so a QEMU message
    // can never land in the middle of a console line; the output is stdout, then stderr.
    let (tx, rx) = mpsc::channel::<(usize, Vec<u8>)>();
    let mut readers = Vec::new();
    let pipes = [
        child
            .0
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
        child
            .0
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    ];
    for (stream, pipe) in pipes.into_iter().enumerate() {
        let Some(mut pipe) = pipe else { continue };
        let tx = tx.clone();
        readers.push(std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = pipe.read(&mut buf) {
                if n == 0 || tx.send((stream, buf[..n].to_vec())).is_err() {
                    break;
                }
            }
        }));
    }
    drop(tx);
    let mut out = [Vec::new(), Vec::new()];
    let mut seen = [0usize, 0];
    let mut feed = |out: &[Vec<u8>; 2], seen: &mut [usize; 2]| {
        for k in 0..2 {
            while let Some(nl) = out[k][seen[k]..].iter().position(|&b| b == b'\n') {
                let line =
                    String::from_utf8_lossy(&out[k][seen[k]..seen[k] + nl]).replace('\r', "");
                if pending_input
                    .as_ref()
                    .is_some_and(|(t, _)| line.contains(t.as_str()))
                {
                    if let (Some((_, bytes)), Some(w)) = (pending_input.take(), console_in.as_mut())
                    {
                        use std::io::Write;
                        // Typed a little at a time, as a person would.
                        for b in bytes {
                            let _ = w.write_all(&[b]);
                            let _ = w.flush();
                            std::thread::sleep(Duration::from_millis(30));
                        }
                    }
                }
                watch(&line);
                seen[k] += nl + 1;
            }
        }
    };
    let status = loop {
        while let Ok((k, chunk)) = rx.try_recv() {
            out[k].extend_from_slice(&chunk);
        }
        feed(&out, &mut seen);
        if let Some(s) = child.0.try_wait()? {
            break Some(s);
        }
        if start.elapsed() > timeout {
            break None;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let wall = start.elapsed();
    drop(child);
    for r in readers {
        let _ = r.join();
    }
    while let Ok((k, chunk)) = rx.try_recv() {
        out[k].extend_from_slice(&chunk);
    }
    feed(&out, &mut seen);
    let mut all = std::mem::take(&mut out[0]);
    all.extend_from_slice(&out[1]);
    let output = String::from_utf8_lossy(&all).replace('\r', "");
    Ok(Run {
        output,
        status,
        wall,
    })
}

/// One TAP test line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TapLine {
    pub ok: bool,
    pub number: usize,
    /// Text after `N - `.
    pub description: String,
}

/// The TAP report vioboot printed.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub version_seen: bool,
    pub lines: Vec<TapLine>,
    pub plan: Option<usize>,
    /// `Some(true)` for PASS, `Some(false)` for FAIL, `None` if no verdict line was printed.
    pub verdict: Option<bool>,
    pub bail_out: Option<String>,
}

impl Report {
    pub fn parse(output: &str) -> Report {
        let mut r = Report::default();
        for line in output.lines() {
            let line = line.trim_end();
            if line == "TAP version 13" {
                r.version_seen = true;
            } else if let Some(rest) = line.strip_prefix(VERDICT_PREFIX) {
                r.verdict = Some(rest.starts_with("PASS"));
            } else if let Some(rest) = line.strip_prefix("Bail out! ") {
                r.bail_out = Some(rest.to_string());
            } else if let Some(n) = line.strip_prefix("1..").and_then(|n| n.parse().ok()) {
                r.plan = Some(n);
            } else if let Some((ok, rest)) = line
                .strip_prefix("ok ")
                .map(|x| (true, x))
                .or_else(|| line.strip_prefix("not ok ").map(|x| (false, x)))
            {
                if let Some((num, desc)) = rest.split_once(" - ") {
                    if let Ok(number) = num.parse() {
                        r.lines.push(TapLine {
                            ok,
                            number,
                            description: desc.to_string(),
                        });
                    }
                }
            }
        }
        r
    }

    /// The line whose description starts with `name:` (or `name #` for skips).
    pub fn check(&self, name: &str) -> Option<&TapLine> {
        self.lines.iter().find(|l| {
            l.description
                .strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(':') || rest.starts_with(" #"))
        })
    }

    /// A complete, well-formed report: header, numbered lines 1..N, the plan N, a verdict.
    pub fn is_complete(&self) -> bool {
        self.version_seen
            && self.verdict.is_some()
            && self.plan == Some(self.lines.len())
            && self
                .lines
                .iter()
                .enumerate()
                .all(|(i, l)| l.number == i + 1)
    }

    pub fn failures(&self) -> Vec<&TapLine> {
        self.lines.iter().filter(|l| !l.ok).collect()
    }
}

/// A VIO server process serving one virtio-vio device to QEMU; killed when dropped.
pub struct VioServer {
    child: Option<Child>,
    pub socket: PathBuf,
    args: Vec<String>,
    binary: PathBuf,
    log: PathBuf,
}

impl VioServer {
    /// Starts `vio-server --socket SOCKET ARGS...`, its stderr going to `log`.
    pub fn start(
        binary: &Path,
        socket: &Path,
        args: &[&str],
        log: &Path,
    ) -> std::io::Result<VioServer> {
        let mut s = VioServer {
            child: None,
            socket: socket.to_path_buf(),
            args: args.iter().map(|a| a.to_string()).collect(),
            binary: binary.to_path_buf(),
            log: log.to_path_buf(),
        };
        s.restart()?;
        Ok(s)
    }

    /// Kills the server (as a crash would: SIGKILL, no goodbye).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Stops the server as an operator would (SIGTERM), so it prints its stats line.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Stalls the server for `d` (SIGSTOP, then SIGCONT from a thread), as a host too busy to
    /// schedule it would: it stays connected and answers late.
    pub fn stall_for(&self, d: Duration) {
        if let Some(c) = &self.child {
            let pid = c.id().to_string();
            let _ = Command::new("kill").args(["-STOP", &pid]).status();
            std::thread::spawn(move || {
                std::thread::sleep(d);
                let _ = Command::new("kill").args(["-CONT", &pid]).status();
            });
        }
    }

    /// Kills the server if it runs and starts it again with the same arguments.
    pub fn restart(&mut self) -> std::io::Result<()> {
        self.kill();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let child = Command::new(&self.binary)
            .arg("--socket")
            .arg(&self.socket)
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| {
                std::io::Error::new(
                    e.kind(),
                    format!("cannot start {}: {e}", self.binary.display()),
                )
            })?;
        self.child = Some(child);
        Ok(())
    }

    /// What the server logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for VioServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// QEMU arguments for one virtio-vio adapter at `unit` whose socket is `socket`.
pub fn virtio_vio_device(id: &str, socket: &Path, unit: u32) -> Vec<String> {
    vec![
        "-chardev".into(),
        format!(
            "socket,id={id},path={},server=on,wait=off",
            socket.display()
        ),
        "-device".into(),
        format!("spapr-virtio-vio,chardev={id},reg={unit:#x}"),
    ]
}

/// Writes a disk image of `mib` MiB holding vioboot's test pattern (`vioboot_core::pattern`).
pub fn pattern_disk(path: &Path, mib: u64) -> std::io::Result<()> {
    use std::io::Write;
    let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
    let mut sector = [0u8; vioboot_core::pattern::SECTOR];
    for lba in 0..(mib << 20) / vioboot_core::pattern::SECTOR as u64 {
        vioboot_core::pattern::fill(0, lba, &mut sector);
        f.write_all(&sector)?;
    }
    f.flush()
}

/// The QEMU with the virtio-vio device model: `$VIOBOOT_BUILT_QEMU`, else what
/// `host/qemu/build.sh` prints (it builds once, then answers from its cache at once).
pub fn built_qemu(workspace: &Path) -> std::io::Result<PathBuf> {
    if let Some(p) = std::env::var_os("VIOBOOT_BUILT_QEMU") {
        return Ok(PathBuf::from(p));
    }
    let out = Command::new("bash")
        .arg(workspace.join("host/qemu/build.sh"))
        .stderr(Stdio::inherit())
        .output()?;
    let path = String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .unwrap_or("")
        .trim()
        .to_string();
    if !out.status.success() || path.is_empty() {
        return Err(std::io::Error::other(format!(
            "host/qemu/build.sh failed ({})",
            out.status
        )));
    }
    Ok(PathBuf::from(path))
}

/// The VIO server binary: `$VIOBOOT_VIO_SERVER`, else `target/release/vio-server`.
pub fn vio_server_binary(workspace: &Path) -> PathBuf {
    std::env::var_os("VIOBOOT_VIO_SERVER")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace.join("target/release/vio-server"))
}

/// The image folder: `target/image` under the workspace root.
pub fn image_dir(workspace: &Path) -> PathBuf {
    workspace.join("target").join("image")
}

/// Builds the virtio-fs test share in `dir` (made empty first): small files, a 64 MiB file,
/// relative, absolute and looping symlinks, a 20-level deep path, a directory of 10,000
/// entries, 1,000 small files for the benchmark, and the check list vioboot runs
/// (`/vioboot-checks.txt`, format in `vioboot_core::checks`).
pub fn test_share(dir: &Path, big_mib: u64) -> std::io::Result<()> {
    use std::fmt::Write as _;
    use vioboot_core::sha256::{digest, hex};
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir)?;
    let mut checks =
        String::from("# vioboot's checks for this share (written by the test harness)\n");
    let mut file = |rel: &str, data: &[u8]| -> std::io::Result<()> {
        let p = dir.join(rel.trim_start_matches('/'));
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&p, data)?;
        let _ = writeln!(checks, "file {} {} {rel}", hex(&digest(data)), data.len());
        Ok(())
    };
    file("/hello.txt", b"hello from the VIO server\n")?;
    file("/boot/cmdline", b"console=hvc0 quiet\n")?;
    let big: Vec<u8> = (0..big_mib << 20)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    file("/big.bin", &big)?;
    let mut deep = String::new();
    for i in 1..=20 {
        deep.push_str(&format!("/d{i}"));
    }
    file(&format!("/deep{deep}/leaf.txt"), b"twenty levels down\n")?;
    std::os::unix::fs::symlink("hello.txt", dir.join("link"))?;
    std::os::unix::fs::symlink("/boot/cmdline", dir.join("abslink"))?;
    std::os::unix::fs::symlink("loop2", dir.join("loop1"))?;
    std::os::unix::fs::symlink("loop1", dir.join("loop2"))?;
    let _ = writeln!(
        checks,
        "file {} 26 /link",
        hex(&digest(b"hello from the VIO server\n"))
    );
    let _ = writeln!(
        checks,
        "file {} 19 /abslink",
        hex(&digest(b"console=hvc0 quiet\n"))
    );
    let many = dir.join("many");
    std::fs::create_dir_all(&many)?;
    for i in 0..10_000 {
        std::fs::write(many.join(format!("entry-{i:05}")), b"")?;
    }
    let _ = writeln!(checks, "dir 10000 /many");
    let small = dir.join("bench/small");
    std::fs::create_dir_all(&small)?;
    for i in 0..1000 {
        std::fs::write(small.join(format!("f{i:04}")), vec![i as u8; 4096])?;
    }
    let _ = writeln!(checks, "dir 1000 /bench/small");
    let _ = writeln!(checks, "enoent /no/such/file");
    let _ = writeln!(checks, "enoent /missing.txt");
    let _ = writeln!(checks, "eloop /loop1");
    let _ = writeln!(checks, "bench-file /big.bin");
    let _ = writeln!(checks, "bench-dir /bench/small");
    std::fs::write(dir.join("vioboot-checks.txt"), checks)
}

/// Debian's ppc64le kernel and static busybox, fetched by `host/linux/fetch.sh` (cached).
pub struct DebianLinux {
    pub vmlinux: PathBuf,
    pub busybox: PathBuf,
}

/// Fetches (once) and returns Debian's kernel and busybox.
pub fn debian_linux(workspace: &Path) -> std::io::Result<DebianLinux> {
    let out = Command::new("bash")
        .arg(workspace.join("host/linux/fetch.sh"))
        .stderr(Stdio::inherit())
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines().filter(|l| l.starts_with('/'));
    match (out.status.success(), lines.next(), lines.next()) {
        (true, Some(k), Some(b)) => Ok(DebianLinux {
            vmlinux: k.into(),
            busybox: b.into(),
        }),
        _ => Err(std::io::Error::other(format!(
            "host/linux/fetch.sh failed ({})",
            out.status
        ))),
    }
}

/// The line the test initramfs prints, followed by `cmdline=[<the kernel command line>]`.
pub const INITRAMFS_MARKER: &str = "VIOBOOT-INITRAMFS-OK";

/// A newc cpio archive: /init (prints [`INITRAMFS_MARKER`] with /proc/cmdline, powers off),
/// busybox as /bin/busybox and /bin/sh, /proc, /dev/console.
pub fn initramfs(busybox: &[u8]) -> Vec<u8> {
    initramfs_running(busybox, "")
}

/// As [`initramfs`], with `before` (shell lines) run after /proc is mounted and before the
/// marker line.
pub fn initramfs_running(busybox: &[u8], before: &str) -> Vec<u8> {
    let init = format!(
        "#!/bin/sh\n/bin/busybox mount -t proc proc /proc\n{before}echo \"{INITRAMFS_MARKER} cmdline=[$(/bin/busybox cat /proc/cmdline)]\"\n/bin/busybox poweroff -f\n"
    );
    initramfs_with(busybox, &init, &[])
}

/// A newc cpio archive with `init` as /init, busybox as /bin/busybox and /bin/sh, /proc, /sys,
/// /dev/console, and each `(path, mode, bytes)` of `files` (a regular file; its folders made as
/// needed).
pub fn initramfs_with(busybox: &[u8], init: &str, files: &[(String, u32, Vec<u8>)]) -> Vec<u8> {
    let mut a = Vec::new();
    let mut ino = 1;
    let mut add = |a: &mut Vec<u8>, name: &str, mode: u32, data: &[u8], rdev: (u32, u32)| {
        let namez = name.len() + 1;
        let head = format!(
            "070701{ino:08x}{mode:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{namez:08x}{:08x}",
            0, 0, 1, 0, data.len(), 0, 0, rdev.0, rdev.1, 0
        );
        ino += 1;
        a.extend_from_slice(head.as_bytes());
        a.extend_from_slice(name.as_bytes());
        a.push(0);
        while !a.len().is_multiple_of(4) {
            a.push(0);
        }
        a.extend_from_slice(data);
        while !a.len().is_multiple_of(4) {
            a.push(0);
        }
    };
    for d in ["bin", "dev", "proc", "sys"] {
        add(&mut a, d, 0o040755, &[], (0, 0));
    }
    add(&mut a, "dev/console", 0o020600, &[], (5, 1));
    add(&mut a, "bin/busybox", 0o100755, busybox, (0, 0));
    add(&mut a, "bin/sh", 0o120777, b"busybox", (0, 0));
    add(&mut a, "init", 0o100755, init.as_bytes(), (0, 0));
    let mut made = vec!["bin".to_string(), "dev".into(), "proc".into(), "sys".into()];
    for (path, mode, data) in files {
        let parts: Vec<&str> = path.split('/').collect();
        for k in 1..parts.len() {
            let d = parts[..k].join("/");
            if !made.contains(&d) {
                add(&mut a, &d, 0o040755, &[], (0, 0));
                made.push(d);
            }
        }
        add(&mut a, path, 0o100000 | (mode & 0o7777), data, (0, 0));
    }
    add(&mut a, "TRAILER!!!", 0, &[], (0, 0));
    a
}

/// A boot share: `/vmlinux`, `/initrd.img`, and `/loader/entries/<id>.conf` for each
/// `(id, text)` of `entries`, plus `loader_conf` as `/loader/loader.conf` if given.
pub fn boot_share(
    dir: &Path,
    linux: &DebianLinux,
    entries: &[(&str, String)],
    loader_conf: Option<&str>,
) -> std::io::Result<()> {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir.join("loader/entries"))?;
    std::fs::copy(&linux.vmlinux, dir.join("vmlinux"))?;
    std::fs::write(
        dir.join("initrd.img"),
        initramfs(&std::fs::read(&linux.busybox)?),
    )?;
    for (id, text) in entries {
        std::fs::write(dir.join(format!("loader/entries/{id}.conf")), text)?;
    }
    if let Some(c) = loader_conf {
        std::fs::write(dir.join("loader/loader.conf"), c)?;
    }
    Ok(())
}

/// Hex SHA-256 of a file.
pub fn sha256_file(p: &Path) -> std::io::Result<String> {
    Ok(vioboot_core::sha256::hex(&vioboot_core::sha256::digest(
        &std::fs::read(p)?,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "SLOF noise\nTAP version 13\nok 1 - entry: Open Firmware\n# comment\n\
        not ok 2 - options: unknown option\n  ---\n  message: \"x\"\n  ...\nok 3 - pci # SKIP none\n\
        1..3\n# vioboot verdict: FAIL (1 passed, 1 failed, 1 skipped)\n";

    #[test]
    fn parses_a_report() {
        let r = Report::parse(SAMPLE);
        assert!(r.is_complete());
        assert_eq!(r.verdict, Some(false));
        assert_eq!(r.lines.len(), 3);
        assert_eq!(r.failures().len(), 1);
        assert!(r.check("options").is_some_and(|l| !l.ok));
        assert!(r.check("pci").is_some_and(|l| l.ok));
        assert!(r.check("opt").is_none());
    }

    #[test]
    fn an_unfinished_report_is_not_complete() {
        let cut = &SAMPLE[..SAMPLE.find("1..3").unwrap()];
        let r = Report::parse(cut);
        assert!(!r.is_complete());
        assert_eq!(r.verdict, None);
    }

    #[test]
    fn command_lines_per_boot_mode() {
        let q = Qemu::new(Boot::Vof, "/img")
            .append("vioboot.log=debug")
            .kernel_addr(0x200_0000);
        let a = q.args().join(" ");
        assert!(
            a.contains("-M pseries,x-vof=on,kernel-addr=0x2000000"),
            "{a}"
        );
        assert!(
            a.contains("-kernel /img/vioboot.elf -append vioboot.log=debug"),
            "{a}"
        );
        assert!(a.contains("-action panic=exit-failure"), "{a}");
        let b = Qemu::new(Boot::Bios, "/img").args().join(" ");
        assert!(
            b.contains("-bios /img/vioboot.bin") && !b.contains("-kernel"),
            "{b}"
        );
        let mut m = Qemu::new(Boot::Slof, "/img");
        m.shared_memory = true;
        let m = m.args().join(" ");
        assert!(
            m.contains("-M pseries,memory-backend=mem")
                && m.contains("-object memory-backend-memfd,id=mem,size=1G,share=on"),
            "{m}"
        );
    }
}

/// A software TPM 2.0 (Debian's `swtpm`) serving QEMU's tpm-spapr device; killed when dropped.
/// Its state lives in `dir`, so PCRs start at zero for each new directory.
pub struct Swtpm {
    child: Option<Child>,
    pub socket: PathBuf,
}

impl Swtpm {
    /// Starts `swtpm socket --tpm2 --tpmstate dir=DIR --ctrl type=unixio,path=DIR/sock
    /// --terminate` in the foreground and waits (5 s at most) for its control socket.
    pub fn start(dir: &Path) -> std::io::Result<Swtpm> {
        std::fs::create_dir_all(dir)?;
        let socket = dir.join("sock");
        let _ = std::fs::remove_file(&socket);
        let child = Command::new("swtpm")
            .args(["socket", "--tpm2", "--terminate"])
            .arg("--tpmstate")
            .arg(format!("dir={}", dir.display()))
            .arg("--ctrl")
            .arg(format!("type=unixio,path={}", socket.display()))
            .arg("--log")
            .arg(format!("file={},level=1", dir.join("swtpm.log").display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .map_err(|e| {
                std::io::Error::new(
                    e.kind(),
                    format!("cannot start swtpm (Debian package swtpm): {e}"),
                )
            })?;
        let s = Swtpm {
            child: Some(child),
            socket,
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        while !s.socket.exists() {
            if Instant::now() > deadline {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "swtpm made no control socket within 5 s",
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(s)
    }

    /// QEMU arguments for a tpm-spapr device at `unit` backed by this swtpm. The unit's low
    /// byte picks the interrupt (keep it apart from vty 0x00, nvram 0x01, l-lan 0x02, v-scsi 0x03).
    pub fn qemu_args(&self, unit: u32) -> Vec<String> {
        vec![
            "-chardev".into(),
            format!("socket,id=tpmchr,path={}", self.socket.display()),
            "-tpmdev".into(),
            "emulator,id=tpm0,chardev=tpmchr".into(),
            "-device".into(),
            format!("tpm-spapr,tpmdev=tpm0,reg={unit:#x}"),
        ]
    }
}

impl Drop for Swtpm {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Debian's virtiofsd (QEMU 7.2's C daemon, package `qemu-system-common`).
pub const VIRTIOFSD: &str = "/usr/lib/qemu/virtiofsd";

/// One virtiofsd serving a folder to one QEMU run over a vhost-user socket; killed when
/// dropped (it also exits by itself when QEMU disconnects).
pub struct Virtiofsd {
    child: Option<Child>,
    pub socket: PathBuf,
    log: PathBuf,
}

impl Virtiofsd {
    /// Starts `virtiofsd --socket-path=DIR/<name>.sock -o source=SHARE -o cache=none -o
    /// sandbox=chroot` and waits (5 s at most) for its socket. `sandbox=chroot` keeps it one
    /// process (the namespace sandbox forks a child that would not see signals sent to it);
    /// `cache=none` so every read reaches the device's queue.
    pub fn start(dir: &Path, name: &str, share: &Path) -> std::io::Result<Virtiofsd> {
        std::fs::create_dir_all(dir)?;
        let socket = dir.join(format!("{name}.sock"));
        let log = dir.join(format!("{name}.log"));
        let _ = std::fs::remove_file(&socket);
        let child = Command::new(VIRTIOFSD)
            .arg(format!("--socket-path={}", socket.display()))
            .args(["-o", &format!("source={}", share.display())])
            .args(["-o", "cache=none", "-o", "sandbox=chroot"])
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log)?)
            .stderr(std::fs::File::create(dir.join(format!("{name}.err")))?)
            .spawn()
            .map_err(|e| {
                std::io::Error::new(
                    e.kind(),
                    format!("cannot start {VIRTIOFSD} (Debian package qemu-system-common): {e}"),
                )
            })?;
        let d = Virtiofsd {
            child: Some(child),
            socket,
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        while !d.socket.exists() {
            if Instant::now() > deadline {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "virtiofsd made no socket within 5 s",
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(d)
    }

    /// QEMU arguments for a vhost-user-fs-pci device `id` with `tag` served by this daemon;
    /// `at` (`bus=...,addr=...`) places it. The run needs [`Qemu::shared_memory`].
    pub fn qemu_args(&self, id: &str, tag: &str, at: &str) -> Vec<String> {
        let mut dev = format!("vhost-user-fs-pci,chardev={id},tag={tag}");
        if !at.is_empty() {
            dev.push(',');
            dev.push_str(at);
        }
        vec![
            "-chardev".into(),
            format!("socket,id={id},path={}", self.socket.display()),
            "-device".into(),
            dev,
        ]
    }

    /// Sends the daemon `signal` (`STOP`, `CONT`, `KILL`) through kill(1), by its id.
    pub fn signal(&self, signal: &str) {
        if let Some(c) = &self.child {
            let _ = Command::new("kill")
                .arg(format!("-{signal}"))
                .arg(c.id().to_string())
                .status();
        }
    }

    /// What it printed on stderr (its messages) and stdout.
    pub fn log(&self) -> String {
        let err = self.log.with_extension("err");
        format!(
            "{}{}",
            std::fs::read_to_string(&self.log).unwrap_or_default(),
            std::fs::read_to_string(err).unwrap_or_default()
        )
    }
}

impl Drop for Virtiofsd {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// QEMU arguments for a v-scsi adapter `id` (QEMU's spapr-vscsi) at `unit`. Its low byte picks
/// the interrupt: keep it apart from other VIO devices' (vty 0x00, nvram 0x01, l-lan 0x02, the
/// default v-scsi 0x03, virtio-vio 0x10..).
pub fn vscsi_adapter(id: &str, unit: u32) -> Vec<String> {
    vec![
        "-device".into(),
        format!("spapr-vscsi,id={id},reg={unit:#x}"),
    ]
}

/// QEMU arguments for a QMP monitor listening on the Unix socket `path` (for [`qmp`]).
pub fn qmp_socket(path: &Path) -> Vec<String> {
    vec![
        "-qmp".into(),
        format!("unix:{},server=on,wait=off", path.display()),
    ]
}

/// Sends QMP commands (JSON texts such as `{"execute":"device_del","arguments":{"id":"hd0"}}`)
/// to a running QEMU's monitor at `path`, after the capabilities handshake; returns each
/// command's answer (`{"return": ...}` or `{"error": ...}`), events skipped.
pub fn qmp(path: &Path, commands: &[&str]) -> std::io::Result<Vec<String>> {
    use std::io::{BufRead, BufReader, Write};
    let stream = std::os::unix::net::UnixStream::connect(path)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut writer = stream;
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut answers = Vec::new();
    for c in std::iter::once(r#"{"execute":"qmp_capabilities"}"#).chain(commands.iter().copied()) {
        writer.write_all(c.as_bytes())?;
        writer.write_all(b"\n")?;
        loop {
            line.clear();
            if reader.read_line(&mut line)? == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "QMP closed before answering",
                ));
            }
            if line.contains("\"return\"") || line.contains("\"error\"") {
                answers.push(line.trim().to_string());
                break;
            }
        }
    }
    answers.remove(0);
    Ok(answers)
}

/// Where a SCSI device sits on a v-scsi adapter's bus.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScsiAddress {
    pub channel: u32,
    pub target: u32,
    pub lun: u32,
}

/// QEMU arguments for a `scsi-hd` backed by the raw `file` on adapter `adapter` at `at`;
/// `props` are further device properties (`serial=..`, `logical_block_size=4096,..`), and
/// `read_only` opens the drive read-only.
pub fn scsi_disk(
    adapter: &str,
    drive: &str,
    file: &Path,
    at: ScsiAddress,
    props: &str,
    read_only: bool,
) -> Vec<String> {
    let mut dev = format!(
        "scsi-hd,drive={drive},bus={adapter}.0,channel={},scsi-id={},lun={}",
        at.channel, at.target, at.lun
    );
    if !props.is_empty() {
        dev.push(',');
        dev.push_str(props);
    }
    vec![
        "-drive".into(),
        format!(
            "file={},if=none,id={drive},format=raw{}",
            file.display(),
            if read_only { ",readonly=on" } else { "" }
        ),
        "-device".into(),
        dev,
    ]
}

/// QEMU arguments for a `scsi-cd` on adapter `adapter` at `at` whose medium is `file`.
pub fn scsi_cd(adapter: &str, drive: &str, file: &Path, at: ScsiAddress) -> Vec<String> {
    vec![
        "-drive".into(),
        format!(
            "file={},if=none,id={drive},format=raw,media=cdrom,readonly=on",
            file.display()
        ),
        "-device".into(),
        format!(
            "scsi-cd,drive={drive},bus={adapter}.0,channel={},scsi-id={},lun={}",
            at.channel, at.target, at.lun
        ),
    ]
}

/// QEMU arguments for an empty `scsi-cd` (no medium) on adapter `adapter` at `at`.
pub fn scsi_cd_empty(adapter: &str, id: &str, at: ScsiAddress) -> Vec<String> {
    vec![
        "-device".into(),
        format!(
            "scsi-cd,id={id},bus={adapter}.0,channel={},scsi-id={},lun={}",
            at.channel, at.target, at.lun
        ),
    ]
}

/// A sparse raw disk of `bytes` whose first 64 sectors hold the test pattern (what vioboot's
/// block checks look for before they write anything), the rest a hole.
pub fn sparse_pattern_disk(path: &Path, bytes: u64) -> std::io::Result<()> {
    use std::io::Write;
    let mut f = std::fs::File::create(path)?;
    let mut sector = [0u8; vioboot_core::pattern::SECTOR];
    for lba in 0..64 {
        vioboot_core::pattern::fill(0, lba, &mut sector);
        f.write_all(&sector)?;
    }
    f.set_len(bytes)
}
