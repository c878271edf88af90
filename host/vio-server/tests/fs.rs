//! virtio-fs through virtqueues the test builds by hand in fake guest memory: the device
//! header and config, the FUSE session, lookups, reads, directory listings, the read-only
//! share, open-flag translation from ppc64, and malformed requests.

mod common;

use common::fs::*;
use common::*;
use fuse_backend_rs::abi::fuse_abi::{
    AccessIn, CreateIn, ForgetIn, Kstatfs, MkdirIn, OpenOut, WriteIn, WriteOut,
};
use std::process::Command;
use vio_server::fs::FsError;
use vio_server::{Faults, Fs, FsOptions, Stats};
use virtio_vio::device_id;
use virtio_vio::msg::{Opcode, Status};

const S_IFMT: u32 = 0o170000;
const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
const S_IFLNK: u32 = 0o120000;

#[test]
fn header_and_config_describe_a_file_system() {
    let mut r = FsRig::fs(Faults::default());
    let h = r.bring_up();
    assert_eq!(h.device_id, device_id::FS);
    assert_eq!(h.device_features, 1 << 32, "VIRTIO_F_VERSION_1 only");
    assert_eq!(h.num_queues, 2, "hiprio and one request queue");
    assert_eq!(&h.queue_max[..3], &[256, 256, 0]);
    assert_eq!(h.config_len, 40);
    let mut tag = b"vioboot".to_vec();
    tag.resize(36, 0);
    assert_eq!(&h.config[..36], &tag[..]);
    assert_eq!(&h.config[36..40], &1u32.to_le_bytes());
    // READ_CONFIG gives the same bytes.
    let m = r.call_msg(virtio_vio::msg::Message {
        byte3: 4,
        ..virtio_vio::msg::Message::request(Opcode::ReadConfig, 77, 36, 0)
    });
    assert_eq!(m.status(), Some(Status::Ok));
    assert_eq!(&m.data()[..4], &1u32.to_le_bytes());
    assert_eq!(
        r.status_of(Opcode::WriteConfig, 0, 0),
        Status::BadArgument,
        "no writable field"
    );

    let r = FsRig::fs_with(Faults::default(), |o| {
        o.request_queues = 4;
        o.tag = "t".repeat(36);
    });
    let h = r.session.as_ref().unwrap().model().header();
    assert_eq!(h.num_queues, 5);
    assert_eq!(&h.queue_max[..6], &[256, 256, 256, 256, 256, 0]);
    assert_eq!(
        &h.config[..36],
        "t".repeat(36).as_bytes(),
        "no NUL when full"
    );
    assert_eq!(&h.config[36..40], &4u32.to_le_bytes());
}

#[test]
fn bad_options_are_refused() {
    let tree = TempTree::new();
    let stats = std::sync::Arc::new(Stats::default());
    let try_new = |tweak: &dyn Fn(&mut FsOptions)| {
        let mut o = FsOptions::new(&tree.path, "ok");
        tweak(&mut o);
        Fs::new(&o, stats.clone()).err()
    };
    assert!(matches!(
        try_new(&|o| o.tag.clear()),
        Some(FsError::BadTag(_))
    ));
    assert!(matches!(
        try_new(&|o| o.tag = "x".repeat(37)),
        Some(FsError::BadTag(_))
    ));
    assert!(matches!(
        try_new(&|o| o.tag = "a\0b".into()),
        Some(FsError::BadTag(_))
    ));
    assert!(matches!(
        try_new(&|o| o.request_queues = 0),
        Some(FsError::BadQueues(0))
    ));
    assert!(matches!(
        try_new(&|o| o.request_queues = 5),
        Some(FsError::BadQueues(5))
    ));
    assert!(matches!(
        try_new(&|o| o.dir = tree.path.join("hello.txt")),
        Some(FsError::Dir { .. })
    ));
    assert!(matches!(
        try_new(&|o| o.dir = tree.path.join("missing")),
        Some(FsError::Dir { .. })
    ));
    assert!(try_new(&|_| {}).is_none());
}

