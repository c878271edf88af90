//! The virtio-fs side of the fixture: a shared tree in a temporary directory and a small FUSE
//! client that builds requests as plain bytes (with `fuse-backend-rs`'s ABI structs), queues
//! them in the fake guest and reads the replies back as the guest would see them.

use super::{Buf, GuestVq, Rig, F_WRITE};
use fuse_backend_rs::abi::fuse_abi::{
    Attr, AttrOut, EntryOut, InHeader, InitIn, InitOut, OpenIn, OpenOut, ReadIn, ReleaseIn,
};
use papr::tce::{TCE_READ, TCE_WRITE};
use std::os::unix::fs::symlink;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use vio_server::{Faults, Fs, FsOptions, Stats};
use vm_memory::ByteValued;

/// FUSE opcodes the tests send.
pub mod op {
    pub const LOOKUP: u32 = 1;
    pub const FORGET: u32 = 2;
    pub const GETATTR: u32 = 3;
    pub const SETATTR: u32 = 4;
    pub const READLINK: u32 = 5;
    pub const SYMLINK: u32 = 6;
    pub const MKNOD: u32 = 8;
    pub const MKDIR: u32 = 9;
    pub const UNLINK: u32 = 10;
    pub const RMDIR: u32 = 11;
    pub const RENAME: u32 = 12;
    pub const LINK: u32 = 13;
    pub const OPEN: u32 = 14;
    pub const READ: u32 = 15;
    pub const WRITE: u32 = 16;
    pub const STATFS: u32 = 17;
    pub const RELEASE: u32 = 18;
    pub const SETXATTR: u32 = 21;
    pub const REMOVEXATTR: u32 = 24;
    pub const INIT: u32 = 26;
    pub const OPENDIR: u32 = 27;
    pub const READDIR: u32 = 28;
    pub const RELEASEDIR: u32 = 29;
    pub const ACCESS: u32 = 34;
    pub const CREATE: u32 = 35;
    pub const DESTROY: u32 = 38;
    pub const BATCH_FORGET: u32 = 42;
    pub const FALLOCATE: u32 = 43;
    pub const READDIRPLUS: u32 = 44;
    pub const RENAME2: u32 = 45;
}

/// The guest's (ppc64 Linux) open flags.
pub mod ppc {
    pub const O_RDONLY: u32 = 0;
    pub const O_WRONLY: u32 = 0o1;
    pub const O_RDWR: u32 = 0o2;
    pub const O_CREAT: u32 = 0o100;
    pub const O_TRUNC: u32 = 0o1000;
    pub const O_DIRECTORY: u32 = 0o40000;
    pub const O_NOFOLLOW: u32 = 0o100000;
    pub const O_LARGEFILE: u32 = 0o200000;
}

pub const FUSE_ROOT: u64 = 1;
/// FUSE_INIT flag bits.
pub const FUSE_BIG_WRITES: u32 = 1 << 5;
pub const FUSE_DO_READDIRPLUS: u32 = 1 << 13;
pub const FUSE_MAX_PAGES: u32 = 1 << 22;

pub const EIO: i32 = 5;
pub const ENOENT: i32 = 2;
pub const EBADF: i32 = 9;
pub const ENOTDIR: i32 = 20;
pub const EINVAL: i32 = 22;
pub const ENOSYS: i32 = 38;
pub const EROFS: i32 = 30;
pub const EPROTO: i32 = 71;

/// What the guest's reply buffers are filled with before a request.
pub const FILL: u8 = 0xEE;
/// The hiprio queue's rings.
pub const HIPRIO_RINGS: u64 = 0x13000;
/// A third queue's rings (queue 2, with `--fs-queues 2`).
pub const QUEUE2_RINGS: u64 = 0x16000;

/// Contents of `big.bin`: a pattern that differs from one 4 KiB page to the next.
pub fn big_byte(i: usize) -> u8 {
    (i.wrapping_mul(7) ^ (i >> 12)) as u8
}
pub const BIG_LEN: usize = 3 * 1024 * 1024 + 1234;
pub const HELLO: &[u8] = b"hello, vioboot\n";

/// A directory tree to share, removed on drop:
/// `hello.txt`, `big.bin`, `link -> hello.txt`, `empty/`, `sub/file-b.txt`,
/// `sub/nested/deep.txt`.
pub struct TempTree {
    pub path: PathBuf,
}

