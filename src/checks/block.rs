//! The smoke checks of a block device: capacity, identity, a read of the first 32 KiB, and on
//! a disk that carries the test pattern (no other disk is ever written) a write and read-back
//! of its end, a flush, the optional long verify and the benchmark.

use crate::dev::BlockDevice;
use crate::dev::DeviceError;
use crate::report::Scope;
use crate::{arch, cprintln, hcall, time};
use alloc::format;
use alloc::string::String;
use alloc::vec;
use core::fmt;
use vioboot_core::options::Options;
use vioboot_core::pattern;

/// Why the long verify or the benchmark could not finish.
#[derive(Debug)]
enum RunError {
    /// The area does not fit the disk.
    TooSmall { wanted: u64, capacity: u64 },
    /// A request failed: which, at which 512-byte sector.
    Request {
        what: &'static str,
        sector: u64,
        error: DeviceError,
    },
    /// What was read back is not what was written.
    Differs { sector: u64, byte: usize },
}

impl fmt::Display for RunError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RunError::TooSmall { wanted, capacity } => write!(
                f,
                "{} MiB from sector 2048 does not fit the disk of {} MiB",
                wanted >> 20,
                capacity >> 20
            ),
            RunError::Request {
                what,
                sector,
                error,
            } => write!(f, "{what} at sector {sector}: {error}"),
            RunError::Differs { sector, byte } => {
                write!(f, "sector {sector} read back differs at byte {byte}")
            }
        }
    }
}

/// 512-byte sectors per block of `dev` (the pattern is laid out by 512-byte sector).
fn sectors_per_block(dev: &dyn BlockDevice) -> u64 {
    (dev.block_size() / pattern::SECTOR).max(1) as u64
}

/// Runs the checks on `dev`, named under `s`.
pub fn run(s: &Scope, dev: &mut dyn BlockDevice, opts: &Options) {
    let spb = sectors_per_block(dev);
    let sectors = dev.capacity() * spb;
    s.pass(
        "capacity",
        format_args!(
            "{sectors} sectors ({} MiB), {}{}",
            (sectors * pattern::SECTOR as u64) >> 20,
            if dev.read_only() {
                "read-only"
            } else {
                "read-write"
            },
            if dev.block_size() == pattern::SECTOR {
                String::new()
            } else {
                format!(", {}-byte blocks", dev.block_size())
            }
        ),
    );
    match dev.identity() {
        Ok(id) => s.pass("id", format_args!("serial \"{id}\"")),
        Err(e) => s.fail("id", &e),
    }
    // The pattern the test harness wrote; a disk without it is never written.
    let mut buf = vec![0u8; 64 * pattern::SECTOR];
    let pattern_disk = match dev.read(0, &mut buf) {
        Err(e) => {
            s.fail("read", &e);
            return;
        }
        Ok(()) if buf.starts_with(pattern::MAGIC) => {
            match pattern::check_run(0, 0, &buf) {
                Ok(()) => s.pass("read", format_args!("sectors 0..64 hold the test pattern")),
                Err((l, o)) => s.fail(
                    "read",
                    &format_args!("sector {l} differs from the pattern at byte {o}"),
                ),
            }
            true
        }
        Ok(()) => {
            s.pass(
                "read",
                format_args!("read sectors 0..64 (no test pattern: the disk will not be written)"),
            );
            false
        }
    };
    if !(pattern_disk && !dev.read_only() && sectors > 256) {
        s.skip("write", "read-only, too small, or no test pattern");
        return;
    }
    let last = (sectors - 128) / spb * spb;
    s.check("write", write_read_back(dev, last, 128));
    match dev.flush() {
        Ok(()) => s.pass("flush", format_args!("{} completed", dev.flush_command())),
        Err(e) => s.fail("flush", &e),
    }
    if opts.blk_verify_mib > 0 {
        s.check("verify", verify(dev, opts.blk_verify_mib));
    }
    if opts.bench {
        s.check("bench", bench(dev));
    }
}

