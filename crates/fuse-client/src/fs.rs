//! A small read-only filesystem API over FUSE: mount (FUSE_INIT), walk paths one component at a
//! time following symlinks (up to [`SYMLINK_LIMIT`]), stat, read files whole or by range with
//! several READs in flight, list directories, statfs, and unmount (DESTROY). Errors carry the
//! path and the errno or what was wrong with the reply.

use crate::proto::{self, Op, ReplyError, ROOT};
use crate::{Call, Queue, Transport};
use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;
use fuse_abi::linux as abi;
use zerocopy::IntoBytes;

/// Symlinks followed in one path walk before ELOOP (Linux's limit).
pub const SYMLINK_LIMIT: usize = 40;
/// Components in one path (after symlinks are expanded).
pub const MAX_COMPONENTS: usize = 256;
/// Largest READ vioboot asks for (what the transport can map at once).
pub const MAX_READ: u32 = 256 << 10;
/// READs in flight for one file.
pub const READS_IN_FLIGHT: usize = 8;
/// Server restarts one streaming read survives.
pub const RESUMES: usize = 8;
/// Nodes that reads may leave looked up before their FORGETs go out, in one batch on the
/// high-priority queue (a file read after another does not wait for a FORGET each time);
/// `stat`, `list_dir` and `unmount` forget every node at once.
pub const FORGET_AFTER: usize = 32;
/// Bytes asked for per READDIR.
const READDIR_BYTES: u32 = 64 << 10;

const S_IFMT: u32 = 0o170000;
const S_IFDIR: u32 = 0o040000;
const S_IFLNK: u32 = 0o120000;
const S_IFREG: u32 = 0o100000;

/// errno values vioboot names (Linux's, which FUSE carries).
pub mod errno {
    pub const ENOENT: i32 = 2;
    pub const EIO: i32 = 5;
    pub const ENOTDIR: i32 = 20;
    pub const EISDIR: i32 = 21;
    pub const EINVAL: i32 = 22;
    pub const EFBIG: i32 = 27;
    pub const ENAMETOOLONG: i32 = 36;
    pub const ELOOP: i32 = 40;

    /// The symbolic name of an errno.
    pub fn name(e: i32) -> &'static str {
        match e {
            1 => "EPERM",
            2 => "ENOENT",
            5 => "EIO",
            9 => "EBADF",
            12 => "ENOMEM",
            13 => "EACCES",
            20 => "ENOTDIR",
            21 => "EISDIR",
            22 => "EINVAL",
            27 => "EFBIG",
            30 => "EROFS",
            36 => "ENAMETOOLONG",
            38 => "ENOSYS",
            40 => "ELOOP",
            _ => "errno",
        }
    }
}

/// What went wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FsErrorKind<E> {
    /// The server (or vioboot's own check) answered with this errno.
    Errno(i32),
    /// A reply that breaks the protocol.
    Reply(ReplyError),
    /// The transport failed (device error, timeout): its own error, as it gave it.
    Transport(E),
    /// Not mounted (no FUSE_INIT yet, or after DESTROY).
    NotMounted,
}

/// An error with the path it concerns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FsError<E> {
    pub path: String,
    pub kind: FsErrorKind<E>,
}

impl<E> FsError<E> {
    pub fn errno(&self) -> Option<i32> {
        match self.kind {
            FsErrorKind::Errno(e) => Some(e),
            _ => None,
        }
    }

    /// The same error with the transport's error turned into another type.
    pub fn map_transport<F>(self, f: impl FnOnce(E) -> F) -> FsError<F> {
        let kind = match self.kind {
            FsErrorKind::Errno(e) => FsErrorKind::Errno(e),
            FsErrorKind::Reply(r) => FsErrorKind::Reply(r),
            FsErrorKind::Transport(t) => FsErrorKind::Transport(f(t)),
            FsErrorKind::NotMounted => FsErrorKind::NotMounted,
        };
        FsError {
            path: self.path,
            kind,
        }
    }
}

