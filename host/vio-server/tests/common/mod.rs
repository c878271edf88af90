//! The guest side for the server's tests: a fake guest (`FakeGuest`) with a split virtqueue
//! built by hand in its memory, driving a `Session` the way vioboot will. `fs` adds a FUSE
//! client for the virtio-fs device.
#![allow(dead_code)] // each test file uses its own part of the fixture

pub mod fs;

use papr::crq::{Entry, ENTRY_LEN};
use papr::tce::{TCE_READ, TCE_WRITE};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use vio_server::{Blk, Device, FakeGuest, Faults, Mirror, Partner, Session, Stats};
use virtio_vio::header::{self, Header};
use virtio_vio::msg::{Message, Opcode, Status};
use virtio_vio::queue::QueueSetup;

pub const WINDOW: u64 = 0x1000_0000;
pub const HDR: u64 = 0x1000;
pub const SETUP: u64 = 0x2000;
pub const DESC: u64 = 0x10000;
pub const AVAIL: u64 = 0x11000;
pub const USED: u64 = 0x12000;
/// Request buffers are allocated from here, a fresh page each.
pub const BUFFERS: u64 = 0x10_0000;

pub const F_NEXT: u16 = 1;
pub const F_WRITE: u16 = 2;
pub const F_INDIRECT: u16 = 4;

pub const ACK: u64 = 1;
pub const DRIVER: u64 = 2;
pub const DRIVER_OK: u64 = 4;
pub const FEATURES_OK: u64 = 8;

// virtio-blk's request types and status bytes, as the crate both sides share defines them.
// Not every test binary that includes this module uses each of them.
#[allow(unused_imports)]
pub use virtio_vio::blk::{S_IOERR, S_OK, S_UNSUPP, T_FLUSH, T_GET_ID, T_IN, T_OUT};

/// A temporary disk image, removed on drop.
pub struct TempDisk {
    pub path: PathBuf,
}

impl TempDisk {
    pub fn new(bytes: usize) -> TempDisk {
        static N: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "vio-server-test-{}-{}.img",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        // A recognizable pattern: byte i of sector s is (s + i) as u8.
        let data: Vec<u8> = (0..bytes).map(|i| ((i / 512) + (i % 512)) as u8).collect();
        std::fs::write(&path, data).unwrap();
        TempDisk { path }
    }

    pub fn contents(&self) -> Vec<u8> {
        std::fs::read(&self.path).unwrap()
    }
}

impl Drop for TempDisk {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The pattern `TempDisk::new` wrote into `sector`.
pub fn pattern(sector: u64) -> Vec<u8> {
    (0..512u64).map(|i| (sector + i) as u8).collect()
}

/// One buffer of a chain the guest builds.
#[derive(Debug, Clone, Copy)]
pub struct Buf {
    pub addr: u64,
    pub len: u32,
    pub flags: u16,
}

/// The guest's split virtqueue, in the fake guest's memory.
pub struct GuestVq {
    pub size: u16,
    pub desc: u64,
    pub avail: u64,
    pub used: u64,
    pub avail_idx: u16,
    pub next_desc: u16,
}

impl GuestVq {
    pub fn new(size: u16) -> GuestVq {
        GuestVq {
            size,
            desc: DESC,
            avail: AVAIL,
            used: USED,
            avail_idx: 0,
            next_desc: 0,
        }
    }

    /// A queue whose descriptor table, available and used rings are the three pages at `base`
    /// (room for up to 256 entries).
    pub fn at(size: u16, base: u64) -> GuestVq {
        GuestVq {
            desc: base,
            avail: base + 0x1000,
            used: base + 0x2000,
            ..GuestVq::new(size)
        }
    }

    pub fn setup(&self, queue: u16) -> QueueSetup {
        QueueSetup {
            queue,
            size: self.size,
            desc: self.desc,
            driver: self.avail,
            device: self.used,
        }
    }

    /// Maps the rings (descriptor table and available ring readable, used ring read/write).
    pub fn map(&self, g: &mut FakeGuest) {
        let (d, a, u) = QueueSetup::part_sizes(self.size);
        g.map(self.desc, d, TCE_READ);
        g.map(self.avail, a, TCE_READ);
        g.map(self.used, u, TCE_READ | TCE_WRITE);
    }

