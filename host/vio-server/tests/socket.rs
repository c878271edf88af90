//! The socket partner and the `vio-server` binary against a fake QEMU: a listener speaking
//! `docs/vio-socket.md` whose guest memory, TCEs and CRQ are a `FakeGuest`.

mod common;

use common::*;
use papr::crq::{Entry, ENTRY_LEN};
use papr::tce::{TCE_READ, TCE_WRITE};
use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};
use vio_server::partner::socket::frame;
use vio_server::partner::Rdma;
use vio_server::{Event, FakeGuest, Partner, PartnerError, SocketPartner};
use virtio_vio::header::{self, Header};
use virtio_vio::msg::{Message, Opcode, Status};

const DEADLINE: Duration = Duration::from_secs(10);

fn sock_path(name: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!("vio-server-{name}-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&p);
    p
}

fn write_frame(s: &mut UnixStream, kind: u32, payload: &[u8]) {
    let mut b = kind.to_le_bytes().to_vec();
    b.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    b.extend_from_slice(payload);
    s.write_all(&b).unwrap();
}

/// Reads one frame; `None` at EOF.
fn read_frame(s: &mut UnixStream) -> Option<(u32, Vec<u8>)> {
    let mut h = [0u8; 8];
    s.read_exact(&mut h).ok()?;
    let len = u32::from_le_bytes(h[4..8].try_into().unwrap()) as usize;
    let mut p = vec![0u8; len];
    s.read_exact(&mut p).ok()?;
    Some((u32::from_le_bytes(h[..4].try_into().unwrap()), p))
}

fn hello(flags: u32) -> Vec<u8> {
    let mut p = Vec::new();
    for v in [1u32, 0x7100_0010, 0x7100_0010, flags] {
        p.extend_from_slice(&v.to_le_bytes());
    }
    p.extend_from_slice(&0u64.to_le_bytes());
    p.extend_from_slice(&WINDOW.to_le_bytes());
    p.extend_from_slice(&[0xAA; 8]); // a longer HELLO must be accepted
    p
}

fn le64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

fn result(tag: u64, status: i64) -> Vec<u8> {
    [tag.to_le_bytes(), status.to_le_bytes()].concat()
}

fn wait_event(p: &mut SocketPartner) -> Event {
    let start = Instant::now();
    loop {
        if let Some(ev) = p.next_event(Duration::from_millis(100)) {
            return ev;
        }
        assert!(start.elapsed() < DEADLINE, "no event");
    }
}

#[test]
fn connects_late_buffers_unsolicited_frames_splits_rdma_and_reconnects() {
    let path = sock_path("partner");
    let mut p = SocketPartner::new(&path);
    assert_eq!(
        p.next_event(Duration::from_millis(50)),
        None,
        "no socket yet"
    );
    let qpath = path.clone();
    let qemu = thread::spawn(move || {
        thread::sleep(Duration::from_millis(250));
        let l = UnixListener::bind(&qpath).unwrap();
        let (mut s, _) = l.accept().unwrap();
        write_frame(&mut s, frame::HELLO, &hello(0));
        // RDMA_READ of 1.5 MiB arrives as 1 MiB + 0.5 MiB; before the first reply the guest
        // sends an entry and the machine resets.
        let (k, r1) = read_frame(&mut s).unwrap();
        assert_eq!(
            (
                k,
                le64(&r1, 8),
                u32::from_le_bytes(r1[16..20].try_into().unwrap())
            ),
            (frame::RDMA_READ, 0x4000, 0x10_0000)
        );
        write_frame(
            &mut s,
            frame::GUEST_CRQ,
            &[0xC0, 0x01, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8],
        );
        write_frame(&mut s, frame::GUEST_EVENT, &4u32.to_le_bytes());
        write_frame(&mut s, frame::GUEST_EVENT, &2u32.to_le_bytes());
        write_frame(
            &mut s,
            frame::READ_DATA,
            &[result(le64(&r1, 0), 0), vec![0x11; 0x10_0000]].concat(),
        );
        let (k, r2) = read_frame(&mut s).unwrap();
        assert_eq!(
            (
                k,
                le64(&r2, 8),
                u32::from_le_bytes(r2[16..20].try_into().unwrap())
            ),
            (frame::RDMA_READ, 0x10_4000, 0x8_0000)
        );
        write_frame(
            &mut s,
            frame::READ_DATA,
            &[result(le64(&r2, 0), 0), vec![0x22; 0x8_0000]].concat(),
        );
        // RDMA_WRITE of 1.5 MiB: the second half is refused.
        let (k, w1) = read_frame(&mut s).unwrap();
        assert_eq!((k, w1.len()), (frame::RDMA_WRITE, 24 + 0x10_0000));
        write_frame(&mut s, frame::RESULT, &result(le64(&w1, 0), 0));
        let (k, w2) = read_frame(&mut s).unwrap();
        assert_eq!(
            (k, w2.len(), le64(&w2, 8)),
            (frame::RDMA_WRITE, 24 + 0x8_0000, 0x10_0000)
        );
        write_frame(&mut s, frame::RESULT, &result(le64(&w2, 0), -14));
        // A failed read returns no data.
        let (_, r3) = read_frame(&mut s).unwrap();
        write_frame(&mut s, frame::READ_DATA, &result(le64(&r3, 0), -14));
        // SEND_CRQ: the entry is carried raw.
        let (k, c) = read_frame(&mut s).unwrap();
        assert_eq!((k, &c[8..10]), (frame::SEND_CRQ, &[0xC0, 0x02][..]));
        write_frame(&mut s, frame::RESULT, &result(le64(&c, 0), 2));
        drop(s); // QEMU drops the connection ...
        let (mut s, _) = l.accept().unwrap(); // ... and takes the next one.
        write_frame(&mut s, frame::HELLO, &hello(1));
        // An unknown frame type with a tag is ignored, not an error.
        write_frame(&mut s, 0x7F, &[0; 8]);
        let (k, c) = read_frame(&mut s).unwrap();
        assert_eq!(k, frame::SEND_CRQ);
        write_frame(&mut s, frame::RESULT, &result(le64(&c, 0), 0));
        // A reply with the wrong tag is a protocol error: the server drops us.
        let (_, c) = read_frame(&mut s).unwrap();
        write_frame(&mut s, frame::RESULT, &result(le64(&c, 0) + 5, 0));
        assert!(read_frame(&mut s).is_none(), "connection not dropped");
        let _ = std::fs::remove_file(&qpath);
    });
    let Event::Connected(h) = wait_event(&mut p) else {
        panic!("no HELLO")
    };
    assert_eq!(
        (h.unit_address, h.window_ioba, h.window_size, h.flags),
        (0x7100_0010, 0, WINDOW, 0)
    );
    let mut buf = vec![0u8; 0x18_0000];
    p.rdma_read(0x4000, &mut buf).unwrap();
    assert!(
        buf[..0x10_0000].iter().all(|&b| b == 0x11) && buf[0x10_0000..].iter().all(|&b| b == 0x22)
    );
    assert_eq!(p.rdma_write(0, &buf), Err(PartnerError::Status(-14)));
    assert_eq!(
        p.rdma_read(0x9000, &mut [0; 8]),
        Err(PartnerError::Status(-14))
    );
    assert_eq!(p.send_crq(Entry::init(true)), Err(PartnerError::Status(2)));
    // The frames that came in between, in order (GUEST_EVENT kind 2 is reserved: ignored).
    let Event::GuestCrq(e) = wait_event(&mut p) else {
        panic!()
    };
    assert_eq!(e[..2], [0xC0, 0x01]);
    assert_eq!(wait_event(&mut p), Event::Reset);
    assert_eq!(wait_event(&mut p), Event::Disconnected);
    let Event::Connected(h) = wait_event(&mut p) else {
        panic!("no reconnect")
    };
    assert_eq!(h.flags, 1);
    assert_eq!(p.send_crq(Entry::init(false)), Ok(()));
    assert_eq!(
        p.send_crq(Entry::init(false)),
        Err(PartnerError::Disconnected)
    );
    assert_eq!(wait_event(&mut p), Event::Disconnected);
    qemu.join().unwrap();
}

#[test]
fn a_batch_of_rdma_is_sent_whole_before_the_first_reply_and_each_op_has_its_result() {
    let path = sock_path("batch");
    let l = UnixListener::bind(&path).unwrap();
    let qemu = thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        write_frame(&mut s, frame::HELLO, &hello(0));
        // Every request of the batch arrives before QEMU has answered any.
        let frames: Vec<(u32, Vec<u8>)> = (0..3).map(|_| read_frame(&mut s).unwrap()).collect();
        let kinds: Vec<(u32, u64)> = frames.iter().map(|(k, p)| (*k, le64(p, 8))).collect();
        assert_eq!(
            kinds,
            [
                (frame::RDMA_READ, 0x1000),
                (frame::RDMA_WRITE, 0x2000),
                (frame::RDMA_READ, 0x3000)
            ]
        );
        assert_eq!(&frames[1].1[24..], &[7u8; 16][..], "the write's bytes");
        write_frame(
            &mut s,
            frame::READ_DATA,
            &[result(le64(&frames[0].1, 0), 0), vec![0x33; 32]].concat(),
        );
        // The write is refused; the read after it still goes through.
        write_frame(&mut s, frame::RESULT, &result(le64(&frames[1].1, 0), -14));
        write_frame(
            &mut s,
            frame::READ_DATA,
            &[result(le64(&frames[2].1, 0), 0), vec![0x44; 8]].concat(),
        );
        // A batch cut off by the connection: what is not answered is lost with it.
        let _ = read_frame(&mut s).unwrap();
        let _ = read_frame(&mut s).unwrap();
    });
    let mut p = SocketPartner::new(&path);
    assert!(matches!(wait_event(&mut p), Event::Connected(_)));
    let (mut a, mut c) = ([0u8; 32], [0u8; 8]);
    let data = [7u8; 16];
    let mut ops = [
        Rdma::Read {
            ioba: 0x1000,
            buf: &mut a,
        },
        Rdma::Write {
            ioba: 0x2000,
            data: &data,
        },
        Rdma::Read {
            ioba: 0x3000,
            buf: &mut c,
        },
    ];
    assert_eq!(
        p.rdma_batch(&mut ops),
        [Ok(()), Err(PartnerError::Status(-14)), Ok(())]
    );
    assert!(a.iter().all(|&b| b == 0x33) && c.iter().all(|&b| b == 0x44));
    let mut ops = [
        Rdma::Write {
            ioba: 0x2000,
            data: &data,
        },
        Rdma::Write {
            ioba: 0x2000,
            data: &data,
        },
    ];
    assert_eq!(
        p.rdma_batch(&mut ops),
        [
            Err(PartnerError::Disconnected),
            Err(PartnerError::Disconnected)
        ]
    );
    qemu.join().unwrap();
    let _ = std::fs::remove_file(&path);
}