impl<E: fmt::Display> fmt::Display for FsError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            FsErrorKind::Errno(e) => write!(f, "{}: {} ({e})", self.path, errno::name(*e)),
            FsErrorKind::Reply(r) => write!(f, "{}: bad reply: {r}", self.path),
            FsErrorKind::Transport(t) => write!(f, "{}: {t}", self.path),
            FsErrorKind::NotMounted => write!(f, "{}: filesystem not mounted", self.path),
        }
    }
}

/// File attributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attr {
    pub ino: u64,
    pub size: u64,
    pub mode: u32,
    pub nlink: u32,
}

impl Attr {
    fn from(a: &abi::fuse_attr) -> Attr {
        Attr {
            ino: a.ino,
            size: a.size,
            mode: a.mode,
            nlink: a.nlink,
        }
    }

    pub fn is_dir(&self) -> bool {
        self.mode & S_IFMT == S_IFDIR
    }

    pub fn is_file(&self) -> bool {
        self.mode & S_IFMT == S_IFREG
    }

    pub fn is_symlink(&self) -> bool {
        self.mode & S_IFMT == S_IFLNK
    }
}

/// A directory entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    pub name: String,
    pub ino: u64,
    /// DT_* type (4 directory, 8 regular, 10 symlink).
    pub kind: u32,
}

/// What FUSE_INIT settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InitInfo {
    pub major: u32,
    pub minor: u32,
    pub max_write: u32,
    pub readdirplus: bool,
}

/// Counters, for reports and the benchmark.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FsStats {
    pub requests: u64,
    pub forgets: u64,
    pub bytes_read: u64,
}

/// A mounted virtio-fs share.
pub struct Fs<T: Transport> {
    t: T,
    unique: u64,
    init: Option<InitInfo>,
    /// Node ids looked up and not yet forgotten: (node, lookups).
    to_forget: Vec<(u64, u64)>,
    /// The transport's restart count when FUSE_INIT last succeeded.
    session: u64,
    pub stats: FsStats,
}

type R<T, E> = Result<T, FsError<E>>;

fn err<E>(path: &str, kind: FsErrorKind<E>) -> FsError<E> {
    FsError {
        path: path.to_string(),
        kind,
    }
}

impl<T: Transport> Fs<T> {
    pub fn new(t: T) -> Fs<T> {
        Fs {
            t,
            unique: 0,
            init: None,
            to_forget: Vec::new(),
            session: 0,
            stats: FsStats::default(),
        }
    }

    pub fn transport(&mut self) -> &mut T {
        &mut self.t
    }

    pub fn transport_ref(&self) -> &T {
        &self.t
    }

    /// The transport back (after [`unmount`](Self::unmount)).
    pub fn into_transport(self) -> T {
        self.t
    }

    pub fn info(&self) -> Option<InitInfo> {
        self.init
    }

    fn next_unique(&mut self) -> u64 {
        self.unique += 1;
        self.unique
    }

    /// One request with `room` bytes for the reply body; returns the checked body.
    fn call<O: Op>(
        &mut self,
        path: &str,
        nodeid: u64,
        body: &[u8],
        tail: &[u8],
        room: usize,
    ) -> R<Vec<u8>, T::Error> {
        if self.init.is_none() && O::OPCODE != abi::fuse_opcode::FUSE_INIT {
            return Err(err(path, FsErrorKind::NotMounted));
        }
        if O::OPCODE != abi::fuse_opcode::FUSE_INIT && self.t.restarts() != self.session {
            // The server restarted: its FUSE session (nodes, handles) is gone. Start a new one;
            // node ids looked up before mean nothing to it.
            self.to_forget.clear();
            self.mount()?;
        }
        let unique = self.next_unique();
        let mut c = [Call {
            request: proto::request::<O>(unique, nodeid, body, tail),
            reply: vec![0; proto::OUT_HEADER + room],
            used: 0,
        }];
        self.stats.requests += 1;
        self.t
            .submit(Queue::Request, &mut c)
            .map_err(|e| err(path, FsErrorKind::Transport(e)))?;
        check(path, &c[0], unique)
    }