    /// Writes descriptor `i`.
    pub fn put_desc(&self, g: &mut FakeGuest, i: u16, addr: u64, len: u32, flags: u16, next: u16) {
        let mut d = [0u8; 16];
        d[0..8].copy_from_slice(&addr.to_le_bytes());
        d[8..12].copy_from_slice(&len.to_le_bytes());
        d[12..14].copy_from_slice(&flags.to_le_bytes());
        d[14..16].copy_from_slice(&next.to_le_bytes());
        g.write(self.desc + 16 * u64::from(i), &d);
    }

    /// Makes `head` available (without checking it).
    pub fn push_avail(&mut self, g: &mut FakeGuest, head: u16) {
        let slot = self.avail + 4 + 2 * u64::from(self.avail_idx % self.size);
        g.write(slot, &head.to_le_bytes());
        self.avail_idx = self.avail_idx.wrapping_add(1);
        g.write(self.avail + 2, &self.avail_idx.to_le_bytes());
    }

    /// Adds a chain of `bufs` (NEXT flags set here) and makes it available; returns its head.
    pub fn add_chain(&mut self, g: &mut FakeGuest, bufs: &[Buf]) -> u16 {
        let head = self.next_desc;
        for (k, b) in bufs.iter().enumerate() {
            let i = (self.next_desc + k as u16) % self.size;
            let last = k + 1 == bufs.len();
            let next = (i + 1) % self.size;
            let flags = b.flags | if last { 0 } else { F_NEXT };
            self.put_desc(g, i, b.addr, b.len, flags, if last { 0 } else { next });
        }
        self.next_desc = (self.next_desc + bufs.len() as u16) % self.size;
        self.push_avail(g, head);
        head
    }

    pub fn used_idx(&self, g: &FakeGuest) -> u16 {
        g.read_u16(self.used + 2)
    }

    /// Used element at ring position `pos` (taken modulo the size): (id, len).
    pub fn used_elem(&self, g: &FakeGuest, pos: u16) -> (u32, u32) {
        let at = self.used + 4 + 8 * u64::from(pos % self.size);
        (g.read_u32(at), g.read_u32(at + 4))
    }
}

/// Outcome of one virtio-blk request.
#[derive(Debug)]
pub struct BlkResult {
    pub status: u8,
    pub data: Vec<u8>,
    pub used_id: u32,
    pub used_len: u32,
    pub head: u16,
}

/// A fake guest, a device (virtio-blk on a temporary disk by default) and the session between
/// them.
pub struct Rig<D: Device = Blk, B = TempDisk> {
    pub guest: FakeGuest,
    pub session: Option<Session<D>>,
    pub stats: Arc<Stats>,
    pub faults: Faults,
    /// The queue the requests go to, set up as queue `vq_index`.
    pub vq: GuestVq,
    pub vq_index: u16,
    /// Other queues `bring_up` sets up: (queue index, queue).
    pub more_vqs: Vec<(u16, GuestVq)>,
    /// What the device works on: the disk image (virtio-blk), the shared tree (virtio-fs).
    pub disk: B,
    tag: u16,
    next_buf: u64,
}

impl Rig {
    /// A disk of `sectors` sectors; the session is created but not started.
    pub fn new(sectors: usize, read_only: bool, faults: Faults) -> Rig {
        let disk = TempDisk::new(sectors * 512);
        let stats = Arc::new(Stats::default());
        let blk = Blk::open(&disk.path, read_only, Some("vioboot-disk-0"), stats.clone()).unwrap();
        Rig::with_device(blk, disk, faults, stats)
    }
}

impl<D: Device, B> Rig<D, B> {
    /// A rig for `device` (working on `disk`); the session is created but not started.
    pub fn with_device(device: D, disk: B, faults: Faults, stats: Arc<Stats>) -> Rig<D, B> {
        let guest = FakeGuest::new(0, WINDOW);
        let mirror = Mirror::new(0, WINDOW, stats.clone()).unwrap();
        let session = Session::new(mirror, device, faults, stats.clone());
        Rig {
            guest,
            session: Some(session),
            stats,
            faults,
            vq: GuestVq::new(256),
            vq_index: 0,
            more_vqs: Vec::new(),
            disk,
            tag: 0,
            next_buf: BUFFERS,
        }
    }

    pub fn session(&mut self) -> &mut Session<D> {
        self.session.as_mut().unwrap()
    }

    /// Ends the session and starts a fresh one on the same device (a server restart).
    pub fn restart_server(&mut self) {
        let blk = self.session.take().unwrap().into_device();
        let mirror = Mirror::new(0, WINDOW, self.stats.clone()).unwrap();
        self.session = Some(Session::new(mirror, blk, self.faults, self.stats.clone()));
        self.guest.connected = true;
        // The guest saw "partner failed": it freed its CRQ and will register and INIT again.
        self.guest.crq_open = false;
    }

