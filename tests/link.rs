//! vioboot's virtio-vio transport against a simulated hypervisor and a scripted server, in one
//! host process: the CRQ handshake, PROBE and the device header, what vioboot does with bad
//! input from the server, server restarts, and that no memory stays reachable afterwards.

mod sim;

use papr::crq::Entry;
use papr::hcall::{H_FREE_CRQ, H_PUT_TCE, H_REG_CRQ, H_SEND_CRQ};
use sim::{adapter, Hv, Server, Sim, SERIAL};
use vioboot::virtio::{VioError, VioTransport};
use virtio_drivers::transport::Transport;
use virtio_vio::header::Header;
use virtio_vio::msg::{Message, Opcode, Status};

/// A server that answers INIT, PROBE (with `header`) and every other request with OK, and
/// can be told to misbehave.
struct Scripted {
    header: [u8; virtio_vio::header::LEN],
    /// Entries sent before each response.
    noise: Vec<[u8; 16]>,
    /// USED notices sent after each response (a flood when large).
    flood: usize,
    /// Die (partner failed) on this opcode instead of answering, once.
    die_on: Option<Opcode>,
    /// Never answer requests.
    mute: bool,
    /// The header buffer of the last PROBE: at the next guest entry, writing it again must be
    /// refused (the guest unmaps it once it has the response).
    rewrite_header: Option<u64>,
    rewrites_refused: usize,
    pub requests: Vec<Opcode>,
}

fn blk_header() -> Header {
    let mut h = Header::new(2);
    h.device_features = 1 << 32;
    h.num_queues = 1;
    h.queue_max[0] = 16;
    h.config_len = 8;
    h.config[..8].copy_from_slice(&4096u64.to_le_bytes());
    h
}

impl Scripted {
    fn new() -> Scripted {
        Scripted {
            header: blk_header().encode(),
            noise: Vec::new(),
            flood: 0,
            die_on: None,
            mute: false,
            rewrite_header: None,
            rewrites_refused: 0,
            requests: Vec::new(),
        }
    }
}

impl Server for Scripted {
    fn pump(&mut self, hv: &mut Hv) {
        if let Some(ioba) = self.rewrite_header.take() {
            assert!(
                hv.rdma_write(ioba, &[0xAA; 16]).is_err(),
                "the header buffer stayed mapped after PROBE"
            );
            self.rewrites_refused += 1;
        }
        while let Some(e) = hv.to_server.pop_front() {
            match Entry::parse(e) {
                Entry::Init => {
                    let _ = hv.deliver(Entry::init(true));
                }
                Entry::Message(b) => {
                    let Ok(m) = Message::decode(&b) else { continue };
                    self.requests.push(m.opcode);
                    if self.mute || !m.opcode.has_response() {
                        continue;
                    }
                    if self.die_on == Some(m.opcode) {
                        self.die_on = None;
                        hv.partner_failed();
                        return;
                    }
                    for n in &self.noise {
                        let _ = hv.deliver(*n);
                    }
                    let mut arg16 = 0;
                    let mut arg64 = 0;
                    if m.opcode == Opcode::Probe {
                        if hv.rdma_write(m.arg64, &self.header).is_err() {
                            let _ = hv.deliver(
                                Message::response_to(&m, Status::DmaFailed, 0, 0).encode(),
                            );
                            continue;
                        }
                        arg16 = 1;
                        self.rewrite_header = Some(m.arg64);
                    }
                    if m.opcode == Opcode::ReadConfig {
                        let off = m.arg16 as usize;
                        let mut d = [0u8; 8];
                        d[..m.byte3 as usize]
                            .copy_from_slice(&blk_header().config[off..off + m.byte3 as usize]);
                        arg64 = u64::from_be_bytes(d);
                    }
                    let _ = hv.deliver(Message::response_to(&m, Status::Ok, arg16, arg64).encode());
                    for _ in 0..self.flood {
                        if hv
                            .deliver(Message::request(Opcode::Used, 0, 0, 0).encode())
                            .is_err()
                        {
                            break;
                        }
                    }
                }
                _ => {}
            }
        }
    }
}

fn open(server: Scripted, timeout_ms: u64) -> (Sim, Result<VioTransport, VioError>) {
    let sim = Sim::install(Box::new(server));
    let t = VioTransport::open(&adapter(), timeout_ms * 1000);
    (sim, t)
}

