//! Loading a boot entry: the kernel ELF checked and its segments copied into place while the
//! file streams in (SHA-256 against the entry's `sha256`), then the initrd well above it
//! (against `initrd-sha256`). Memory comes from the handoff, which knows who gives it. With a
//! TPM to measure into ([`load_measured`]) both files are hashed as they stream in, pinned or
//! not, and their digests kept for the measurements.

use super::digest::Hashes;
use super::handoff::Handoff;
use super::place::PlaceError;
use crate::dev::fs::{FileSystem, FsError};
use crate::{cprintln, mem, time};
use alloc::boxed::Box;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use vioboot_core::bls::{self, Entry};
use vioboot_core::elf::{self, ElfError};
use vioboot_core::ranges::Range;
use vioboot_core::sha256::{self, Sha256};

/// Why an entry could not be loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoadError {
    /// The entry has no `linux` key.
    NoLinux,
    /// Reading a file failed (boxed: the error may carry a device error).
    Fs(Box<FsError>),
    /// The kernel is not an ELF vioboot can load.
    Elf {
        path: String,
        error: ElfError,
    },
    /// A file does not match the digest its entry pins.
    Digest {
        path: String,
        want: [u8; 32],
        got: [u8; 32],
        /// The initrd (which a truncation or a replacement most likely explains).
        initrd: bool,
    },
    /// The file delivered another number of bytes than its size.
    ShortRead {
        path: String,
        read: u64,
        size: u64,
    },
    EmptyInitrd {
        path: String,
    },
    /// The entry's `key` names `path`, which climbs above the root of the file system.
    Outside {
        key: &'static str,
        path: String,
    },
    NoRoom(PlaceError),
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadError::NoLinux => write!(f, "the entry has no `linux` key"),
            LoadError::Fs(e) => write!(f, "{e}"),
            LoadError::Elf { path, error } => write!(f, "{path}: {error}"),
            LoadError::Digest {
                path,
                want,
                got,
                initrd,
            } => write!(
                f,
                "{path}: sha256 {} does not match the entry's {}{}",
                sha256::hex(got),
                sha256::hex(want),
                if *initrd {
                    " (truncated or replaced?)"
                } else {
                    ""
                }
            ),
            LoadError::ShortRead { path, read, size } => {
                write!(f, "{path}: read {read} bytes, the file has {size}")
            }
            LoadError::EmptyInitrd { path } => write!(f, "{path}: the initrd is empty"),
            LoadError::Outside { key, path } => write!(
                f,
                "{key} {path}: points outside the file system that holds the entry"
            ),
            LoadError::NoRoom(e) => write!(f, "{e}"),
        }
    }
}

impl From<FsError> for LoadError {
    fn from(e: FsError) -> Self {
        LoadError::Fs(Box::new(e))
    }
}

impl From<PlaceError> for LoadError {
    fn from(e: PlaceError) -> Self {
        LoadError::NoRoom(e)
    }
}

/// A kernel and initrd in memory, ready to enter.
#[derive(Debug)]
pub struct Loaded {
    pub kernel: Range,
    pub entry_point: u64,
    pub initrd: Option<Range>,
    pub cmdline: String,
    /// The kernel file: its path, size and how long it took to load.
    pub path: String,
    pub bytes: u64,
    pub load_us: u64,
    /// SHA-256 of the kernel file, when it was hashed (pinned, or measured).
    pub kernel_sha256: Option<[u8; 32]>,
    /// The initrd's path and SHA-256, when it was hashed.
    pub initrd_sha256: Option<(String, [u8; 32])>,
    /// The kernel file's digest in each algorithm a TPM measures with (empty when none).
    pub kernel_digests: Vec<tpm::cmd::Digest>,
    /// The initrd's (everything placed, when there are several) likewise.
    pub initrd_digests: Vec<tpm::cmd::Digest>,
    /// A TPM event log for the kernel (`crate::loader::measure`), which the handoff passes on.
    pub event_log: Option<EventLog>,
}

/// A TPM event log and the tree node of the TPM it belongs to.
#[derive(Debug, Clone)]
pub struct EventLog {
    pub node: String,
    pub bytes: alloc::vec::Vec<u8>,
}

/// Loads `e`'s kernel and initrd, checking everything on the way.
pub fn load(fs: &mut dyn FileSystem, e: &Entry, h: &mut dyn Handoff) -> Result<Loaded, LoadError> {
    load_measured(fs, e, h, &[])
}