/// Writes `count` sectors from `first` (both whole blocks) with a fresh pattern, reads them
/// back and compares.
fn write_read_back(dev: &mut dyn BlockDevice, first: u64, count: u64) -> Result<String, RunError> {
    let spb = sectors_per_block(dev);
    let seed = arch::timebase() | 1;
    let mut out = vec![0u8; count as usize * pattern::SECTOR];
    pattern::fill_run(seed, first, &mut out);
    let request = |what, error| RunError::Request {
        what,
        sector: first,
        error,
    };
    dev.write(first / spb, &out)
        .map_err(|e| request("write", e))?;
    let mut back = vec![0u8; out.len()];
    dev.read(first / spb, &mut back)
        .map_err(|e| request("read back", e))?;
    match pattern::check_run(seed, first, &back) {
        Ok(()) => Ok(format!(
            "wrote and read back sectors {first}..{}",
            first + count
        )),
        Err((sector, byte)) => Err(RunError::Differs { sector, byte }),
    }
}

/// First 512-byte sector of the verify and benchmark areas.
const AREA_START: u64 = 2048;
/// Bytes per request of the verify and the sequential benchmark.
const CHUNK: usize = 256 << 10;
/// Bytes per read request when a verify reads back.
const READ_BACK_CHUNK: usize = 1 << 20;

fn fits(dev: &dyn BlockDevice, bytes: u64) -> Result<(), RunError> {
    let capacity = dev.capacity() * dev.block_size() as u64;
    if AREA_START * pattern::SECTOR as u64 + bytes > capacity {
        return Err(RunError::TooSmall {
            wanted: bytes,
            capacity,
        });
    }
    Ok(())
}

/// Writes `mib` MiB from sector 2048 in 256 KiB requests, then reads it all back in 1 MiB
/// requests (a driver that splits a request into several commands or descriptors is checked
/// at the seams: each 1 MiB read spans four 256 KiB writes) and verifies it. Prints progress
/// lines every 4 MiB, so a test can stop the server in the middle.
fn verify(dev: &mut dyn BlockDevice, mib: u32) -> Result<String, RunError> {
    let total = u64::from(mib) << 20;
    fits(dev, total)?;
    let spb = sectors_per_block(dev);
    let seed = arch::timebase() | 1;
    let start = time::now_us();
    let name = String::from(dev.name());
    let mut buf = vec![0u8; READ_BACK_CHUNK];
    let progress = |what: &str, done: u64| {
        if done.is_multiple_of(4 << 20) {
            cprintln!("# verify {name}: {what} {} of {mib} MiB", done >> 20);
        }
    };
    for (lba, len) in requests(total, CHUNK) {
        let b = &mut buf[..len];
        pattern::fill_run(seed, lba, b);
        dev.write(lba / spb, b).map_err(|error| RunError::Request {
            what: "write",
            sector: lba,
            error,
        })?;
        progress(
            "wrote",
            (lba - AREA_START) * pattern::SECTOR as u64 + len as u64,
        );
    }
    let written_us = time::now_us() - start;
    for (lba, len) in requests(total, READ_BACK_CHUNK) {
        let b = &mut buf[..len];
        dev.read(lba / spb, b).map_err(|error| RunError::Request {
            what: "read",
            sector: lba,
            error,
        })?;
        if let Err((sector, byte)) = pattern::check_run(seed, lba, b) {
            return Err(RunError::Differs { sector, byte });
        }
        progress(
            "read",
            (lba - AREA_START) * pattern::SECTOR as u64 + len as u64,
        );
    }
    let read_us = time::now_us() - start - written_us;
    Ok(format!(
        "{mib} MiB written ({} ms, 256 KiB requests) and read back ({} ms, 1 MiB requests) intact",
        written_us / 1000,
        read_us / 1000
    ))
}