#[test]
fn init_negotiates_and_nothing_is_served_before_it() {
    let mut r = FsRig::fs(Faults::default());
    r.bring_up();
    assert_eq!(r.lookup(FUSE_ROOT, "hello.txt").errno(), EIO, "before INIT");
    let out = r.init_with(FUSE_DO_READDIRPLUS);
    assert_eq!((out.major, out.minor), (7, 33));
    assert_ne!(out.flags & FUSE_DO_READDIRPLUS, 0, "READDIRPLUS offered");
    assert_eq!(out.max_readahead, 256 << 10, "the guest's readahead echoed");
    assert_eq!(out.max_write, 4096, "without BIG_WRITES/MAX_PAGES");
    assert_eq!(out.max_pages, 0);
    assert!(r.session.as_ref().unwrap().model().device().in_session());
    // A second INIT starts over. PassthroughFs never takes MAX_PAGES or BIG_WRITES: the
    // limits stay (a read-only share needs no writes; READ sizes are bounded by the guest's
    // buffers, not by max_pages).
    let out = r.init_with(FUSE_MAX_PAGES | FUSE_BIG_WRITES);
    assert_eq!(out.flags & FUSE_DO_READDIRPLUS, 0, "not asked for");
    assert_eq!((out.max_pages, out.max_write), (0, 4096));
}

#[test]
fn lookup_getattr_of_files_and_nested_directories() {
    let mut r = FsRig::fs(Faults::default());
    r.mount();
    let hello = r.entry(FUSE_ROOT, "hello.txt");
    assert!(hello.nodeid > FUSE_ROOT);
    assert_eq!(hello.attr.size, HELLO.len() as u64);
    assert_eq!(hello.attr.mode & S_IFMT, S_IFREG);
    let sub = r.entry(FUSE_ROOT, "sub");
    assert_eq!(sub.attr.mode & S_IFMT, S_IFDIR);
    let nested = r.entry(sub.nodeid, "nested");
    assert_eq!(nested.attr.mode & S_IFMT, S_IFDIR);
    let deep = r.entry(nested.nodeid, "deep.txt");
    assert_eq!(deep.attr.size, 5);
    let a = r.attr(deep.nodeid);
    assert_eq!((a.ino, a.size), (deep.attr.ino, 5));
    assert_eq!(r.attr(FUSE_ROOT).mode & S_IFMT, S_IFDIR);
    let link = r.entry(FUSE_ROOT, "link");
    assert_eq!(link.attr.mode & S_IFMT, S_IFLNK, "not followed");
    assert_eq!(r.lookup(FUSE_ROOT, "missing").errno(), ENOENT);
    assert_eq!(r.lookup(sub.nodeid, "hello.txt").errno(), ENOENT);
    // The same node looked up twice is the same node id.
    assert_eq!(r.entry(FUSE_ROOT, "hello.txt").nodeid, hello.nodeid);
}

#[test]
fn names_with_a_slash_and_dot_dot_stay_inside_the_share() {
    let mut r = FsRig::fs(Faults::default());
    r.mount();
    assert_eq!(r.lookup(FUSE_ROOT, "sub/nested").errno(), EINVAL);
    assert_eq!(r.lookup(FUSE_ROOT, "/etc").errno(), EINVAL);
    assert_eq!(r.lookup(FUSE_ROOT, "../..").errno(), EINVAL);
    // ".." of the root is the root.
    let up = r.entry(FUSE_ROOT, "..");
    assert_eq!(up.attr.ino, r.attr(FUSE_ROOT).ino);
    let sub = r.entry(FUSE_ROOT, "sub");
    assert_eq!(r.entry(sub.nodeid, "..").attr.ino, up.attr.ino);
}

#[test]
fn open_read_release_a_large_file_in_several_requests() {
    let mut r = FsRig::fs(Faults::default());
    r.mount();
    let big = r.entry(FUSE_ROOT, "big.bin");
    assert_eq!(big.attr.size, BIG_LEN as u64);
    let flags = ppc::O_RDONLY | ppc::O_LARGEFILE;
    let fh = r.fh(op::OPEN, big.nodeid, flags);
    let want: Vec<u8> = (0..BIG_LEN).map(big_byte).collect();
    let mut got = Vec::new();
    let chunk = 256 << 10;
    while got.len() < BIG_LEN {
        let reply = r.read(op::READ, big.nodeid, fh, got.len() as u64, chunk, flags);
        let data = reply.ok();
        assert!(!data.is_empty());
        got.extend_from_slice(data);
    }
    assert!(got == want, "file contents differ");
    // At the end: nothing.
    let reply = r.read(op::READ, big.nodeid, fh, BIG_LEN as u64, chunk, flags);
    assert_eq!((reply.ok().len(), reply.used_len), (0, 16));
    // Eight reads in flight in one NOTIFY, one of them across two reply buffers.
    let mut queued = Vec::new();
    for k in 0..8u64 {
        let unique = r.unique();
        let body = raw(fuse_backend_rs::abi::fuse_abi::ReadIn {
            fh,
            offset: k * 100_000,
            size: 5000,
            flags,
            ..Default::default()
        });
        let req = FsRig::request(op::READ, unique, big.nodeid, &body);
        let space: &[u32] = if k == 3 {
            &[16 + 1000, 4000]
        } else {
            &[16 + 5000]
        };
        let (_, bufs) = r.queue_raw(1, &[req], space);
        queued.push((unique, bufs, k));
    }
    assert_eq!(r.notify_one(1), r.queue(1).avail_idx);
    let base = r.queue(1).avail_idx - 8;
    for (unique, bufs, k) in queued {
        let reply = r.finish_raw(1, unique, &bufs, base + k as u16);
        let at = (k * 100_000) as usize;
        assert_eq!(reply.ok(), &want[at..at + 5000], "read {k}");
    }
    assert_eq!(r.release(op::RELEASE, big.nodeid, fh).errno(), 0);
    assert_eq!(
        r.read(op::READ, big.nodeid, fh, 0, 16, flags).errno(),
        EBADF,
        "released"
    );
    assert!(vio_server::Stats::get(&r.stats.backend_read_bytes) >= BIG_LEN as u64);
}

