//! FUSE messages: building requests, checking replies.
//!
//! Each operation is a type implementing [`Op`] (opcode, request body, reply body). A reply is
//! accepted only if its `fuse_out_header` is complete, its `len` lies within what the device
//! wrote and within the buffer, its `unique` is the request's, and its error is 0 or a
//! negative errno in 1..=4095; a success reply must hold the operation's reply body.

use alloc::vec::Vec;
use core::fmt;
use fuse_abi::linux as abi;
use zerocopy::{FromBytes, Immutable, IntoBytes};

pub const IN_HEADER: usize = core::mem::size_of::<abi::fuse_in_header>();
pub const OUT_HEADER: usize = core::mem::size_of::<abi::fuse_out_header>();
/// The root directory's node id.
pub const ROOT: u64 = 1;
/// Largest errno Linux defines (MAX_ERRNO).
pub const MAX_ERRNO: i32 = 4095;

/// What was wrong with a reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplyError {
    /// The device wrote fewer bytes than a reply header.
    Short { used: usize },
    /// The header's length is below a header, above what the device wrote, or above the buffer.
    BadLength {
        header_len: u32,
        used: usize,
        buffer: usize,
    },
    /// The reply answers another request.
    WrongUnique { expected: u64, got: u64 },
    /// An error value that is no errno.
    BadErrno(i32),
    /// A success reply too short for what the operation returns.
    BodyTooShort {
        opcode: u32,
        need: usize,
        got: usize,
    },
    /// A directory entry that runs past the reply or has an impossible name.
    BadDirent { at: usize, why: &'static str },
}

impl fmt::Display for ReplyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReplyError::Short { used } => {
                write!(f, "reply of {used} bytes is shorter than its header")
            }
            ReplyError::BadLength {
                header_len,
                used,
                buffer,
            } => write!(
                f,
                "reply header says {header_len} bytes, device wrote {used}, buffer holds {buffer}"
            ),
            ReplyError::WrongUnique { expected, got } => {
                write!(f, "reply for request {got}, expected {expected}")
            }
            ReplyError::BadErrno(e) => write!(f, "reply error {e} is not an errno"),
            ReplyError::BodyTooShort { opcode, need, got } => {
                write!(f, "reply to opcode {opcode} has {got} bytes, needs {need}")
            }
            ReplyError::BadDirent { at, why } => write!(f, "directory entry at byte {at}: {why}"),
        }
    }
}

/// A FUSE operation.
pub trait Op {
    const OPCODE: abi::fuse_opcode;
    /// Fixed-size reply body (`()` for none; variable-length replies use [`Variable`]).
    type Out: FromBytes + Default;
}

/// Marks operations whose reply is raw bytes (READ, READDIR, READLINK).
pub struct Variable;

macro_rules! op {
    ($name:ident, $code:ident, $out:ty) => {
        pub struct $name;
        impl Op for $name {
            const OPCODE: abi::fuse_opcode = abi::fuse_opcode::$code;
            type Out = $out;
        }
    };
}

op!(Init, FUSE_INIT, InitOut);
op!(Lookup, FUSE_LOOKUP, abi::fuse_entry_out);
op!(Getattr, FUSE_GETATTR, abi::fuse_attr_out);
op!(Open, FUSE_OPEN, abi::fuse_open_out);
op!(Opendir, FUSE_OPENDIR, abi::fuse_open_out);
op!(Release, FUSE_RELEASE, Empty);
op!(Releasedir, FUSE_RELEASEDIR, Empty);
op!(Read, FUSE_READ, Empty);
op!(Readdir, FUSE_READDIR, Empty);
op!(Readdirplus, FUSE_READDIRPLUS, Empty);
op!(Readlink, FUSE_READLINK, Empty);
op!(Statfs, FUSE_STATFS, abi::fuse_statfs_out);
op!(Destroy, FUSE_DESTROY, Empty);

/// No reply body.
#[derive(Debug, Default, Clone, Copy, FromBytes, IntoBytes, Immutable)]
#[repr(C)]
pub struct Empty {}

/// The part of `fuse_init_out` every FUSE 7.x server sends (older servers send 24 bytes).
#[derive(Debug, Default, Clone, Copy, FromBytes, IntoBytes, Immutable)]
#[repr(C)]
pub struct InitOut {
    pub major: u32,
    pub minor: u32,
    pub max_readahead: u32,
    pub flags: u32,
    pub max_background: u16,
    pub congestion_threshold: u16,
    pub max_write: u32,
}