/// The requests (first sector, bytes) that cover `total` bytes from [`AREA_START`] in pieces
/// of `chunk` bytes, the last one shorter when `chunk` does not divide `total`.
fn requests(total: u64, chunk: usize) -> impl Iterator<Item = (u64, usize)> {
    (0..total.div_ceil(chunk as u64)).map(move |i| {
        let at = i * chunk as u64;
        let len = (total - at).min(chunk as u64) as usize;
        (AREA_START + at / pattern::SECTOR as u64, len)
    })
}

/// The benchmark: sequential writes and reads of 32 MiB in 256 KiB and in 1 MiB requests, then
/// 2,000 random 4 KiB reads one at a time, each timed by the timebase with the hcalls it made
/// counted by kind. Prints one `# bench blk <phase> requests=N bytes=B us=T hcalls=H <KIND>=n ...`
/// line per phase (raw counts; only kinds that occurred) that `cargo xtask bench` collects.
fn bench(dev: &mut dyn BlockDevice) -> Result<String, RunError> {
    const TOTAL: u64 = 32 << 20;
    const RANDOM: u64 = 2000;
    fits(dev, TOTAL)?;
    let bs = dev.block_size() as u64;
    let first = AREA_START * pattern::SECTOR as u64 / bs;
    let failed = |what, block: u64| {
        move |error| RunError::Request {
            what,
            sector: block * bs / pattern::SECTOR as u64,
            error,
        }
    };
    let mut summary = String::new();
    let mut phase = |name: &str,
                     requests: u64,
                     bytes: u64,
                     run: &mut dyn FnMut() -> Result<(), RunError>|
     -> Result<(), RunError> {
        let (h0, k0, t0) = (hcall::count(), hcall::count_by_kind(), time::now_us());
        run()?;
        let (h1, k1, t1) = (hcall::count(), hcall::count_by_kind(), time::now_us());
        let mut kinds = String::new();
        for (i, (a, b)) in k0.iter().zip(k1.iter()).enumerate() {
            if b > a {
                let kind = hcall::COUNTED.get(i).map_or("other", |k| k.1);
                kinds.push_str(&format!(" {kind}={}", b - a));
            }
        }
        let us = (t1 - t0).max(1);
        cprintln!(
            "# bench blk {name} requests={requests} bytes={bytes} us={us} hcalls={}{kinds}",
            h1 - h0
        );
        if !summary.is_empty() {
            summary.push_str(", ");
        }
        summary.push_str(&format!(
            "{name} {:.1} MB/s",
            bytes as f64 / (1 << 20) as f64 / (us as f64 / 1e6)
        ));
        Ok(())
    };

    for chunk in [256u64 << 10, 1 << 20] {
        let mut buf = vec![0x5au8; chunk as usize];
        let per = chunk / bs;
        let n = TOTAL / chunk;
        let size = if chunk == 1 << 20 { "1m" } else { "256k" };
        phase(&format!("write-{size}"), n, TOTAL, &mut || {
            for c in 0..n {
                let b = first + c * per;
                dev.write(b, &buf).map_err(failed("write", b))?;
            }
            Ok(())
        })?;
        phase(&format!("read-{size}"), n, TOTAL, &mut || {
            for c in 0..n {
                let b = first + c * per;
                dev.read(b, &mut buf).map_err(failed("read", b))?;
            }
            Ok(())
        })?;
    }
    let small_len = (4096u64).max(bs);
    let mut small = vec![0u8; small_len as usize];
    let span = TOTAL / small_len;
    let mut x = 0x2545_f491_4f6c_dd1du64;
    phase("read-4k", RANDOM, RANDOM * small_len, &mut || {
        for _ in 0..RANDOM {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let b = first + (x % span) * (small_len / bs);
            dev.read(b, &mut small).map_err(failed("random read", b))?;
        }
        Ok(())
    })?;
    Ok(summary)
}