impl TempTree {
    pub fn new() -> TempTree {
        static N: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "vio-server-fs-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(path.join("sub/nested")).unwrap();
        std::fs::create_dir(path.join("empty")).unwrap();
        std::fs::write(path.join("hello.txt"), HELLO).unwrap();
        let big: Vec<u8> = (0..BIG_LEN).map(big_byte).collect();
        std::fs::write(path.join("big.bin"), big).unwrap();
        std::fs::write(path.join("sub/file-b.txt"), b"b\n").unwrap();
        std::fs::write(path.join("sub/nested/deep.txt"), b"deep\n").unwrap();
        symlink("hello.txt", path.join("link")).unwrap();
        TempTree { path }
    }

    /// Every path under the tree with its kind and size, sorted (to see that nothing changed).
    pub fn listing(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut todo = vec![self.path.clone()];
        while let Some(d) = todo.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let e = e.unwrap();
                let m = std::fs::symlink_metadata(e.path()).unwrap();
                let rel = e
                    .path()
                    .strip_prefix(&self.path)
                    .unwrap()
                    .display()
                    .to_string();
                if m.is_dir() {
                    todo.push(e.path());
                }
                out.push(format!("{rel} {:?} {}", m.file_type(), m.len()));
            }
        }
        out.sort();
        out
    }
}

impl Drop for TempTree {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// A rig with a virtio-fs device.
pub type FsRig = Rig<Fs, TempTree>;

/// A copy of a `ByteValued` struct from the start of `bytes`.
pub fn obj<T: ByteValued + Default>(bytes: &[u8]) -> T {
    let mut t = T::default();
    let n = std::mem::size_of::<T>();
    t.as_mut_slice().copy_from_slice(&bytes[..n]);
    t
}

/// The bytes of a `ByteValued` struct.
pub fn raw<T: ByteValued>(t: T) -> Vec<u8> {
    t.as_slice().to_vec()
}

/// A name as FUSE sends it: the bytes and a NUL.
pub fn cstr(name: &str) -> Vec<u8> {
    let mut v = name.as_bytes().to_vec();
    v.push(0);
    v
}

/// One request's outcome as the guest sees it.
#[derive(Debug, Clone)]
pub struct Reply {
    /// The request's `unique`.
    pub unique: u64,
    pub used_id: u32,
    pub used_len: u32,
    /// The whole device-writable space after the request, used or not.
    pub buf: Vec<u8>,
}

impl Reply {
    /// The bytes the device said it wrote.
    pub fn bytes(&self) -> &[u8] {
        &self.buf[..(self.used_len as usize).min(self.buf.len())]
    }

    /// (`len`, `error`, `unique`) of the reply header.
    pub fn header(&self) -> (u32, i32, u64) {
        let b = self.bytes();
        assert!(b.len() >= 16, "reply of {} bytes: no header", b.len());
        (
            u32::from_le_bytes(b[0..4].try_into().unwrap()),
            i32::from_le_bytes(b[4..8].try_into().unwrap()),
            u64::from_le_bytes(b[8..16].try_into().unwrap()),
        )
    }

    /// The errno of the reply (0: success); checks `len` and `unique`.
    pub fn errno(&self) -> i32 {
        let (len, error, unique) = self.header();
        assert_eq!(len, self.used_len, "header len vs used length");
        assert_eq!(unique, self.unique, "unique");
        -error
    }

    /// The body of a successful reply.
    pub fn ok(&self) -> &[u8] {
        assert_eq!(self.errno(), 0, "reply error");
        &self.bytes()[16..]
    }
}

/// One directory entry of a READDIR(PLUS) reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dent {
    pub ino: u64,
    pub off: u64,
    pub typ: u32,
    pub name: String,
    /// READDIRPLUS: the entry's node id.
    pub nodeid: Option<u64>,
}

/// Parses a READDIR (`plus` false) or READDIRPLUS reply body.
pub fn dents(body: &[u8], plus: bool) -> Vec<Dent> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < body.len() {
        let mut nodeid = None;
        if plus {
            let e: EntryOut = obj(&body[at..]);
            nodeid = Some(e.nodeid);
            at += 128;
        }
        let ino = u64::from_le_bytes(body[at..at + 8].try_into().unwrap());
        let off = u64::from_le_bytes(body[at + 8..at + 16].try_into().unwrap());
        let namelen = u32::from_le_bytes(body[at + 16..at + 20].try_into().unwrap()) as usize;
        let typ = u32::from_le_bytes(body[at + 20..at + 24].try_into().unwrap());
        let name = String::from_utf8(body[at + 24..at + 24 + namelen].to_vec()).unwrap();
        out.push(Dent {
            ino,
            off,
            typ,
            name,
            nodeid,
        });
        at += (24 + namelen).next_multiple_of(8);
    }
    out
}

impl FsRig {
    /// A read-only share of a fresh tree with one request queue; the session is not started.
    pub fn fs(faults: Faults) -> FsRig {
        FsRig::fs_with(faults, |_| {})
    }

