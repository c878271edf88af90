//! vioboot's command line: `vioboot.KEY=VALUE` words in `/chosen/bootargs` (QEMU `-append`).
//!
//! Words are separated by spaces or tabs. Words that do not start with `vioboot.` belong to the
//! kernel that vioboot may boot and are kept in order. Every `vioboot.` word is either understood or
//! reported: an unknown key, a missing `=`, or a value outside its set is an [`OptionError`] and the
//! option keeps its default.

use alloc::vec::Vec;
use core::fmt;

/// Prefix of vioboot's own words.
pub const PREFIX: &str = "vioboot.";

/// Which job vioboot does after bring-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Run the smoke checks, print the TAP report, power off (exit status follows the verdict).
    Smoke,
    /// Boot a kernel (the bootloader; later work).
    Boot,
}

/// Least severe log level printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

/// Which console vioboot writes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsoleChoice {
    /// Open Firmware's stdout while OF is alive, the hvterm vty afterwards.
    Auto,
    /// Always the hvterm vty named by the tree (H_PUT_TERM_CHAR), also while OF is alive.
    Hvterm,
}

/// How RTAS is called.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RtasChoice {
    /// H_RTAS where the hypervisor has it, else `instantiate-rtas` through Open Firmware.
    Auto,
    /// Only `instantiate-rtas` through Open Firmware (as on PowerVM).
    Of,
}

/// How the flattened device tree is obtained while Open Firmware is alive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FdtChoice {
    /// `fdt-fetch` where OF offers it, else a walk of the OF tree.
    Auto,
    /// Always walk the OF tree and flatten it (what PowerVM needs).
    Walk,
}

/// A deliberate fault, for testing the exit protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inject {
    /// A smoke check named `inject` fails.
    Fail,
    /// vioboot panics after the report header.
    Panic,
    /// vioboot executes an illegal instruction (its own vectors catch it when it runs at 0).
    Exception,
    /// The first secondary thread is started on a loop that never reports in.
    LostCpu,
    /// The IPI to the first secondary thread is sent masked (MFRR 0xff): it never arrives.
    LostIpi,
}

/// `vioboot.source=`: which file system to boot from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source<'a> {
    /// A virtio-fs share by its tag (a word with no `:` and no `=`).
    Tag(&'a str),
    /// A disk by its adapter name and a partition by number (`virtio@71000010:2`).
    Partition { disk: &'a str, number: u32 },
    /// `label=NAME`: a file system label or a GPT partition name.
    Label(&'a str),
    /// `uuid=UUID`: a GPT partition GUID (or MBR `SSSSSSSS-NN`) or a file system UUID,
    /// compared without regard to case.
    Uuid(&'a str),
}

impl<'a> Source<'a> {
    /// Reads a `vioboot.source=` value; None when it is none of the forms.
    pub fn parse(v: &'a str) -> Option<Source<'a>> {
        if v.is_empty() || v.len() > 128 || v.contains(char::is_whitespace) {
            return None;
        }
        if let Some(l) = v.strip_prefix("label=") {
            return (!l.is_empty()).then_some(Source::Label(l));
        }
        if let Some(u) = v.strip_prefix("uuid=") {
            let ok = !u.is_empty() && u.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-');
            return ok.then_some(Source::Uuid(u));
        }
        if v.contains('=') {
            return None;
        }
        match v.rsplit_once(':') {
            Some((disk, n)) => {
                let number = n.parse::<u32>().ok().filter(|&n| n >= 1)?;
                (!disk.is_empty()).then_some(Source::Partition { disk, number })
            }
            None => (v.len() <= 36).then_some(Source::Tag(v)),
        }
    }
}

impl fmt::Display for Source<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Tag(t) => write!(f, "share \"{t}\""),
            Source::Partition { disk, number } => write!(f, "{disk}:{number}"),
            Source::Label(l) => write!(f, "label={l}"),
            Source::Uuid(u) => write!(f, "uuid={u}"),
        }
    }
}

/// The parsed command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options<'a> {
    pub mode: Mode,
    pub log: LogLevel,
    pub console: ConsoleChoice,
    pub rtas: RtasChoice,
    pub fdt: FdtChoice,
    pub inject: Option<Inject>,
    /// MiB that the virtio-vio block check writes, reads back and verifies (0: only the
    /// standard checks).
    pub blk_verify_mib: u32,
    /// Run the virtio-vio block benchmark and print its numbers.
    pub bench: bool,
    /// Milliseconds a virtio-vio, v-scsi, vTPM or virtio-pci request or handshake may take.
    pub vio_timeout_ms: u32,
    /// `vioboot.path-probe=MS`: how long a failed path of a multipath disk rests before it
    /// is tried again (set up again where its transport gave it up).
    pub path_probe_ms: u32,
    /// `vioboot.boot=PATH`: boot this kernel directly (no boot entries).
    pub boot: Option<&'a str>,
    /// `vioboot.initrd=PATH`: the initrd for `vioboot.boot`.
    pub initrd: Option<&'a str>,
    /// `vioboot.timeout=S`: menu timeout in seconds (overrides loader.conf).
    pub timeout: Option<u32>,
    /// `vioboot.default=GLOB`: the default boot entry (overrides loader.conf).
    pub default: Option<&'a str>,
    /// `vioboot.fs-tag=TAG`: the virtio-fs share to boot from (default: the first).
    pub fs_tag: Option<&'a str>,
    /// `vioboot.source=`: the share or disk partition to boot from (default: the first holding
    /// boot entries).
    pub source: Option<Source<'a>>,
    /// `vioboot.memtest=quick|full|<MiB>`: how much free memory the pattern test covers.
    pub memtest: crate::memtest::Size,
    /// `vioboot.checks=all|none|GROUP,...`: the groups of checks that run beside the platform
    /// checks (which always run: the console, RTAS and the exit protocol depend on them).
    pub checks: Groups,
    /// Words not meant for vioboot, in order.
    pub kernel_args: Vec<&'a str>,
    /// Number of `vioboot.` words understood.
    pub understood: usize,
}

