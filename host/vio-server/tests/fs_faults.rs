//! Every `fs-*` fault, byte for byte: the same FUSE script runs against a clean device and a
//! faulty one on identical trees, and each faulty reply must be the clean reply changed exactly
//! as `Faults` documents (the rest of the guest's buffer untouched).

mod common;

use common::fs::*;
use fuse_backend_rs::abi::fuse_abi::{
    EntryOut, ForgetIn, InitIn, OpenIn, OpenOut, ReadIn, ReleaseIn,
};
use vio_server::faults::{FS_BAD_ERRNO, FS_ERROR_ERRNO, FS_HUGE_LEN_EXTRA, FS_WRONG_UNIQUE_DELTA};
use vio_server::fs::reply::{header_only, short_len};
use vio_server::Faults;

/// Bytes of device-writable space every request of the script offers.
const SPACE: u32 = 4096;

/// One step of the script: its name, the opcode, the clean reply and the faulty one.
struct Step {
    name: &'static str,
    opcode: u32,
    clean: Reply,
    faulty: Reply,
}

/// A clean rig and a faulty one, driven in lockstep.
struct Pair {
    clean: FsRig,
    faulty: FsRig,
    steps: Vec<Step>,
}

impl Pair {
    fn new(faults: &str) -> Pair {
        // One tree for both, so that attributes (inode numbers, times) agree.
        let mut clean = FsRig::fs(Faults::default());
        let mut faulty = FsRig::fs_sharing(&clean, Faults::parse(faults).unwrap());
        clean.bring_up();
        faulty.bring_up();
        Pair {
            clean,
            faulty,
            steps: Vec::new(),
        }
    }

    /// Sends one request to both; the clean reply (which must be a success unless `may_fail`).
    fn step(&mut self, name: &'static str, opcode: u32, node: u64, body: &[u8]) -> Reply {
        let clean = self.clean.fuse(opcode, node, body, SPACE);
        let faulty = self.faulty.fuse(opcode, node, body, SPACE);
        assert_eq!(
            clean.unique, faulty.unique,
            "{name}: the rigs are out of step"
        );
        self.steps.push(Step {
            name,
            opcode,
            clean: clean.clone(),
            faulty,
        });
        clean
    }

    /// The script: INIT, LOOKUP, OPEN/READ/RELEASE, OPENDIR/READDIR/READDIRPLUS/RELEASEDIR,
    /// a failing LOOKUP. Node ids and handles come from the clean replies.
    fn run(faults: &str) -> Pair {
        let mut p = Pair::new(faults);
        let init = raw(InitIn {
            major: 7,
            minor: 33,
            max_readahead: 1 << 18,
            flags: FUSE_DO_READDIRPLUS,
        });
        p.step("INIT", op::INIT, 0, &init);
        let hello: EntryOut = obj(p
            .step("LOOKUP", op::LOOKUP, FUSE_ROOT, &cstr("hello.txt"))
            .ok());
        let open = raw(OpenIn {
            flags: ppc::O_LARGEFILE,
            fuse_flags: 0,
        });
        let fh = obj::<OpenOut>(p.step("OPEN", op::OPEN, hello.nodeid, &open).ok()).fh;
        let read = |fh, offset| {
            raw(ReadIn {
                fh,
                offset,
                size: SPACE - 16,
                ..Default::default()
            })
        };
        let release = |fh| {
            raw(ReleaseIn {
                fh,
                ..Default::default()
            })
        };
        p.step("READ", op::READ, hello.nodeid, &read(fh, 0));
        p.step("RELEASE", op::RELEASE, hello.nodeid, &release(fh));
        let dir = raw(OpenIn {
            flags: ppc::O_DIRECTORY | ppc::O_LARGEFILE,
            fuse_flags: 0,
        });
        let dh = obj::<OpenOut>(p.step("OPENDIR", op::OPENDIR, FUSE_ROOT, &dir).ok()).fh;
        let listing = p.step("READDIR", op::READDIR, FUSE_ROOT, &read(dh, 0));
        let end = dents(listing.ok(), false).last().unwrap().off;
        p.step("READDIRPLUS", op::READDIRPLUS, FUSE_ROOT, &read(dh, 0));
        p.step("READDIR at the end", op::READDIR, FUSE_ROOT, &read(dh, end));
        p.step("RELEASEDIR", op::RELEASEDIR, FUSE_ROOT, &release(dh));
        let missing = p.step("LOOKUP missing", op::LOOKUP, FUSE_ROOT, &cstr("missing"));
        assert_eq!(missing.errno(), ENOENT);
        // Not answered, faults or not.
        p.clean
            .hiprio(op::FORGET, hello.nodeid, &raw(ForgetIn { nlookup: 1 }));
        p.faulty
            .hiprio(op::FORGET, hello.nodeid, &raw(ForgetIn { nlookup: 1 }));
        p
    }
}

