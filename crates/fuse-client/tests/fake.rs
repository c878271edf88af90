//! The FUSE client against an in-memory FUSE server with fault injection: every reply check,
//! symlinks and loops, deep paths, large directories, multi-request reads, FORGET accounting.

use fuse_abi::linux as abi;
use fuse_client::fs::errno;
use fuse_client::{Call, Fs, FsErrorKind, Queue, ReplyError, Transport};
use std::collections::HashMap;
use zerocopy::{FromBytes, IntoBytes};

enum Node {
    Dir(Vec<(String, u64)>),
    File(Vec<u8>),
    Link(String),
}

#[derive(Default, Clone, Copy, PartialEq)]
enum Fault {
    #[default]
    None,
    ShortReply,
    WrongUnique,
    ErrorReply,
    HugeLen,
    BadErrno,
    DirentOverrun,
    SlashName,
    Silent,
    UsedBeyondBuffer,
}

struct Server {
    nodes: HashMap<u64, Node>,
    next: u64,
    lookups: HashMap<u64, u64>,
    fault: Fault,
    /// Only requests with this opcode get the fault (0: all).
    fault_opcode: u32,
    plus: bool,
    reads: usize,
    max_batch: usize,
    /// Bumped to simulate a server restart: the session is gone until FUSE_INIT.
    restarts: u64,
    initialized: bool,
    /// Restart when this many READs have been served (a server killed mid-stream).
    restart_at_read: Option<usize>,
}

impl Server {
    fn new() -> Server {
        let mut s = Server {
            nodes: HashMap::new(),
            next: 2,
            lookups: HashMap::new(),
            fault: Fault::None,
            fault_opcode: 0,
            plus: true,
            reads: 0,
            max_batch: 0,
            restarts: 0,
            initialized: false,
            restart_at_read: None,
        };
        s.nodes.insert(1, Node::Dir(Vec::new()));
        s
    }

    fn add(&mut self, parent: u64, name: &str, n: Node) -> u64 {
        let id = self.next;
        self.next += 1;
        self.nodes.insert(id, n);
        if let Some(Node::Dir(c)) = self.nodes.get_mut(&parent) {
            c.push((name.to_string(), id));
        }
        id
    }

    fn attr(&self, id: u64) -> abi::fuse_attr {
        let (mode, size) = match &self.nodes[&id] {
            Node::Dir(_) => (0o040755, 0),
            Node::File(d) => (0o100644, d.len() as u64),
            Node::Link(t) => (0o120777, t.len() as u64),
        };
        abi::fuse_attr {
            ino: id,
            size,
            mode,
            nlink: 1,
            ..Default::default()
        }
    }

    fn entry(&self, id: u64) -> abi::fuse_entry_out {
        abi::fuse_entry_out {
            nodeid: id,
            attr: self.attr(id),
            ..Default::default()
        }
    }