impl Default for Options<'_> {
    fn default() -> Self {
        Options {
            mode: Mode::Smoke,
            log: LogLevel::Info,
            console: ConsoleChoice::Auto,
            rtas: RtasChoice::Auto,
            fdt: FdtChoice::Auto,
            inject: None,
            blk_verify_mib: 0,
            bench: false,
            vio_timeout_ms: 30_000,
            path_probe_ms: 10_000,
            boot: None,
            initrd: None,
            timeout: None,
            fs_tag: None,
            source: None,
            default: None,
            memtest: crate::memtest::Size::Quick,
            checks: Groups::ALL,
            kernel_args: Vec::new(),
            understood: 0,
        }
    }
}

/// One `vioboot.` word that was not understood.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OptionError<'a> {
    /// `vioboot.KEY` with no `=VALUE`.
    MissingValue { word: &'a str },
    /// A key vioboot does not know.
    UnknownKey { key: &'a str },
    /// A known key with a value outside its set.
    BadValue {
        key: &'a str,
        value: &'a str,
        expected: &'static str,
    },
}

impl fmt::Display for OptionError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OptionError::MissingValue { word } => write!(f, "option `{word}` has no `=value`"),
            OptionError::UnknownKey { key } => {
                write!(
                    f,
                    "unknown option `{PREFIX}{key}` (known: {})",
                    KEYS.join(", ")
                )
            }
            OptionError::BadValue {
                key,
                value,
                expected,
            } => {
                write!(
                    f,
                    "option `{PREFIX}{key}` has bad value `{value}` (expected {expected})"
                )
            }
        }
    }
}

/// The keys vioboot understands, for messages and documentation.
pub const KEYS: &[&str] = &[
    "mode",
    "log",
    "console",
    "rtas",
    "fdt",
    "inject",
    "blk-verify",
    "bench",
    "vio-timeout",
    "path-probe",
    "boot",
    "initrd",
    "timeout",
    "default",
    "fs-tag",
    "source",
    "memtest",
    "checks",
];

/// Groups of checks `vioboot.checks` chooses among.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Groups(u8);

