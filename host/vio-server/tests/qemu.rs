//! End to end against a real QEMU with the `spapr-virtio-vio` device model: the `vio-server`
//! binary serves a disk; the guest is SLOF's Forth prompt, which maps TCEs, registers a CRQ and
//! sends entries with `hv-put-tce`, `hv-reg-crq` and `hv-send-crq` (as `host/qemu/selftest.py`
//! does). Checked: INIT -> INIT COMPLETE, PROBE writes the header into guest memory, the setup
//! sequence, a virtio-blk read through a virtqueue in guest memory, and a server killed and
//! restarted while the guest runs (partner-failed event, then the new server's INIT).
//!
//! A second guest mounts a virtio-fs share the same way: FUSE_INIT and a LOOKUP through the
//! request queue.
//!
//! QEMU: `$VIOBOOT_BUILT_QEMU`, else the last line `host/qemu/build.sh` prints (cached after
//! the first build, which takes minutes).

mod common;

use common::fs::{TempTree, HELLO};
use common::{pattern, TempDisk};
use std::ffi::OsStr;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};
use virtio_vio::msg::{Message, Opcode};

const UNIT: u32 = 0x7100_0010;
const TIMEOUT: Duration = Duration::from_secs(30);

/// A child process killed (and reaped) on drop.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn qemu_binary() -> PathBuf {
    if let Some(q) = std::env::var_os("VIOBOOT_BUILT_QEMU") {
        return q.into();
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../qemu/build.sh");
    let out = Command::new(script)
        .stderr(Stdio::inherit())
        .output()
        .expect("run host/qemu/build.sh");
    assert!(out.status.success(), "host/qemu/build.sh failed");
    let text = String::from_utf8(out.stdout).unwrap();
    PathBuf::from(
        text.lines()
            .last()
            .expect("build.sh printed no path")
            .trim(),
    )
}

/// Console bytes so far and whether the console closed, with a condition to wait on.
type Console = Arc<(Mutex<(Vec<u8>, bool)>, Condvar)>;

/// SLOF's console: QEMU's stdin and stdout with `-nographic`.
struct Slof {
    stdin: ChildStdin,
    out: Console,
}

impl Slof {
    fn new(child: &mut Child) -> Slof {
        let mut stdout = child.stdout.take().unwrap();
        let out: Console = Arc::new((Mutex::new((Vec::new(), false)), Condvar::new()));
        let o = out.clone();
        thread::spawn(move || {
            let mut buf = [0u8; 4096];
            loop {
                let n = stdout.read(&mut buf).unwrap_or(0);
                let (lock, cv) = &*o;
                let mut g = lock.lock().unwrap();
                if n == 0 {
                    g.1 = true;
                    cv.notify_all();
                    return;
                }
                g.0.extend_from_slice(&buf[..n]);
                cv.notify_all();
            }
        });
        Slof {
            stdin: child.stdin.take().unwrap(),
            out,
        }
    }

    /// Console text from `start` on, without escape sequences.
    fn text_from(buf: &[u8], start: usize) -> String {
        let raw = String::from_utf8_lossy(&buf[start.min(buf.len())..]).into_owned();
        let mut t = String::new();
        let mut chars = raw.chars().peekable();
        while let Some(c) = chars.next() {
            if c == '\x1b' {
                if chars.peek() == Some(&'[') {
                    chars.next();
                    for d in chars.by_ref() {
                        if d.is_ascii_alphabetic() {
                            break;
                        }
                    }
                } else {
                    chars.next();
                }
            } else {
                t.push(c);
            }
        }
        t
    }

    /// Waits until `find` finds something in the console text after `start`.
    fn wait<T>(&self, start: usize, what: &str, mut find: impl FnMut(&str) -> Option<T>) -> T {
        let deadline = Instant::now() + TIMEOUT;
        let (lock, cv) = &*self.out;
        let mut g = lock.lock().unwrap();
        loop {
            let text = Self::text_from(&g.0, start);
            if let Some(v) = find(&text) {
                return v;
            }
            assert!(
                !g.1,
                "QEMU's console closed waiting for {what}; tail: {:?}",
                tail(&text)
            );
            let now = Instant::now();
            assert!(
                now < deadline,
                "timeout waiting for {what}; tail: {:?}",
                tail(&text)
            );
            g = cv.wait_timeout(g, deadline - now).unwrap().0;
        }
    }