    /// Returns (error, body).
    fn handle(&mut self, op: u32, node: u64, body: &[u8]) -> (i32, Vec<u8>) {
        let read_in = || {
            abi::fuse_read_in::read_from_prefix(body)
                .map(|(r, _)| r)
                .unwrap_or_default()
        };
        if op != 26 && !self.initialized {
            return (-errno::EIO, vec![]);
        }
        match op {
            26 => {
                self.initialized = true;
                let out = abi::fuse_init_out {
                    major: 7,
                    minor: 31,
                    max_write: 1 << 20,
                    flags: if self.plus {
                        abi::FUSE_DO_READDIRPLUS
                    } else {
                        0
                    },
                    ..Default::default()
                };
                (0, out.as_bytes().to_vec())
            }
            1 => {
                let name = std::str::from_utf8(&body[..body.len() - 1]).unwrap();
                let Some(Node::Dir(c)) = self.nodes.get(&node) else {
                    return (-errno::ENOTDIR, vec![]);
                };
                match c.iter().find(|(n, _)| n == name) {
                    Some(&(_, id)) => {
                        *self.lookups.entry(id).or_default() += 1;
                        (0, self.entry(id).as_bytes().to_vec())
                    }
                    None => (-errno::ENOENT, vec![]),
                }
            }
            3 => (
                0,
                abi::fuse_attr_out {
                    attr: self.attr(node),
                    ..Default::default()
                }
                .as_bytes()
                .to_vec(),
            ),
            14 | 27 => (
                0,
                abi::fuse_open_out {
                    fh: node * 10,
                    ..Default::default()
                }
                .as_bytes()
                .to_vec(),
            ),
            18 | 29 | 38 => (0, vec![]),
            15 => {
                self.reads += 1;
                let r = read_in();
                let Some(Node::File(d)) = self.nodes.get(&node) else {
                    return (-errno::EISDIR, vec![]);
                };
                let s = (r.offset as usize).min(d.len());
                let e = (s + r.size as usize).min(d.len());
                (0, d[s..e].to_vec())
            }
            5 => match &self.nodes[&node] {
                Node::Link(t) => (0, t.as_bytes().to_vec()),
                _ => (-errno::EINVAL, vec![]),
            },
            17 => (
                0,
                abi::fuse_statfs_out {
                    st: abi::fuse_kstatfs {
                        blocks: 100,
                        bfree: 50,
                        bsize: 4096,
                        files: 7,
                        ..Default::default()
                    },
                }
                .as_bytes()
                .to_vec(),
            ),
            28 | 44 => {
                let r = read_in();
                let Some(Node::Dir(c)) = self.nodes.get(&node) else {
                    return (-errno::ENOTDIR, vec![]);
                };
                let mut out = Vec::new();
                for (i, (name, id)) in c.iter().enumerate().skip(r.offset as usize) {
                    let mut one = Vec::new();
                    if op == 44 {
                        one.extend_from_slice(self.entry(*id).as_bytes());
                    }
                    let namelen = if self.fault == Fault::DirentOverrun {
                        200
                    } else {
                        name.len() as u32
                    };
                    let name = if self.fault == Fault::SlashName {
                        "a/b"
                    } else {
                        name.as_str()
                    };
                    one.extend_from_slice(&id.to_le_bytes());
                    one.extend_from_slice(&(i as u64 + 1).to_le_bytes());
                    one.extend_from_slice(&namelen.to_le_bytes());
                    one.extend_from_slice(&8u32.to_le_bytes());
                    one.extend_from_slice(name.as_bytes());
                    while one.len() % 8 != 0 {
                        one.push(0);
                    }
                    if out.len() + one.len() > r.size as usize {
                        break;
                    }
                    if op == 44 {
                        *self.lookups.entry(*id).or_default() += 1;
                    }
                    out.extend(one);
                }
                (0, out)
            }
            _ => (-38, vec![]),
        }
    }
}

impl Transport for Server {
    type Error = String;

    fn restarts(&self) -> u64 {
        self.restarts
    }

    fn submit(&mut self, queue: Queue, batch: &mut [Call]) -> Result<(), String> {
        self.max_batch = self.max_batch.max(batch.len());
        for c in batch {
            let (h, body) = abi::fuse_in_header::read_from_prefix(&c.request).unwrap();
            assert_eq!(h.len as usize, c.request.len(), "request length");
            if queue == Queue::Hiprio {
                assert_eq!(h.opcode, 2, "only FORGET goes to hiprio");
                let n = abi::fuse_forget_in::read_from_bytes(&body[..8])
                    .unwrap()
                    .nlookup;
                let left = self.lookups.entry(h.nodeid).or_default();
                assert!(
                    *left >= n,
                    "FORGET of {n} lookups of node {} that had {left}",
                    h.nodeid
                );
                *left -= n;
                continue;
            }
            if h.opcode == 15 && self.restart_at_read == Some(self.reads) {
                self.restart_at_read = None;
                self.restarts += 1;
                self.initialized = false;
                self.lookups.clear();
            }
            let faulty = self.fault_opcode == 0 || self.fault_opcode == h.opcode;
            let fault = if faulty { self.fault } else { Fault::None };
            if fault == Fault::Silent {
                return Err("virtio@71000010: queue 1: no answer within 5000 ms".into());
            }
            let (mut error, body) = self.handle(h.opcode, h.nodeid, body);
            let mut unique = h.unique;
            match fault {
                Fault::ErrorReply => error = -errno::EIO,
                Fault::BadErrno => error = -5000,
                Fault::WrongUnique => unique += 1000,
                _ => {}
            }
            let body = if error == 0 { body } else { Vec::new() };
            let mut len = (16 + body.len()) as u32;
            if fault == Fault::HugeLen {
                len = c.reply.len() as u32 + 4096;
            }
            let out = abi::fuse_out_header { len, error, unique };
            let mut reply = out.as_bytes().to_vec();
            if error == 0 {
                reply.extend_from_slice(&body);
            }
            let n = reply.len().min(c.reply.len());
            c.reply[..n].copy_from_slice(&reply[..n]);
            c.used = match fault {
                Fault::ShortReply => 10,
                Fault::UsedBeyondBuffer => c.reply.len() + 100,
                _ => n,
            };
        }
        Ok(())
    }
}