/// Builds a request: header, then `body`, then `tail` (names, NUL-terminated by the caller).
pub fn request<O: Op>(unique: u64, nodeid: u64, body: &[u8], tail: &[u8]) -> Vec<u8> {
    let len = IN_HEADER + body.len() + tail.len();
    let h = abi::fuse_in_header {
        len: len as u32,
        opcode: O::OPCODE as u32,
        unique,
        nodeid,
        uid: 0,
        gid: 0,
        pid: 0,
        total_extlen: 0,
        padding: 0,
    };
    let mut v = Vec::with_capacity(len);
    v.extend_from_slice(h.as_bytes());
    v.extend_from_slice(body);
    v.extend_from_slice(tail);
    v
}

/// A checked reply: `Ok(body)` (the bytes after the header, as long as the header says), or
/// `Err(Ok(errno))` for an error reply, or `Err(Err(_))` for a malformed one.
pub fn reply(buf: &[u8], used: usize, unique: u64) -> Result<&[u8], Result<i32, ReplyError>> {
    if used < OUT_HEADER || buf.len() < OUT_HEADER {
        return Err(Err(ReplyError::Short { used }));
    }
    let (h, _) =
        abi::fuse_out_header::read_from_prefix(buf).map_err(|_| Err(ReplyError::Short { used }))?;
    let len = h.len as usize;
    // The used length comes from the device too: more than the buffer is a lie.
    if len < OUT_HEADER || len > used || len > buf.len() || used > buf.len() {
        return Err(Err(ReplyError::BadLength {
            header_len: h.len,
            used,
            buffer: buf.len(),
        }));
    }
    if h.unique != unique {
        return Err(Err(ReplyError::WrongUnique {
            expected: unique,
            got: h.unique,
        }));
    }
    match h.error {
        0 => Ok(&buf[OUT_HEADER..len]),
        e if (-MAX_ERRNO..0).contains(&e) => Err(Ok(-e)),
        e => Err(Err(ReplyError::BadErrno(e))),
    }
}

/// Reads the fixed reply body of `O`, which must be complete (`min` allows a shorter prefix,
/// for INIT from older servers).
pub fn body<O: Op>(b: &[u8], min: usize) -> Result<O::Out, ReplyError> {
    let need = core::mem::size_of::<O::Out>();
    if b.len() < min.min(need) {
        return Err(ReplyError::BodyTooShort {
            opcode: O::OPCODE as u32,
            need,
            got: b.len(),
        });
    }
    let mut full = Vec::from(&b[..b.len().min(need)]);
    full.resize(need, 0);
    O::Out::read_from_bytes(&full).map_err(|_| ReplyError::BodyTooShort {
        opcode: O::OPCODE as u32,
        need,
        got: b.len(),
    })
}

/// One entry of a READDIR (or READDIRPLUS) reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawDirent<'a> {
    pub ino: u64,
    pub off: u64,
    pub kind: u32,
    pub name: &'a [u8],
    /// READDIRPLUS: the entry's lookup (its node must be forgotten when done).
    pub entry: Option<abi::fuse_entry_out>,
}

const DIRENT: usize = 24;
const ENTRY_OUT: usize = core::mem::size_of::<abi::fuse_entry_out>();
/// Longest name a directory entry may carry (Linux NAME_MAX).
pub const NAME_MAX: usize = 255;