#[test]
fn small_file_read_and_readlink_and_statfs() {
    let mut r = FsRig::fs(Faults::default());
    r.mount();
    let hello = r.entry(FUSE_ROOT, "hello.txt");
    let fh = r.fh(op::OPEN, hello.nodeid, ppc::O_LARGEFILE);
    let reply = r.read(op::READ, hello.nodeid, fh, 0, 4096, ppc::O_LARGEFILE);
    assert_eq!(reply.ok(), HELLO);
    assert_eq!(reply.used_len, 16 + HELLO.len() as u32);
    assert!(
        reply.buf[reply.used_len as usize..]
            .iter()
            .all(|&b| b == FILL),
        "nothing past the reply"
    );
    assert_eq!(r.release(op::RELEASE, hello.nodeid, fh).errno(), 0);

    let link = r.entry(FUSE_ROOT, "link");
    let target = r.fuse(op::READLINK, link.nodeid, &[], 4096);
    assert_eq!(target.ok(), b"hello.txt");
    assert_ne!(
        r.fuse(op::READLINK, hello.nodeid, &[], 4096).errno(),
        0,
        "not a link"
    );

    let st = r.fuse(op::STATFS, FUSE_ROOT, &[], 4096);
    let k: Kstatfs = obj(st.ok());
    assert!(k.bsize > 0 && k.blocks > 0);
    assert_eq!(k.namelen, 255);
}

#[test]
fn readdir_and_readdirplus_list_the_share() {
    let mut r = FsRig::fs(Faults::default());
    r.mount();
    let names = |d: &[Dent]| {
        let mut n: Vec<String> = d.iter().map(|e| e.name.clone()).collect();
        n.sort();
        n
    };
    let want = ["big.bin", "empty", "hello.txt", "link", "sub"];
    let all = r.list(FUSE_ROOT, false, 4096);
    assert_eq!(names(&all), want);
    // Small chunks: a few entries per reply, continued by offset. (PassthroughFs reads the
    // host directory `size` bytes at a time and skips "." and "..": a size that spans only
    // those two gives an empty reply, which reads as the end. Clients ask for pages.)
    let chunked = r.list(FUSE_ROOT, false, 120);
    assert_eq!(names(&chunked), want);
    let plus = r.list(FUSE_ROOT, true, 4096);
    assert_eq!(names(&plus), want);
    for e in &plus {
        let node = e.nodeid.unwrap();
        assert!(node > FUSE_ROOT, "{}", e.name);
        // READDIRPLUS looked each entry up: its node id answers GETATTR.
        assert_eq!(r.attr(node).ino, e.ino, "{}", e.name);
    }
    let hello = plus.iter().find(|e| e.name == "hello.txt").unwrap();
    assert_eq!(hello.typ, 8, "DT_REG");
    let sub = r.entry(FUSE_ROOT, "sub");
    assert_eq!(
        names(&r.list(sub.nodeid, true, 4096)),
        ["file-b.txt", "nested"]
    );
    let empty = r.entry(FUSE_ROOT, "empty");
    assert!(r.list(empty.nodeid, false, 4096).is_empty());
    // READDIR into a buffer smaller than asked: refused, not overrun.
    let fh = r.fh(op::OPENDIR, FUSE_ROOT, ppc::O_DIRECTORY);
    let unique = r.unique();
    let body = raw(fuse_backend_rs::abi::fuse_abi::ReadIn {
        fh,
        size: 4096,
        ..Default::default()
    });
    let req = FsRig::request(op::READDIR, unique, FUSE_ROOT, &body);
    let reply = r.chain(1, unique, &[req], &[64]);
    assert_ne!(reply.errno(), 0);
}