/// The guest's buffer past `used` bytes is as the guest filled it.
fn untouched_after(r: &Reply, used: usize, name: &str) {
    assert!(
        r.buf[used..].iter().all(|&b| b == FILL),
        "{name}: bytes past {used} written"
    );
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

#[test]
fn the_clean_script_is_what_the_faults_change() {
    let p = Pair::run("");
    for s in &p.steps {
        assert_eq!(s.clean.buf, s.faulty.buf, "{}", s.name);
        assert_eq!(s.clean.used_len, s.faulty.used_len, "{}", s.name);
        untouched_after(&s.faulty, s.faulty.used_len as usize, s.name);
    }
    assert_eq!(p.steps.len(), 11);
}

#[test]
fn fs_short_reply_cuts_every_reply() {
    let p = Pair::run("fs-short-reply");
    for s in &p.steps {
        let full = s.clean.used_len as usize;
        let cut = short_len(full);
        assert_eq!(s.faulty.used_len as usize, cut, "{}", s.name);
        assert_eq!(&s.faulty.buf[..cut], &s.clean.buf[..cut], "{}", s.name);
        untouched_after(&s.faulty, cut, s.name);
        if full == 16 {
            assert_eq!(cut, 8, "{}: a header alone loses its unique", s.name);
        } else {
            // The header still claims the whole reply.
            assert_eq!(le32(&s.faulty.buf, 0) as usize, full, "{}", s.name);
            assert!(cut > 16 && cut < full, "{}", s.name);
        }
    }
}

#[test]
fn fs_wrong_unique_answers_with_another_unique() {
    let p = Pair::run("fs-wrong-unique");
    for s in &p.steps {
        let (c, f) = (&s.clean, &s.faulty);
        assert_eq!(f.used_len, c.used_len, "{}", s.name);
        let unique = u64::from_le_bytes(f.buf[8..16].try_into().unwrap());
        assert_eq!(
            unique,
            c.unique.wrapping_add(FS_WRONG_UNIQUE_DELTA),
            "{}",
            s.name
        );
        assert_eq!(&f.buf[..8], &c.buf[..8], "{}", s.name);
        assert_eq!(&f.buf[16..], &c.buf[16..], "{}", s.name);
    }
}

#[test]
fn fs_error_reply_answers_everything_with_eio_and_performs_nothing() {
    let p = Pair::run("fs-error-reply");
    for s in &p.steps {
        let f = &s.faulty;
        assert_eq!(f.used_len, 16, "{}", s.name);
        assert_eq!(
            f.bytes(),
            &header_only(f.unique, FS_ERROR_ERRNO)[..],
            "{}",
            s.name
        );
        assert_eq!(f.errno(), 5, "{}: EIO", s.name);
        untouched_after(f, 16, s.name);
    }
    assert!(!p
        .faulty
        .session
        .as_ref()
        .unwrap()
        .model()
        .device()
        .in_session());
}

#[test]
fn fs_bad_errno_answers_with_an_errno_linux_does_not_have() {
    let p = Pair::run("fs-bad-errno");
    for s in &p.steps {
        let f = &s.faulty;
        assert_eq!(
            f.bytes(),
            &header_only(f.unique, FS_BAD_ERRNO)[..],
            "{}",
            s.name
        );
        assert_eq!(f.header().1, -4096, "{}", s.name);
        untouched_after(f, 16, s.name);
    }
}

#[test]
fn fs_huge_len_claims_more_than_the_buffer() {
    let p = Pair::run("fs-huge-len");
    for s in &p.steps {
        let (c, f) = (&s.clean, &s.faulty);
        assert_eq!(f.used_len, c.used_len, "{}", s.name);
        assert_eq!(le32(&f.buf, 0), SPACE + FS_HUGE_LEN_EXTRA, "{}", s.name);
        assert_eq!(&f.buf[4..], &c.buf[4..], "{}", s.name);
    }
}

#[test]
fn fs_dirent_overrun_runs_the_last_name_past_the_reply() {
    let p = Pair::run("fs-dirent-overrun");
    let mut changed = 0;
    for s in &p.steps {
        let (c, f) = (&s.clean, &s.faulty);
        assert_eq!(f.used_len, c.used_len, "{}", s.name);
        let listing = matches!(s.opcode, op::READDIR | op::READDIRPLUS) && c.used_len > 16;
        if !listing {
            assert_eq!(f.buf, c.buf, "{}: not a listing, unchanged", s.name);
            continue;
        }
        let plus = s.opcode == op::READDIRPLUS;
        let entries = dents(c.ok(), plus);
        // Where the last entry's namelen and name lie in the reply.
        let mut at = 16;
        for e in &entries[..entries.len() - 1] {
            at += if plus { 128 } else { 0 } + (24 + e.name.len()).next_multiple_of(8);
        }
        let dirent = at + if plus { 128 } else { 0 };
        let name_at = dirent + 24;
        let mut want = c.buf.clone();
        let namelen = (c.used_len as usize - name_at + 1) as u32;
        want[dirent + 16..dirent + 20].copy_from_slice(&namelen.to_le_bytes());
        assert_eq!(f.buf, want, "{}", s.name);
        assert!(name_at + namelen as usize == c.used_len as usize + 1);
        changed += 1;
    }
    assert_eq!(changed, 2, "READDIR and READDIRPLUS");
}

#[test]
fn fs_slash_name_puts_a_slash_in_every_listed_name() {
    let p = Pair::run("fs-slash-name");
    let mut changed = 0;
    for s in &p.steps {
        let (c, f) = (&s.clean, &s.faulty);
        assert_eq!(f.used_len, c.used_len, "{}", s.name);
        let listing = matches!(s.opcode, op::READDIR | op::READDIRPLUS) && c.used_len > 16;
        if !listing {
            assert_eq!(f.buf, c.buf, "{}: not a listing, unchanged", s.name);
            continue;
        }
        let plus = s.opcode == op::READDIRPLUS;
        let want: Vec<Dent> = dents(c.ok(), plus)
            .into_iter()
            .map(|mut e| {
                e.name.replace_range(..1, "/");
                e
            })
            .collect();
        let got = dents(&f.bytes()[16..], plus);
        assert_eq!(got, want, "{}", s.name);
        assert_eq!(got.len(), 5);
        // Nothing else moved: only the first byte of each name differs.
        let diff = (c.buf.iter().zip(&f.buf)).filter(|(a, b)| a != b).count();
        assert_eq!(diff, 5, "{}", s.name);
        changed += 1;
    }
    assert_eq!(changed, 2);
}

#[test]
fn fs_silent_swallows_request_queue_notifies() {
    let mut r = FsRig::fs(Faults::parse("fs-silent").unwrap());
    r.bring_up();
    let unique = r.unique();
    let init = raw(InitIn {
        major: 7,
        minor: 33,
        max_readahead: 0,
        flags: 0,
    });
    let req = FsRig::request(op::INIT, unique, 0, &init);
    let (_, bufs) = r.queue_raw(1, &[req], &[SPACE]);
    assert!(r.notify(1).is_empty(), "no USED, nothing at all");
    assert_eq!(r.queue(1).used_idx(&r.guest), 0, "used ring untouched");
    assert!(r
        .guest
        .read(bufs[1].addr, SPACE as usize)
        .iter()
        .all(|&b| b == FILL));
    assert!(r.notify(1).is_empty(), "and again");
    // hiprio still answers: its USED comes, for a FORGET the device ignores (no session).
    r.hiprio(op::FORGET, 5, &raw(ForgetIn { nlookup: 1 }));
    assert_eq!(
        vio_server::Stats::get(&r.stats.requests),
        1,
        "only the FORGET served"
    );
}
