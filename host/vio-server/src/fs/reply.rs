//! FUSE replies as bytes: the header-only reply the device writes itself, and the `fs-*`
//! faults, applied to a reply after the FUSE server wrote it and before it goes to the guest.

use crate::faults::{Faults, FS_HUGE_LEN_EXTRA, FS_WRONG_UNIQUE_DELTA};
use fuse_backend_rs::abi::fuse_abi::{Dirent, EntryOut, OutHeader};
use std::mem::{offset_of, size_of};

/// Bytes of `fuse_out_header`.
pub const OUT_HEADER: usize = size_of::<OutHeader>();
const DIRENT: usize = size_of::<Dirent>();
const ENTRY_OUT: usize = size_of::<EntryOut>();
/// What `fs-short-reply` keeps of a reply that is only a header: `len` and `error`.
pub const SHORT_HEADER: usize = 8;

/// A reply without a body: `len` 16, `error` = -`errno` (0: success), `unique`.
pub fn header_only(unique: u64, errno: i32) -> [u8; OUT_HEADER] {
    let mut b = [0u8; OUT_HEADER];
    b[offset_of!(OutHeader, len)..][..4].copy_from_slice(&(OUT_HEADER as u32).to_le_bytes());
    b[offset_of!(OutHeader, error)..][..4].copy_from_slice(&errno.wrapping_neg().to_le_bytes());
    b[offset_of!(OutHeader, unique)..][..8].copy_from_slice(&unique.to_le_bytes());
    b
}

/// The header of reply bytes: (`len`, `error`, `unique`).
pub fn header(reply: &[u8]) -> Option<(u32, i32, u64)> {
    let b = reply.get(..OUT_HEADER)?;
    let u32_at = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
    let len = u32_at(offset_of!(OutHeader, len));
    let error = u32_at(offset_of!(OutHeader, error)) as i32;
    let at = offset_of!(OutHeader, unique);
    let unique = u64::from(u32_at(at)) | u64::from(u32_at(at + 4)) << 32;
    Some((len, error, unique))
}

/// Where one directory entry of a READDIR(PLUS) reply lies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DirentAt {
    /// Offset of its `namelen` field in the reply.
    pub namelen_at: usize,
    /// Offset of its name in the reply.
    pub name_at: usize,
    pub namelen: usize,
}

/// The complete directory entries of a READDIR (`plus` false) or READDIRPLUS reply.
pub fn dirents(reply: &[u8], plus: bool) -> Vec<DirentAt> {
    let mut out = Vec::new();
    let mut at = OUT_HEADER;
    let lead = if plus { ENTRY_OUT } else { 0 };
    while at + lead + DIRENT <= reply.len() {
        let d = at + lead;
        let namelen_at = d + offset_of!(Dirent, namelen);
        let n = &reply[namelen_at..namelen_at + 4];
        let namelen = u32::from_le_bytes([n[0], n[1], n[2], n[3]]) as usize;
        let name_at = d + DIRENT;
        if name_at + namelen > reply.len() {
            break;
        }
        out.push(DirentAt {
            namelen_at,
            name_at,
            namelen,
        });
        // Each entry is padded to 8 bytes.
        at = name_at + namelen.next_multiple_of(8);
    }
    out
}

/// The request a reply answers, as the faults need it.
#[derive(Debug, Clone, Copy)]
pub struct Answered {
    /// READDIR (`Some(false)`) or READDIRPLUS (`Some(true)`); `None` for any other opcode.
    pub readdir_plus: Option<bool>,
    /// Bytes of device-writable space the request offered.
    pub space: u64,
}