/// / {boot/{vmlinux (300 KiB), initrd (1 MiB + 3)}, link -> boot/vmlinux, abs -> /boot, loop1 -> loop2, loop2 -> loop1, deep/d1/.../d20/leaf, big/ (n files)}
fn tree(big: usize) -> Server {
    let mut s = Server::new();
    let boot = s.add(1, "boot", Node::Dir(vec![]));
    s.add(
        boot,
        "vmlinux",
        Node::File((0..300 * 1024).map(|i| (i * 7 % 251) as u8).collect()),
    );
    s.add(
        boot,
        "initrd",
        Node::File((0..(1 << 20) + 3).map(|i| (i % 13) as u8).collect()),
    );
    s.add(1, "link", Node::Link("boot/vmlinux".into()));
    s.add(1, "abs", Node::Link("/boot".into()));
    s.add(1, "loop1", Node::Link("loop2".into()));
    s.add(1, "loop2", Node::Link("loop1".into()));
    s.add(boot, "up", Node::Link("../boot/initrd".into()));
    let mut d = s.add(1, "deep", Node::Dir(vec![]));
    for i in 1..=20 {
        d = s.add(d, &format!("d{i}"), Node::Dir(vec![]));
    }
    s.add(d, "leaf", Node::File(b"deep leaf\n".to_vec()));
    let b = s.add(1, "big", Node::Dir(vec![]));
    for i in 0..big {
        s.add(b, &format!("file-{i:05}"), Node::File(vec![]));
    }
    s
}

fn mounted(s: Server) -> Fs<Server> {
    let mut fs = Fs::new(s);
    fs.mount().expect("mount");
    fs
}

#[test]
fn reads_files_follows_symlinks_and_forgets_every_lookup() {
    let mut fs = mounted(tree(3));
    let info = fs.info().unwrap();
    assert!(info.readdirplus && info.major == 7);
    let v = fs.read_file("/boot/vmlinux", &mut |_| {}).unwrap();
    assert_eq!(v.len(), 300 * 1024);
    assert!(v.iter().enumerate().all(|(i, b)| *b == (i * 7 % 251) as u8));
    assert_eq!(fs.read_file("/link", &mut |_| {}).unwrap(), v);
    assert_eq!(fs.read_file("/abs/vmlinux", &mut |_| {}).unwrap(), v);
    let i = fs.read_file("/boot/up", &mut |_| {}).unwrap();
    assert_eq!(i.len(), (1 << 20) + 3);
    let want: Vec<u8> = ((1usize << 20) - 2..(1 << 20) + 3)
        .map(|i| (i % 13) as u8)
        .collect();
    assert_eq!(
        fs.read_range("/boot/initrd", (1 << 20) - 2, 100).unwrap(),
        want,
        "the range stops at the end of the file"
    );
    assert_eq!(
        fs.read_file(
            "/deep/d1/d2/d3/d4/d5/d6/d7/d8/d9/d10/d11/d12/d13/d14/d15/d16/d17/d18/d19/d20/leaf",
            &mut |_| {}
        )
        .unwrap(),
        b"deep leaf\n"
    );
    assert!(fs.stat("/boot").unwrap().is_dir());
    assert_eq!(fs.statfs().unwrap(), (100, 50, 4096, 7));
    let s = fs.transport();
    assert!(
        s.lookups.values().all(|&n| n == 0),
        "lookups never forgotten: {:?}",
        s.lookups
    );
    assert!(
        s.max_batch > 1,
        "large reads should have several requests in flight"
    );
}