    /// As [`FsRig::fs`], with the options changed by `tweak` first.
    pub fn fs_with(faults: Faults, tweak: impl FnOnce(&mut FsOptions)) -> FsRig {
        FsRig::fs_on(TempTree::new(), faults, tweak)
    }

    /// A second rig on the tree of `other` (both remove it when dropped).
    pub fn fs_sharing(other: &FsRig, faults: Faults) -> FsRig {
        let tree = TempTree {
            path: other.disk.path.clone(),
        };
        FsRig::fs_on(tree, faults, |_| {})
    }

    fn fs_on(tree: TempTree, faults: Faults, tweak: impl FnOnce(&mut FsOptions)) -> FsRig {
        let stats = Arc::new(Stats::default());
        let mut opts = FsOptions::new(&tree.path, "vioboot");
        tweak(&mut opts);
        let fs = Fs::new(&opts, stats.clone()).unwrap();
        let mut r = Rig::with_device(fs, tree, faults, stats);
        r.vq_index = 1;
        r.more_vqs = vec![(0, GuestVq::at(256, HIPRIO_RINGS))];
        if opts.request_queues >= 2 {
            r.more_vqs.push((2, GuestVq::at(256, QUEUE2_RINGS)));
        }
        r
    }

    /// A request's bytes: `fuse_in_header` (uid 0, gid 0, pid 1) and `body`.
    pub fn request(opcode: u32, unique: u64, nodeid: u64, body: &[u8]) -> Vec<u8> {
        let h = InHeader {
            len: (40 + body.len()) as u32,
            opcode,
            unique,
            nodeid,
            uid: 0,
            gid: 0,
            pid: 1,
            padding: 0,
        };
        let mut v = raw(h);
        v.extend_from_slice(body);
        v
    }

    /// A fresh `unique`: even, as Linux's are.
    pub fn unique(&mut self) -> u64 {
        u64::from(self.next_tag()) * 2
    }

    /// The guest's queue `queue`.
    pub fn queue(&self, queue: u16) -> &GuestVq {
        if queue == self.vq_index {
            return &self.vq;
        }
        let Some((_, q)) = self.more_vqs.iter().find(|(i, _)| *i == queue) else {
            panic!("queue {queue} not in the rig")
        };
        q
    }

    /// Queues a chain of driver-readable `parts` and device-writable buffers of `reply` bytes
    /// (filled with [`FILL`]) on `queue`; returns the head and the buffers.
    pub fn queue_raw(&mut self, queue: u16, parts: &[Vec<u8>], reply: &[u32]) -> (u16, Vec<Buf>) {
        let mut bufs = Vec::new();
        for p in parts {
            let a = self.alloc(p.len() as u64);
            self.guest.write(a, p);
            self.guest.map(a, p.len() as u64, TCE_READ);
            bufs.push(Buf {
                addr: a,
                len: p.len() as u32,
                flags: 0,
            });
        }
        for &n in reply {
            let a = self.alloc(u64::from(n));
            self.guest.write(a, &vec![FILL; n as usize]);
            self.guest.map(a, u64::from(n), TCE_READ | TCE_WRITE);
            bufs.push(Buf {
                addr: a,
                len: n,
                flags: F_WRITE,
            });
        }
        let Rig {
            guest,
            vq,
            vq_index,
            more_vqs,
            ..
        } = self;
        let q = if queue == *vq_index {
            vq
        } else {
            &mut more_vqs.iter_mut().find(|(i, _)| *i == queue).unwrap().1
        };
        let head = q.add_chain(guest, &bufs);
        (head, bufs)
    }

    /// Reads back a served chain (used element at ring position `pos`) and unmaps its buffers.
    pub fn finish_raw(&mut self, queue: u16, unique: u64, bufs: &[Buf], pos: u16) -> Reply {
        let mut buf = Vec::new();
        for b in bufs.iter().filter(|b| b.flags & F_WRITE != 0) {
            buf.extend(self.guest.read(b.addr, b.len as usize));
        }
        for b in bufs {
            self.guest.unmap(b.addr, u64::from(b.len));
        }
        let (used_id, used_len) = self.queue(queue).used_elem(&self.guest, pos);
        Reply {
            unique,
            used_id,
            used_len,
            buf,
        }
    }

    /// One chain on `queue`: queue it, NOTIFY, check the one USED, read back.
    pub fn chain(&mut self, queue: u16, unique: u64, parts: &[Vec<u8>], reply: &[u32]) -> Reply {
        let before = self.queue(queue).used_idx(&self.guest);
        let (head, bufs) = self.queue_raw(queue, parts, reply);
        let idx = self.notify_one(queue);
        assert_eq!(idx, before.wrapping_add(1), "USED index");
        let r = self.finish_raw(queue, unique, &bufs, before);
        assert_eq!(r.used_id, u32::from(head), "used id");
        r
    }

