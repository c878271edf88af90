//! Fault injection: ways to make the server misbehave on purpose, so the guest driver's
//! defences can be tested. Set in tests, or with `--fault NAME[,NAME]` on the command line.
//! The `fs-*` faults act only on a virtio-fs device ([`crate::fs`]), where its FUSE replies are
//! written back; the others act in the device model, on any device.

use std::fmt;

/// Which faults to inject. All off by default.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Faults {
    /// `bad-used-id`: every used element names a descriptor id that was never available (the
    /// queue size, one past the last index).
    pub bad_used_id: bool,
    /// `bad-used-len`: every used element claims [`BAD_USED_LEN_EXTRA`] bytes more than the
    /// chain's device-writable buffers hold.
    pub bad_used_len: bool,
    /// `unknown-opcode`: a message with opcode [`UNKNOWN_OPCODE`] goes out before each USED.
    pub unknown_opcode: bool,
    /// `flood`: after the USED of a NOTIFY, up to [`FLOOD_COUNT`] extra USED notices for the
    /// same queue, stopping at the first refusal (H_DROPPED: the guest's CRQ is full).
    pub flood: bool,
    /// `die-mid-request`: on a NOTIFY with work, serve the first half of the chains (rounded
    /// up), then end the session without writing the used ring or sending USED (the binary
    /// exits; in process, the connection is dropped).
    pub die_mid_request: bool,
    /// `touch-unmapped`: before serving each chain, remote-read the page just past the chain's
    /// last buffer page; the guest should have it unmapped (H_DEST_PARM). The outcome is
    /// logged and the chain served as usual.
    pub touch_unmapped: bool,
    /// `fs-short-reply` (virtio-fs): every FUSE reply is cut short. A reply with a body keeps
    /// its header (whose `len` still counts the whole reply) and half its body, rounded down; a
    /// reply that is only a header is cut to its first 8 bytes (`len` and `error`, no `unique`).
    /// The used length says how many bytes were written; the rest of the guest's buffer is left
    /// as the guest had it.
    pub fs_short_reply: bool,
    /// `fs-wrong-unique` (virtio-fs): every FUSE reply carries `unique` + [`FS_WRONG_UNIQUE_DELTA`]
    /// instead of its request's `unique`.
    pub fs_wrong_unique: bool,
    /// `fs-error-reply` (virtio-fs): every FUSE request that has a reply (FUSE_INIT included) is
    /// answered, without being performed, with a header alone: `len` 16, `error`
    /// -[`FS_ERROR_ERRNO`] (EIO), its `unique`.
    pub fs_error_reply: bool,
    /// `fs-huge-len` (virtio-fs): every FUSE reply's header claims `len` = the request's whole
    /// device-writable space + [`FS_HUGE_LEN_EXTRA`]; the bytes and the used length are the real
    /// reply's.
    pub fs_huge_len: bool,
    /// `fs-bad-errno` (virtio-fs): as `fs-error-reply`, but the `error` is -[`FS_BAD_ERRNO`],
    /// outside Linux's errno range 1..=4095.
    pub fs_bad_errno: bool,
    /// `fs-dirent-overrun` (virtio-fs): in a successful READDIR or READDIRPLUS reply with at
    /// least one entry, the last entry's `namelen` is raised so that its name ends one byte past
    /// the end of the reply.
    pub fs_dirent_overrun: bool,
    /// `fs-slash-name` (virtio-fs): in a successful READDIR or READDIRPLUS reply, the first byte
    /// of every entry's name becomes `/`.
    pub fs_slash_name: bool,
    /// `fs-silent` (virtio-fs): NOTIFY of a request queue (1..) is swallowed: nothing is served,
    /// the used ring is untouched and no USED is sent, so the guest times out. The hiprio queue
    /// (0) is served as usual.
    pub fs_silent: bool,
}