#[test]
fn reads_leave_forgets_pending_up_to_a_bound_and_forget_all_sends_them() {
    let mut fs = mounted(tree(3));
    for _ in 0..5 {
        fs.read_file("/boot/vmlinux", &mut |_| {}).unwrap();
    }
    // /boot and /boot/vmlinux, looked up five times each, not yet forgotten.
    let pending: Vec<u64> = fs
        .transport()
        .lookups
        .values()
        .copied()
        .filter(|&n| n > 0)
        .collect();
    assert_eq!(pending, [5, 5]);
    fs.forget_all().unwrap();
    assert!(fs.transport().lookups.values().all(|&n| n == 0));
    // Past the bound the FORGETs go out by themselves: the deep path looks up 21 nodes.
    let deep = "/deep/d1/d2/d3/d4/d5/d6/d7/d8/d9/d10/d11/d12/d13/d14/d15/d16/d17/d18/d19/d20/leaf";
    fs.read_file(deep, &mut |_| {}).unwrap();
    fs.read_file("/boot/vmlinux", &mut |_| {}).unwrap();
    assert!(fs.transport().lookups.values().any(|&n| n > 0));
    fs.read_file("/boot/up", &mut |_| {}).unwrap();
    fs.read_file("/boot/initrd", &mut |_| {}).unwrap();
    fs.read_file("/link", &mut |_| {}).unwrap();
    let left = fs.transport().lookups.values().filter(|&&n| n > 0).count();
    assert!(
        left < fuse_client::fs::FORGET_AFTER,
        "{left} nodes still looked up"
    );
}

#[test]
fn errors_name_the_path_and_errno() {
    let mut fs = mounted(tree(0));
    let e = fs.read_file("/boot/missing", &mut |_| {}).unwrap_err();
    assert_eq!(e.errno(), Some(errno::ENOENT));
    assert_eq!(e.to_string(), "/boot/missing: ENOENT (2)");
    assert_eq!(
        fs.read_file("/loop1", &mut |_| {}).unwrap_err().errno(),
        Some(errno::ELOOP)
    );
    assert_eq!(
        fs.read_file("/boot", &mut |_| {}).unwrap_err().errno(),
        Some(errno::EISDIR)
    );
    assert_eq!(
        fs.list_dir("/boot/vmlinux").unwrap_err().errno(),
        Some(errno::ENOTDIR)
    );
    assert_eq!(
        fs.stat("/boot/vmlinux/x").unwrap_err().errno(),
        Some(errno::ENOTDIR)
    );
    assert!(fs.transport().lookups.values().all(|&n| n == 0));
}

#[test]
fn lists_ten_thousand_entries_with_and_without_readdirplus() {
    for plus in [true, false] {
        let mut s = tree(10_000);
        s.plus = plus;
        let mut fs = mounted(s);
        let l = fs.list_dir("/big").unwrap();
        assert_eq!(l.len(), 10_000);
        assert_eq!(l[9_999].name, "file-09999");
        assert!(
            fs.transport().lookups.values().all(|&n| n == 0),
            "READDIRPLUS lookups not forgotten"
        );
    }
}

fn faulty(f: Fault, opcode: u32) -> Fs<Server> {
    let mut fs = mounted(tree(2));
    fs.transport().fault = f;
    fs.transport().fault_opcode = opcode;
    fs
}