#[test]
fn forget_and_batch_forget_on_hiprio() {
    let mut r = FsRig::fs(Faults::default());
    r.mount();
    let sub = r.entry(FUSE_ROOT, "sub");
    let nested = r.entry(sub.nodeid, "nested");
    let deep = r.entry(nested.nodeid, "deep.txt");
    assert_eq!(r.attr(deep.nodeid).size, 5);
    // One lookup, one FORGET: the node is gone.
    r.hiprio(op::FORGET, deep.nodeid, &raw(ForgetIn { nlookup: 1 }));
    assert_ne!(r.getattr(deep.nodeid).errno(), 0, "forgotten node");
    // Nodes the server never handed out, or already forgot: nothing happens.
    r.hiprio(op::FORGET, 9999, &raw(ForgetIn { nlookup: 1 }));
    r.hiprio(op::FORGET, deep.nodeid, &raw(ForgetIn { nlookup: 5 }));
    // Looked up twice, forgotten with BATCH_FORGET (count, then (nodeid, nlookup) pairs).
    let a = r.entry(FUSE_ROOT, "hello.txt");
    assert_eq!(r.entry(FUSE_ROOT, "hello.txt").nodeid, a.nodeid);
    let mut batch = Vec::new();
    batch.extend_from_slice(&2u32.to_le_bytes());
    batch.extend_from_slice(&0u32.to_le_bytes());
    for (node, n) in [(a.nodeid, 1u64), (a.nodeid, 1), (4242, 3)] {
        batch.extend_from_slice(&node.to_le_bytes());
        batch.extend_from_slice(&n.to_le_bytes());
    }
    // count says 2: the third pair is not read.
    r.hiprio(op::BATCH_FORGET, 0, &batch);
    assert_ne!(r.getattr(a.nodeid).errno(), 0, "forgotten by the batch");
    // A FORGET on a request queue is not answered either.
    let b = r.entry(FUSE_ROOT, "sub");
    let unique = r.unique();
    let req = FsRig::request(op::FORGET, unique, b.nodeid, &raw(ForgetIn { nlookup: 1 }));
    assert_eq!(r.chain(1, unique, &[req], &[4096]).used_len, 0);
    // Still serving.
    let node = r.entry(FUSE_ROOT, "hello.txt").nodeid;
    assert_eq!(r.attr(node).size, HELLO.len() as u64);
}

#[test]
fn destroy_ends_the_session_and_init_opens_a_new_one() {
    let mut r = FsRig::fs(Faults::default());
    r.mount();
    let hello = r.entry(FUSE_ROOT, "hello.txt");
    let d = r.fuse(op::DESTROY, 0, &[], 4096);
    assert_eq!((d.errno(), d.used_len), (0, 16), "a header alone");
    assert!(!r.session.as_ref().unwrap().model().device().in_session());
    assert_eq!(r.lookup(FUSE_ROOT, "hello.txt").errno(), EIO);
    r.init_with(0);
    assert_ne!(r.getattr(hello.nodeid).errno(), 0, "old node ids are gone");
    let again = r.entry(FUSE_ROOT, "hello.txt");
    assert_eq!(r.attr(again.nodeid).size, HELLO.len() as u64);
    // A virtio reset and a new bring-up keep the FUSE session (the guest replays).
    assert_eq!(r.status_of(Opcode::SetStatus, 0, 0), Status::Ok);
    r.vq = GuestVq::new(256);
    r.more_vqs = vec![(0, GuestVq::at(256, HIPRIO_RINGS))];
    r.guest.write(USED, &[0; 8]);
    r.guest.write(HIPRIO_RINGS + 0x2000, &[0; 8]);
    let f = r.probe().device_features;
    for (op, arg) in [
        (Opcode::SetStatus, ACK | DRIVER),
        (Opcode::SetFeatures, f),
        (Opcode::SetStatus, ACK | DRIVER | FEATURES_OK),
    ] {
        assert_eq!(r.status_of(op, 0, arg), Status::Ok);
    }
    for (i, q) in [(1u16, r.vq.setup(1)), (0, r.more_vqs[0].1.setup(0))] {
        let _ = i;
        assert_eq!(r.queue_setup(q), Status::Ok);
    }
    assert_eq!(
        r.status_of(Opcode::SetStatus, 0, ACK | DRIVER | FEATURES_OK | DRIVER_OK),
        Status::Ok
    );
    assert_eq!(r.attr(again.nodeid).size, HELLO.len() as u64);
}