/// The opcode `unknown-opcode` sends (no opcode of protocol version 1).
pub const UNKNOWN_OPCODE: u8 = 0x7e;
/// Extra USED notices `flood` sends at most per NOTIFY.
pub const FLOOD_COUNT: usize = 300;
/// How far beyond the buffers `bad-used-len` reports.
pub const BAD_USED_LEN_EXTRA: u32 = 0x0100_0000;
/// What `fs-wrong-unique` adds to a reply's `unique` (wrapping).
pub const FS_WRONG_UNIQUE_DELTA: u64 = 1;
/// The errno of `fs-error-reply` (EIO; the header's `error` is its negation).
pub const FS_ERROR_ERRNO: i32 = libc::EIO;
/// The errno of `fs-bad-errno`: one past Linux's MAX_ERRNO (4095).
pub const FS_BAD_ERRNO: i32 = 4096;
/// How far beyond the device-writable space `fs-huge-len` claims a reply runs.
pub const FS_HUGE_LEN_EXTRA: u32 = 0x0010_0000;

/// A fault name the server does not know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownFault(pub String);

impl fmt::Display for UnknownFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown fault {:?} (known: {})",
            self.0,
            Faults::NAMES.join(", ")
        )
    }
}

impl std::error::Error for UnknownFault {}

impl Faults {
    /// Every fault's command-line name.
    pub const NAMES: [&'static str; 14] = [
        "bad-used-id",
        "bad-used-len",
        "unknown-opcode",
        "flood",
        "die-mid-request",
        "touch-unmapped",
        "fs-short-reply",
        "fs-wrong-unique",
        "fs-error-reply",
        "fs-huge-len",
        "fs-bad-errno",
        "fs-dirent-overrun",
        "fs-slash-name",
        "fs-silent",
    ];

    /// Turns on every fault of a comma-separated list of names.
    pub fn enable(&mut self, list: &str) -> Result<(), UnknownFault> {
        for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            *self
                .flag(name)
                .ok_or_else(|| UnknownFault(name.to_string()))? = true;
        }
        Ok(())
    }

    /// Faults parsed from a comma-separated list of names.
    pub fn parse(list: &str) -> Result<Faults, UnknownFault> {
        let mut f = Faults::default();
        f.enable(list)?;
        Ok(f)
    }

    /// Whether no fault is on.
    pub fn is_empty(&self) -> bool {
        *self == Faults::default()
    }

    /// Whether a virtio-fs fault (`fs-*`) is on.
    pub fn any_fs(&self) -> bool {
        let mut copy = *self;
        Faults::NAMES
            .into_iter()
            .filter(|n| n.starts_with("fs-"))
            .any(|n| copy.flag(n).is_some_and(|b| *b))
    }

    fn flag(&mut self, name: &str) -> Option<&mut bool> {
        Some(match name {
            "bad-used-id" => &mut self.bad_used_id,
            "bad-used-len" => &mut self.bad_used_len,
            "unknown-opcode" => &mut self.unknown_opcode,
            "flood" => &mut self.flood,
            "die-mid-request" => &mut self.die_mid_request,
            "touch-unmapped" => &mut self.touch_unmapped,
            "fs-short-reply" => &mut self.fs_short_reply,
            "fs-wrong-unique" => &mut self.fs_wrong_unique,
            "fs-error-reply" => &mut self.fs_error_reply,
            "fs-huge-len" => &mut self.fs_huge_len,
            "fs-bad-errno" => &mut self.fs_bad_errno,
            "fs-dirent-overrun" => &mut self.fs_dirent_overrun,
            "fs-slash-name" => &mut self.fs_slash_name,
            "fs-silent" => &mut self.fs_silent,
            _ => return None,
        })
    }
}

impl fmt::Display for Faults {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut copy = *self;
        let on: Vec<&str> = Faults::NAMES
            .into_iter()
            .filter(|n| copy.flag(n).is_some_and(|b| *b))
            .collect();
        if on.is_empty() {
            f.write_str("none")
        } else {
            f.write_str(&on.join(","))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_lists_and_rejects_unknown_names() {
        let f = Faults::parse("flood, bad-used-id").unwrap();
        assert!(f.flood && f.bad_used_id && !f.bad_used_len);
        assert_eq!(f.to_string(), "bad-used-id,flood");
        assert_eq!(Faults::parse("nope"), Err(UnknownFault("nope".into())));
        assert!(Faults::parse("").unwrap().is_empty());
        let all = Faults::parse(&Faults::NAMES.join(",")).unwrap();
        assert_eq!(all.to_string(), Faults::NAMES.join(","));
        assert!(all.any_fs() && Faults::parse("fs-silent").unwrap().any_fs());
        assert!(!Faults::parse("flood,touch-unmapped").unwrap().any_fs());
    }
}
