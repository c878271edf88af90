//! The partner behind QEMU's `spapr-virtio-vio` device: a UNIX-socket client speaking the
//! framing of `docs/vio-socket.md` (section numbers below refer to it).
//!
//! A reader thread drains the socket at all times (section 6: QEMU writes with blocking writes,
//! so a server that stops reading can deadlock both sides) and hands every frame to the caller's
//! thread through a channel. While the caller waits for the reply to its own request, the
//! unsolicited frames (HELLO, GUEST_CRQ, GUEST_EVENT) that arrive first are set aside and
//! reported later by [`Partner::next_event`], in order.

use super::{Event, Hello, Partner, MAX_RDMA};
use crate::hcall::PartnerError;
use log::{debug, info, warn};
use papr::crq::ENTRY_LEN;
use papr::status::{H_PARAMETER, H_SUCCESS};
use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread::{self, JoinHandle};
use std::time::Duration;

/// Frame types (section 4).
pub mod frame {
    pub const HELLO: u32 = 0x01;
    pub const GUEST_CRQ: u32 = 0x02;
    pub const GUEST_EVENT: u32 = 0x03;
    pub const RESULT: u32 = 0x04;
    pub const READ_DATA: u32 = 0x05;
    pub const SEND_CRQ: u32 = 0x10;
    pub const RDMA_READ: u32 = 0x11;
    pub const RDMA_WRITE: u32 = 0x12;
    /// GUEST_EVENT kind: the device was reset.
    pub const EVENT_RESET: u32 = 4;
    /// Bytes before every payload: type and payload length, u32 little-endian each.
    pub const HEADER_LEN: usize = 8;
    /// Largest payload either side may send (an RDMA_WRITE of 1 MiB).
    pub const MAX_PAYLOAD: usize = 0x10_0018;
    /// Bytes of a HELLO payload this version reads (a longer one is accepted).
    pub const HELLO_LEN: usize = 32;
}

/// How often to try the socket while it is absent or refuses (section 2: QEMU may start later).
pub const RECONNECT_INTERVAL: Duration = Duration::from_millis(100);
/// How long a reply (or the HELLO after connecting) may take before the connection is dropped.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(10);

/// One frame from QEMU, checked against its layout.
#[derive(Debug)]
struct Frame {
    kind: u32,
    payload: Vec<u8>,
}

/// An open connection: the write side and the reader thread's channel.
struct Conn {
    stream: UnixStream,
    rx: Receiver<Frame>,
    reader: Option<JoinHandle<()>>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        // Ends the reader thread's blocking read.
        let _ = self.stream.shutdown(Shutdown::Both);
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
    }
}

/// The UNIX-socket client; reconnects by itself (see [`Partner::next_event`]).
pub struct SocketPartner {
    path: PathBuf,
    conn: Option<Conn>,
    /// Events read while waiting for a reply, or the `Disconnected` of a lost connection.
    pending: VecDeque<Event>,
    tag: u64,
    /// Whether "waiting for the socket" was already logged for this absence.
    told_waiting: bool,
}

impl SocketPartner {
    /// A client for the socket at `path`; nothing is connected before the first
    /// [`Partner::next_event`].
    pub fn new(path: impl AsRef<Path>) -> SocketPartner {
        SocketPartner {
            path: path.as_ref().to_path_buf(),
            conn: None,
            pending: VecDeque::new(),
            tag: 0,
            told_waiting: false,
        }
    }

    /// Whether a connection is open.
    pub fn is_connected(&self) -> bool {
        self.conn.is_some()
    }

    /// Forgets the connection; the caller learns of it as [`Event::Disconnected`].
    fn lose(&mut self, why: &str) {
        if self.conn.take().is_some() {
            info!("connection to {} lost: {why}", self.path.display());
            self.pending.clear();
            self.pending.push_back(Event::Disconnected);
        }
    }

