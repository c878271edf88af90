//! What the device decides about a FUSE request before the FUSE server sees it: whether it is
//! an opcode the server handles, whether a read-only share allows it, and the guest's open
//! flags rewritten as the host's ([`super::flags`]).
//!
//! Deciding here, on the request's bytes, keeps the policy in one table instead of spread over
//! a wrapper of every `FileSystem` method, and catches opcodes the library would mishandle
//! (it turns any `u32` into its `Opcode` enum for trace logs; 0, 7 and 19 are no variant).

use super::buffers::{Side, Streams};
use super::flags;
use crate::mirror::MirrorMemory;
use fuse_backend_rs::abi::fuse_abi::{InHeader, Opcode, ReadIn};
use log::{debug, warn};
use std::mem::{offset_of, size_of};

/// Bytes of `fuse_in_header`.
pub const IN_HEADER: usize = size_of::<InHeader>();

/// The fields of a request header the device uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub len: u32,
    pub opcode: u32,
    pub unique: u64,
    pub nodeid: u64,
}

impl Header {
    /// Reads `fuse_in_header` from the start of the request; `None` if it is shorter.
    pub fn read(streams: &Streams, mem: &MirrorMemory) -> Option<Header> {
        let mut b = [0u8; IN_HEADER];
        if !streams.read(mem, Side::Request, 0, &mut b) {
            return None;
        }
        let u32_at = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let u64_at = |i: usize| u64::from(u32_at(i)) | u64::from(u32_at(i + 4)) << 32;
        Some(Header {
            len: u32_at(offset_of!(InHeader, len)),
            opcode: u32_at(offset_of!(InHeader, opcode)),
            unique: u64_at(offset_of!(InHeader, unique)),
            nodeid: u64_at(offset_of!(InHeader, nodeid)),
        })
    }
}

const fn code(o: Opcode) -> u32 {
    o as u32
}

pub const LOOKUP: u32 = code(Opcode::Lookup);
pub const FORGET: u32 = code(Opcode::Forget);
pub const OPEN: u32 = code(Opcode::Open);
pub const READ: u32 = code(Opcode::Read);
pub const WRITE: u32 = code(Opcode::Write);
pub const INIT: u32 = code(Opcode::Init);
pub const OPENDIR: u32 = code(Opcode::Opendir);
pub const READDIR: u32 = code(Opcode::Readdir);
pub const ACCESS: u32 = code(Opcode::Access);
pub const CREATE: u32 = code(Opcode::Create);
pub const INTERRUPT: u32 = code(Opcode::Interrupt);
pub const DESTROY: u32 = code(Opcode::Destroy);
pub const BATCH_FORGET: u32 = code(Opcode::BatchForget);
pub const READDIRPLUS: u32 = code(Opcode::Readdirplus);

/// Every opcode the device hands to the FUSE server, by name (FUSE 7.33 numbering). Missing on
/// purpose: 7 and 19 (unused), COPY_FILE_RANGE (47, not implemented by the server), and
/// SETUPMAPPING/REMOVEMAPPING (48, 49: DAX needs a shared memory window virtio-vio has not).
const SERVED: [(u32, &str); 44] = [
    (1, "LOOKUP"),
    (2, "FORGET"),
    (3, "GETATTR"),
    (4, "SETATTR"),
    (5, "READLINK"),
    (6, "SYMLINK"),
    (8, "MKNOD"),
    (9, "MKDIR"),
    (10, "UNLINK"),
    (11, "RMDIR"),
    (12, "RENAME"),
    (13, "LINK"),
    (14, "OPEN"),
    (15, "READ"),
    (16, "WRITE"),
    (17, "STATFS"),
    (18, "RELEASE"),
    (20, "FSYNC"),
    (21, "SETXATTR"),
    (22, "GETXATTR"),
    (23, "LISTXATTR"),
    (24, "REMOVEXATTR"),
    (25, "FLUSH"),
    (26, "INIT"),
    (27, "OPENDIR"),
    (28, "READDIR"),
    (29, "RELEASEDIR"),
    (30, "FSYNCDIR"),
    (31, "GETLK"),
    (32, "SETLK"),
    (33, "SETLKW"),
    (34, "ACCESS"),
    (35, "CREATE"),
    (36, "INTERRUPT"),
    (37, "BMAP"),
    (38, "DESTROY"),
    (39, "IOCTL"),
    (40, "POLL"),
    (41, "NOTIFY_REPLY"),
    (42, "BATCH_FORGET"),
    (43, "FALLOCATE"),
    (44, "READDIRPLUS"),
    (45, "RENAME2"),
    (46, "LSEEK"),
];

/// Opcodes that change the shared tree: refused with EROFS on a read-only share. (OPEN and
/// CREATE by their flags, ACCESS by its mask: see [`screen`].)
const MUTATING: [u32; 14] = [
    code(Opcode::Setattr),
    code(Opcode::Symlink),
    code(Opcode::Mknod),
    code(Opcode::Mkdir),
    code(Opcode::Unlink),
    code(Opcode::Rmdir),
    code(Opcode::Rename),
    code(Opcode::Link),
    WRITE,
    code(Opcode::Setxattr),
    code(Opcode::Removexattr),
    CREATE,
    code(Opcode::Fallocate),
    code(Opcode::Rename2),
];

/// The opcode's name for logs.
pub fn name(opcode: u32) -> &'static str {
    SERVED
        .iter()
        .find(|(c, _)| *c == opcode)
        .map_or("unknown", |(_, n)| n)
}