#[test]
fn handshake_probe_and_clean_shutdown() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (sim, t) = open(Scripted::new(), 1000);
    let mut t = t.expect("transport opens");
    assert_eq!(t.handle().header(), blk_header());
    assert_eq!(t.max_queue_size(0), 16);
    assert_eq!(t.max_queue_size(1), 0, "a queue the device does not have");
    let cap: u64 = t
        .read_config_space(0)
        .expect("config read (also: the header write is refused now)");
    assert_eq!(cap, 4096);
    assert!(
        t.read_config_space::<u64>(4).is_err(),
        "reads beyond config_len are refused"
    );
    assert_eq!(sim.count(H_REG_CRQ), 1);
    assert!(
        sim.hv.borrow().refused_rdma >= 1,
        "the server's late header write was refused"
    );
    let h = t.handle();
    drop(t);
    h.shut_down().expect("shutdown");
    assert!(
        sim.hv.borrow().tces.is_empty(),
        "TCEs left: {:?}",
        sim.hv.borrow().tces
    );
    assert!(sim.hv.borrow().crq.is_none(), "CRQ still registered");
    assert_eq!(sim.count(H_FREE_CRQ), 1);
}

#[test]
fn no_server_times_out_naming_the_adapter() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut s = Scripted::new();
    s.mute = true;
    let sim = Sim::install(Box::new(s));
    sim.hv.borrow_mut().server_alive = false;
    let e = VioTransport::open(&adapter(), 200_000)
        .err()
        .expect("fails");
    let text = e.to_string();
    assert!(
        text.contains("virtio@71000010") && text.contains("did not answer INIT within 200 ms"),
        "{text}"
    );
}

#[test]
fn a_silent_server_times_out_the_request() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut s = Scripted::new();
    s.mute = true;
    let (_sim, t) = open(s, 200);
    let text = t.err().expect("fails").to_string();
    assert!(text.contains("PROBE: no answer within 200 ms"), "{text}");
}

#[test]
fn impossible_headers_are_rejected_by_field() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    for (at, bytes, want) in [
        (24usize, 65u16.to_be_bytes(), "65 queues"),
        (26, 300u16.to_be_bytes(), "config length 300"),
        (32, 100u16.to_be_bytes(), "queue 0 maximum size 100"),
    ] {
        let mut s = Scripted::new();
        s.header[at..at + 2].copy_from_slice(&bytes);
        let (_sim, t) = open(s, 1000);
        let text = t.err().expect("rejected").to_string();
        assert!(
            text.contains("bad device header") && text.contains(want),
            "{text}"
        );
    }
}

#[test]
fn unknown_and_foreign_entries_are_dropped_and_counted() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut s = Scripted::new();
    let mut unknown = Message::request(Opcode::Used, 0, 0, 0).encode();
    unknown[2] = 0x33;
    let mut foreign = unknown;
    foreign[1] = 0x01;
    let mut bad_queue = Message::request(Opcode::Used, 0, 40, 0).encode();
    bad_queue[6] = 0;
    let stale = Message::response_to(
        &Message::request(Opcode::GetStatus, 999, 0, 0),
        Status::Ok,
        0,
        0,
    )
    .encode();
    // An INIT-class entry with a code the protocol does not have.
    let mut odd_init = Entry::init(false);
    odd_init[1] = 0x07;
    s.noise = vec![unknown, foreign, odd_init, bad_queue, stale];
    let (_sim, t) = open(s, 1000);
    let t = t.expect("the transport still works");
    let (link, crq) = t.handle().counters();
    assert!(link.protocol_errors >= 4, "{link:?}");
    assert!(crq.invalid >= 1, "{crq:?}");
}

#[test]
fn a_flooded_crq_keeps_working() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut s = Scripted::new();
    s.flood = 300;
    let (_sim, t) = open(s, 1000);
    let t = t.expect("opens despite the flood");
    for _ in 0..3 {
        let v: u64 = t.read_config_space(0).expect("requests still complete");
        assert_eq!(v, 4096);
    }
}

#[test]
fn a_server_restart_mid_request_is_replayed() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (sim, t) = open(Scripted::new(), 1000);
    let mut t = t.expect("opens");
    t.set_status(
        virtio_drivers::transport::DeviceStatus::ACKNOWLEDGE
            | virtio_drivers::transport::DeviceStatus::DRIVER,
    );
    // The next server dies on the first READ_CONFIG; a fresh one takes over.
    let mut dying = Scripted::new();
    dying.die_on = Some(Opcode::ReadConfig);
    sim.restart_server(Box::new(dying));
    sim.on_failure(Box::new(|| Box::new(Scripted::new())));
    let v: u64 = t.read_config_space(0).expect("completes after the restart");
    assert_eq!(v, 4096);
    let (link, crq) = t.handle().counters();
    assert!(link.resets >= 1 && crq.recoveries >= 1, "{link:?} {crq:?}");
    assert_eq!(
        sim.count(H_REG_CRQ),
        2,
        "registered again after partner failed"
    );
    assert_eq!(sim.hv.borrow().failures, 1);
}