/// Parses a READDIR or READDIRPLUS reply body, checking every entry against the body.
pub fn dirents(b: &[u8], plus: bool) -> Result<Vec<RawDirent<'_>>, ReplyError> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < b.len() {
        let start = at;
        let entry = if plus {
            let e = b
                .get(at..at + ENTRY_OUT)
                .and_then(|s| abi::fuse_entry_out::read_from_bytes(s).ok())
                .ok_or(ReplyError::BadDirent {
                    at: start,
                    why: "entry runs past the reply",
                })?;
            at += ENTRY_OUT;
            Some(e)
        } else {
            None
        };
        let head = b.get(at..at + DIRENT).ok_or(ReplyError::BadDirent {
            at: start,
            why: "header runs past the reply",
        })?;
        let u64_at = |i: usize| u64::from_le_bytes(head[i..i + 8].try_into().unwrap_or([0; 8]));
        let u32_at = |i: usize| u32::from_le_bytes(head[i..i + 4].try_into().unwrap_or([0; 4]));
        let (ino, off, namelen, kind) = (u64_at(0), u64_at(8), u32_at(16) as usize, u32_at(20));
        if namelen == 0 || namelen > NAME_MAX {
            return Err(ReplyError::BadDirent {
                at: start,
                why: "name length is 0 or above 255",
            });
        }
        let name = b
            .get(at + DIRENT..at + DIRENT + namelen)
            .ok_or(ReplyError::BadDirent {
                at: start,
                why: "name runs past the reply",
            })?;
        if name.contains(&b'/') || name.contains(&0) {
            return Err(ReplyError::BadDirent {
                at: start,
                why: "name contains '/' or NUL",
            });
        }
        at += (DIRENT + namelen).next_multiple_of(8);
        out.push(RawDirent {
            ino,
            off,
            kind,
            name,
            entry,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn out(len: u32, error: i32, unique: u64, body: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(abi::fuse_out_header { len, error, unique }.as_bytes());
        v.extend_from_slice(body);
        v
    }

    #[test]
    fn request_layout() {
        let r = request::<Lookup>(7, ROOT, &[], b"boot\0");
        assert_eq!(r.len(), 45);
        assert_eq!(&r[0..4], &45u32.to_le_bytes());
        assert_eq!(&r[4..8], &1u32.to_le_bytes());
        assert_eq!(&r[8..16], &7u64.to_le_bytes());
        assert_eq!(&r[16..24], &1u64.to_le_bytes());
        assert_eq!(&r[40..], b"boot\0");
    }

    #[test]
    fn replies_are_checked() {
        let good = out(20, 0, 5, &[1, 2, 3, 4]);
        assert_eq!(reply(&good, 20, 5), Ok(&[1u8, 2, 3, 4][..]));
        assert_eq!(
            reply(&good, 10, 5),
            Err(Err(ReplyError::Short { used: 10 }))
        );
        assert_eq!(
            reply(&good, 18, 5),
            Err(Err(ReplyError::BadLength {
                header_len: 20,
                used: 18,
                buffer: 20
            }))
        );
        assert_eq!(
            reply(&good, 21, 5),
            Err(Err(ReplyError::BadLength {
                header_len: 20,
                used: 21,
                buffer: 20
            }))
        );
        let huge = out(4096, 0, 5, &[0; 4]);
        assert!(matches!(
            reply(&huge, 20, 5),
            Err(Err(ReplyError::BadLength { .. }))
        ));
        assert_eq!(
            reply(&good, 20, 6),
            Err(Err(ReplyError::WrongUnique {
                expected: 6,
                got: 5
            }))
        );
        assert_eq!(reply(&out(16, -2, 5, &[]), 16, 5), Err(Ok(2)));
        assert_eq!(
            reply(&out(16, -5000, 5, &[]), 16, 5),
            Err(Err(ReplyError::BadErrno(-5000)))
        );
        assert_eq!(
            reply(&out(16, 3, 5, &[]), 16, 5),
            Err(Err(ReplyError::BadErrno(3)))
        );
        assert!(matches!(
            body::<Getattr>(&[0; 10], usize::MAX),
            Err(ReplyError::BodyTooShort { .. })
        ));
        assert_eq!(body::<Init>(&[0; 24], 24).map(|i| i.max_write), Ok(0));
    }

    fn dirent(ino: u64, name: &[u8], namelen: u32) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&ino.to_le_bytes());
        v.extend_from_slice(&1u64.to_le_bytes());
        v.extend_from_slice(&namelen.to_le_bytes());
        v.extend_from_slice(&8u32.to_le_bytes());
        v.extend_from_slice(name);
        while v.len() % 8 != 0 {
            v.push(0);
        }
        v
    }

    #[test]
    fn dirents_are_checked() {
        let mut b = dirent(2, b"vmlinux", 7);
        b.extend(dirent(3, b"initrd.img", 10));
        let d = dirents(&b, false).unwrap();
        assert_eq!(d.len(), 2);
        assert_eq!(d[1].name, b"initrd.img");
        let over = dirent(2, b"abc", 200);
        assert!(matches!(
            dirents(&over, false),
            Err(ReplyError::BadDirent {
                why: "name runs past the reply",
                ..
            })
        ));
        let slash = dirent(2, b"a/b", 3);
        assert!(matches!(
            dirents(&slash, false),
            Err(ReplyError::BadDirent {
                why: "name contains '/' or NUL",
                ..
            })
        ));
        assert!(matches!(
            dirents(&b[..10], false),
            Err(ReplyError::BadDirent { .. })
        ));
        assert!(matches!(
            dirents(&b, true),
            Err(ReplyError::BadDirent { .. })
        ));
    }
}