/// Bodies of requests that change the tree, each valid for its opcode.
fn mutations(r: &mut FsRig) -> Vec<(&'static str, u32, u64, Vec<u8>)> {
    let hello = r.entry(FUSE_ROOT, "hello.txt").nodeid;
    let sub = r.entry(FUSE_ROOT, "sub").nodeid;
    let named = |head: Vec<u8>, names: &[&str]| {
        let mut v = head;
        for n in names {
            v.extend(cstr(n));
        }
        v
    };
    let mkdir = raw(MkdirIn {
        mode: 0o755,
        umask: 0,
    });
    let create = raw(CreateIn {
        flags: ppc::O_CREAT | ppc::O_WRONLY | ppc::O_LARGEFILE,
        mode: 0o644,
        umask: 0,
        fuse_flags: 0,
    });
    let write = {
        let mut v = raw(WriteIn {
            fh: 1,
            size: 4,
            ..Default::default()
        });
        v.extend_from_slice(b"oops");
        v
    };
    vec![
        ("SETATTR", op::SETATTR, hello, vec![0u8; 88]),
        (
            "SYMLINK",
            op::SYMLINK,
            FUSE_ROOT,
            named(vec![], &["l2", "hello.txt"]),
        ),
        (
            "MKNOD",
            op::MKNOD,
            FUSE_ROOT,
            named(vec![0u8; 16], &["fifo"]),
        ),
        ("MKDIR", op::MKDIR, FUSE_ROOT, named(mkdir, &["newdir"])),
        ("UNLINK", op::UNLINK, FUSE_ROOT, cstr("hello.txt")),
        ("RMDIR", op::RMDIR, FUSE_ROOT, cstr("empty")),
        (
            "RENAME",
            op::RENAME,
            FUSE_ROOT,
            named(FUSE_ROOT.to_le_bytes().to_vec(), &["hello.txt", "h2"]),
        ),
        (
            "LINK",
            op::LINK,
            sub,
            named(hello.to_le_bytes().to_vec(), &["hl"]),
        ),
        ("WRITE", op::WRITE, hello, write),
        (
            "SETXATTR",
            op::SETXATTR,
            hello,
            named(vec![1, 0, 0, 0, 0, 0, 0, 0], &["user.x", "v"]),
        ),
        ("REMOVEXATTR", op::REMOVEXATTR, hello, cstr("user.x")),
        ("CREATE", op::CREATE, FUSE_ROOT, named(create, &["new.txt"])),
        ("FALLOCATE", op::FALLOCATE, hello, vec![0u8; 32]),
        (
            "RENAME2",
            op::RENAME2,
            FUSE_ROOT,
            named(
                [FUSE_ROOT.to_le_bytes(), [0; 8]].concat(),
                &["hello.txt", "h3"],
            ),
        ),
    ]
}

#[test]
fn a_read_only_share_refuses_every_change_with_erofs() {
    let mut r = FsRig::fs(Faults::default());
    r.mount();
    let before = r.disk.listing();
    for (name, opcode, node, body) in mutations(&mut r) {
        assert_eq!(r.fuse(opcode, node, &body, 4096).errno(), EROFS, "{name}");
    }
    let hello = r.entry(FUSE_ROOT, "hello.txt").nodeid;
    for flags in [
        ppc::O_WRONLY,
        ppc::O_RDWR,
        ppc::O_RDONLY | ppc::O_TRUNC,
        ppc::O_CREAT,
    ] {
        assert_eq!(
            r.open(op::OPEN, hello, flags).errno(),
            EROFS,
            "open {flags:#o}"
        );
    }
    let access = |mask| raw(AccessIn { mask, padding: 0 });
    assert_eq!(
        r.fuse(op::ACCESS, hello, &access(2), 4096).errno(),
        EROFS,
        "W_OK"
    );
    assert_eq!(
        r.fuse(op::ACCESS, hello, &access(4), 4096).errno(),
        0,
        "R_OK"
    );
    assert_eq!(r.disk.listing(), before, "the tree is unchanged");
    assert_eq!(std::fs::read(r.disk.path.join("hello.txt")).unwrap(), HELLO);
}

