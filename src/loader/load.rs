//! Loading a boot entry: the kernel ELF checked and its segments copied into place while the
//! file streams in (SHA-256 against the entry's `sha256`), then the initrd well above it
//! (against `initrd-sha256`). Memory comes from the handoff, which knows who gives it.

use super::handoff::Handoff;
use super::place::PlaceError;
use crate::dev::fs::{FileSystem, FsError};
use crate::{cprintln, mem, time};
use alloc::boxed::Box;
use alloc::string::String;
use core::fmt;
use vioboot_core::bls::Entry;
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
pub struct Loaded {
    pub kernel: Range,
    pub entry_point: u64,
    pub initrd: Option<Range>,
    pub cmdline: String,
    /// The kernel file: its path, size and how long it took to load.
    pub path: String,
    pub bytes: u64,
    pub load_us: u64,
}

/// Loads `e`'s kernel and initrd, checking everything on the way.
pub fn load(fs: &mut dyn FileSystem, e: &Entry, h: &mut dyn Handoff) -> Result<Loaded, LoadError> {
    let linux = e.linux.as_deref().ok_or(LoadError::NoLinux)?;
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
    let mut sha = Sha256::new();
    let mut at = 0u64;
    let mut last_shown = 0u64;
    fs.read_stream(linux, None, &mut |piece| {
        sha.update(piece);
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
    let digest = sha.finish();
    if let Some(want) = e.sha256.filter(|w| *w != digest) {
        return Err(LoadError::Digest {
            path: linux.into(),
            want,
            got: digest,
            initrd: false,
        });
    }
    let load_us = (time::now_us() - start).max(1);
    let initrd = match e.initrd.first() {
        None => None,
        Some(path) => Some(load_initrd(fs, path, e.initrd_sha256, dest, h)?),
    };
    Ok(Loaded {
        kernel: dest,
        entry_point: dest.start + k.entry_offset(),
        initrd,
        cmdline: e.options.clone(),
        path: linux.into(),
        bytes: size,
        load_us,
    })
}

/// The initrd, well above the kernel at `kernel`.
fn load_initrd(
    fs: &mut dyn FileSystem,
    path: &str,
    want: Option<[u8; 32]>,
    kernel: Range,
    h: &mut dyn Handoff,
) -> Result<Range, LoadError> {
    let a = fs.stat(path)?;
    if a.size == 0 {
        return Err(LoadError::EmptyInitrd { path: path.into() });
    }
    let r = h.take_initrd(a.size, kernel.end)?;
    // SAFETY: as for the kernel image.
    let buf = unsafe { mem::region_mut(r) };
    let mut sha = Sha256::new();
    let mut n = 0usize;
    fs.read_stream(path, None, &mut |piece| {
        sha.update(piece);
        if n + piece.len() <= buf.len() {
            buf[n..n + piece.len()].copy_from_slice(piece);
        }
        n += piece.len();
    })?;
    if n as u64 != a.size {
        return Err(LoadError::ShortRead {
            path: path.into(),
            read: n as u64,
            size: a.size,
        });
    }
    if let Some(want) = want {
        let got = sha.finish();
        if got != want {
            return Err(LoadError::Digest {
                path: path.into(),
                want,
                got,
                initrd: true,
            });
        }
    }
    Ok(Range {
        start: r.start,
        end: r.start + a.size,
    })
}