#[test]
fn an_oversized_frame_from_qemu_drops_the_connection() {
    let path = sock_path("oversized");
    let l = UnixListener::bind(&path).unwrap();
    let mut p = SocketPartner::new(&path);
    let qemu = thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        write_frame(&mut s, frame::HELLO, &hello(0));
        s.write_all(&[frame::GUEST_CRQ as u8, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0x7F])
            .unwrap();
        assert!(read_frame(&mut s).is_none());
    });
    assert!(matches!(wait_event(&mut p), Event::Connected(_)));
    assert_eq!(wait_event(&mut p), Event::Disconnected);
    qemu.join().unwrap();
    let _ = std::fs::remove_file(&path);
}

/// A fake QEMU: the socket's QEMU end in front of a `FakeGuest`.
struct FakeQemu {
    listener: UnixListener,
    s: Option<UnixStream>,
    guest: FakeGuest,
    /// Every SEND_CRQ status answered, in order.
    send_results: Vec<i64>,
}

impl FakeQemu {
    fn new(path: &Path) -> FakeQemu {
        let listener = UnixListener::bind(path).unwrap();
        FakeQemu {
            listener,
            s: None,
            guest: FakeGuest::new(0, WINDOW),
            send_results: Vec::new(),
        }
    }

    fn accept(&mut self) {
        let (mut s, _) = self.listener.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        write_frame(&mut s, frame::HELLO, &hello(u32::from(self.guest.crq_open)));
        self.s = Some(s);
    }