    /// The guest's CRQ handshake: the server's INIT finds no CRQ, the guest registers and INITs.
    pub fn connect(&mut self) {
        let Rig { guest, session, .. } = self;
        session.as_mut().unwrap().start(guest).unwrap();
        assert!(
            guest.take_crq().is_empty(),
            "INIT delivered without a guest CRQ"
        );
        guest.crq_open = true;
        self.deliver(Entry::init(false));
        assert_eq!(
            self.guest.take_crq(),
            vec![Entry::init(true)],
            "INIT not answered with INIT COMPLETE"
        );
    }

    /// Hands one guest entry to the server.
    pub fn deliver(&mut self, e: [u8; ENTRY_LEN]) {
        let Rig { guest, session, .. } = self;
        session.as_mut().unwrap().handle(guest, e).unwrap();
    }

    pub fn next_tag(&mut self) -> u16 {
        self.tag = self.tag.wrapping_add(1);
        self.tag
    }

    /// Sends a request and returns its one response.
    pub fn call(&mut self, op: Opcode, arg16: u16, arg64: u64) -> Message {
        let tag = self.next_tag();
        self.call_msg(Message::request(op, tag, arg16, arg64))
    }

    pub fn call_msg(&mut self, m: Message) -> Message {
        self.deliver(m.encode());
        let out = self.guest.take_crq();
        assert_eq!(
            out.len(),
            1,
            "{} gave {} entries",
            m.opcode.name(),
            out.len()
        );
        let r = Message::decode(&out[0]).unwrap();
        assert!(
            r.response && r.opcode == m.opcode && r.tag == m.tag,
            "response {r:?} to {m:?}"
        );
        r
    }

    /// Status of a request's response.
    pub fn status_of(&mut self, op: Opcode, arg16: u16, arg64: u64) -> Status {
        self.call(op, arg16, arg64).status().unwrap()
    }

    /// PROBE into a fresh read/write buffer; returns the decoded header.
    pub fn probe(&mut self) -> Header {
        self.guest
            .map(HDR, header::LEN as u64, TCE_READ | TCE_WRITE);
        let r = self.call(Opcode::Probe, 1, HDR);
        assert_eq!(r.status(), Some(Status::Ok));
        assert_eq!(r.arg16, 1);
        let bytes: [u8; header::LEN] = self.guest.read(HDR, header::LEN).try_into().unwrap();
        Header::decode(&bytes).unwrap()
    }

    /// QUEUE_SETUP of the rig's queue with `setup`.
    pub fn queue_setup(&mut self, setup: QueueSetup) -> Status {
        self.guest.write(SETUP, &setup.encode());
        self.guest.map(SETUP, 32, TCE_READ);
        let st = self.status_of(Opcode::QueueSetup, setup.queue, SETUP);
        self.guest.unmap(SETUP, 32);
        st
    }

    /// Connect, PROBE, negotiate all offered features, set up the queues, DRIVER_OK.
    pub fn bring_up(&mut self) -> Header {
        self.connect();
        let h = self.probe();
        assert_eq!(
            self.status_of(Opcode::SetStatus, 0, ACK | DRIVER),
            Status::Ok
        );
        assert_eq!(
            self.status_of(Opcode::SetFeatures, 0, h.device_features),
            Status::Ok
        );
        assert_eq!(
            self.status_of(Opcode::SetStatus, 0, ACK | DRIVER | FEATURES_OK),
            Status::Ok
        );
        self.vq.map(&mut self.guest);
        let setup = self.vq.setup(self.vq_index);
        assert_eq!(self.queue_setup(setup), Status::Ok);
        let more: Vec<QueueSetup> = self.more_vqs.iter().map(|(i, q)| q.setup(*i)).collect();
        for (_, q) in &self.more_vqs {
            q.map(&mut self.guest);
        }
        for setup in more {
            assert_eq!(self.queue_setup(setup), Status::Ok);
        }
        assert_eq!(
            self.status_of(Opcode::SetStatus, 0, ACK | DRIVER | FEATURES_OK | DRIVER_OK),
            Status::Ok
        );
        h
    }

    /// NOTIFY(queue) and every entry the server sent in answer.
    pub fn notify(&mut self, queue: u16) -> Vec<[u8; ENTRY_LEN]> {
        let tag = self.next_tag();
        self.deliver(Message::request(Opcode::Notify, tag, queue, 0).encode());
        self.guest.take_crq()
    }

