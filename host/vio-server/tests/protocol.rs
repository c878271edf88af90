//! The session against a fake guest: CRQ handshake, PROBE and the header, status and feature
//! rules, config access, queue setup, NOTIFY with nothing to do, and the server loop.

mod common;

use common::*;
use papr::crq::Entry;
use papr::tce::{TCE_READ, TCE_WRITE};
use std::sync::Arc;
use vio_server::server::{self, Exit, Options};
use vio_server::{Blk, CrqState, Event, FakeGuest, Faults, Mirror, Session, Stats};
use virtio_vio::msg::{Message, Opcode, Status};

#[test]
fn handshake_waits_for_the_guest_when_it_has_no_crq() {
    let mut r = Rig::new(8, false, Faults::default());
    r.connect();
    assert_eq!(r.session().state(), CrqState::Ready);
    // The guest's INIT COMPLETE after READY changes nothing.
    r.deliver(Entry::init(true));
    assert!(r.guest.take_crq().is_empty());
    assert_eq!(r.session().state(), CrqState::Ready);
}

#[test]
fn handshake_when_the_guest_already_has_a_crq() {
    let mut r = Rig::new(8, false, Faults::default());
    r.guest.crq_open = true;
    let Rig { guest, session, .. } = &mut r;
    session.as_mut().unwrap().start(guest).unwrap();
    assert_eq!(r.guest.take_crq(), vec![Entry::init(false)]);
    assert_eq!(r.session().state(), CrqState::WaitInit);
    r.deliver(Entry::init(true));
    assert_eq!(r.session().state(), CrqState::Ready);
    assert!(r.guest.take_crq().is_empty());
}

#[test]
fn messages_before_the_handshake_and_foreign_entries_are_ignored() {
    let mut r = Rig::new(8, false, Faults::default());
    r.guest.crq_open = true;
    r.deliver(Message::request(Opcode::GetStatus, 1, 0, 0).encode());
    assert!(r.guest.take_crq().is_empty(), "answered before READY");
    r.guest.crq_open = false;
    r.connect();
    // Another format byte (v-scsi's 0x01), a transport event, garbage: logged, not answered.
    let mut foreign = Message::request(Opcode::GetStatus, 2, 0, 0).encode();
    foreign[1] = 0x01;
    r.deliver(foreign);
    r.deliver(Entry::transport(1));
    r.deliver([0x12; 16]);
    r.deliver([0; 16]);
    assert!(r.guest.take_crq().is_empty());
    assert_eq!(r.status_of(Opcode::GetStatus, 0, 0), Status::Ok);
}

#[test]
fn unknown_opcode_is_answered_bad_opcode_with_the_tag() {
    let mut r = Rig::new(8, false, Faults::default());
    r.connect();
    let mut e = Message::request(Opcode::GetStatus, 0xBEEF, 0, 0).encode();
    e[2] = 0x33;
    r.deliver(e);
    let out = r.guest.take_crq();
    assert_eq!(out.len(), 1);
    assert_eq!(
        &out[0][..6],
        &[0x80, 0x56, 0xB3, Status::BadOpcode as u8, 0xBE, 0xEF]
    );
}

#[test]
fn only_probe_get_status_and_reset_before_probe() {
    let mut r = Rig::new(8, false, Faults::default());
    r.connect();
    for (op, arg) in [
        (Opcode::SetFeatures, 1u64 << 32),
        (Opcode::SetStatus, ACK),
        (Opcode::ReadConfig, 0),
        (Opcode::QueueSetup, SETUP),
        (Opcode::QueueReset, 0),
    ] {
        assert_eq!(r.status_of(op, 0, arg), Status::BadState, "{}", op.name());
    }
    assert_eq!(r.status_of(Opcode::SetStatus, 0, 0), Status::Ok);
    let st = r.call(Opcode::GetStatus, 0, 0);
    assert_eq!((st.status(), st.arg64), (Some(Status::Ok), 0));
    // NOTIFY before PROBE: no USED (the guest has no queue).
    assert!(r.notify(0).is_empty());
}