/// As [`load`]; with `measure` (the TPM algorithms to measure with, SHA-256 among them),
/// both files are hashed in each as they stream in, whether pinned or not.
pub fn load_measured(
    fs: &mut dyn FileSystem,
    e: &Entry,
    h: &mut dyn Handoff,
    algs: &[u16],
) -> Result<Loaded, LoadError> {
    let measure = !algs.is_empty();
    let raw = e.linux.as_deref().ok_or(LoadError::NoLinux)?;
    let linux = &bls::resolve(raw).ok_or_else(|| LoadError::Outside {
        key: "linux",
        path: raw.into(),
    })?;
    let initrds = e
        .initrd
        .iter()
        .map(|p| {
            bls::resolve(p).ok_or_else(|| LoadError::Outside {
                key: "initrd",
                path: p.clone(),
            })
        })
        .collect::<Result<Vec<String>, LoadError>>()?;
    // The ELF and program headers, and the file's size, in one walk of the path.
    let mut head = alloc::vec::Vec::new();
    let (size, _) = fs.read_stream(linux, Some((0, elf::HEAD_BYTES as u64)), &mut |piece| {
        head.extend_from_slice(piece)
    })?;
    let k = elf::parse(&head, size).map_err(|error| LoadError::Elf {
        path: linux.into(),
        error,
    })?;
    let dest = h.take_kernel(k.span)?;
    // SAFETY: `dest` was claimed from OF or placed clear of everything vioboot and the tree use.
    let image = unsafe { mem::region_mut(dest) };
    image.fill(0);
    let start = time::now_us();
    // Hashed only when the entry pins a digest or a TPM measures it: SHA-256 costs more than
    // the read itself.
    let mut sha = (e.sha256.is_some() || measure).then(Sha256::new);
    // The other banks' algorithms (SHA-256 is `sha`, needed for the pin as well).
    let others: Vec<u16> = algs
        .iter()
        .copied()
        .filter(|&a| a != tpm::ALG_SHA256)
        .collect();
    let mut more = measure.then(|| Hashes::new(&others));
    let mut at = 0u64;
    let mut last_shown = 0u64;
    // Where the time goes (timebase): hashing, and placing the segments; the rest is reading.
    let (mut hash_us, mut place_us) = (0u64, 0u64);
    fs.read_stream(linux, None, &mut |piece| {
        let t0 = time::now_us();
        if let Some(sha) = sha.as_mut() {
            sha.update(piece);
        }
        if let Some(m) = more.as_mut() {
            m.update(piece);
        }
        let t1 = time::now_us();
        hash_us += t1 - t0;
        let (p0, p1) = (at, at + piece.len() as u64);
        for s in &k.segments {
            let (s0, s1) = (s.offset, s.offset + s.filesz);
            let (a, b) = (p0.max(s0), p1.min(s1));
            if a < b {
                let to = (s.vaddr - k.base + (a - s0)) as usize;
                image[to..to + (b - a) as usize]
                    .copy_from_slice(&piece[(a - p0) as usize..(b - p0) as usize]);
            }
        }
        at = p1;
        place_us += time::now_us() - t1;
        if at - last_shown >= 8 << 20 || at == size {
            last_shown = at;
            let us = (time::now_us() - start).max(1);
            cprintln!(
                "# loading {linux}: {} of {} MiB, {:.1} MB/s",
                at >> 20,
                size >> 20,
                at as f64 / us as f64
            );
        }
    })?;
    if at != size {
        return Err(LoadError::ShortRead {
            path: linux.into(),
            read: at,
            size,
        });
    }
    let kernel_sha256 = sha.map(Sha256::finish);
    let kernel_digests = in_order(algs, kernel_sha256, more.map(Hashes::finish));
    if let (Some(want), Some(got)) = (e.sha256, kernel_sha256) {
        if got != want {
            return Err(LoadError::Digest {
                path: linux.into(),
                want,
                got,
                initrd: false,
            });
        }
    }
    let load_us = (time::now_us() - start).max(1);
    cprintln!(
        "# loaded {linux} in {} ms: {} ms hashing, {} ms placing, {} ms reading",
        load_us / 1000,
        hash_us / 1000,
        place_us / 1000,
        load_us.saturating_sub(hash_us + place_us) / 1000
    );
    let (initrd, initrd_sha256, initrd_digests) = if initrds.is_empty() {
        (None, None, Vec::new())
    } else {
        let (r, d, all) = load_initrds(fs, &initrds, e.initrd_sha256, algs, dest, h)?;
        (Some(r), d, all)
    };
    Ok(Loaded {
        kernel: dest,
        entry_point: dest.start + k.entry_offset(),
        initrd,
        cmdline: e.options.clone(),
        path: linux.into(),
        bytes: size,
        load_us,
        kernel_sha256,
        initrd_sha256,
        kernel_digests,
        initrd_digests,
        event_log: None,
    })
}