    /// FUSE_INIT: vioboot reads only, asks for READDIRPLUS, and offers reads up to [`MAX_READ`].
    pub fn mount(&mut self) -> R<InitInfo, T::Error> {
        let inb = abi::fuse_init_in {
            major: abi::FUSE_KERNEL_VERSION,
            minor: abi::FUSE_KERNEL_MINOR_VERSION,
            max_readahead: MAX_READ,
            flags: abi::FUSE_DO_READDIRPLUS,
            flags2: 0,
            unused: [0; 11],
        };
        let b = self.call::<proto::Init>("/", 0, inb.as_bytes(), &[], 64)?;
        let out =
            proto::body::<proto::Init>(&b, 24).map_err(|e| err("/", FsErrorKind::Reply(e)))?;
        if out.major != abi::FUSE_KERNEL_VERSION {
            return Err(err("/", FsErrorKind::Errno(errno::EINVAL)));
        }
        let info = InitInfo {
            major: out.major,
            minor: out.minor,
            max_write: out.max_write,
            readdirplus: out.flags & abi::FUSE_DO_READDIRPLUS != 0,
        };
        self.init = Some(info);
        self.session = self.t.restarts();
        Ok(info)
    }

    /// FORGETs every node looked up since the last call (on the high-priority queue).
    pub fn forget_all(&mut self) -> R<(), T::Error> {
        let nodes = core::mem::take(&mut self.to_forget);
        if self.t.restarts() != self.session {
            // Node ids of a session the server no longer has: nothing to forget there.
            return Ok(());
        }
        let mut calls: Vec<Call> = Vec::new();
        for (node, n) in nodes {
            let unique = self.next_unique();
            let body = abi::fuse_forget_in { nlookup: n };
            calls.push(Call {
                request: proto::request::<Forget>(unique, node, body.as_bytes(), &[]),
                reply: Vec::new(),
                used: 0,
            });
        }
        for chunk in calls.chunks_mut(32) {
            self.stats.forgets += chunk.len() as u64;
            self.t
                .submit(Queue::Hiprio, chunk)
                .map_err(|e| err("/", FsErrorKind::Transport(e)))?;
        }
        Ok(())
    }

    fn remember(&mut self, node: u64) {
        if node == ROOT || node == 0 {
            return;
        }
        match self.to_forget.iter_mut().find(|(n, _)| *n == node) {
            Some((_, c)) => *c += 1,
            None => self.to_forget.push((node, 1)),
        }
    }

    fn lookup(&mut self, path: &str, parent: u64, name: &str) -> R<(u64, Attr), T::Error> {
        if name.len() > proto::NAME_MAX {
            return Err(err(path, FsErrorKind::Errno(errno::ENAMETOOLONG)));
        }
        let mut tail = Vec::from(name.as_bytes());
        tail.push(0);
        let b = self.call::<proto::Lookup>(
            path,
            parent,
            &[],
            &tail,
            core::mem::size_of::<abi::fuse_entry_out>(),
        )?;
        let e = proto::body::<proto::Lookup>(&b, usize::MAX)
            .map_err(|e| err(path, FsErrorKind::Reply(e)))?;
        if e.nodeid == 0 {
            // A negative entry: the name does not exist.
            return Err(err(path, FsErrorKind::Errno(errno::ENOENT)));
        }
        self.remember(e.nodeid);
        Ok((e.nodeid, Attr::from(&e.attr)))
    }

    fn readlink(&mut self, path: &str, node: u64) -> R<String, T::Error> {
        let b = self.call::<proto::Readlink>(path, node, &[], &[], 4096)?;
        String::from_utf8(b).map_err(|_| err(path, FsErrorKind::Errno(errno::EINVAL)))
    }