    fn len(&self) -> usize {
        self.out.0.lock().unwrap().0.len()
    }

    /// Types `cmd` (which must leave the stack as it found it); returns the numbers it printed.
    fn run(&mut self, cmd: &str) -> Vec<u64> {
        let start = self.len();
        let line = format!(".\" <R>\" {cmd} .\" </R>\"");
        assert!(line.len() < 200, "Forth line too long: {line}");
        self.stdin.write_all(line.as_bytes()).unwrap();
        self.stdin.write_all(b"\r").unwrap();
        self.stdin.flush().unwrap();
        self.wait(start, cmd, |t| {
            // The echo of the line has a quote after <R>; the output does not.
            let mut rest = t;
            while let Some(i) = rest.find("<R>") {
                let after = &rest[i + 3..];
                if let Some(j) = after.find("</R>") {
                    let inner = &after[..j];
                    if !inner.contains('"')
                        && !inner.contains('<')
                        && after[j + 4..].trim_start().starts_with("ok")
                    {
                        return Some(
                            inner
                                .split_whitespace()
                                .map(|w| u64::from_str_radix(w, 16).unwrap())
                                .collect(),
                        );
                    }
                }
                rest = after;
            }
            None
        })
    }
}

fn tail(t: &str) -> &str {
    &t[t.len().saturating_sub(400)..]
}

/// Guest memory: `q` is 5 claimed pages. IOBAs: 0x1000 CRQ, 0x2000 header, 0x3000 rings and
/// small buffers, 0x4000 data; page 4 (`m`) is the unmapped scratch for outgoing entries.
const CRQ: u64 = 0x1000;
const HDR: u64 = 0x2000;
const RINGS: u64 = 0x3000;
const DATA: u64 = 0x4000;

struct Guest {
    slof: Slof,
    /// Next CRQ slot the server will fill.
    slot: u64,
    tag: u16,
}

impl Guest {
    /// Sends `word0 word1` with H_SEND_CRQ; asserts H_SUCCESS.
    fn send(&mut self, e: [u8; 16]) {
        let (w0, w1) = papr::crq::to_words(&e);
        let r = self.slof.run(&format!(
            "{w0:x} m x! {w1:x} m 8 + x! {UNIT:x} m hv-send-crq ."
        ));
        assert_eq!(r, [0], "H_SEND_CRQ");
    }