#[test]
fn a_writable_share_creates_writes_and_removes() {
    let mut r = FsRig::fs_with(Faults::default(), |o| o.writable = true);
    r.mount();
    // CREATE with the guest's flags: O_CREAT|O_WRONLY|O_LARGEFILE (ppc64 O_LARGEFILE is x86's
    // O_DIRECTORY: untranslated, the create would fail).
    let mut body = raw(CreateIn {
        flags: ppc::O_CREAT | ppc::O_WRONLY | ppc::O_LARGEFILE,
        mode: 0o644,
        umask: 0o022,
        fuse_flags: 0,
    });
    body.extend(cstr("new.txt"));
    let c = r.fuse(op::CREATE, FUSE_ROOT, &body, 4096);
    let ok = c.ok();
    let entry: fuse_backend_rs::abi::fuse_abi::EntryOut = obj(ok);
    let open: OpenOut = obj(&ok[128..]);
    let mut w = raw(WriteIn {
        fh: open.fh,
        size: 6,
        flags: ppc::O_WRONLY | ppc::O_LARGEFILE,
        ..Default::default()
    });
    w.extend_from_slice(b"vio-fs");
    let wr = r.fuse(op::WRITE, entry.nodeid, &w, 4096);
    assert_eq!(obj::<WriteOut>(wr.ok()).size, 6);
    assert_eq!(r.release(op::RELEASE, entry.nodeid, open.fh).errno(), 0);
    assert_eq!(
        std::fs::read(r.disk.path.join("new.txt")).unwrap(),
        b"vio-fs"
    );
    let mut mk = raw(MkdirIn {
        mode: 0o755,
        umask: 0,
    });
    mk.extend(cstr("made"));
    r.fuse(op::MKDIR, FUSE_ROOT, &mk, 4096).ok();
    assert!(r.disk.path.join("made").is_dir());
    assert_eq!(
        r.fuse(op::UNLINK, FUSE_ROOT, &cstr("new.txt"), 4096)
            .errno(),
        0
    );
    assert!(!r.disk.path.join("new.txt").exists());
    // Names with a slash are refused here too.
    let mut mk = raw(MkdirIn {
        mode: 0o755,
        umask: 0,
    });
    mk.extend(cstr("../escape"));
    assert_eq!(r.fuse(op::MKDIR, FUSE_ROOT, &mk, 4096).errno(), EINVAL);
    assert!(!r.disk.path.join("../escape").exists());
}

#[test]
fn ppc64_open_flags_are_translated_for_the_host() {
    let mut r = FsRig::fs(Faults::default());
    r.mount();
    let hello = r.entry(FUSE_ROOT, "hello.txt").nodeid;
    let sub = r.entry(FUSE_ROOT, "sub").nodeid;
    // ppc64 O_DIRECTORY opens a directory...
    let fh = r.fh(op::OPENDIR, sub, ppc::O_DIRECTORY | ppc::O_LARGEFILE);
    assert_eq!(r.release(op::RELEASEDIR, sub, fh).errno(), 0);
    let fh = r.fh(op::OPEN, sub, ppc::O_DIRECTORY);
    assert_eq!(r.release(op::RELEASE, sub, fh).errno(), 0);
    // ... and is O_DIRECTORY on the host: a regular file is not one.
    assert_eq!(r.open(op::OPEN, hello, ppc::O_DIRECTORY).errno(), ENOTDIR);
    // x86's O_DIRECTORY value (0o200000) from the guest is ppc64's O_LARGEFILE: a plain open.
    let fh = r.fh(op::OPEN, hello, 0o200000);
    let reply = r.read(op::READ, hello, fh, 0, 64, 0o200000);
    assert_eq!(reply.ok(), HELLO);
    assert_eq!(r.release(op::RELEASE, hello, fh).errno(), 0);
    // ppc64 O_NOFOLLOW on a file (no symlink involved) opens.
    let fh = r.fh(op::OPEN, hello, ppc::O_NOFOLLOW | ppc::O_LARGEFILE);
    assert_eq!(r.release(op::RELEASE, hello, fh).errno(), 0);
    // Bits that are no ppc64 open flag: EINVAL, on OPEN, OPENDIR and READ.
    assert_eq!(r.open(op::OPEN, hello, 1 << 27).errno(), EINVAL);
    assert_eq!(
        r.open(op::OPENDIR, sub, ppc::O_DIRECTORY | 0o10).errno(),
        EINVAL
    );
    let fh = r.fh(op::OPEN, hello, 0);
    assert_eq!(r.read(op::READ, hello, fh, 0, 64, 1 << 30).errno(), EINVAL);
    assert_eq!(r.read(op::READ, hello, fh, 0, 64, 0).ok(), HELLO);
}