    /// Resolves `path` (absolute; '/'-separated) to a node, following symlinks.
    pub fn resolve(&mut self, path: &str) -> R<(u64, Attr), T::Error> {
        self.resolve_with(path, true)
    }

    fn resolve_with(&mut self, path: &str, follow_last: bool) -> R<(u64, Attr), T::Error> {
        let mut todo: Vec<String> = split(path).rev().map(String::from).collect();
        // The directories walked so far (node ids), for "..".
        let mut stack: Vec<u64> = Vec::new();
        let mut node = ROOT;
        // `None`: the root, whose attributes are asked for only if the walk ends there. A
        // LOOKUP in it needs no GETATTR first: a root that is no directory fails the LOOKUP.
        let mut attr: Option<Attr> = None;
        let mut links = 0;
        while let Some(comp) = todo.pop() {
            if stack.len() + todo.len() > MAX_COMPONENTS {
                return Err(err(path, FsErrorKind::Errno(errno::ENAMETOOLONG)));
            }
            if attr.is_some_and(|a| !a.is_dir()) {
                return Err(err(path, FsErrorKind::Errno(errno::ENOTDIR)));
            }
            if comp == "." {
                continue;
            }
            if comp == ".." {
                node = stack.pop().unwrap_or(ROOT);
                attr = if node == ROOT {
                    None
                } else {
                    Some(self.getattr(path, node)?)
                };
                continue;
            }
            let (child, cattr) = self.lookup(path, node, &comp)?;
            if cattr.is_symlink() && (follow_last || !todo.is_empty()) {
                links += 1;
                if links > SYMLINK_LIMIT {
                    return Err(err(path, FsErrorKind::Errno(errno::ELOOP)));
                }
                let target = self.readlink(path, child)?;
                if target.is_empty() {
                    return Err(err(path, FsErrorKind::Errno(errno::ENOENT)));
                }
                if target.starts_with('/') {
                    stack.clear();
                    node = ROOT;
                    attr = None;
                }
                todo.extend(split(&target).rev().map(String::from));
                continue;
            }
            stack.push(node);
            node = child;
            attr = Some(cattr);
        }
        let attr = match attr {
            Some(a) => a,
            None => self.getattr(path, ROOT)?,
        };
        Ok((node, attr))
    }

    fn getattr(&mut self, path: &str, node: u64) -> R<Attr, T::Error> {
        let inb = abi::fuse_getattr_in {
            getattr_flags: 0,
            dummy: 0,
            fh: 0,
        };
        let b = self.call::<proto::Getattr>(
            path,
            node,
            inb.as_bytes(),
            &[],
            core::mem::size_of::<abi::fuse_attr_out>(),
        )?;
        let a = proto::body::<proto::Getattr>(&b, usize::MAX)
            .map_err(|e| err(path, FsErrorKind::Reply(e)))?;
        Ok(Attr::from(&a.attr))
    }

    /// Attributes of `path` (symlinks followed).
    pub fn stat(&mut self, path: &str) -> R<Attr, T::Error> {
        self.retrying(|fs| {
            let r = fs.resolve(path).map(|(_, a)| a);
            fs.forget_all()?;
            r
        })
    }

    /// Runs `op`, and once more if the server restarted during it (the new session answers
    /// requests of the old one with errors; `call` starts the new session).
    fn retrying<V>(&mut self, mut op: impl FnMut(&mut Self) -> R<V, T::Error>) -> R<V, T::Error> {
        let before = self.t.restarts();
        match op(self) {
            Err(_) if self.t.restarts() != before => op(self),
            r => r,
        }
    }

    fn open<O: Op>(&mut self, path: &str, node: u64) -> R<u64, T::Error> {
        // O_RDONLY: the one open flag whose value every architecture agrees on.
        let inb = abi::fuse_open_in {
            flags: 0,
            open_flags: 0,
        };
        let b = self.call::<O>(
            path,
            node,
            inb.as_bytes(),
            &[],
            core::mem::size_of::<abi::fuse_open_out>(),
        )?;
        let o = proto::body::<proto::Open>(&b, usize::MAX)
            .map_err(|e| err(path, FsErrorKind::Reply(e)))?;
        Ok(o.fh)
    }