/// A hostile hypervisor: an hcall failing with any PAPR status (or one PAPR does not define)
/// is an error that names the hcall and the status, and leaves nothing mapped.
#[test]
fn every_failing_status_is_named_and_nothing_stays_mapped() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let statuses = [-1, -2, -3, -4, -5, -7, -9, -11, -16, -17, -64, -75, 3, -999];
    for op in [H_REG_CRQ, H_PUT_TCE, H_SEND_CRQ] {
        for status in statuses {
            let sim = Sim::install(Box::new(Scripted::new()));
            sim.refuse(op, status, u64::MAX);
            let e = VioTransport::open(&adapter(), 300_000)
                .err()
                .unwrap_or_else(|| panic!("{op:#x} refused with {status}, yet it opened"))
                .to_string();
            let call = match op {
                H_REG_CRQ => "H_REG_CRQ",
                H_PUT_TCE => "H_PUT_TCE",
                _ => "H_SEND_CRQ",
            };
            let named = match papr::status::name(status) {
                Some(n) => e.contains(&format!("{call} failed: {n} ({status})")),
                None => e.contains(&format!("{call} failed: unknown status {status}")),
            };
            // H_CLOSED on H_SEND_CRQ means "no partner yet": the handshake waits, then says so.
            assert!(
                named || (op == H_SEND_CRQ && e.contains("did not answer INIT")),
                "{call} with {status}: {e}"
            );
            assert!(
                sim.hv.borrow().tces.is_empty(),
                "{call} with {status}: TCEs left {:?}",
                sim.hv.borrow().tces
            );
            assert!(
                sim.hv.borrow().crq.is_none(),
                "{call} with {status}: CRQ left"
            );
        }
    }
}

/// Busy answers are retried (H_BUSY at once, long busy after the delay PAPR names).
#[test]
fn busy_hypervisors_are_waited_for() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    for status in [papr::status::H_BUSY, papr::status::H_LONG_BUSY_ORDER_1_MSEC] {
        let sim = Sim::install(Box::new(Scripted::new()));
        sim.refuse(H_REG_CRQ, status, 3);
        let t = VioTransport::open(&adapter(), 300_000).expect("opens after the busy answers");
        assert_eq!(sim.count(H_REG_CRQ), 4);
        let h = t.handle();
        drop(t);
        h.shut_down().expect("shutdown");
    }
}

/// A partner whose queue stays full (H_DROPPED) fails the request by name, within the bound.
#[test]
fn a_full_partner_queue_is_a_named_failure() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let sim = Sim::install(Box::new(Scripted::new()));
    let t = VioTransport::open(&adapter(), 300_000).expect("opens");
    sim.refuse(papr::hcall::H_SEND_CRQ, papr::status::H_DROPPED, u64::MAX);
    assert!(t.read_config_space::<u64>(0).is_err());
    let e = t
        .handle()
        .take_error()
        .expect("the error is kept")
        .to_string();
    assert!(e.contains("H_SEND_CRQ failed: H_DROPPED (-12)"), "{e}");
    sim.refuse(papr::hcall::H_SEND_CRQ, 0, 0);
    let h = t.handle();
    drop(t);
    h.shut_down().expect("shutdown");
    assert!(sim.hv.borrow().tces.is_empty());
}

/// RTAS through a hypervisor that lacks H_RTAS, or whose H_RTAS fails: named, never a
/// power-off that did not happen.
#[test]
fn failing_rtas_calls_are_named() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let sim = Sim::install(Box::new(Scripted::new()));
    vioboot::rtas::set_tokens(Some(0x2003), Some(0x201f));
    // The simulated hypervisor has no H_RTAS: H_FUNCTION.
    assert!(!vioboot::rtas::probe_hcall());
    // One that has it (a bad token gets H_PARAMETER) but fails the call.
    sim.refuse(papr::hcall::H_RTAS, papr::status::H_PARAMETER, 1);
    assert!(vioboot::rtas::probe_hcall());
    sim.refuse(papr::hcall::H_RTAS, -1, 1);
    let e = vioboot::rtas::power_off().to_string();
    assert!(e.contains("H_RTAS failed: H_HARDWARE (-1)"), "{e}");
    let e = vioboot::rtas::os_term("test").to_string();
    assert!(e.contains("H_RTAS failed: H_FUNCTION (-2)"), "{e}");
}
