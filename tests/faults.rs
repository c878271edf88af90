//! The fault campaign in QEMU: every fault the VIO server can inject (`--fault`), against
//! vioboot booted with no firmware, each ending as a recovery or a named failure within the
//! configured bound, never a hang, with the report complete (or bailed out) and, where the
//! device came up, nothing left mapped. Prints the table: fault, outcome, what vioboot
//! reported, time.
//!
//! Needs what tests/vio.rs needs (`cargo xtask test` prepares it).

use std::path::PathBuf;
use std::time::{Duration, Instant};
use vioboot_harness::{Boot, Qemu, Run, VioServer};

/// vioboot's bound on each wait for the server in these runs.
const VIO_TIMEOUT_MS: u64 = 3000;
/// Far above what any fault may take: reaching it is a hang.
const HANG: Duration = Duration::from_secs(120);

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// What a fault must end as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// vioboot copes: the report passes.
    Pass,
    /// A named failure: a failing check whose line names the adapter, a complete report or a
    /// bail-out, and os-term.
    Fail,
}

struct Case {
    fault: &'static str,
    fs: bool,
    expect: Expect,
}

const CASES: &[Case] = &[
    Case {
        fault: "bad-used-id",
        fs: false,
        expect: Expect::Fail,
    },
    Case {
        fault: "bad-used-len",
        fs: false,
        expect: Expect::Pass,
    },
    Case {
        fault: "unknown-opcode",
        fs: false,
        expect: Expect::Pass,
    },
    Case {
        fault: "flood",
        fs: false,
        expect: Expect::Pass,
    },
    Case {
        fault: "die-mid-request",
        fs: false,
        expect: Expect::Fail,
    },
    Case {
        fault: "touch-unmapped",
        fs: false,
        expect: Expect::Pass,
    },
    Case {
        fault: "fs-short-reply",
        fs: true,
        expect: Expect::Fail,
    },
    Case {
        fault: "fs-wrong-unique",
        fs: true,
        expect: Expect::Fail,
    },
    Case {
        fault: "fs-error-reply",
        fs: true,
        expect: Expect::Fail,
    },
    Case {
        fault: "fs-huge-len",
        fs: true,
        expect: Expect::Fail,
    },
    Case {
        fault: "fs-bad-errno",
        fs: true,
        expect: Expect::Fail,
    },
    Case {
        fault: "fs-dirent-overrun",
        fs: true,
        expect: Expect::Fail,
    },
    Case {
        fault: "fs-slash-name",
        fs: true,
        expect: Expect::Fail,
    },
    Case {
        fault: "fs-silent",
        fs: true,
        expect: Expect::Fail,
    },
];

/// One run: the server with `c.fault`, vioboot in smoke mode.
fn run_case(c: &Case, dir: &std::path::Path) -> (Run, Duration) {
    let socket = dir.join("v0.sock");
    let bin = vioboot_harness::vio_server_binary(&root());
    let target = if c.fs {
        let share = dir.join("share");
        vioboot_harness::test_share(&share, 1).expect("share");
        share
    } else {
        let disk = dir.join("disk.img");
        vioboot_harness::pattern_disk(&disk, 4).expect("disk");
        disk
    };
    let target = target.display().to_string();
    let mut args = vec![if c.fs { "--fs" } else { "--blk" }, target.as_str()];
    if c.fs {
        args.extend(["--tag", "faults"]);
    }
    args.extend(["--fault", c.fault]);
    let _srv = VioServer::start(&bin, &socket, &args, &dir.join("server.log")).expect("server");
    let image = vioboot_harness::image_dir(&root());
    let mut q =
        Qemu::new(Boot::Bios, image).append(&format!("vioboot.vio-timeout={VIO_TIMEOUT_MS}"));
    q.binary = vioboot_harness::built_qemu(&root()).expect("QEMU with the device model");
    q.extra = vioboot_harness::virtio_vio_device("v0", &socket, 0x7100_0010);
    let start = Instant::now();
    let run = vioboot_harness::run(&q, HANG).expect("QEMU runs");
    (run, start.elapsed())
}

#[test]
fn every_server_fault_is_survived_or_named_in_time() {
    let mut table = Vec::new();
    let mut wrong = Vec::new();
    for c in CASES {
        let dir = root().join("target/test-faults").join(c.fault);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch dir");
        let (run, took) = run_case(c, &dir);
        let r = run.report();
        let failures = r.failures();
        let first = failures
            .first()
            .map(|l| l.description.clone())
            .unwrap_or_default();
        let outcome = match (run.timed_out(), r.verdict, run.exit_code()) {
            (true, _, _) => "HANG",
            (false, Some(true), Some(0)) => "pass",
            (false, Some(false), Some(1)) => "named failure",
            _ => "broken exit",
        };
        table.push(format!(
            "| {} | {outcome} | {} | {:.1} s |",
            c.fault,
            if first.is_empty() {
                "-".into()
            } else {
                first.clone()
            },
            took.as_secs_f64()
        ));
        let ok = match c.expect {
            Expect::Pass => outcome == "pass",
            Expect::Fail => outcome == "named failure" && first.contains("virtio@71000010"),
        };
        // Where the device came up and went down, nothing stayed mapped.
        let leaked = r.lines.iter().any(|l| {
            (l.description.starts_with("virtio@71000010 unmapped")
                || l.description.starts_with("virtio@71000010 unmount"))
                && l.description.contains("IOBA pages still mapped")
        });
        if !ok || leaked {
            wrong.push(format!(
                "{}: {outcome}{}\n{}",
                c.fault,
                if leaked { ", pages left mapped" } else { "" },
                run.output
            ));
        }
    }
    println!("| fault | outcome | first failing line | time |");
    println!("|---|---|---|---|");
    for t in &table {
        println!("{t}");
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n\n"));
}