/// Applies the reply-changing faults to `reply` (as the FUSE server wrote it) in place and
/// returns how many of its bytes go to the guest. In order: `fs-dirent-overrun`,
/// `fs-slash-name` (successful READDIR/READDIRPLUS only), `fs-wrong-unique`, `fs-huge-len`,
/// `fs-short-reply`. (`fs-error-reply` and `fs-bad-errno` replace the reply before this.)
pub fn apply_faults(reply: &mut [u8], a: Answered, f: &Faults) -> usize {
    let Some((_, error, unique)) = header(reply) else {
        return reply.len();
    };
    if let (Some(plus), 0) = (a.readdir_plus, error) {
        let entries = dirents(reply, plus);
        if f.fs_dirent_overrun {
            if let Some(last) = entries.last() {
                // The name now ends one byte past the reply.
                let namelen = (reply.len() - last.name_at + 1) as u32;
                reply[last.namelen_at..last.namelen_at + 4].copy_from_slice(&namelen.to_le_bytes());
            }
        }
        if f.fs_slash_name {
            for e in entries.iter().filter(|e| e.namelen > 0) {
                reply[e.name_at] = b'/';
            }
        }
    }
    if f.fs_wrong_unique {
        let u = unique.wrapping_add(FS_WRONG_UNIQUE_DELTA);
        let at = offset_of!(OutHeader, unique);
        reply[at..at + 8].copy_from_slice(&u.to_le_bytes());
    }
    if f.fs_huge_len {
        let len = u32::try_from(a.space)
            .unwrap_or(u32::MAX)
            .saturating_add(FS_HUGE_LEN_EXTRA);
        let at = offset_of!(OutHeader, len);
        reply[at..at + 4].copy_from_slice(&len.to_le_bytes());
    }
    if f.fs_short_reply {
        return short_len(reply.len());
    }
    reply.len()
}

/// What `fs-short-reply` keeps of a reply of `len` bytes.
pub fn short_len(len: usize) -> usize {
    if len > OUT_HEADER {
        OUT_HEADER + (len - OUT_HEADER) / 2
    } else {
        len.min(SHORT_HEADER)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn readdir_reply(names: &[&str]) -> Vec<u8> {
        let mut r = header_only(7, 0).to_vec();
        for (i, n) in names.iter().enumerate() {
            r.extend_from_slice(&(100 + i as u64).to_le_bytes());
            r.extend_from_slice(&(i as u64 + 1).to_le_bytes());
            r.extend_from_slice(&(n.len() as u32).to_le_bytes());
            r.extend_from_slice(&8u32.to_le_bytes());
            r.extend_from_slice(n.as_bytes());
            r.resize(r.len().next_multiple_of(8), 0);
        }
        let len = r.len() as u32;
        r[..4].copy_from_slice(&len.to_le_bytes());
        r
    }

    #[test]
    fn header_round_trip() {
        let h = header_only(0x1122_3344_5566_7788, 2);
        assert_eq!(header(&h), Some((16, -2, 0x1122_3344_5566_7788)));
        assert_eq!(header(&h[..15]), None);
    }

    #[test]
    fn dirents_are_walked_and_broken_on_purpose() {
        let r = readdir_reply(&["a", "hello.txt"]);
        let d = dirents(&r, false);
        assert_eq!(d.len(), 2);
        assert_eq!((d[0].name_at, d[0].namelen), (16 + 24, 1));
        assert_eq!((d[1].name_at, d[1].namelen), (16 + 32 + 24, 9));
        let a = Answered {
            readdir_plus: Some(false),
            space: 4096,
        };
        let mut bad = r.clone();
        let f = Faults::parse("fs-dirent-overrun,fs-slash-name").unwrap();
        assert_eq!(apply_faults(&mut bad, a, &f), r.len());
        assert_eq!(bad[d[0].name_at], b'/');
        assert_eq!(&bad[d[1].name_at..d[1].name_at + 9], b"/ello.txt");
        let namelen = u32::from_le_bytes(bad[d[1].namelen_at..][..4].try_into().unwrap());
        assert_eq!(d[1].name_at + namelen as usize, r.len() + 1);
        assert!(dirents(&bad, false).len() == 1, "the last entry overruns");
    }

    #[test]
    fn header_faults() {
        let a = Answered {
            readdir_plus: None,
            space: 100,
        };
        let mut r = header_only(41, 0).to_vec();
        r.extend_from_slice(&[9; 10]);
        let f = Faults::parse("fs-wrong-unique,fs-huge-len,fs-short-reply").unwrap();
        assert_eq!(apply_faults(&mut r, a, &f), 16 + 5);
        assert_eq!(header(&r), Some((100 + FS_HUGE_LEN_EXTRA, 0, 42)));
        assert_eq!(short_len(16), 8);
        assert_eq!(short_len(17), 16);
        assert_eq!(short_len(4), 4);
    }
}