#[test]
fn probe_writes_the_virtio_blk_header() {
    let mut r = Rig::new(2048, false, Faults::default());
    r.connect();
    let h = r.probe();
    let raw = r.guest.read(HDR, 8);
    assert_eq!(&raw[..4], b"VIOV");
    assert_eq!(&raw[4..8], &[0, 1, 0x01, 0xA0]);
    assert_eq!(h.device_id, virtio_vio::device_id::BLOCK);
    let f = h.device_features;
    assert_ne!(f & 1 << 32, 0, "VIRTIO_F_VERSION_1");
    for bit in [1, 2, 6, 9] {
        assert_ne!(f & 1 << bit, 0, "feature bit {bit}");
    }
    assert_eq!(f & 1 << 5, 0, "RO on a writable disk");
    assert_eq!(h.num_queues, 1);
    assert_eq!(h.queue_max[0], 256);
    assert_eq!(h.status, 0);
    let c = h.config();
    assert_eq!(c.len(), 24);
    assert_eq!(
        u64::from_le_bytes(c[0..8].try_into().unwrap()),
        2048,
        "capacity"
    );
    assert_eq!(
        u32::from_le_bytes(c[8..12].try_into().unwrap()),
        0x10_0000,
        "size_max"
    );
    assert_eq!(
        u32::from_le_bytes(c[12..16].try_into().unwrap()),
        254,
        "seg_max"
    );
    assert_eq!(
        u32::from_le_bytes(c[20..24].try_into().unwrap()),
        512,
        "blk_size"
    );
}

#[test]
fn probe_negotiates_the_version_and_reports_dma_failure() {
    let mut r = Rig::new(8, false, Faults::default());
    r.connect();
    r.guest.map(HDR, 416, TCE_READ | TCE_WRITE);
    let resp = r.call(Opcode::Probe, 7, HDR);
    assert_eq!((resp.status(), resp.arg16), (Some(Status::Ok), 1));
    assert_eq!(r.status_of(Opcode::Probe, 0, HDR), Status::BadVersion);
    r.guest.map(HDR, 416, TCE_READ);
    assert_eq!(r.status_of(Opcode::Probe, 1, HDR), Status::DmaFailed);
    assert_eq!(r.status_of(Opcode::Probe, 1, 0x5000), Status::DmaFailed);
    assert_eq!(r.status_of(Opcode::Probe, 1, WINDOW - 8), Status::DmaFailed);
}

#[test]
fn feature_and_status_rules() {
    let mut r = Rig::new(8, false, Faults::default());
    r.connect();
    let h = r.probe();
    let f = h.device_features;
    assert_eq!(r.status_of(Opcode::SetStatus, 0, ACK | DRIVER), Status::Ok);
    assert_eq!(
        r.status_of(Opcode::SetFeatures, 0, f | 1 << 40),
        Status::BadArgument
    );
    assert_eq!(
        r.status_of(Opcode::SetStatus, 0, 0x1_0000),
        Status::BadArgument
    );
    assert_eq!(
        r.status_of(Opcode::SetStatus, 0, ACK | DRIVER | DRIVER_OK),
        Status::BadState
    );
    assert_eq!(r.status_of(Opcode::SetFeatures, 0, f), Status::Ok);
    assert_eq!(
        r.status_of(Opcode::SetStatus, 0, ACK | DRIVER | FEATURES_OK),
        Status::Ok
    );
    assert_eq!(r.status_of(Opcode::SetFeatures, 0, f), Status::BadState);
    assert_eq!(
        r.status_of(Opcode::SetStatus, 0, ACK | FEATURES_OK),
        Status::BadArgument,
        "clears DRIVER"
    );
    let st = r.call(Opcode::GetStatus, 0, 0);
    assert_eq!(st.arg64, ACK | DRIVER | FEATURES_OK);
    // PROBE again (replay) reports the status in the header.
    assert_eq!(u64::from(r.probe().status), ACK | DRIVER | FEATURES_OK);
    // Reset: everything back to 0, features may be set again.
    assert_eq!(r.status_of(Opcode::SetStatus, 0, 0), Status::Ok);
    assert_eq!(r.call(Opcode::GetStatus, 0, 0).arg64, 0);
    assert_eq!(r.status_of(Opcode::SetFeatures, 0, f), Status::Ok);
}