#[test]
fn unknown_opcodes_get_enosys() {
    let mut r = FsRig::fs(Faults::default());
    r.mount();
    for opcode in [0, 7, 19, 47, 48, 49, 50, 4096] {
        assert_eq!(
            r.fuse(opcode, FUSE_ROOT, &[0; 64], 4096).errno(),
            ENOSYS,
            "{opcode}"
        );
    }
    assert_eq!(
        r.entry(FUSE_ROOT, "hello.txt").attr.size,
        HELLO.len() as u64
    );
}

#[test]
fn malformed_requests_are_answered_or_returned_without_harm() {
    let mut r = FsRig::fs(Faults::default());
    r.mount();
    // Shorter than fuse_in_header: returned with used length 0 (there is no unique to answer).
    let unique = r.unique();
    let req = FsRig::request(op::LOOKUP, unique, FUSE_ROOT, &cstr("hello.txt"));
    let reply = r.chain(1, unique, &[req[..20].to_vec()], &[4096]);
    assert_eq!(reply.used_len, 0);
    assert!(reply.buf.iter().all(|&b| b == FILL));
    // The header's len claims more than the request holds, or less than a header: EINVAL.
    for len in [1000u32, 39] {
        let unique = r.unique();
        let mut req = FsRig::request(op::LOOKUP, unique, FUSE_ROOT, &cstr("hello.txt"));
        req[..4].copy_from_slice(&len.to_le_bytes());
        assert_eq!(
            r.chain(1, unique, &[req], &[4096]).errno(),
            EINVAL,
            "len {len}"
        );
    }
    // No room for a reply: used length 0.
    let unique = r.unique();
    let req = FsRig::request(op::LOOKUP, unique, FUSE_ROOT, &cstr("hello.txt"));
    assert_eq!(r.chain(1, unique, &[req], &[8]).used_len, 0);
    // A name without its NUL.
    let unique = r.unique();
    let req = FsRig::request(op::LOOKUP, unique, FUSE_ROOT, b"hello.txt");
    assert_eq!(r.chain(1, unique, &[req], &[4096]).errno(), EINVAL);
    // Not enough room for the reply (an entry is 128 bytes): an error, not a partial entry.
    let unique = r.unique();
    let req = FsRig::request(op::LOOKUP, unique, FUSE_ROOT, &cstr("hello.txt"));
    let reply = r.chain(1, unique, &[req], &[100]);
    assert_eq!(reply.errno(), EIO);
    // A request split over several buffers, the flags word across two of them.
    let hello = r.entry(FUSE_ROOT, "hello.txt").nodeid;
    let unique = r.unique();
    let req = FsRig::request(
        op::OPEN,
        unique,
        hello,
        &raw(fuse_backend_rs::abi::fuse_abi::OpenIn {
            flags: 0o200000,
            fuse_flags: 0,
        }),
    );
    let parts = [req[..25].to_vec(), req[25..42].to_vec(), req[42..].to_vec()];
    let reply = r.chain(1, unique, &parts, &[16, 8, 100]);
    let fh = obj::<OpenOut>(reply.ok()).fh;
    assert_eq!(r.read(op::READ, hello, fh, 0, 64, 0).ok(), HELLO);
    // A request the server cannot read (unmapped buffer): returned unanswered.
    let unique = r.unique();
    let req = FsRig::request(op::GETATTR, unique, hello, &[0u8; 16]);
    let (head, bufs) = r.queue_raw(1, &[req], &[4096]);
    r.guest.unmap(bufs[0].addr, 56);
    let pos = r.queue(1).used_idx(&r.guest);
    r.notify_one(1);
    let reply = r.finish_raw(1, unique, &bufs, pos);
    assert_eq!((reply.used_id, reply.used_len), (u32::from(head), 0));
    assert_eq!(r.attr(hello).size, HELLO.len() as u64, "still serving");
}