    fn release<O: Op>(&mut self, path: &str, node: u64, fh: u64) -> R<(), T::Error> {
        let inb = abi::fuse_release_in {
            fh,
            flags: 0,
            release_flags: 0,
            lock_owner: 0,
        };
        self.call::<O>(path, node, inb.as_bytes(), &[], 0)
            .map(|_| ())
    }

    /// Reads `len` bytes of `path` from `offset` (fewer at the end of the file).
    pub fn read_range(&mut self, path: &str, offset: u64, len: u64) -> R<Vec<u8>, T::Error> {
        let mut v = Vec::new();
        self.read_stream(path, Some((offset, len)), &mut |piece| {
            v.extend_from_slice(piece)
        })?;
        Ok(v)
    }

    /// Reads the whole of `path`; `progress` sees the bytes read so far.
    pub fn read_file(&mut self, path: &str, progress: &mut dyn FnMut(u64)) -> R<Vec<u8>, T::Error> {
        let mut v = Vec::new();
        self.read_stream(path, None, &mut |piece| {
            v.extend_from_slice(piece);
            progress(v.len() as u64);
        })?;
        Ok(v)
    }

    /// Reads `path` (or a range of it) and hands each piece to `sink` in order, without keeping
    /// the file in memory. The nodes looked up are forgotten once [`FORGET_AFTER`] are
    /// pending (or by the next `stat`, `list_dir`, `forget_all` or `unmount`). Returns the file's size and the bytes read. When the server restarts
    /// in the middle, the read goes on in the new session from the first byte the sink has not
    /// had (at most [`RESUMES`] times).
    pub fn read_stream(
        &mut self,
        path: &str,
        range: Option<(u64, u64)>,
        sink: &mut dyn FnMut(&[u8]),
    ) -> R<(u64, u64), T::Error> {
        let (start, want) = range.unwrap_or((0, u64::MAX));
        let delivered = core::cell::Cell::new(0u64);
        let mut resumes = 0;
        loop {
            let before = self.t.restarts();
            let done = delivered.get();
            let rest = (start.saturating_add(done), want.saturating_sub(done));
            let r = self.read_inner(path, Some(rest), &mut |piece: &[u8]| {
                delivered.set(delivered.get() + piece.len() as u64);
                sink(piece)
            });
            let f = if self.to_forget.len() >= FORGET_AFTER {
                self.forget_all()
            } else {
                Ok(())
            };
            match r.and_then(|(size, _)| f.map(|_| size)) {
                Ok(size) => return Ok((size, delivered.get())),
                Err(_) if self.t.restarts() != before && resumes < RESUMES => resumes += 1,
                Err(e) => return Err(e),
            }
        }
    }

    fn read_inner(
        &mut self,
        path: &str,
        range: Option<(u64, u64)>,
        sink: &mut dyn FnMut(&[u8]),
    ) -> R<(u64, u64), T::Error> {
        let (node, attr) = self.resolve(path)?;
        if attr.is_dir() {
            return Err(err(path, FsErrorKind::Errno(errno::EISDIR)));
        }
        let (offset, want) = range.unwrap_or((0, attr.size));
        let end = offset.saturating_add(want).min(attr.size);
        let total = end.saturating_sub(offset);
        if total > (1 << 32) {
            return Err(err(path, FsErrorKind::Errno(errno::EFBIG)));
        }
        let fh = self.open::<proto::Open>(path, node)?;
        let mut released = None;
        let r = self.read_fh(path, node, fh, offset, total, sink, &mut released);
        // The RELEASE went out with the last READs, unless the reads stopped before them.
        let rel = match released {
            Some(rel) => rel,
            None => self.release::<proto::Release>(path, node, fh),
        };
        let n = r?;
        rel.map(|_| (attr.size, n))
    }