#[test]
fn read_and_write_config() {
    let mut r = Rig::new(0x1234, false, Faults::default());
    r.connect();
    r.probe();
    let m = r.call_msg(Message::config(Opcode::ReadConfig, 9, 0, 8, [0; 8]));
    assert_eq!(
        (m.status(), m.data()),
        (Some(Status::Ok), 0x1234u64.to_le_bytes())
    );
    let m = r.call_msg(Message::config(Opcode::ReadConfig, 10, 20, 4, [0; 8]));
    assert_eq!(m.data()[..4], 512u32.to_le_bytes());
    for (off, len) in [(0, 0), (0, 9), (20, 5), (24, 1), (0xFFFF, 1)] {
        let m = r.call_msg(Message::config(Opcode::ReadConfig, 11, off, len, [0; 8]));
        assert_eq!(m.status(), Some(Status::BadArgument), "read {off}+{len}");
    }
    let m = r.call_msg(Message::config(Opcode::WriteConfig, 12, 0, 1, [1; 8]));
    assert_eq!(
        m.status(),
        Some(Status::BadArgument),
        "virtio-blk config is read-only"
    );
}

#[test]
fn queue_setup_is_checked() {
    let mut r = Rig::new(8, false, Faults::default());
    r.connect();
    r.probe();
    r.vq.map(&mut r.guest);
    let good = r.vq.setup(0);
    // Queue 1 does not exist; size 512 > 256; parts outside the window; misaligned; block for
    // another queue; unreadable block.
    assert_eq!(
        r.queue_setup(virtio_vio::queue::QueueSetup { queue: 1, ..good }),
        Status::BadArgument
    );
    assert_eq!(
        r.queue_setup(virtio_vio::queue::QueueSetup { size: 512, ..good }),
        Status::BadArgument
    );
    assert_eq!(
        r.queue_setup(virtio_vio::queue::QueueSetup { size: 100, ..good }),
        Status::BadArgument
    );
    assert_eq!(
        r.queue_setup(virtio_vio::queue::QueueSetup {
            device: WINDOW - 8,
            ..good
        }),
        Status::BadArgument
    );
    assert_eq!(
        r.queue_setup(virtio_vio::queue::QueueSetup {
            desc: u64::MAX - 15,
            ..good
        }),
        Status::BadArgument
    );
    assert_eq!(
        r.queue_setup(virtio_vio::queue::QueueSetup {
            driver: 0x11001,
            ..good
        }),
        Status::BadArgument
    );
    r.guest.write(SETUP, &good.encode());
    r.guest.map(SETUP, 32, TCE_READ);
    assert_eq!(
        r.status_of(Opcode::QueueSetup, 1, SETUP),
        Status::BadArgument
    );
    r.guest.unmap(SETUP, 32);
    assert_eq!(r.status_of(Opcode::QueueSetup, 0, SETUP), Status::DmaFailed);
    // The used ring not readable: its index cannot be read for resumption.
    r.guest.unmap(USED, 4096);
    assert_eq!(r.queue_setup(good), Status::DmaFailed);
    r.vq.map(&mut r.guest);
    assert_eq!(r.queue_setup(good), Status::Ok);
    assert_eq!(r.status_of(Opcode::QueueReset, 0, 0), Status::Ok);
    assert_eq!(r.status_of(Opcode::QueueReset, 5, 0), Status::BadArgument);
    assert_eq!(r.queue_setup(good), Status::Ok);
    // After DRIVER_OK, no more setup.
    let f = r.probe().device_features;
    assert_eq!(r.status_of(Opcode::SetStatus, 0, ACK | DRIVER), Status::Ok);
    assert_eq!(r.status_of(Opcode::SetFeatures, 0, f), Status::Ok);
    assert_eq!(
        r.status_of(Opcode::SetStatus, 0, ACK | DRIVER | FEATURES_OK | DRIVER_OK),
        Status::Ok
    );
    assert_eq!(r.queue_setup(good), Status::BadState);
}

#[test]
fn notify_with_nothing_available_sends_one_used() {
    let mut r = Rig::new(8, false, Faults::default());
    r.bring_up();
    assert_eq!(r.notify_one(0), 0);
    assert_eq!(r.notify_one(0), 0);
    // A queue that is not set up: nothing (the guest would drop the USED anyway).
    assert!(r.notify(3).is_empty());
}