    /// NOTIFY(queue); asserts exactly one USED came back and returns its index.
    pub fn notify_one(&mut self, queue: u16) -> u16 {
        let out = self.notify(queue);
        let used: Vec<Message> = out.iter().filter_map(|e| Message::decode(e).ok()).collect();
        assert_eq!(used.len(), 1, "NOTIFY gave {out:x?}");
        assert_eq!(
            (used[0].opcode, used[0].arg16, used[0].response),
            (Opcode::Used, queue, false)
        );
        used[0].arg64 as u16
    }

    /// A fresh page-aligned buffer address for `len` bytes.
    pub fn alloc(&mut self, len: u64) -> u64 {
        let a = self.next_buf;
        // One unmapped page between buffers.
        self.next_buf += (len.max(1)).div_ceil(4096) * 4096 + 4096;
        a
    }

    /// Queues a virtio-blk request (header, `out` data for writes, `in_len` bytes for reads,
    /// status) and maps its buffers as vioboot does; returns the head and the buffers.
    pub fn queue_blk(
        &mut self,
        kind: u32,
        sector: u64,
        out: &[Vec<u8>],
        in_lens: &[u32],
    ) -> (u16, Vec<Buf>) {
        let mut hdr = [0u8; 16];
        hdr[0..4].copy_from_slice(&kind.to_le_bytes());
        hdr[8..16].copy_from_slice(&sector.to_le_bytes());
        let mut bufs = Vec::new();
        let a = self.alloc(16);
        self.guest.write(a, &hdr);
        self.guest.map(a, 16, TCE_READ);
        bufs.push(Buf {
            addr: a,
            len: 16,
            flags: 0,
        });
        for d in out {
            let a = self.alloc(d.len() as u64);
            self.guest.write(a, d);
            self.guest.map(a, d.len() as u64, TCE_READ);
            bufs.push(Buf {
                addr: a,
                len: d.len() as u32,
                flags: 0,
            });
        }
        for &n in in_lens {
            let a = self.alloc(u64::from(n));
            self.guest.write(a, &vec![0xEE; n as usize]);
            self.guest.map(a, u64::from(n), TCE_READ | TCE_WRITE);
            bufs.push(Buf {
                addr: a,
                len: n,
                flags: F_WRITE,
            });
        }
        let s = self.alloc(1);
        self.guest.write(s, &[0xFF]);
        self.guest.map(s, 1, TCE_READ | TCE_WRITE);
        bufs.push(Buf {
            addr: s,
            len: 1,
            flags: F_WRITE,
        });
        let head = self.vq.add_chain(&mut self.guest, &bufs);
        (head, bufs)
    }

    /// Reads back a served request's result and unmaps its buffers.
    pub fn finish_blk(&mut self, head: u16, bufs: &[Buf], pos: u16) -> BlkResult {
        let status_buf = bufs.last().unwrap();
        let status = self.guest.read(status_buf.addr, 1)[0];
        let mut data = Vec::new();
        for b in &bufs[..bufs.len() - 1] {
            if b.flags & F_WRITE != 0 {
                data.extend(self.guest.read(b.addr, b.len as usize));
            }
        }
        for b in bufs {
            self.guest.unmap(b.addr, u64::from(b.len));
        }
        let (used_id, used_len) = self.vq.used_elem(&self.guest, pos);
        BlkResult {
            status,
            data,
            used_id,
            used_len,
            head,
        }
    }

    /// One whole virtio-blk request: queue, NOTIFY, check the one USED, read back.
    pub fn blk(&mut self, kind: u32, sector: u64, out: &[Vec<u8>], in_lens: &[u32]) -> BlkResult {
        let before = self.vq.used_idx(&self.guest);
        let (head, bufs) = self.queue_blk(kind, sector, out, in_lens);
        let idx = self.notify_one(0);
        assert_eq!(idx, before.wrapping_add(1), "USED index");
        assert_eq!(
            self.vq.used_idx(&self.guest),
            idx,
            "used idx in guest memory"
        );
        self.finish_blk(head, &bufs, before)
    }

    /// The refusals the server met, as (ioba, len, write).
    pub fn refusals(&self) -> &[(u64, usize, bool)] {
        &self.guest.refusals
    }

    /// RDMA read via the partner trait, as the server would (for checks).
    pub fn partner(&mut self) -> &mut dyn Partner {
        &mut self.guest
    }
}