    /// One FUSE request on the request queue with `space` bytes for the reply.
    pub fn fuse(&mut self, opcode: u32, nodeid: u64, body: &[u8], space: u32) -> Reply {
        let unique = self.unique();
        let req = FsRig::request(opcode, unique, nodeid, body);
        let q = self.vq_index;
        self.chain(q, unique, &[req], &[space])
    }

    /// FUSE_INIT 7.33 with `flags`; the reply's `InitOut`.
    pub fn init_with(&mut self, flags: u32) -> InitOut {
        let body = raw(InitIn {
            major: 7,
            minor: 33,
            max_readahead: 256 << 10,
            flags,
        });
        let r = self.fuse(op::INIT, 0, &body, 4096);
        obj(r.ok())
    }

    /// Brings the device up and opens a FUSE session asking for READDIRPLUS.
    pub fn mount(&mut self) -> InitOut {
        self.bring_up();
        self.init_with(FUSE_DO_READDIRPLUS)
    }

    pub fn lookup(&mut self, parent: u64, name: &str) -> Reply {
        self.fuse(op::LOOKUP, parent, &cstr(name), 4096)
    }

    /// LOOKUP that must succeed: the entry.
    pub fn entry(&mut self, parent: u64, name: &str) -> EntryOut {
        let r = self.lookup(parent, name);
        obj(r.ok())
    }

    pub fn getattr(&mut self, node: u64) -> Reply {
        // fuse_getattr_in: getattr_flags, dummy, fh.
        self.fuse(op::GETATTR, node, &[0u8; 16], 4096)
    }

    /// GETATTR that must succeed: the attributes.
    pub fn attr(&mut self, node: u64) -> Attr {
        let r = self.getattr(node);
        obj::<AttrOut>(r.ok()).attr
    }

    /// OPEN (or OPENDIR) with the guest's `flags`.
    pub fn open(&mut self, opcode: u32, node: u64, flags: u32) -> Reply {
        let body = raw(OpenIn {
            flags,
            fuse_flags: 0,
        });
        self.fuse(opcode, node, &body, 4096)
    }

    /// OPEN/OPENDIR that must succeed: the file handle.
    pub fn fh(&mut self, opcode: u32, node: u64, flags: u32) -> u64 {
        let r = self.open(opcode, node, flags);
        obj::<OpenOut>(r.ok()).fh
    }

    /// READ (or READDIR/READDIRPLUS) of `size` bytes at `offset`, into `size + 16` bytes.
    pub fn read(
        &mut self,
        opcode: u32,
        node: u64,
        fh: u64,
        offset: u64,
        size: u32,
        flags: u32,
    ) -> Reply {
        let body = raw(ReadIn {
            fh,
            offset,
            size,
            read_flags: 0,
            lock_owner: 0,
            flags,
            padding: 0,
        });
        self.fuse(opcode, node, &body, size + 16)
    }

    /// RELEASE or RELEASEDIR of `fh`.
    pub fn release(&mut self, opcode: u32, node: u64, fh: u64) -> Reply {
        let body = raw(ReleaseIn {
            fh,
            flags: 0,
            release_flags: 0,
            lock_owner: 0,
        });
        self.fuse(opcode, node, &body, 4096)
    }

    /// Every entry of directory `node` (READDIR or READDIRPLUS in chunks of `chunk` bytes).
    pub fn list(&mut self, node: u64, plus: bool, chunk: u32) -> Vec<Dent> {
        let fh = self.fh(op::OPENDIR, node, ppc::O_DIRECTORY | ppc::O_LARGEFILE);
        let opcode = if plus { op::READDIRPLUS } else { op::READDIR };
        let mut all = Vec::new();
        let mut offset = 0;
        loop {
            let r = self.read(opcode, node, fh, offset, chunk, 0);
            let d = dents(r.ok(), plus);
            let Some(last) = d.last() else { break };
            offset = last.off;
            all.extend(d);
        }
        assert_eq!(self.release(op::RELEASEDIR, node, fh).errno(), 0);
        all
    }

    /// A request on the hiprio queue that must not be answered (FORGET, BATCH_FORGET).
    pub fn hiprio(&mut self, opcode: u32, node: u64, body: &[u8]) {
        let unique = self.unique();
        let req = FsRig::request(opcode, unique, node, body);
        let r = self.chain(0, unique, &[req], &[]);
        assert_eq!(r.used_len, 0, "no reply on hiprio");
    }
}