    fn try_connect(&mut self) -> Option<Event> {
        let stream = match UnixStream::connect(&self.path) {
            Ok(s) => s,
            Err(e) => {
                if !self.told_waiting {
                    info!(
                        "waiting for {} ({e}); retrying every {} ms",
                        self.path.display(),
                        RECONNECT_INTERVAL.as_millis()
                    );
                    self.told_waiting = true;
                }
                return None;
            }
        };
        self.told_waiting = false;
        let conn = match Self::open(stream) {
            Ok(c) => c,
            Err(e) => {
                warn!("cannot use the connection to {}: {e}", self.path.display());
                return None;
            }
        };
        // Section 2: QEMU sends HELLO at once.
        match conn.rx.recv_timeout(REPLY_TIMEOUT) {
            Ok(f) if f.kind == frame::HELLO => {
                let hello = parse_hello(&f.payload);
                info!(
                    "connected to {}: unit {:#x}, liobn {:#x}, window {:#x}+{:#x}, flags {:#x}",
                    self.path.display(),
                    hello.unit_address,
                    hello.liobn,
                    hello.window_ioba,
                    hello.window_size,
                    hello.flags
                );
                if hello.version != 1 {
                    warn!("HELLO version {} (this server speaks 1)", hello.version);
                }
                self.conn = Some(conn);
                Some(Event::Connected(hello))
            }
            Ok(f) => {
                warn!(
                    "first frame from QEMU is type {:#x}, not HELLO: dropping",
                    f.kind
                );
                None
            }
            Err(_) => {
                warn!("no HELLO from QEMU within {REPLY_TIMEOUT:?}: dropping");
                None
            }
        }
    }

    fn open(stream: UnixStream) -> io::Result<Conn> {
        stream.set_write_timeout(Some(REPLY_TIMEOUT))?;
        let read_side = stream.try_clone()?;
        let (tx, rx) = mpsc::channel();
        let reader = thread::Builder::new()
            .name("vio-socket-reader".into())
            .spawn(move || reader_loop(read_side, tx))?;
        Ok(Conn {
            stream,
            rx,
            reader: Some(reader),
        })
    }

    /// Sends one request and waits for its reply of `reply_kind`, setting unsolicited frames
    /// aside. Any failure of the connection itself drops it.
    fn request(
        &mut self,
        kind: u32,
        payload: &[u8],
        reply_kind: u32,
    ) -> Result<Vec<u8>, PartnerError> {
        self.send(kind, payload)?;
        self.reply(kind, le64(payload, 0), reply_kind)
    }

    /// Sends one request frame (its payload starts with its tag).
    fn send(&mut self, kind: u32, payload: &[u8]) -> Result<(), PartnerError> {
        let mut buf = Vec::with_capacity(frame::HEADER_LEN + payload.len());
        buf.extend_from_slice(&kind.to_le_bytes());
        buf.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        buf.extend_from_slice(payload);
        self.send_frame(&buf)
    }

    /// Sends one whole frame, header included.
    fn send_frame(&mut self, buf: &[u8]) -> Result<(), PartnerError> {
        let Some(conn) = self.conn.as_mut() else {
            return Err(PartnerError::Disconnected);
        };
        if let Err(e) = conn.stream.write_all(buf) {
            self.lose(&format!("write failed: {e}"));
            return Err(PartnerError::Disconnected);
        }
        Ok(())
    }

    /// Waits for the reply of `reply_kind` to the request of `kind` tagged `tag`, which must
    /// be the next reply (section 6: replies come in request order).
    fn reply(&mut self, kind: u32, tag: u64, reply_kind: u32) -> Result<Vec<u8>, PartnerError> {
        loop {
            let Some(conn) = self.conn.as_mut() else {
                return Err(PartnerError::Disconnected);
            };
            let f = match conn.rx.recv_timeout(REPLY_TIMEOUT) {
                Ok(f) => f,
                Err(RecvTimeoutError::Timeout) => {
                    self.lose(&format!(
                        "no reply to frame type {kind:#x} within {REPLY_TIMEOUT:?}"
                    ));
                    return Err(PartnerError::Disconnected);
                }
                Err(RecvTimeoutError::Disconnected) => {
                    self.lose("closed while waiting for a reply");
                    return Err(PartnerError::Disconnected);
                }
            };
            if f.kind == frame::RESULT || f.kind == frame::READ_DATA {
                if f.kind != reply_kind || le64(&f.payload, 0) != tag {
                    self.lose(&format!(
                        "reply type {:#x} tag {:#x} to request type {kind:#x} tag {tag:#x}",
                        f.kind,
                        le64(&f.payload, 0)
                    ));
                    return Err(PartnerError::Disconnected);
                }
                return Ok(f.payload);
            }
            if let Some(ev) = self.event_of(f) {
                self.pending.push_back(ev);
            }
        }
    }

    /// The whole frame of an RDMA_READ or RDMA_WRITE request for `len` bytes at `at` (`data`
    /// after it for a write), built in one buffer.
    fn rdma_frame(&mut self, kind: u32, at: u64, len: usize, data: &[u8]) -> Vec<u8> {
        let mut p = Vec::with_capacity(frame::HEADER_LEN + 24 + data.len());
        p.extend_from_slice(&kind.to_le_bytes());
        p.extend_from_slice(&((24 + data.len()) as u32).to_le_bytes());
        p.extend_from_slice(&self.next_tag().to_le_bytes());
        p.extend_from_slice(&at.to_le_bytes());
        p.extend_from_slice(&(len as u32).to_le_bytes());
        p.extend_from_slice(&0u32.to_le_bytes());
        p.extend_from_slice(data);
        p
    }