    /// Reads `total` bytes from `offset` of the open file `fh` into `sink`. The last batch of
    /// READs carries the file's RELEASE too (the server serves a batch in order): its checked
    /// outcome is left in `released`.
    #[allow(clippy::too_many_arguments)] // one open file's read, and where its RELEASE went
    fn read_fh(
        &mut self,
        path: &str,
        node: u64,
        fh: u64,
        offset: u64,
        total: u64,
        sink: &mut dyn FnMut(&[u8]),
        released: &mut Option<R<(), T::Error>>,
    ) -> R<u64, T::Error> {
        let mut done = 0u64;
        let mut next = offset;
        let end = offset + total;
        while next < end {
            // Up to READS_IN_FLIGHT reads of MAX_READ bytes at once.
            let mut calls = Vec::new();
            let mut asked = Vec::new();
            while calls.len() < READS_IN_FLIGHT && next < end {
                let size = (end - next).min(u64::from(MAX_READ)) as u32;
                let unique = self.next_unique();
                let inb = abi::fuse_read_in {
                    fh,
                    offset: next,
                    size,
                    read_flags: 0,
                    lock_owner: 0,
                    flags: 0,
                    padding: 0,
                };
                calls.push(Call {
                    request: proto::request::<proto::Read>(unique, node, inb.as_bytes(), &[]),
                    reply: vec![0; proto::OUT_HEADER + size as usize],
                    used: 0,
                });
                asked.push((unique, size));
                next += u64::from(size);
            }
            let release = (next >= end).then(|| {
                let unique = self.next_unique();
                let inb = abi::fuse_release_in {
                    fh,
                    flags: 0,
                    release_flags: 0,
                    lock_owner: 0,
                };
                calls.push(Call {
                    request: proto::request::<proto::Release>(unique, node, inb.as_bytes(), &[]),
                    reply: vec![0; proto::OUT_HEADER],
                    used: 0,
                });
                unique
            });
            self.stats.requests += calls.len() as u64;
            let sent = self.t.submit(Queue::Request, &mut calls);
            // A batch the transport failed leaves `released` empty: the caller sends RELEASE
            // on its own, as after any failed read.
            if let (Some(unique), Ok(())) = (release, &sent) {
                *released = Some(
                    calls
                        .last()
                        .map_or(Ok(()), |c| check(path, c, unique).map(|_| ())),
                );
            }
            sent.map_err(|e| err(path, FsErrorKind::Transport(e)))?;
            for (c, (unique, size)) in calls.iter().zip(asked) {
                let b = reply_body(path, c, unique)?;
                if b.len() > size as usize {
                    return Err(err(
                        path,
                        FsErrorKind::Reply(ReplyError::BodyTooShort {
                            opcode: 15,
                            need: size as usize,
                            got: b.len(),
                        }),
                    ));
                }
                sink(b);
                done += b.len() as u64;
                self.stats.bytes_read += b.len() as u64;
                if b.len() < size as usize {
                    // The file ended early (it shrank): stop here.
                    return Ok(done);
                }
            }
        }
        Ok(done)
    }

    /// The entries of directory `path`, without "." and "..".
    pub fn list_dir(&mut self, path: &str) -> R<Vec<DirEntry>, T::Error> {
        self.retrying(|fs| {
            let r = fs.list_inner(path);
            let f = fs.forget_all();
            let v = r?;
            f.map(|_| v)
        })
    }