    /// Waits for the server's next CRQ entry; returns its two words.
    fn next_entry(&mut self) -> (u64, u64) {
        let at = self.slot * 16;
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let r = self
                .slof
                .run(&format!("q {at:x} + x@ u. q {at:x} + 8 + x@ u."));
            if r[0] != 0 {
                self.slot += 1;
                return (r[0], r[1]);
            }
            assert!(
                Instant::now() < deadline,
                "no entry in CRQ slot {}",
                self.slot
            );
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends a request and returns its response.
    fn call(&mut self, op: Opcode, arg16: u16, arg64: u64) -> Message {
        self.tag += 1;
        let m = Message::request(op, self.tag, arg16, arg64);
        self.send(m.encode());
        let (w0, w1) = self.next_entry();
        let r = Message::decode(&papr::crq::from_words(w0, w1)).unwrap();
        assert!(r.response && r.opcode == op && r.tag == self.tag, "{r:?}");
        r
    }

    fn ok(&mut self, op: Opcode, arg16: u16, arg64: u64) {
        let r = self.call(op, arg16, arg64);
        assert_eq!(r.byte3, 0, "{} -> status {}", op.name(), r.byte3);
    }
}

fn start_server(exe: &str, sock: &Path, device: &[&OsStr], log: &Path) -> Guard {
    let log = std::fs::File::create(log).unwrap();
    Guard(
        Command::new(exe)
            .args(["--socket".as_ref(), sock.as_os_str()])
            .args(device)
            .stderr(log)
            .spawn()
            .unwrap(),
    )
}

/// A running server (the device `args`), QEMU with SLOF, and a guest whose CRQ is READY:
/// memory and TCEs as the constants above say.
struct Booted {
    g: Guest,
    server: Option<Guard>,
    // Dropped after `g` (whose console thread reads QEMU's stdout).
    _qemu: Guard,
    dir: PathBuf,
    sock: PathBuf,
    log: PathBuf,
}

impl Booted {
    fn server_log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

fn boot(name: &str, device: &[&OsStr]) -> Booted {
    let qemu = qemu_binary();
    let dir = std::env::temp_dir().join(format!("vio-server-qemu-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let sock = dir.join("v.sock");
    let log = dir.join("server.log");
    let _ = std::fs::remove_file(&sock);
    // The server starts first and waits for QEMU's socket.
    let server = start_server(env!("CARGO_BIN_EXE_vio-server"), &sock, device, &log);
    let mut q = Command::new(&qemu);
    q.args([
        "-L",
        "/usr/share/qemu",
        "-M",
        "pseries",
        "-m",
        "1G",
        "-nographic",
        "-vga",
        "none",
        "-nic",
        "none",
    ])
    .args(["-prom-env", "auto-boot?=false"])
    .arg("-chardev")
    .arg(format!(
        "socket,id=v0,path={},server=on,wait=off",
        sock.display()
    ))
    .args([
        "-device",
        &format!("spapr-virtio-vio,chardev=v0,reg={UNIT:#x}"),
    ])
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .stderr(Stdio::null());
    let mut qemu = Guard(q.spawn().expect("start QEMU"));
    let slof = Slof::new(&mut qemu.0);
    slof.wait(0, "SLOF prompt", |t| t.contains("\n0 > ").then_some(()));
    let mut g = Guest {
        slof,
        slot: 0,
        tag: 0,
    };

    // Memory, TCEs (CRQ, header, rings RW; data RW), CRQ registration.
    g.slof
        .run("5000 1000 claim value q  q 5000 erase  q 4000 + value m");
    let r = g.slof.run(&format!(
        "{UNIT:x} {CRQ:x} q 3 or hv-put-tce . {UNIT:x} {HDR:x} q 1000 + 3 or hv-put-tce . \
         {UNIT:x} {RINGS:x} q 2000 + 3 or hv-put-tce . {UNIT:x} {DATA:x} q 3000 + 3 or hv-put-tce ."
    ));
    assert_eq!(r, [0, 0, 0, 0], "H_PUT_TCE");
    assert_eq!(
        g.slof.run(&format!("{UNIT:x} {CRQ:x} 1000 hv-reg-crq .")),
        [0],
        "H_REG_CRQ"
    );
    // A little-endian store: ( value addr nbytes -- ).
    g.slof
        .run(": le! ( v a n -- ) 0 do 2dup c! swap 8 rshift swap 1+ loop 2drop ;");
    let mut b = Booted {
        g,
        server: Some(server),
        _qemu: qemu,
        dir,
        sock,
        log,
    };
    // INIT -> INIT COMPLETE (the server's own INIT met H_CLOSED long ago).
    b.g.send(papr::crq::Entry::init(false));
    let log = b.server_log();
    assert_eq!(
        b.g.next_entry(),
        (0xC002_0000_0000_0000, 0),
        "INIT COMPLETE; server log:\n{log}"
    );
    b
}

#[test]
fn a_slof_guest_talks_to_the_server_through_qemu() {
    let disk = TempDisk::new(64 * 512);
    let exe = env!("CARGO_BIN_EXE_vio-server");
    let blk_args = [
        "--blk".as_ref(),
        disk.path.as_os_str(),
        "--serial".as_ref(),
        "qemu-e2e".as_ref(),
    ];
    let mut b = boot("blk", &blk_args);
    let (sock, log) = (b.sock.clone(), b.log.clone());
    let server_log = || std::fs::read_to_string(&log).unwrap_or_default();
    let g = &mut b.g;

    // PROBE: the header lands in guest memory (SLOF reads big-endian, as the header is).
    let r = g.call(Opcode::Probe, 1, HDR);
    assert_eq!((r.byte3, r.arg16), (0, 1));
    assert_eq!(
        g.slof
            .run("q 1000 + l@ u. q 1008 + l@ u. q 1018 + w@ u. q 1020 + w@ u."),
        [0x5649_4F56, 2, 1, 256]
    );
    let features = g.slof.run("q 1010 + x@ u.")[0];
    assert_ne!(features & 1 << 32, 0);
    assert_eq!(
        g.slof.run("q 10a0 + c@ u.")[0],
        64,
        "capacity, little-endian config"
    );

    // A 4-entry queue at 0x3000: desc, avail +0x40, used +0x60; setup block +0x100 (big-endian);
    // request header +0x200 (IN, sector 1), status +0x300; 512 data bytes at 0x4000.
    let desc = [
        (0x3200u64, 16u32, 1u16, 1u16),
        (DATA, 512, 3, 2),
        (0x3300, 1, 2, 0),
    ];
    for (i, (addr, len, flags, next)) in desc.iter().enumerate() {
        let at = 16 * i;
        g.slof.run(&format!(
            "{addr:x} q 2000 + {at:x} + 8 le! {len:x} q 2008 + {at:x} + 4 le! \
             {flags:x} q 200c + {at:x} + 2 le! {next:x} q 200e + {at:x} + 2 le!"
        ));
    }
    g.slof
        .run("0 q 2044 + 2 le! 1 q 2042 + 2 le! 1 q 2208 + 8 le! ff q 2300 + c!");
    g.slof
        .run("0 q 2100 + w! 4 q 2102 + w! 3000 q 2108 + x! 3040 q 2110 + x! 3060 q 2118 + x!");

    g.ok(Opcode::SetStatus, 0, 3);
    g.ok(Opcode::SetFeatures, 0, features);
    g.ok(Opcode::SetStatus, 0, 0xB);
    g.ok(Opcode::QueueSetup, 0, RINGS + 0x100);
    g.ok(Opcode::SetStatus, 0, 0xF);
    g.send(Message::request(Opcode::Notify, 99, 0, 0).encode());
    let (w0, w1) = g.next_entry();
    let used = Message::decode(&papr::crq::from_words(w0, w1)).unwrap();
    assert_eq!((used.opcode, used.arg16, used.arg64), (Opcode::Used, 0, 1));
    // Used idx (LE 1), used elem (id 0, len 513), status 0, data = sector 1.
    assert_eq!(
        g.slof
            .run("q 2062 + c@ u. q 2064 + l@ u. q 2068 + l@ u. q 2300 + c@ u."),
        [1, 0, 0x0102_0000, 0]
    );
    let want = pattern(1);
    let word = u32::from_be_bytes(want[..4].try_into().unwrap()) as u64;
    let last = u32::from_be_bytes(want[508..].try_into().unwrap()) as u64;
    assert_eq!(g.slof.run("q 3000 + l@ u. q 31fc + l@ u."), [word, last]);

    eprintln!("--- log of the first server ---\n{}", server_log());
    // Kill the server: QEMU posts "partner failed"; a restarted server connects and INITs.
    drop(b.server.take());
    let (w0, _) = b.g.next_entry();
    assert_eq!(w0, 0xFF01_0000_0000_0000, "partner failed");
    b.server = Some(start_server(exe, &sock, &blk_args, &log));
    let g = &mut b.g;
    let (w0, _) = g.next_entry();
    assert_eq!(w0, 0xC001_0000_0000_0000, "the new server's INIT");
    g.send(papr::crq::Entry::init(true));
    let r = g.call(Opcode::Probe, 1, HDR);
    assert_eq!(r.byte3, 0, "PROBE on the new session");

    // SIGTERM: exit 0 and a stats line.
    let server = b.server.as_mut().unwrap();
    let pid = server.0.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let st = server.0.wait().unwrap();
    let text = server_log();
    eprintln!("--- log of the restarted server ---\n{text}");
    assert!(st.success(), "server exit {st}:\n{text}");
    assert!(text.contains("stats: sessions 1"), "{text}");
    let _ = std::fs::remove_dir_all(&b.dir);
}

#[test]
fn a_slof_guest_sends_fuse_requests_through_qemu() {
    let tree = TempTree::new();
    let args = [
        "--fs".as_ref(),
        tree.path.as_os_str(),
        "--tag".as_ref(),
        "e2e".as_ref(),
    ];
    let mut b = boot("fs", &args);
    let log = b.log.clone();
    let server_log = || std::fs::read_to_string(&log).unwrap_or_default();
    let g = &mut b.g;

    // The header: device 26, two queues of 256, 40 config bytes: the tag "e2e" and
    // num_request_queues 1 (little-endian; SLOF reads big-endian).
    assert_eq!(g.call(Opcode::Probe, 1, HDR).byte3, 0);
    assert_eq!(
        g.slof
            .run("q 1008 + l@ u. q 1018 + w@ u. q 101a + w@ u. q 1020 + w@ u. q 1022 + w@ u."),
        [26, 2, 40, 256, 256]
    );
    assert_eq!(
        g.slof.run("q 10a0 + l@ u. q 10c4 + l@ u."),
        [0x6532_6500, 0x0100_0000]
    );
    let features = g.slof.run("q 1010 + x@ u.")[0];
    assert_eq!(features, 1 << 32, "VIRTIO_F_VERSION_1");

    // Request queue 1, 4 entries at 0x3000 (as for virtio-blk). FUSE_INIT at 0x3200 (56 bytes)
    // answered into 0x4000; LOOKUP "hello.txt" at 0x3400 (50 bytes) answered into 0x4800.
    let desc = [
        (0x3200u64, 56u32, 1u16, 1u16),
        (DATA, 0x800, 2, 0),
        (0x3400, 50, 1, 3),
        (DATA + 0x800, 0x800, 2, 0),
    ];
    for (i, (addr, len, flags, next)) in desc.iter().enumerate() {
        let at = 16 * i;
        g.slof.run(&format!(
            "{addr:x} q 2000 + {at:x} + 8 le! {len:x} q 2008 + {at:x} + 4 le! \
             {flags:x} q 200c + {at:x} + 2 le! {next:x} q 200e + {at:x} + 2 le!"
        ));
    }
    // fuse_in_header (len, opcode 26, unique 2) and fuse_init_in (7.33, DO_READDIRPLUS).
    g.slof.run(
        "38 q 2200 + 4 le! 1a q 2204 + 4 le! 2 q 2208 + 8 le! \
         7 q 2228 + 4 le! 21 q 222c + 4 le! 2000 q 2234 + 4 le!",
    );
    // fuse_in_header (len, opcode 1, unique 4, node 1) and "hello.txt\0".
    g.slof.run(
        "32 q 2400 + 4 le! 1 q 2404 + 4 le! 4 q 2408 + 8 le! 1 q 2410 + 8 le! \
         78742e6f6c6c6568 q 2428 + 8 le! 74 q 2430 + c!",
    );
    g.slof
        .run("1 q 2100 + w! 4 q 2102 + w! 3000 q 2108 + x! 3040 q 2110 + x! 3060 q 2118 + x!");
    g.ok(Opcode::SetStatus, 0, 3);
    g.ok(Opcode::SetFeatures, 0, features);
    g.ok(Opcode::SetStatus, 0, 0xB);
    g.ok(Opcode::QueueSetup, 1, RINGS + 0x100);
    g.ok(Opcode::SetStatus, 0, 0xF);

    let notify = |g: &mut Guest, head: u64, idx: u64| {
        g.slof.run(&format!(
            "{head:x} q 2044 + {:x} + 2 le! {idx:x} q 2042 + 2 le!",
            2 * (idx - 1)
        ));
        g.send(Message::request(Opcode::Notify, 90 + idx as u16, 1, 0).encode());
        let (w0, w1) = g.next_entry();
        let used = Message::decode(&papr::crq::from_words(w0, w1)).unwrap();
        assert_eq!(
            (used.opcode, used.arg16, used.arg64),
            (Opcode::Used, 1, idx),
            "server log:\n{}",
            server_log()
        );
    };
    // FUSE_INIT: used length 80 (header and fuse_init_out); the reply says len 80, error 0,
    // unique 2, version 7.33.
    notify(g, 0, 1);
    assert_eq!(
        g.slof.run(
            "q 2068 + l@ u. q 3000 + l@ u. q 3004 + l@ u. q 3008 + x@ u. q 3010 + l@ u. q 3014 + l@ u."
        ),
        [0x5000_0000, 0x5000_0000, 0, 0x0200_0000_0000_0000, 0x0700_0000, 0x2100_0000]
    );
    // LOOKUP: used length 144 (header and fuse_entry_out), error 0, unique 4, attr.size 15.
    notify(g, 2, 2);
    assert_eq!(
        g.slof
            .run("q 2070 + l@ u. q 3800 + l@ u. q 3804 + l@ u. q 3808 + x@ u. q 3840 + x@ u."),
        [
            0x9000_0000,
            0x9000_0000,
            0,
            0x0400_0000_0000_0000,
            (HELLO.len() as u64) << 56
        ]
    );
    eprintln!("--- server log ---\n{}", server_log());
    let _ = std::fs::remove_dir_all(&b.dir);
}
