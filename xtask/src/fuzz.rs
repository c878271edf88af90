//! `cargo xtask fuzz [--time SECONDS] [TARGET..]`: runs the fuzz targets in `fuzz/` (cargo-fuzz,
//! libFuzzer) from their seed corpora in `fuzz/seeds/<target>`, each for the given time, and
//! reports the executions each made. New corpus entries go to `target/fuzz-corpus/<target>`,
//! outside the checkout's seeds; a crash leaves its input in `fuzz/artifacts/<target>/` and
//! fails the run.

use super::{cargo, root, status, Result};
use std::process::{Command, Stdio};

/// Every target in fuzz/Cargo.toml.
pub const TARGETS: &[&str] = &[
    "fdt",
    "options",
    "bls",
    "elf",
    "checklist",
    "virtio_vio",
    "fuse",
    "srp",
    "partitions",
    "ext4",
    "fat",
    "tpm",
];

/// Every target's name.
pub fn all() -> Vec<String> {
    TARGETS.iter().map(|t| t.to_string()).collect()
}

/// What one target did.
pub struct Outcome {
    pub target: String,
    pub executions: u64,
    pub passed: bool,
}

/// cargo-fuzz, installed from crates.io if missing.
fn ensure_cargo_fuzz() -> Result {
    let have = cargo()
        .args(["fuzz", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if have {
        return Ok(());
    }
    status(
        "installing cargo-fuzz (once)",
        cargo().args(["install", "--locked", "cargo-fuzz"]),
    )
}

/// Parses `[--time SECONDS] [TARGET..]`.
pub fn parse(args: &[String]) -> Result<(u64, Vec<String>)> {
    let mut seconds = 60;
    let mut targets = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--time" => {
                seconds = it
                    .next()
                    .and_then(|s| s.parse().ok())
                    .ok_or("--time takes a number of seconds")?;
            }
            t if TARGETS.contains(&t) => targets.push(t.to_string()),
            t => {
                return Err(format!(
                    "unknown fuzz target `{t}` (targets: {})",
                    TARGETS.join(", ")
                ))
            }
        }
    }
    if targets.is_empty() {
        targets = all();
    }
    Ok((seconds, targets))
}

/// Builds every target, then runs each for `seconds`.
pub fn run(seconds: u64, targets: &[String]) -> Result<Vec<Outcome>> {
    ensure_cargo_fuzz()?;
    let fuzz = root().join("fuzz");
    status(
        "building the fuzz targets",
        cargo().current_dir(&fuzz).args(["fuzz", "build"]),
    )?;
    let mut out = Vec::new();
    for t in targets {
        let corpus = root().join("target/fuzz-corpus").join(t);
        std::fs::create_dir_all(&corpus).map_err(|e| format!("{}: {e}", corpus.display()))?;
        let seeds = fuzz.join("seeds").join(t);
        // A target without committed seeds (git keeps no empty folder) starts from nothing.
        std::fs::create_dir_all(&seeds).map_err(|e| format!("{}: {e}", seeds.display()))?;
        eprintln!("xtask: fuzzing {t} for {seconds} s");
        let mut run = cargo();
        run.current_dir(&fuzz).args(["fuzz", "run", t]).arg(&corpus);
        // A target without a seed folder in the checkout (git keeps no empty folder) starts
        // from its corpus alone: libFuzzer refuses a folder that does not exist.
        if seeds.is_dir() {
            run.arg(&seeds);
        }
        let o = run
            .args([
                "--",
                &format!("-max_total_time={seconds}"),
                "-print_final_stats=1",
                "-timeout=10",
                "-rss_limit_mb=4096",
            ])
            .stdout(Stdio::inherit())
            .stderr(Stdio::piped())
            .output()
            .map_err(|e| format!("cargo fuzz run {t}: {e}"))?;
        let log = String::from_utf8_lossy(&o.stderr);
        let executions = log
            .lines()
            .find_map(|l| l.strip_prefix("stat::number_of_executed_units:"))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(0);
        let passed = o.status.success();
        if !passed {
            eprintln!("{log}");
        }
        println!(
            "fuzz {t}: {executions} executions in {seconds} s: {}",
            if passed { "no crash" } else { "CRASH" }
        );
        out.push(Outcome {
            target: t.clone(),
            executions,
            passed,
        });
    }
    Ok(out)
}

/// `cargo xtask fuzz`.
pub fn command(args: &[String]) -> Result {
    let (seconds, targets) = parse(args)?;
    let outcomes = run(seconds, &targets)?;
    let total: u64 = outcomes.iter().map(|o| o.executions).sum();
    println!(
        "fuzz: {} targets, {total} executions, {} crashed",
        outcomes.len(),
        outcomes.iter().filter(|o| !o.passed).count()
    );
    let failed: Vec<&str> = outcomes
        .iter()
        .filter(|o| !o.passed)
        .map(|o| o.target.as_str())
        .collect();
    if failed.is_empty() {
        Ok(())
    } else {
        Err(format!("fuzz targets crashed: {}", failed.join(", ")))
    }
}

/// For `cargo xtask test`: the fuzz crate formats like the rest.
pub fn fmt_check() -> Result {
    status(
        "cargo fmt --check (fuzz)",
        Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .current_dir(root().join("fuzz"))
            .args(["fmt", "--check"]),
    )
}