#[test]
fn notify_before_driver_ok_serves_nothing_but_answers() {
    let mut r = Rig::new(8, false, Faults::default());
    r.connect();
    r.probe();
    r.vq.map(&mut r.guest);
    let setup = r.vq.setup(0);
    assert_eq!(r.queue_setup(setup), Status::Ok);
    r.queue_blk(T_FLUSH, 0, &[], &[]);
    assert_eq!(r.notify_one(0), 0);
    assert_eq!(r.vq.used_idx(&r.guest), 0);
}

#[test]
fn guest_init_while_ready_resets_the_device() {
    let mut r = Rig::new(8, false, Faults::default());
    r.bring_up();
    r.deliver(Entry::init(false));
    assert_eq!(r.guest.take_crq(), vec![Entry::init(true)]);
    // PROBE is needed again, and the status is 0.
    assert_eq!(r.status_of(Opcode::SetStatus, 0, ACK), Status::BadState);
    assert_eq!(r.call(Opcode::GetStatus, 0, 0).arg64, 0);
}

#[test]
fn the_server_loop_runs_sessions_and_forgets_them_on_reset() {
    let disk = TempDisk::new(8 * 512);
    let stats = Arc::new(Stats::default());
    let blk = Blk::open(&disk.path, false, None, stats.clone()).unwrap();
    let mut g = FakeGuest::new(0, WINDOW);
    g.crq_open = true;
    g.map(HDR, 416, TCE_READ | TCE_WRITE);
    let hello = g.hello();
    g.events.extend([
        Event::GuestCrq(Entry::init(false)),
        Event::GuestCrq(Message::request(Opcode::Probe, 1, 1, HDR).encode()),
        Event::GuestCrq(Message::request(Opcode::SetStatus, 2, 0, ACK).encode()),
        Event::Reset,
        Event::GuestCrq(Message::request(Opcode::GetStatus, 3, 0, 0).encode()),
        Event::Disconnected,
        Event::Connected(hello),
        Event::GuestCrq(Entry::init(false)),
        Event::GuestCrq(Message::request(Opcode::GetStatus, 4, 0, 0).encode()),
    ]);
    let opts = Options {
        faults: Faults::default(),
        stats: stats.clone(),
        stop: Default::default(),
    };
    let (exit, _blk) = server::serve(&mut g, blk, &opts, Some(2));
    assert_eq!(exit, Exit::Idle);
    let out = g.take_crq();
    let kinds: Vec<String> = out
        .iter()
        .map(|e| match Message::decode(e) {
            Ok(m) => format!("{}:{}:{}", m.opcode.name(), m.tag, m.byte3),
            Err(_) => format!("{:02x}{:02x}", e[0], e[1]),
        })
        .collect();
    // Session 1: INIT, INIT COMPLETE, PROBE ok, SET_STATUS ok; after RESET the CRQ handshake
    // is forgotten, so GET_STATUS is ignored. Session 2: INIT, INIT COMPLETE, GET_STATUS.
    assert_eq!(
        kinds,
        [
            "c001",
            "c002",
            "PROBE:1:0",
            "SET_STATUS:2:0",
            "c001",
            "c002",
            "GET_STATUS:4:0"
        ],
        "{out:x?}"
    );
    assert_eq!(Stats::get(&stats.sessions), 2);
}

#[test]
fn a_mirror_refuses_impossible_windows() {
    let stats = Arc::new(Stats::default());
    assert!(Mirror::new(0, 0, stats.clone()).is_err());
    assert!(Mirror::new(u64::MAX - 10, 4096, stats.clone()).is_err());
    assert!(Mirror::new(0, 1 << 40, stats.clone()).is_err());
    let m = Mirror::new(0x1000_0000, 0x1000, stats).unwrap();
    assert!(
        m.contains(0x1000_0000, 0x1000) && !m.contains(0x1000_0000, 0x1001) && !m.contains(0, 1)
    );
    let _ = Session::new(
        m,
        Blk::new(tempfile_for_blk(), true, b"x", Default::default()).unwrap(),
        Faults::default(),
        Default::default(),
    );
}

fn tempfile_for_blk() -> std::fs::File {
    let d = TempDisk::new(512);
    std::fs::File::open(&d.path).unwrap()
}