impl Groups {
    /// Hypervisor and RTAS services: VPA, H_PAGE_INIT, SPRG0, H_RANDOM, time of day, NVRAM,
    /// terminal input.
    pub const SERVICES: Groups = Groups(1);
    /// Every vCPU, H_CEDE/H_PROD.
    pub const CPUS: Groups = Groups(2);
    /// The decrementer and the interrupts vioboot takes.
    pub const INTERRUPTS: Groups = Groups(4);
    /// The memory pattern test (`vioboot.memtest` sizes it).
    pub const MEMORY: Groups = Groups(8);
    /// The devices of every bus (smoke mode).
    pub const DEVICES: Groups = Groups(16);
    pub const ALL: Groups = Groups(31);
    pub const NONE: Groups = Groups(0);
    /// Each group's name, as `vioboot.checks` takes it.
    pub const NAMES: [(&'static str, Groups); 5] = [
        ("services", Groups::SERVICES),
        ("cpus", Groups::CPUS),
        ("interrupts", Groups::INTERRUPTS),
        ("memory", Groups::MEMORY),
        ("devices", Groups::DEVICES),
    ];

    pub fn contains(self, g: Groups) -> bool {
        self.0 & g.0 == g.0
    }

    /// `all`, `none`, or a comma-separated list of group names (each once at most).
    pub fn parse(v: &str) -> Option<Groups> {
        match v {
            "all" => return Some(Groups::ALL),
            "none" => return Some(Groups::NONE),
            _ => {}
        }
        let mut g = 0u8;
        for name in v.split(',') {
            let (_, one) = Groups::NAMES.iter().find(|(n, _)| *n == name)?;
            if g & one.0 != 0 {
                return None;
            }
            g |= one.0;
        }
        Some(Groups(g))
    }

    /// The name of the group `g` (one of [`Groups::NAMES`]).
    pub fn name(g: Groups) -> &'static str {
        Groups::NAMES
            .iter()
            .find(|(_, x)| *x == g)
            .map_or("?", |(n, _)| n)
    }
}

fn pick<T: Copy>(value: &str, table: &[(&str, T)]) -> Option<T> {
    table
        .iter()
        .find(|(name, _)| *name == value)
        .map(|(_, v)| *v)
}