#[test]
fn every_bad_reply_is_a_named_error() {
    type Expect = fn(&FsErrorKind<String>) -> bool;
    let cases: [(Fault, u32, Expect); 9] = [
        (Fault::ShortReply, 0, |k| {
            matches!(k, FsErrorKind::Reply(ReplyError::Short { used: 10 }))
        }),
        (Fault::WrongUnique, 0, |k| {
            matches!(k, FsErrorKind::Reply(ReplyError::WrongUnique { .. }))
        }),
        (Fault::ErrorReply, 0, |k| {
            *k == FsErrorKind::Errno(errno::EIO)
        }),
        (Fault::HugeLen, 0, |k| {
            matches!(k, FsErrorKind::Reply(ReplyError::BadLength { .. }))
        }),
        (Fault::BadErrno, 0, |k| {
            matches!(k, FsErrorKind::Reply(ReplyError::BadErrno(-5000)))
        }),
        (Fault::DirentOverrun, 44, |k| {
            matches!(k, FsErrorKind::Reply(ReplyError::BadDirent { .. }))
        }),
        (Fault::SlashName, 44, |k| {
            matches!(
                k,
                FsErrorKind::Reply(ReplyError::BadDirent {
                    why: "name contains '/' or NUL",
                    ..
                })
            )
        }),
        (
            Fault::Silent,
            0,
            |k| matches!(k, FsErrorKind::Transport(t) if t.contains("no answer")),
        ),
        (Fault::UsedBeyondBuffer, 0, |k| {
            matches!(k, FsErrorKind::Reply(ReplyError::BadLength { .. }))
        }),
    ];
    for (f, op, ok) in cases {
        let mut fs = faulty(f, op);
        let r = if op == 44 {
            fs.list_dir("/boot").map(|_| ())
        } else {
            fs.read_file("/boot/vmlinux", &mut |_| {}).map(|_| ())
        };
        let Err(e) = r else {
            panic!("fault {} was accepted", f as u8)
        };
        assert!(ok(&e.kind), "{:?}: got {e:?}", f as u8);
        assert!(e.path.starts_with("/boot"), "{e}");
    }
}

#[test]
fn a_reply_beyond_its_request_size_is_refused() {
    // A READ reply larger than asked for cannot come from an honest server.
    let mut fs = mounted(tree(0));
    let r = fuse_client::proto::reply(&[0u8; 8], 8, 1);
    assert!(matches!(r, Err(Err(ReplyError::Short { .. }))));
    assert!(fs.read_range("/boot/vmlinux", 0, 10).is_ok());
}

#[test]
fn unmount_sends_destroy_and_refuses_later_use() {
    let mut fs = mounted(tree(0));
    fs.unmount().unwrap();
    assert_eq!(fs.stat("/boot").unwrap_err().kind, FsErrorKind::NotMounted);
}

#[test]
fn a_restarted_server_gets_a_new_fuse_session() {
    let mut fs = mounted(tree(0));
    assert!(fs.stat("/boot").unwrap().is_dir());
    // The server restarts: it forgets the session and answers EIO until FUSE_INIT.
    let s = fs.transport();
    s.restarts += 1;
    s.initialized = false;
    s.lookups.clear();
    let v = fs
        .read_file("/boot/vmlinux", &mut |_| {})
        .expect("re-initialized and read");
    assert_eq!(v.len(), 300 * 1024);
    fs.forget_all().unwrap();
    assert!(fs.transport().lookups.values().all(|&n| n == 0));
}

#[test]
fn a_read_cut_off_by_a_restart_resumes_where_it_stopped() {
    let mut fs = mounted(tree(0));
    let want: Vec<u8> = (0..(1 << 20) + 3).map(|i| (i % 13) as u8).collect();
    // Restart after the first batch of READs (8 of 256 KiB would be the whole file: the file
    // is 1 MiB + 3, so four READs, then one): between the two batches.
    fs.transport().restart_at_read = Some(4);
    let mut pieces = 0;
    let v = fs
        .read_file("/boot/initrd", &mut |_| pieces += 1)
        .expect("resumed in the new session");
    assert_eq!(v.len(), want.len());
    assert!(v == want, "the resumed read delivered other bytes");
    assert_eq!(fs.transport().restarts, 1);
    // Every lookup of both sessions is forgotten (a read leaves its FORGETs pending: the
    // old session's are dropped, the new one's go out with forget_all).
    fs.forget_all().unwrap();
    assert!(fs.transport().lookups.values().all(|&n| n == 0));
    // Mid-batch too: restart in the middle of the first batch of a big read.
    let mut fs = mounted(tree(0));
    fs.transport().restart_at_read = Some(2);
    let v = fs.read_file("/boot/initrd", &mut |_| {}).expect("resumed");
    assert!(v == want);
}