    fn list_inner(&mut self, path: &str) -> R<Vec<DirEntry>, T::Error> {
        let (node, attr) = self.resolve(path)?;
        if !attr.is_dir() {
            return Err(err(path, FsErrorKind::Errno(errno::ENOTDIR)));
        }
        let plus = self.init.is_some_and(|i| i.readdirplus);
        let fh = self.open::<proto::Opendir>(path, node)?;
        let mut out = Vec::new();
        let r = (|| {
            let mut offset = 0u64;
            loop {
                let inb = abi::fuse_read_in {
                    fh,
                    offset,
                    size: READDIR_BYTES,
                    read_flags: 0,
                    lock_owner: 0,
                    flags: 0,
                    padding: 0,
                };
                let b = if plus {
                    self.call::<proto::Readdirplus>(
                        path,
                        node,
                        inb.as_bytes(),
                        &[],
                        READDIR_BYTES as usize,
                    )?
                } else {
                    self.call::<proto::Readdir>(
                        path,
                        node,
                        inb.as_bytes(),
                        &[],
                        READDIR_BYTES as usize,
                    )?
                };
                if b.is_empty() {
                    return Ok(());
                }
                let ents =
                    proto::dirents(&b, plus).map_err(|e| err(path, FsErrorKind::Reply(e)))?;
                let last = ents.last().map(|e| e.off);
                for e in ents {
                    if let Some(en) = e.entry {
                        self.remember(en.nodeid);
                    }
                    if e.name == b"." || e.name == b".." {
                        continue;
                    }
                    let name = core::str::from_utf8(e.name).map_err(|_| {
                        err(
                            path,
                            FsErrorKind::Reply(ReplyError::BadDirent {
                                at: 0,
                                why: "name is not UTF-8",
                            }),
                        )
                    })?;
                    out.push(DirEntry {
                        name: name.to_string(),
                        ino: e.ino,
                        kind: e.kind,
                    });
                }
                match last {
                    // An offset that does not advance would loop forever.
                    Some(o) if o > offset => offset = o,
                    _ => {
                        return Err(err(
                            path,
                            FsErrorKind::Reply(ReplyError::BadDirent {
                                at: 0,
                                why: "directory offset does not advance",
                            }),
                        ))
                    }
                }
                if out.len() > 1_000_000 {
                    return Err(err(path, FsErrorKind::Errno(errno::EFBIG)));
                }
            }
        })();
        let rel = self.release::<proto::Releasedir>(path, node, fh);
        r?;
        rel.map(|_| out)
    }

    /// Filesystem statistics: (blocks, free blocks, block size, files).
    pub fn statfs(&mut self) -> R<(u64, u64, u32, u64), T::Error> {
        let b = self.call::<proto::Statfs>(
            "/",
            ROOT,
            &[],
            &[],
            core::mem::size_of::<abi::fuse_statfs_out>(),
        )?;
        let s = proto::body::<proto::Statfs>(&b, usize::MAX)
            .map_err(|e| err("/", FsErrorKind::Reply(e)))?;
        Ok((s.st.blocks, s.st.bfree, s.st.bsize, s.st.files))
    }

    /// FUSE_DESTROY: forgets what is left and unmounts.
    pub fn unmount(&mut self) -> R<(), T::Error> {
        self.forget_all()?;
        let r = self
            .call::<proto::Destroy>("/", ROOT, &[], &[], 0)
            .map(|_| ());
        self.init = None;
        r
    }
}

/// FORGET has no reply and is not a request-queue operation.
struct Forget;

impl Op for Forget {
    const OPCODE: abi::fuse_opcode = abi::fuse_opcode::FUSE_FORGET;
    type Out = proto::Empty;
}

fn split(path: &str) -> impl DoubleEndedIterator<Item = &str> {
    path.split('/').filter(|c| !c.is_empty())
}

/// Checks one completed call's reply.
fn check<E>(path: &str, c: &Call, unique: u64) -> R<Vec<u8>, E> {
    reply_body(path, c, unique).map(Vec::from)
}

/// Checks one completed call's reply; its body where it lies, not copied.
fn reply_body<'a, E>(path: &str, c: &'a Call, unique: u64) -> R<&'a [u8], E> {
    match proto::reply(&c.reply, c.used, unique) {
        Ok(b) => Ok(b),
        Err(Ok(e)) => Err(err(path, FsErrorKind::Errno(e))),
        Err(Err(r)) => Err(err(path, FsErrorKind::Reply(r))),
    }
}