/// Parses a command line. Never fails: what is not understood is returned beside the options.
pub fn parse(cmdline: &str) -> (Options<'_>, Vec<OptionError<'_>>) {
    let mut opts = Options::default();
    let mut errors = Vec::new();
    for word in cmdline.split([' ', '\t', '\n']).filter(|w| !w.is_empty()) {
        let Some(rest) = word.strip_prefix(PREFIX) else {
            opts.kernel_args.push(word);
            continue;
        };
        let Some((key, value)) = rest.split_once('=') else {
            errors.push(OptionError::MissingValue { word });
            continue;
        };
        // Each arm applies the value and yields whether it was in the key's set.
        let (applied, expected) = match key {
            "mode" => (
                pick(value, &[("smoke", Mode::Smoke), ("boot", Mode::Boot)]).map(|v| opts.mode = v),
                "smoke|boot",
            ),
            "log" => (
                pick(
                    value,
                    &[
                        ("error", LogLevel::Error),
                        ("warn", LogLevel::Warn),
                        ("info", LogLevel::Info),
                        ("debug", LogLevel::Debug),
                        ("trace", LogLevel::Trace),
                    ],
                )
                .map(|v| opts.log = v),
                "error|warn|info|debug|trace",
            ),
            "console" => (
                pick(
                    value,
                    &[
                        ("auto", ConsoleChoice::Auto),
                        ("hvterm", ConsoleChoice::Hvterm),
                    ],
                )
                .map(|v| opts.console = v),
                "auto|hvterm",
            ),
            "rtas" => (
                pick(value, &[("auto", RtasChoice::Auto), ("of", RtasChoice::Of)])
                    .map(|v| opts.rtas = v),
                "auto|of",
            ),
            "fdt" => (
                pick(
                    value,
                    &[("auto", FdtChoice::Auto), ("walk", FdtChoice::Walk)],
                )
                .map(|v| opts.fdt = v),
                "auto|walk",
            ),
            "inject" => (
                pick(
                    value,
                    &[
                        ("fail", Some(Inject::Fail)),
                        ("panic", Some(Inject::Panic)),
                        ("exception", Some(Inject::Exception)),
                        ("lost-cpu", Some(Inject::LostCpu)),
                        ("lost-ipi", Some(Inject::LostIpi)),
                        ("none", None),
                    ],
                )
                .map(|v| opts.inject = v),
                "fail|panic|exception|lost-cpu|lost-ipi|none",
            ),
            "blk-verify" => (
                value
                    .parse::<u32>()
                    .ok()
                    .filter(|&v| v <= 4096)
                    .map(|v| opts.blk_verify_mib = v),
                "a number of MiB, 0..=4096",
            ),
            "bench" => (
                pick(value, &[("off", false), ("on", true)]).map(|v| opts.bench = v),
                "on|off",
            ),
            "vio-timeout" => (
                value
                    .parse::<u32>()
                    .ok()
                    .filter(|&v| (10..=600_000).contains(&v))
                    .map(|v| opts.vio_timeout_ms = v),
                "milliseconds, 10..=600000",
            ),
            "path-probe" => (
                value
                    .parse::<u32>()
                    .ok()
                    .filter(|&v| (100..=600_000).contains(&v))
                    .map(|v| opts.path_probe_ms = v),
                "milliseconds, 100..=600000",
            ),
            "boot" => (
                value.starts_with('/').then(|| opts.boot = Some(value)),
                "an absolute path on the share",
            ),
            "initrd" => (
                value.starts_with('/').then(|| opts.initrd = Some(value)),
                "an absolute path on the share",
            ),
            "timeout" => (
                value
                    .parse::<u32>()
                    .ok()
                    .filter(|&t| t <= 3600)
                    .map(|t| opts.timeout = Some(t)),
                "seconds, 0..=3600",
            ),
            "default" => (
                (!value.is_empty()).then(|| opts.default = Some(value)),
                "an entry id or glob",
            ),
            "fs-tag" => (
                (!value.is_empty() && value.len() <= 36).then(|| opts.fs_tag = Some(value)),
                "a tag of 1..=36 bytes",
            ),
            "source" => (
                Source::parse(value).map(|s| opts.source = Some(s)),
                "TAG, DISK:N, label=NAME or uuid=UUID",
            ),
            "memtest" => (
                match value {
                    "quick" => Some(crate::memtest::Size::Quick),
                    "full" => Some(crate::memtest::Size::Full),
                    v => v
                        .parse::<u32>()
                        .ok()
                        .filter(|&m| m <= 1 << 20)
                        .map(crate::memtest::Size::MiB),
                }
                .map(|v| opts.memtest = v),
                "quick, full or a number of MiB (0: none)",
            ),
            "checks" => (
                Groups::parse(value).map(|g| opts.checks = g),
                "all, none, or a comma-separated list of services, cpus, interrupts, memory, devices",
            ),
            _ => {
                errors.push(OptionError::UnknownKey { key });
                continue;
            }
        };
        match applied {
            Some(()) => opts.understood += 1,
            None => errors.push(OptionError::BadValue {
                key,
                value,
                expected,
            }),
        }
    }
    (opts, errors)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_groups() {
        assert_eq!(parse("").0.checks, Groups::ALL);
        assert_eq!(parse("vioboot.checks=none").0.checks, Groups::NONE);
        let g = parse("vioboot.checks=cpus,devices").0.checks;
        assert!(g.contains(Groups::CPUS) && g.contains(Groups::DEVICES));
        assert!(!g.contains(Groups::MEMORY) && !g.contains(Groups::SERVICES));
        for bad in ["cpus,cpus", "cpu", "", "cpus,", "all,cpus"] {
            let (o, e) = parse_owned(&alloc::format!("vioboot.checks={bad}"));
            assert_eq!(o, Groups::ALL, "{bad}");
            assert_eq!(e, 1, "{bad}");
        }
        assert_eq!(Groups::name(Groups::MEMORY), "memory");
    }

    /// The check groups and the number of errors of `cmdline`.
    fn parse_owned(cmdline: &str) -> (Groups, usize) {
        let (o, e) = parse(cmdline);
        (o.checks, e.len())
    }

    #[test]
    fn memtest_sizes() {
        use crate::memtest::Size;
        assert_eq!(parse("").0.memtest, Size::Quick);
        assert_eq!(parse("vioboot.memtest=full").0.memtest, Size::Full);
        assert_eq!(parse("vioboot.memtest=64").0.memtest, Size::MiB(64));
        assert_eq!(parse("vioboot.memtest=0").0.memtest, Size::MiB(0));
        let (o, e) = parse("vioboot.memtest=lots");
        assert_eq!(o.memtest, Size::Quick);
        assert_eq!(e.len(), 1);
    }

    #[test]
    fn empty_line_gives_defaults() {
        let (o, e) = parse("");
        assert_eq!(o, Options::default());
        assert!(e.is_empty());
    }

    #[test]
    fn parses_known_options_and_keeps_kernel_words() {
        let (o, e) = parse(
            "console=hvc0 vioboot.log=debug  vioboot.mode=boot\troot=/dev/vda vioboot.fdt=walk",
        );
        assert!(e.is_empty(), "{e:?}");
        assert_eq!(o.log, LogLevel::Debug);
        assert_eq!(o.mode, Mode::Boot);
        assert_eq!(o.fdt, FdtChoice::Walk);
        assert_eq!(o.kernel_args, ["console=hvc0", "root=/dev/vda"]);
        assert_eq!(o.understood, 3);
    }

    #[test]
    fn reports_unknown_keys_bad_values_and_missing_values() {
        let (o, e) = parse("vioboot.colour=red vioboot.log=loud vioboot.mode vioboot.inject=fail");
        assert_eq!(o.log, LogLevel::Info, "a bad value keeps the default");
        assert_eq!(o.inject, Some(Inject::Fail));
        assert_eq!(e.len(), 3);
        assert_eq!(e[0], OptionError::UnknownKey { key: "colour" });
        assert_eq!(
            e[1],
            OptionError::BadValue {
                key: "log",
                value: "loud",
                expected: "error|warn|info|debug|trace"
            }
        );
        assert_eq!(
            e[2],
            OptionError::MissingValue {
                word: "vioboot.mode"
            }
        );
        let msg = std::format!("{}", e[0]);
        assert!(
            msg.contains("vioboot.colour") && msg.contains("known:"),
            "{msg}"
        );
        let msg = std::format!("{}", e[1]);
        assert!(
            msg.contains("`loud`") && msg.contains("vioboot.log"),
            "{msg}"
        );
    }

    #[test]
    fn numeric_options_are_range_checked() {
        let (o, e) = parse("vioboot.blk-verify=64 vioboot.vio-timeout=250 vioboot.bench=on");
        assert!(e.is_empty(), "{e:?}");
        assert_eq!(
            (o.blk_verify_mib, o.vio_timeout_ms, o.bench),
            (64, 250, true)
        );
        let (o, e) = parse("vioboot.blk-verify=lots vioboot.vio-timeout=1");
        assert_eq!(e.len(), 2);
        assert_eq!((o.blk_verify_mib, o.vio_timeout_ms), (0, 30_000));
        let (o, e) = parse("vioboot.path-probe=500");
        assert!(e.is_empty(), "{e:?}");
        assert_eq!(o.path_probe_ms, 500);
        let (o, e) = parse("vioboot.path-probe=5 vioboot.path-probe=soon");
        assert_eq!(e.len(), 2);
        assert_eq!(o.path_probe_ms, 10_000);
    }

    #[test]
    fn last_word_wins() {
        let (o, e) = parse("vioboot.log=warn vioboot.log=trace");
        assert!(e.is_empty());
        assert_eq!(o.log, LogLevel::Trace);
    }

    #[test]
    fn source_names_a_share_a_partition_a_label_or_a_uuid() {
        let (o, e) = parse("vioboot.source=virtio@71000010:2");
        assert!(e.is_empty(), "{e:?}");
        assert_eq!(
            o.source,
            Some(Source::Partition {
                disk: "virtio@71000010",
                number: 2
            })
        );
        let cases = [
            ("boot", Some(Source::Tag("boot"))),
            ("label=BOOT", Some(Source::Label("BOOT"))),
            (
                "uuid=0FC63DAF-8483-4772-8e79-3d69d8477de4",
                Some(Source::Uuid("0FC63DAF-8483-4772-8e79-3d69d8477de4")),
            ),
            ("uuid=deadbeef-02", Some(Source::Uuid("deadbeef-02"))),
            ("uuid=not-hex!", None),
            ("label=", None),
            ("virtio@71000010:0", None),
            ("virtio@71000010:x", None),
            (":3", None),
            ("colour=red", None),
        ];
        for (v, want) in cases {
            assert_eq!(Source::parse(v), want, "{v}");
        }
        let (o, e) = parse("vioboot.source=virtio@1:0 vioboot.fs-tag=boot");
        assert_eq!(o.source, None, "a bad value keeps the default");
        assert_eq!(o.fs_tag, Some("boot"), "fs-tag still works beside it");
        assert_eq!(e.len(), 1);
        assert!(std::format!("{}", e[0]).contains("DISK:N"));
        assert_eq!(
            std::format!(
                "{}",
                Source::Partition {
                    disk: "virtio@71000010",
                    number: 2
                }
            ),
            "virtio@71000010:2"
        );
    }
}