/// The digests in the order of `algs`: SHA-256 from `sha256`, the others from `more`.
fn in_order(
    algs: &[u16],
    sha256: Option<[u8; 32]>,
    more: Option<Vec<tpm::cmd::Digest>>,
) -> Vec<tpm::cmd::Digest> {
    let more = more.unwrap_or_default();
    algs.iter()
        .filter_map(|&a| {
            if a == tpm::ALG_SHA256 {
                sha256.map(|d| tpm::cmd::Digest {
                    alg: a,
                    bytes: d.to_vec(),
                })
            } else {
                more.iter().find(|d| d.alg == a).cloned()
            }
        })
        .collect()
}

/// What was hashed and its SHA-256.
type Digest = (String, [u8; 32]);

/// The initrds, one after the other in the order listed (each but the last padded with zeros
/// to 4 bytes, where Linux looks for the next cpio archive), well above the kernel at `kernel`.
/// Measured (`algs`), the hash of everything placed in each bank, and its SHA-256 under the
/// paths joined with ` + ` (one initrd: the file and its path); else the first initrd's
/// SHA-256 when `want` pins it. Each byte is hashed once per algorithm.
fn load_initrds(
    fs: &mut dyn FileSystem,
    paths: &[String],
    want: Option<[u8; 32]>,
    algs: &[u16],
    kernel: Range,
    h: &mut dyn Handoff,
) -> Result<(Range, Option<Digest>, Vec<tpm::cmd::Digest>), LoadError> {
    let measure = !algs.is_empty();
    let mut sizes = Vec::with_capacity(paths.len());
    let mut total = 0u64;
    for (i, path) in paths.iter().enumerate() {
        let size = fs.stat(path)?.size;
        if size == 0 {
            return Err(LoadError::EmptyInitrd { path: path.clone() });
        }
        let padded = if i + 1 < paths.len() {
            size.next_multiple_of(4)
        } else {
            size
        };
        total = total.saturating_add(padded);
        sizes.push((size, padded));
    }
    let r = h.take_initrd(total, kernel.end)?;
    // SAFETY: as for the kernel image.
    let buf = unsafe { mem::region_mut(r) };
    // Every bank's hash of everything placed (one initrd: the file itself), SHA-256 among
    // them: it names the initrd for the measurement.
    let mut banks = measure.then(|| {
        let sha256 = (!algs.contains(&tpm::ALG_SHA256)).then_some(tpm::ALG_SHA256);
        Hashes::new(&algs.iter().copied().chain(sha256).collect::<Vec<u16>>())
    });
    let mut at = 0usize;
    let mut first_digest = None;
    for (i, (path, &(size, padded))) in paths.iter().zip(&sizes).enumerate() {
        // The first initrd's own SHA-256, for its pin.
        let mut sha = (i == 0 && want.is_some()).then(Sha256::new);
        let start = at;
        let mut n = 0u64;
        fs.read_stream(path, None, &mut |piece| {
            if let Some(sha) = sha.as_mut() {
                sha.update(piece);
            }
            if let Some(b) = banks.as_mut() {
                b.update(piece);
            }
            let to = start as u64 + n;
            if to + piece.len() as u64 <= start as u64 + size {
                buf[to as usize..to as usize + piece.len()].copy_from_slice(piece);
            }
            n += piece.len() as u64;
        })?;
        if n != size {
            return Err(LoadError::ShortRead {
                path: path.clone(),
                read: n,
                size,
            });
        }
        let pad = &mut buf[start + size as usize..start + padded as usize];
        pad.fill(0);
        if let Some(b) = banks.as_mut() {
            b.update(pad);
        }
        at = start + padded as usize;
        let got = sha.map(Sha256::finish);
        if let (Some(want), Some(got)) = (want.filter(|_| i == 0), got) {
            if got != want {
                return Err(LoadError::Digest {
                    path: path.clone(),
                    want,
                    got,
                    initrd: true,
                });
            }
        }
        if i == 0 {
            first_digest = got;
        }
    }
    let range = Range {
        start: r.start,
        end: r.start + total,
    };
    let measured = banks.map(Hashes::finish).unwrap_or_default();
    let placed_sha256 = measured
        .iter()
        .find(|d| d.alg == tpm::ALG_SHA256)
        .and_then(|d| <[u8; 32]>::try_from(&d.bytes[..]).ok());
    let digest = match placed_sha256 {
        Some(d) => Some((paths.join(" + "), d)),
        None => first_digest.map(|d| (paths[0].clone(), d)),
    };
    let measured = measured
        .into_iter()
        .filter(|d| algs.contains(&d.alg))
        .collect();
    Ok((range, digest, measured))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dev::fs::{errno, FsErrorKind};
    use crate::dev::memfs::MemFs;
    use crate::loader::handoff::{HandoffError, Jump};
    use alloc::vec;
    use alloc::vec::Vec;
    use vioboot_core::elf::build_test_elf;

    /// Hands out ranges of a host buffer, as placed memory.
    struct Arena {
        buf: Vec<u8>,
        next: usize,
    }

    impl Arena {
        fn new() -> Arena {
            Arena {
                buf: vec![0xAA; 1 << 20],
                next: 0,
            }
        }

        fn range(&mut self, size: u64) -> Result<Range, PlaceError> {
            let start = self.buf.as_ptr() as u64 + self.next as u64;
            let size = size.next_multiple_of(4096);
            if self.next as u64 + size > self.buf.len() as u64 {
                return Err(PlaceError::NoRoom {
                    size,
                    from: self.next as u64,
                    limit: self.buf.len() as u64,
                    free: Vec::new(),
                });
            }
            self.next += size as usize;
            Ok(Range {
                start,
                end: start + size,
            })
        }

        fn at(&self, r: Range) -> &[u8] {
            let off = (r.start - self.buf.as_ptr() as u64) as usize;
            &self.buf[off..off + r.size() as usize]
        }
    }

    impl Handoff for Arena {
        fn rewind(&mut self) {
            self.next = 0;
        }

        fn take_kernel(&mut self, span: u64) -> Result<Range, PlaceError> {
            self.range(span)
        }

        fn take_initrd(&mut self, size: u64, _above: u64) -> Result<Range, PlaceError> {
            self.range(size)
        }

        fn prepare(&mut self, _l: &Loaded) -> Result<Jump, HandoffError> {
            unreachable!("not entered in tests")
        }
    }

    fn entry(linux: &str, initrd: Option<&str>) -> Entry {
        Entry {
            id: "t".into(),
            linux: Some(linux.into()),
            initrd: initrd.map(|i| vec![i.into()]).unwrap_or_default(),
            options: "root=/dev/vda".into(),
            ..Entry::default()
        }
    }

    fn kernel() -> Vec<u8> {
        let body: Vec<u8> = (0..6000u32).map(|i| (i * 7) as u8).collect();
        build_test_elf(21, 0xc000_0000_0000_0000, &body)
    }

    #[test]
    fn loads_segments_in_place_and_checks_digests() {
        let k = kernel();
        let initrd = vec![0x5Au8; 10_000];
        let mut fs = MemFs::new(&[("/vmlinux", &k), ("/initrd", &initrd)]);
        fs.piece = 1000; // pieces that straddle the segment's start
        let mut e = entry("/vmlinux", Some("/initrd"));
        let mut h = Arena::new();
        let mut sha = Sha256::new();
        sha.update(&k);
        e.sha256 = Some(sha.finish());
        let l = load(&mut fs, &e, &mut h).expect("loads");
        // The segment (file offset 0x100, 6000 bytes) sits at the image's start; the rest of
        // its memory size is zero.
        let image = h.at(l.kernel);
        assert_eq!(&image[..6000], &k[0x100..0x100 + 6000]);
        assert!(image[6000..6000 + 0x1000].iter().all(|&b| b == 0));
        assert_eq!(l.entry_point, l.kernel.start);
        assert_eq!(l.cmdline, "root=/dev/vda");
        let r = l.initrd.expect("initrd");
        assert_eq!(r.size(), 10_000);
        assert_eq!(h.at(r), &initrd[..]);

        e.sha256 = Some([0; 32]);
        assert!(matches!(
            load(&mut fs, &e, &mut Arena::new()),
            Err(LoadError::Digest { initrd: false, .. })
        ));
        e.sha256 = None;
        e.initrd_sha256 = Some([1; 32]);
        let err = load(&mut fs, &e, &mut Arena::new()).unwrap_err();
        assert!(matches!(err, LoadError::Digest { initrd: true, .. }));
        assert!(err.to_string().contains("truncated or replaced"), "{err}");
    }

    #[test]
    fn several_initrds_are_placed_one_after_the_other_in_order() {
        let k = kernel();
        let (a, b, c) = (vec![1u8; 4097], vec![2u8; 10], vec![3u8; 5]);
        let mut fs = MemFs::new(&[("/vmlinux", &k), ("/a", &a), ("/b", &b), ("/c", &c)]);
        let mut e = entry("/vmlinux", None);
        e.initrd = vec!["/a".into(), "/b".into(), "/c".into()];
        let mut sha = Sha256::new();
        sha.update(&a);
        e.initrd_sha256 = Some(sha.finish());
        let mut h = Arena::new();
        let l = load_measured(&mut fs, &e, &mut h, &[tpm::ALG_SHA256]).expect("loads");
        let r = l.initrd.expect("initrd");
        // Each but the last padded with zeros to 4 bytes, where Linux looks for the next archive.
        let mut want = a.clone();
        want.extend([0, 0, 0]);
        want.extend(&b);
        want.extend([0, 0]);
        want.extend(&c);
        assert_eq!(h.at(r), &want[..]);
        let (path, digest) = l.initrd_sha256.expect("measured");
        assert_eq!(path, "/a + /b + /c");
        let mut sha = Sha256::new();
        sha.update(&want);
        assert_eq!(digest, sha.finish(), "the whole of what Linux gets");
        // The pin is on the first initrd.
        e.initrd_sha256 = Some([9; 32]);
        assert!(matches!(
            load(&mut fs, &e, &mut Arena::new()),
            Err(LoadError::Digest { initrd: true, ref path, .. }) if path == "/a"
        ));
        e.initrd_sha256 = None;
        e.initrd.push("../../escape".into());
        assert_eq!(
            load(&mut fs, &e, &mut Arena::new()).err(),
            Some(LoadError::Outside {
                key: "initrd",
                path: "../../escape".into()
            })
        );
        e.initrd.pop();
        e.linux = Some("vmlinux".into());
        load(&mut fs, &e, &mut Arena::new())
            .expect("a path without its leading / is from the root");
        e.initrd.push("/missing".into());
        assert!(matches!(
            load(&mut fs, &e, &mut Arena::new()),
            Err(LoadError::Fs(ref f)) if f.path == "/missing"
        ));
    }

    #[test]
    fn names_what_is_wrong() {
        let mut x86 = kernel();
        x86[18] = 62;
        let mut fs = MemFs::new(&[("/vmlinux", &kernel()), ("/x86", &x86), ("/empty", b"")]);
        let mut h = Arena::new();
        let mut no_linux = entry("/vmlinux", None);
        no_linux.linux = None;
        assert_eq!(
            load(&mut fs, &no_linux, &mut h).err(),
            Some(LoadError::NoLinux)
        );
        match load(&mut fs, &entry("/missing", None), &mut h) {
            Err(LoadError::Fs(e)) => {
                assert_eq!(e.path, "/missing");
                assert_eq!(e.kind, FsErrorKind::Errno(errno::ENOENT));
            }
            r => panic!("{:?}", r.err()),
        }
        assert!(matches!(
            load(&mut fs, &entry("/x86", None), &mut h),
            Err(LoadError::Elf { ref path, .. }) if path == "/x86"
        ));
        assert_eq!(
            load(&mut fs, &entry("/vmlinux", Some("/empty")), &mut h).err(),
            Some(LoadError::EmptyInitrd {
                path: "/empty".into()
            })
        );
        let mut tiny = Arena::new();
        tiny.buf.truncate(4096);
        assert!(matches!(
            load(&mut fs, &entry("/vmlinux", None), &mut tiny),
            Err(LoadError::NoRoom(_))
        ));
    }
}