/// Whether a request of `opcode` gets a reply (FUSE: all but FORGET, BATCH_FORGET, INTERRUPT).
pub fn has_reply(opcode: u32) -> bool {
    !matches!(opcode, FORGET | BATCH_FORGET | INTERRUPT)
}

/// What to do with one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Hand it to the FUSE server (its flags, if any, are the host's now).
    Serve,
    /// Answer with this errno; do not perform it.
    Refuse(i32),
}

/// Where a request carries open flags: the offset of the `u32` in the request.
fn flags_offset(opcode: u32) -> Option<u64> {
    // OpenIn.flags (OPEN, OPENDIR) and CreateIn.flags (CREATE) open the body; READ and WRITE
    // repeat the file's flags in ReadIn/WriteIn.flags, which PassthroughFs gives to F_SETFL.
    match opcode {
        OPEN | OPENDIR | CREATE => Some(IN_HEADER as u64),
        READ | WRITE => Some((IN_HEADER + offset_of!(ReadIn, flags)) as u64),
        _ => None,
    }
}

/// Decides about request `h`; rewrites its open flags in the mirror to the host's values.
pub fn screen(h: &Header, streams: &Streams, mem: &MirrorMemory, writable: bool) -> Verdict {
    let op = name(h.opcode);
    if h.opcode == code(Opcode::InitBswapReserved) {
        warn!("FUSE_INIT in the other byte order: a big-endian guest is not supported");
        return Verdict::Refuse(libc::EPROTO);
    }
    let request_len = streams.len(Side::Request);
    if (h.len as usize) < IN_HEADER || u64::from(h.len) > request_len {
        warn!(
            "FUSE {op} (unique {}): header len {} but {request_len} request bytes",
            h.unique, h.len
        );
        return Verdict::Refuse(libc::EINVAL);
    }
    if !SERVED.iter().any(|(c, _)| *c == h.opcode) {
        debug!("FUSE opcode {} not supported: ENOSYS", h.opcode);
        return Verdict::Refuse(libc::ENOSYS);
    }
    if !writable && MUTATING.contains(&h.opcode) {
        debug!("FUSE {op} on a read-only share: EROFS");
        return Verdict::Refuse(libc::EROFS);
    }
    if h.opcode == ACCESS && !writable {
        let mask = streams.read_u32(mem, Side::Request, IN_HEADER as u64);
        if mask.is_some_and(|m| m & libc::W_OK as u32 != 0) {
            return Verdict::Refuse(libc::EROFS);
        }
    }
    let Some(at) = flags_offset(h.opcode) else {
        return Verdict::Serve;
    };
    let Some(guest) = streams.read_u32(mem, Side::Request, at) else {
        warn!(
            "FUSE {op} (unique {}): request too short for its flags",
            h.unique
        );
        return Verdict::Refuse(libc::EINVAL);
    };
    let host = match flags::to_host(guest) {
        Ok(f) => f,
        Err(e) => {
            warn!("FUSE {op} (unique {}): {e}: EINVAL", h.unique);
            return Verdict::Refuse(libc::EINVAL);
        }
    };
    if !writable && matches!(h.opcode, OPEN | OPENDIR) && writes(host) {
        debug!(
            "FUSE {op} with {} on a read-only share: EROFS",
            flags::names(guest)
        );
        return Verdict::Refuse(libc::EROFS);
    }
    if host != guest {
        debug!(
            "FUSE {op}: guest flags {guest:#o} ({}) are host {host:#o}",
            flags::names(guest)
        );
        if !streams.write_u32(mem, Side::Request, at, host) {
            return Verdict::Refuse(libc::EIO);
        }
    }
    Verdict::Serve
}

/// Whether host open flags `f` ask for a change to the file system.
fn writes(f: u32) -> bool {
    let f = f as libc::c_int;
    f & libc::O_ACCMODE != libc::O_RDONLY
        || f & (libc::O_TRUNC | libc::O_CREAT) != 0
        || f & libc::O_TMPFILE == libc::O_TMPFILE
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_opcode_table_matches_the_library() {
        for (c, n) in SERVED {
            assert_ne!(
                Opcode::from(c) as u32,
                Opcode::MaxOpcode as u32,
                "{n} ({c})"
            );
            assert_eq!(Opcode::from(c) as u32, c, "{n}");
        }
        assert!(MUTATING.iter().all(|m| SERVED.iter().any(|(c, _)| c == m)));
        assert_eq!(name(INIT), "INIT");
        assert_eq!(name(7), "unknown");
        assert!(!has_reply(FORGET) && !has_reply(BATCH_FORGET) && !has_reply(INTERRUPT));
        assert!(has_reply(DESTROY) && has_reply(LOOKUP));
    }

    #[test]
    fn read_only_opens_are_told_apart() {
        let c = |v: libc::c_int| v as u32;
        assert!(!writes(c(libc::O_RDONLY
            | libc::O_DIRECTORY
            | libc::O_NOFOLLOW)));
        assert!(writes(c(libc::O_WRONLY)));
        assert!(writes(c(libc::O_RDWR)));
        assert!(writes(c(libc::O_RDONLY | libc::O_TRUNC)));
        assert!(writes(c(libc::O_CREAT)));
        assert!(writes(c(libc::O_TMPFILE | libc::O_RDWR)));
    }
}