    /// Answers one request of the server if one comes within 50 ms; false at EOF.
    fn pump(&mut self) -> bool {
        let s = self.s.as_mut().unwrap();
        let mut h = [0u8; 8];
        match s.read(&mut h[..1]) {
            Ok(0) => return false,
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return true
            }
            Err(_) => return false,
        }
        s.set_read_timeout(None).unwrap();
        s.read_exact(&mut h[1..]).unwrap();
        let len = u32::from_le_bytes(h[4..8].try_into().unwrap()) as usize;
        let mut p = vec![0u8; len];
        s.read_exact(&mut p).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        let kind = u32::from_le_bytes(h[..4].try_into().unwrap());
        let tag = le64(&p, 0);
        let status = |r: Result<(), PartnerError>| match r {
            Ok(()) => 0,
            Err(PartnerError::Status(s)) => s,
            Err(PartnerError::Disconnected) => unreachable!(),
        };
        let (rk, reply) = match kind {
            frame::SEND_CRQ => {
                let st = status(self.guest.send_crq(p[8..24].try_into().unwrap()));
                self.send_results.push(st);
                (frame::RESULT, result(tag, st))
            }
            frame::RDMA_READ => {
                let n = u32::from_le_bytes(p[16..20].try_into().unwrap()) as usize;
                let mut data = vec![0u8; n];
                match status(self.guest.rdma_read(le64(&p, 8), &mut data)) {
                    0 => (frame::READ_DATA, [result(tag, 0), data].concat()),
                    st => (frame::READ_DATA, result(tag, st)),
                }
            }
            frame::RDMA_WRITE => (
                frame::RESULT,
                result(tag, status(self.guest.rdma_write(le64(&p, 8), &p[24..]))),
            ),
            k => panic!("frame type {k:#x} from the server"),
        };
        write_frame(self.s.as_mut().unwrap(), rk, &reply);
        true
    }

    /// Pumps until `done` holds.
    fn until(&mut self, mut done: impl FnMut(&mut FakeQemu) -> bool) {
        let start = Instant::now();
        while !done(self) {
            assert!(self.pump(), "server closed the connection");
            assert!(start.elapsed() < DEADLINE, "timed out");
        }
    }

    /// The guest's H_SEND_CRQ; returns the entries the server sent into the guest's CRQ until
    /// `n` arrived.
    fn guest_send(&mut self, e: [u8; ENTRY_LEN], n: usize) -> Vec<[u8; ENTRY_LEN]> {
        write_frame(self.s.as_mut().unwrap(), frame::GUEST_CRQ, &e);
        let mut got = Vec::new();
        self.until(|q| {
            got.extend(q.guest.take_crq());
            got.len() >= n
        });
        got
    }

    fn call(&mut self, m: Message) -> Message {
        let r = Message::decode(&self.guest_send(m.encode(), 1)[0]).unwrap();
        assert!(r.response && r.tag == m.tag, "{r:?}");
        r
    }
}

