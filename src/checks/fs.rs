//! The smoke checks of a file system: mount, list the root, run its own check list
//! (`/vioboot-checks.txt`), totals, unmount; no buffer may stay mapped.

use crate::cprintln;
use crate::dev::fs::{errno, FileSystem};
use crate::report::Scope;
use crate::time;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use vioboot_core::checks::{self, Check};
use vioboot_core::options::Options;
use vioboot_core::sha256::{self, Sha256};

/// The share's own list of what it holds.
const CHECK_LIST: &str = "/vioboot-checks.txt";

/// Runs the checks on `fs`, named under `s`. Leaves it unmounted (the caller shuts it down).
pub fn run(s: &Scope, fs: &mut dyn FileSystem, opts: &Options) {
    match fs.mount() {
        Ok(detail) => s.pass("mount", format_args!("{detail}")),
        Err(e) => {
            s.fail("mount", &e);
            return;
        }
    }
    match fs.list_dir("/") {
        Ok(l) => {
            let names: Vec<&str> = l.iter().take(8).map(|e| e.name.as_str()).collect();
            s.pass(
                "list",
                format_args!(
                    "/ holds {} entries: {}{}",
                    l.len(),
                    names.join(", "),
                    if l.len() > 8 { ", ..." } else { "" }
                ),
            )
        }
        Err(e) => s.fail("list", &e),
    }
    match fs.read_file(CHECK_LIST) {
        Err(e) if e.errno() == Some(errno::ENOENT) => {
            s.skip("checks", "the share has no /vioboot-checks.txt")
        }
        Err(e) => s.fail("checks", &e),
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let (list, bad) = checks::parse(&text);
            for b in &bad {
                s.fail("checks", b);
            }
            for c in &list {
                one(s, fs, c, opts);
            }
        }
    }
    match fs.totals() {
        Ok(t) => s.pass(
            "statfs",
            format_args!(
                "{} blocks of {} bytes, {} free, {} files",
                t.blocks, t.block_size, t.free, t.files
            ),
        ),
        Err(e) => s.fail("statfs", &e),
    }
    let unmount = fs.unmount();
    let left = fs.as_device().pages_left_mapped();
    match unmount {
        Ok(detail) if left == 0 => s.pass(
            "unmount",
            format_args!("{detail}; no buffer left in the TCE window"),
        ),
        Ok(_) => s.fail(
            "unmount",
            &format_args!("{left} IOBA pages still mapped after the requests finished"),
        ),
        Err(e) => s.fail("unmount", &e),
    }
}

/// One line of the check list.
fn one(s: &Scope, fs: &mut dyn FileSystem, c: &Check, opts: &Options) {
    match c {
        Check::File {
            sha256: want,
            size,
            path,
        } => {
            let start = time::now_us();
            let mut h = Sha256::new();
            match fs.read_stream(path, None, &mut |piece| h.update(piece)) {
                Err(e) => s.fail("file", &e),
                Ok((len, read)) if len != *size || read != *size => s.fail(
                    "file",
                    &format_args!("{path}: {read} bytes read, file size {len}, expected {size}"),
                ),
                Ok(_) => {
                    let got = h.finish();
                    let us = (time::now_us() - start).max(1);
                    if got == *want {
                        s.pass(
                            "file",
                            format_args!(
                                "{path}: {size} bytes, sha256 matches ({:.1} MB/s)",
                                *size as f64 / us as f64
                            ),
                        )
                    } else {
                        s.fail(
                            "file",
                            &format_args!(
                                "{path}: sha256 {} differs from {}",
                                sha256::hex(&got),
                                sha256::hex(want)
                            ),
                        )
                    }
                }
            }
        }
        Check::Enoent { path } => expect_errno(s, fs, "enoent", path, errno::ENOENT, "exists"),
        Check::Eloop { path } => expect_errno(
            s,
            fs,
            "eloop",
            path,
            errno::ELOOP,
            "resolved despite its loop",
        ),
        Check::Dir { count, path } => {
            let start = time::now_us();
            match fs.list_dir(path) {
                Ok(l) if l.len() == *count => s.pass(
                    "dir",
                    format_args!(
                        "{path}: all {count} entries listed in {} ms",
                        (time::now_us() - start) / 1000
                    ),
                ),
                Ok(l) => s.fail(
                    "dir",
                    &format_args!("{path}: {} entries listed, expected {count}", l.len()),
                ),
                Err(e) => s.fail("dir", &e),
            }
        }
        Check::BenchFile { path } if opts.bench => {
            let start = time::now_us();
            match fs.read_stream(path, None, &mut |_| {}) {
                Ok((_, n)) => {
                    let mbps = n as f64 / (time::now_us() - start).max(1) as f64;
                    cprintln!("# bench fs-file-MBps {mbps:.1}");
                    s.pass("bench", format_args!("{path}: {n} bytes at {mbps:.1} MB/s"))
                }
                Err(e) => s.fail("bench", &e),
            }
        }
        Check::BenchDir { path } if opts.bench => {
            let start = time::now_us();
            let r = fs.list_dir(path).and_then(|l| {
                for e in &l {
                    fs.read_stream(&format!("{path}/{}", e.name), None, &mut |_| {})?;
                }
                Ok(l.len())
            });
            match r {
                Ok(n) => {
                    let fps = n as f64 / ((time::now_us() - start).max(1) as f64 / 1e6);
                    cprintln!("# bench fs-small-files-per-s {fps:.0}");
                    s.pass(
                        "bench",
                        format_args!("{path}: {n} files read, {fps:.0} files/s"),
                    )
                }
                Err(e) => s.fail("bench", &e),
            }
        }
        Check::BenchFile { .. } | Check::BenchDir { .. } => {}
    }
}

/// `path` must fail with `want`; `otherwise` says what it did instead of failing.
fn expect_errno(
    s: &Scope,
    fs: &mut dyn FileSystem,
    check: &str,
    path: &str,
    want: i32,
    otherwise: &str,
) {
    match fs.stat(path) {
        Err(e) if e.errno() == Some(want) => s.pass(check, format_args!("{e}, as expected")),
        Err(e) => s.fail(
            check,
            &format_args!("expected {}, got {e}", errno::name(want)),
        ),
        Ok(_) => s.fail(check, &format_args!("{path} {otherwise}")),
    }
}
