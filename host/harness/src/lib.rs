//! Boots vioboot in qemu-system-ppc64 and reads what it printed.
//!
//! One place builds QEMU command lines for every way vioboot is booted ([`Boot`]), runs QEMU with
//! a hard timeout and kills it (and only it) when dropped or timed out ([`run`]), and parses the
//! TAP report and verdict line from the console ([`Report`]). `cargo xtask` and `tests/` share it.

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
        let mut a: Vec<String> = vec![
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
        match self.boot {
            Boot::Slof | Boot::Vof => {
                a.push("-kernel".into());
                a.push(self.image_dir.join("vioboot.elf").display().to_string());
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
    let start = Instant::now();
    let mut cmd = q.command();
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = KillOnDrop(cmd.spawn().map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!("cannot start {}: {e}", q.binary.display()),
        )
    })?);
    let (tx, rx) = mpsc::channel::<Vec<u8>>();
    let mut readers = Vec::new();
    for mut pipe in [
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
    ]
    .into_iter()
    .flatten()
    {
        let tx = tx.clone();
        readers.push(std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = pipe.read(&mut buf) {
                if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                    break;
                }
            }
        }));
    }
    drop(tx);
    let mut out = Vec::new();
    let status = loop {
        while let Ok(chunk) = rx.try_recv() {
            out.extend_from_slice(&chunk);
        }
        if let Some(s) = child.0.try_wait()? {
            break Some(s);
        }
        if start.elapsed() > timeout {
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let wall = start.elapsed();
    drop(child);
    for r in readers {
        let _ = r.join();
    }
    while let Ok(chunk) = rx.try_recv() {
        out.extend_from_slice(&chunk);
    }
    let output = String::from_utf8_lossy(&out).replace('\r', "");
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

/// The image folder: `target/image` under the workspace root.
pub fn image_dir(workspace: &Path) -> PathBuf {
    workspace.join("target").join("image")
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
    }
}