    /// The checked data of a READ_DATA reply for `want` bytes.
    fn read_data(&mut self, reply: &[u8], want: usize) -> Result<(), PartnerError> {
        let status = le64(reply, 8) as i64;
        if status != H_SUCCESS {
            return Err(PartnerError::Status(status));
        }
        if reply.len() - 16 != want {
            self.lose(&format!(
                "READ_DATA with {} bytes for {want}",
                reply.len() - 16
            ));
            return Err(PartnerError::Disconnected);
        }
        Ok(())
    }

    fn next_tag(&mut self) -> u64 {
        self.tag = self.tag.wrapping_add(1);
        self.tag
    }

    /// The event an unsolicited frame stands for (`None` for frames that report nothing).
    fn event_of(&mut self, f: Frame) -> Option<Event> {
        match f.kind {
            frame::HELLO => {
                warn!("a second HELLO on one connection: starting over");
                Some(Event::Connected(parse_hello(&f.payload)))
            }
            frame::GUEST_CRQ => {
                let mut e = [0u8; ENTRY_LEN];
                e.copy_from_slice(&f.payload);
                Some(Event::GuestCrq(e))
            }
            frame::GUEST_EVENT => match le32(&f.payload, 0) {
                frame::EVENT_RESET => Some(Event::Reset),
                k => {
                    debug!("GUEST_EVENT kind {k} ignored");
                    None
                }
            },
            k => {
                debug!("frame type {k:#x} ({} bytes) ignored", f.payload.len());
                None
            }
        }
    }

    /// `status` of a RESULT payload (already checked to be 16 bytes).
    fn result_status(payload: &[u8]) -> Result<(), PartnerError> {
        match le64(payload, 8) as i64 {
            H_SUCCESS => Ok(()),
            s => Err(PartnerError::Status(s)),
        }
    }
}

impl Partner for SocketPartner {
    fn send_crq(&mut self, entry: [u8; ENTRY_LEN]) -> Result<(), PartnerError> {
        let mut p = Vec::with_capacity(8 + ENTRY_LEN);
        p.extend_from_slice(&self.next_tag().to_le_bytes());
        p.extend_from_slice(&entry);
        let reply = self.request(frame::SEND_CRQ, &p, frame::RESULT)?;
        Self::result_status(&reply)
    }

    fn rdma_read(&mut self, ioba: u64, buf: &mut [u8]) -> Result<(), PartnerError> {
        let mut ops = [super::Rdma::Read { ioba, buf }];
        self.rdma_batch(&mut ops).pop().unwrap_or(Ok(()))
    }

    fn rdma_write(&mut self, ioba: u64, data: &[u8]) -> Result<(), PartnerError> {
        let mut ops = [super::Rdma::Write { ioba, data }];
        self.rdma_batch(&mut ops).pop().unwrap_or(Ok(()))
    }

    /// Every frame of the batch is sent first (split at [`MAX_RDMA`]), then the replies are
    /// taken in order: one round trip through QEMU for the whole batch.
    fn rdma_batch(&mut self, ops: &mut [super::Rdma<'_>]) -> Vec<Result<(), PartnerError>> {
        use super::Rdma;
        let mut results: Vec<Result<(), PartnerError>> = vec![Ok(()); ops.len()];
        // (op, offset in it, bytes, tag) of every frame sent, in order.
        let mut sent: Vec<(usize, usize, usize, u64)> = Vec::new();
        'send: for (i, op) in ops.iter().enumerate() {
            let (ioba, len) = match op {
                Rdma::Read { ioba, buf } => (*ioba, buf.len()),
                Rdma::Write { ioba, data } => (*ioba, data.len()),
            };
            let mut off = 0;
            while off < len {
                let n = (len - off).min(MAX_RDMA);
                let Some(at) = ioba.checked_add(off as u64) else {
                    results[i] = Err(PartnerError::Status(H_PARAMETER));
                    continue 'send;
                };
                let frame = match op {
                    Rdma::Read { .. } => self.rdma_frame(frame::RDMA_READ, at, n, &[]),
                    Rdma::Write { data, .. } => {
                        self.rdma_frame(frame::RDMA_WRITE, at, n, &data[off..off + n])
                    }
                };
                if self.send_frame(&frame).is_err() {
                    break 'send;
                }
                sent.push((i, off, n, self.tag));
                off += n;
            }
        }
        let mut gone = !self.is_connected();
        for (i, off, n, tag) in sent {
            if gone {
                break;
            }
            let r = match &mut ops[i] {
                Rdma::Read { buf, .. } => self
                    .reply(frame::RDMA_READ, tag, frame::READ_DATA)
                    .and_then(|reply| {
                        self.read_data(&reply, n)?;
                        buf[off..off + n].copy_from_slice(&reply[16..]);
                        Ok(())
                    }),
                Rdma::Write { .. } => self
                    .reply(frame::RDMA_WRITE, tag, frame::RESULT)
                    .and_then(|reply| Self::result_status(&reply)),
            };
            gone = r == Err(PartnerError::Disconnected);
            if results[i].is_ok() {
                results[i] = r;
            }
        }
        if !self.is_connected() {
            // Whatever was not answered is lost with the connection.
            for r in &mut results {
                if r.is_ok() {
                    *r = Err(PartnerError::Disconnected);
                }
            }
        }
        results
    }