#[test]
fn every_request_queue_is_served() {
    let mut r = FsRig::fs_with(Faults::default(), |o| o.request_queues = 2);
    r.mount();
    let unique = r.unique();
    let req = FsRig::request(op::LOOKUP, unique, FUSE_ROOT, &cstr("hello.txt"));
    let reply = r.chain(2, unique, &[req], &[4096]);
    let e: fuse_backend_rs::abi::fuse_abi::EntryOut = obj(reply.ok());
    assert_eq!(e.attr.size, HELLO.len() as u64);
    // And hiprio serves ordinary requests too.
    let unique = r.unique();
    let req = FsRig::request(op::GETATTR, unique, e.nodeid, &[0u8; 16]);
    assert_eq!(r.chain(0, unique, &[req], &[4096]).errno(), 0);
}

#[test]
fn the_binary_checks_its_fs_options() {
    let tree = TempTree::new();
    let dir = tree.path.to_str().unwrap();
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_vio-server"))
            .args(["--socket", "/nonexistent/vio.sock"])
            .args(args)
            .output()
            .unwrap()
    };
    for bad in [
        &["--fs", dir][..],
        &["--fs", dir, "--blk", "/dev/null", "--tag", "t"],
        &[],
        &["--fs", dir, "--tag", "t", "--read-only"],
        &["--blk", "/dev/null", "--tag", "t"],
        &["--blk", "/dev/null", "--fault", "fs-silent"],
        &["--fs", dir, "--tag", "t", "--fs-queues", "x"],
        &["--fs", dir, "--tag", "t", "--fault", "fs-nope"],
    ] {
        let out = run(bad);
        assert_eq!(out.status.code(), Some(2), "{bad:?}: {out:?}");
    }
    for bad in [
        &["--fs", dir, "--tag", &"x".repeat(37)][..],
        &["--fs", dir, "--tag", "t", "--fs-queues", "9"],
        &["--fs", "/nonexistent-dir", "--tag", "t"],
    ] {
        let out = run(bad);
        assert_eq!(out.status.code(), Some(1), "{bad:?}: {out:?}");
    }
    let help = run(&["--help"]);
    assert!(String::from_utf8_lossy(&help.stdout).contains("--fs DIR --tag TAG"));
}

/// xorshift64*: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[test]
fn random_fuse_requests_never_break_the_device() {
    for (seed, writable) in [(1u64, false), (2, true), (3, false)] {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ seed);
        let mut r = FsRig::fs_with(Faults::default(), |o| o.writable = writable);
        r.mount();
        let mut nodes = vec![FUSE_ROOT, 2, 3];
        for _ in 0..1500 {
            let opcode = match rng.below(4) {
                0 => rng.below(60) as u32,
                _ => [
                    1, 3, 5, 14, 15, 17, 18, 22, 23, 25, 27, 28, 29, 34, 42, 44, 46, 2, 9, 35, 16,
                    4,
                ][rng.below(22) as usize],
            };
            let node = match rng.below(5) {
                0 => rng.next(),
                _ => nodes[rng.below(nodes.len() as u64) as usize],
            };
            let mut body: Vec<u8> = (0..rng.below(200)).map(|_| rng.next() as u8).collect();
            if rng.below(2) == 0 {
                // A plausible name at the end.
                let names = ["hello.txt", "sub", "big.bin", "link", "..", ".", "x", "a/b"];
                body.extend(cstr(names[rng.below(names.len() as u64) as usize]));
            }
            let space = [0u32, 8, 16, 17, 100, 4096, 70_000][rng.below(7) as usize];
            let unique = r.unique();
            let mut req = FsRig::request(opcode, unique, node, &body);
            if rng.below(10) == 0 {
                let len = rng.next() as u32;
                req[..4].copy_from_slice(&len.to_le_bytes());
            }
            let reply = if space == 0 {
                r.chain(1, unique, &[req], &[])
            } else {
                r.chain(1, unique, &[req], &[space])
            };
            assert!(
                reply.used_len <= space,
                "used {} of {space}",
                reply.used_len
            );
            if reply.used_len >= 16 {
                let (len, error, u) = reply.header();
                assert_eq!((len, u), (reply.used_len, unique), "opcode {opcode}");
                assert!(
                    error <= 0 && error > -4096,
                    "opcode {opcode}: error {error}"
                );
                if opcode == op::LOOKUP && error == 0 {
                    nodes.push(
                        obj::<fuse_backend_rs::abi::fuse_abi::EntryOut>(&reply.bytes()[16..])
                            .nodeid,
                    );
                }
            }
        }
        // Still serving; a fresh INIT gives a working session whatever happened.
        r.init_with(FUSE_DO_READDIRPLUS);
        let hello = r.lookup(FUSE_ROOT, "hello.txt");
        assert!(matches!(hello.errno(), 0 | ENOENT), "seed {seed}");
    }
}