/// The binary, killed on drop.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_server(sock: &Path, disk: &Path, extra: &[&str]) -> Server {
    let child = Command::new(env!("CARGO_BIN_EXE_vio-server"))
        .arg("--socket")
        .arg(sock)
        .arg("--blk")
        .arg(disk)
        .args(extra)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    Server(child)
}

#[test]
fn the_binary_serves_a_guest_reconnects_and_prints_stats_on_sigterm() {
    let path = sock_path("binary");
    let disk = TempDisk::new(64 * 512);
    let mut server = start_server(&path, &disk.path, &["--serial", "e2e", "--log", "debug"]);
    let mut q = FakeQemu::new(&path);
    q.accept();
    // The server's INIT finds no guest CRQ (H_CLOSED); the guest registers and INITs.
    q.until(|q| q.send_results == [2]);
    q.guest.crq_open = true;
    assert_eq!(q.guest_send(Entry::init(false), 1), vec![Entry::init(true)]);
    q.guest.map(HDR, header::LEN as u64, TCE_READ | TCE_WRITE);
    assert_eq!(
        q.call(Message::request(Opcode::Probe, 1, 1, HDR)).status(),
        Some(Status::Ok)
    );
    let h = Header::decode(&q.guest.read(HDR, header::LEN).try_into().unwrap()).unwrap();
    assert_eq!(
        (h.device_id, h.config()[..8].to_vec()),
        (virtio_vio::device_id::BLOCK, 64u64.to_le_bytes().to_vec())
    );
    // Bring the queue up and read sector 7.
    let vq = GuestVq::new(8);
    vq.map(&mut q.guest);
    q.guest.write(SETUP, &vq.setup(0).encode());
    q.guest.map(SETUP, 32, TCE_READ);
    for (tag, op, arg) in [
        (2, Opcode::SetStatus, ACK | DRIVER),
        (3, Opcode::SetFeatures, h.device_features),
        (4, Opcode::SetStatus, ACK | DRIVER | FEATURES_OK),
        (5, Opcode::QueueSetup, SETUP),
        (6, Opcode::SetStatus, ACK | DRIVER | FEATURES_OK | DRIVER_OK),
    ] {
        assert_eq!(
            q.call(Message::request(op, tag, 0, arg)).status(),
            Some(Status::Ok),
            "{}",
            op.name()
        );
    }
    let mut vq = vq;
    let (hdr, data, st) = (BUFFERS, BUFFERS + 0x1000, BUFFERS + 0x2000);
    q.guest.write(hdr, &[T_IN.to_le_bytes(), [0; 4]].concat());
    q.guest.write(hdr + 8, &7u64.to_le_bytes());
    q.guest.map(hdr, 16, TCE_READ);
    q.guest.map(data, 512, TCE_READ | TCE_WRITE);
    q.guest.map(st, 1, TCE_READ | TCE_WRITE);
    vq.add_chain(
        &mut q.guest,
        &[
            Buf {
                addr: hdr,
                len: 16,
                flags: 0,
            },
            Buf {
                addr: data,
                len: 512,
                flags: F_WRITE,
            },
            Buf {
                addr: st,
                len: 1,
                flags: F_WRITE,
            },
        ],
    );
    let used = q.guest_send(Message::request(Opcode::Notify, 7, 0, 0).encode(), 1);
    assert_eq!(
        Message::decode(&used[0]).unwrap(),
        Message::request(Opcode::Used, 0, 0, 1)
    );
    assert_eq!(
        (q.guest.read(st, 1)[0], q.guest.read(data, 512)),
        (S_OK, pattern(7))
    );
    // QEMU drops the connection; the server comes back with a fresh session and INIT.
    q.s = None;
    q.accept();
    q.until(|q| q.guest.take_crq() == vec![Entry::init(false)]);
    // SIGTERM: exit 0 with a stats line.
    let pid = server.0.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let start = Instant::now();
    let status = loop {
        if let Some(st) = server.0.try_wait().unwrap() {
            break st;
        }
        let _ = q.pump();
        assert!(start.elapsed() < DEADLINE, "no exit after SIGTERM");
    };
    let mut err = String::new();
    server
        .0
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(status.success(), "exit {status}: {err}");
    assert!(err.contains("stats: sessions 2"), "{err}");
    assert!(err.contains("INIT COMPLETE"), "{err}");
    let _ = std::fs::remove_file(&path);
}