    fn next_event(&mut self, timeout: Duration) -> Option<Event> {
        if let Some(ev) = self.pending.pop_front() {
            return Some(ev);
        }
        let Some(conn) = self.conn.as_mut() else {
            let ev = self.try_connect();
            if ev.is_none() {
                thread::sleep(timeout.min(RECONNECT_INTERVAL));
            }
            return ev;
        };
        match conn.rx.recv_timeout(timeout) {
            Ok(f) => self.event_of(f),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => {
                self.lose("closed by QEMU");
                self.pending.pop_front()
            }
        }
    }

    fn disconnect(&mut self) {
        if self.conn.take().is_some() {
            info!("disconnected from {}", self.path.display());
        }
        self.pending.clear();
    }
}

/// Reads frames until the socket ends or QEMU breaks the framing; sends each checked frame on.
fn reader_loop(mut s: UnixStream, tx: mpsc::Sender<Frame>) {
    loop {
        let mut hdr = [0u8; frame::HEADER_LEN];
        if let Err(e) = s.read_exact(&mut hdr) {
            if e.kind() != io::ErrorKind::UnexpectedEof {
                debug!("socket read ended: {e}");
            }
            return;
        }
        let kind = le32(&hdr, 0);
        let len = le32(&hdr, 4) as usize;
        if let Err(why) = check_header(kind, len) {
            // Section 3: the same rules QEMU applies to us; bytes after a bad frame are garbage.
            warn!("protocol error from QEMU: {why}: dropping the connection");
            let _ = s.shutdown(Shutdown::Both);
            return;
        }
        let mut payload = vec![0u8; len];
        if s.read_exact(&mut payload).is_err() {
            return;
        }
        if kind == frame::READ_DATA && le64(&payload, 8) != 0 && len != 16 {
            warn!(
                "protocol error from QEMU: failed READ_DATA carries {} bytes: dropping",
                len - 16
            );
            let _ = s.shutdown(Shutdown::Both);
            return;
        }
        if tx.send(Frame { kind, payload }).is_err() {
            return;
        }
    }
}

/// Checks a frame header from QEMU against section 3's rules.
fn check_header(kind: u32, len: usize) -> Result<(), String> {
    if len > frame::MAX_PAYLOAD {
        return Err(format!(
            "payload of {len} bytes (maximum {})",
            frame::MAX_PAYLOAD
        ));
    }
    let ok = match kind {
        frame::HELLO => len >= frame::HELLO_LEN,
        frame::GUEST_CRQ => len == ENTRY_LEN,
        frame::GUEST_EVENT => len == 4,
        frame::RESULT => len == 16,
        frame::READ_DATA => len >= 16,
        _ => len >= 8,
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "frame type {kind:#x} with a payload of {len} bytes"
        ))
    }
}

fn parse_hello(p: &[u8]) -> Hello {
    Hello {
        version: le32(p, 0),
        unit_address: le32(p, 4),
        liobn: le32(p, 8),
        flags: le32(p, 12),
        window_ioba: le64(p, 16),
        window_size: le64(p, 24),
    }
}

/// Little-endian u32 at `at`; 0 past the end (callers check lengths first).
fn le32(b: &[u8], at: usize) -> u32 {
    b.get(at..at + 4)
        .map_or(0, |s| u32::from_le_bytes(s.try_into().unwrap_or_default()))
}

fn le64(b: &[u8], at: usize) -> u64 {
    b.get(at..at + 8)
        .map_or(0, |s| u64::from_le_bytes(s.try_into().unwrap_or_default()))
}