#[test]
fn the_binary_exits_on_die_mid_request_and_a_restart_resumes() {
    let path = sock_path("die");
    let disk = TempDisk::new(16 * 512);
    let mut q = FakeQemu::new(&path);
    q.guest.crq_open = true;
    fn bring_up(q: &mut FakeQemu, vq: &GuestVq) {
        q.accept();
        // The guest already has a CRQ: the server's INIT arrives; the guest completes.
        q.until(|q| q.guest.take_crq() == vec![Entry::init(false)]);
        write_frame(q.s.as_mut().unwrap(), frame::GUEST_CRQ, &Entry::init(true));
        q.guest.map(HDR, header::LEN as u64, TCE_READ | TCE_WRITE);
        let f = {
            q.call(Message::request(Opcode::Probe, 1, 1, HDR));
            Header::decode(&q.guest.read(HDR, header::LEN).try_into().unwrap())
                .unwrap()
                .device_features
        };
        q.guest.write(SETUP, &vq.setup(0).encode());
        q.guest.map(SETUP, 32, TCE_READ);
        for (op, arg) in [
            (Opcode::SetFeatures, f),
            (Opcode::SetStatus, ACK | DRIVER | FEATURES_OK),
            (Opcode::QueueSetup, SETUP),
            (Opcode::SetStatus, ACK | DRIVER | FEATURES_OK | DRIVER_OK),
        ] {
            assert_eq!(
                q.call(Message::request(op, 9, 0, arg)).status(),
                Some(Status::Ok),
                "{}",
                op.name()
            );
        }
    }
    let mut vq = GuestVq::new(16);
    vq.map(&mut q.guest);
    let mut server = start_server(&path, &disk.path, &["--fault", "die-mid-request"]);
    bring_up(&mut q, &vq);
    for k in 0..2u64 {
        let (hdr, data, st) = (
            BUFFERS + k * 0x10000,
            BUFFERS + k * 0x10000 + 0x1000,
            BUFFERS + k * 0x10000 + 0x2000,
        );
        q.guest.write(hdr, &T_OUT.to_le_bytes());
        q.guest.write(hdr + 8, &k.to_le_bytes());
        q.guest.write(data, &[0xD0 + k as u8; 512]);
        q.guest.map(hdr, 16, TCE_READ);
        q.guest.map(data, 512, TCE_READ);
        q.guest.map(st, 1, TCE_READ | TCE_WRITE);
        vq.add_chain(
            &mut q.guest,
            &[
                Buf {
                    addr: hdr,
                    len: 16,
                    flags: 0,
                },
                Buf {
                    addr: data,
                    len: 512,
                    flags: 0,
                },
                Buf {
                    addr: st,
                    len: 1,
                    flags: F_WRITE,
                },
            ],
        );
    }
    write_frame(
        q.s.as_mut().unwrap(),
        frame::GUEST_CRQ,
        &Message::request(Opcode::Notify, 10, 0, 0).encode(),
    );
    let start = Instant::now();
    let status = loop {
        if let Some(st) = server.0.try_wait().unwrap() {
            break st;
        }
        let _ = q.pump();
        assert!(start.elapsed() < DEADLINE, "the server did not die");
    };
    assert_eq!(status.code(), Some(3));
    assert!(q.guest.take_crq().is_empty(), "no USED");
    assert_eq!(vq.used_idx(&q.guest), 0);
    assert_eq!(disk.contents()[0], 0xD0, "first half performed");
    assert_eq!(disk.contents()[512], pattern(1)[0], "second half not");
    // A new server; the guest replays and re-notifies.
    q.s = None;
    let _server = start_server(&path, &disk.path, &[]);
    bring_up(&mut q, &vq);
    let used = q.guest_send(Message::request(Opcode::Notify, 11, 0, 0).encode(), 1);
    assert_eq!(Message::decode(&used[0]).unwrap().arg64, 2);
    assert_eq!((disk.contents()[0], disk.contents()[512]), (0xD0, 0xD1));
    let _ = std::fs::remove_file(&path);
}
