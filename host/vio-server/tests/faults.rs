//! Every fault-injection knob does what `Faults` documents, and the server survives it.

mod common;

use common::*;
use papr::status::H_DEST_PARM;
use vio_server::faults::{BAD_USED_LEN_EXTRA, FLOOD_COUNT, UNKNOWN_OPCODE};
use vio_server::{Ended, Faults, PartnerError};
use virtio_vio::msg::{Message, Opcode};

fn faults(names: &str) -> Faults {
    Faults::parse(names).unwrap()
}

#[test]
fn bad_used_id_names_a_descriptor_never_made_available() {
    let mut r = Rig::new(16, false, faults("bad-used-id"));
    r.bring_up();
    let res = r.blk(T_IN, 1, &[], &[512]);
    assert_eq!(
        res.used_id, 256,
        "one past the last index of a 256-entry queue"
    );
    assert_eq!(
        (res.status, res.used_len),
        (S_OK, 513),
        "the request itself was served"
    );
}

#[test]
fn bad_used_len_reports_far_more_than_the_buffers() {
    let mut r = Rig::new(16, false, faults("bad-used-len"));
    r.bring_up();
    let res = r.blk(T_IN, 1, &[], &[512]);
    assert_eq!(res.used_len, 513 + BAD_USED_LEN_EXTRA);
    assert_eq!((res.status, res.data), (S_OK, pattern(1)));
}

#[test]
fn unknown_opcode_goes_out_before_each_used() {
    let mut r = Rig::new(16, false, faults("unknown-opcode"));
    r.bring_up();
    for expect_idx in [0u64, 0, 1] {
        if expect_idx == 1 {
            r.queue_blk(T_FLUSH, 0, &[], &[]);
        }
        let out = r.notify(0);
        assert_eq!(out.len(), 2, "{out:x?}");
        assert_eq!(&out[0][..3], &[0x80, 0x56, UNKNOWN_OPCODE]);
        assert!(
            Message::decode(&out[0]).is_err(),
            "the guest cannot know this opcode"
        );
        let used = Message::decode(&out[1]).unwrap();
        assert_eq!((used.opcode, used.arg64), (Opcode::Used, expect_idx));
    }
}

#[test]
fn flood_sends_extra_used_until_the_crq_is_full() {
    let mut r = Rig::new(16, false, faults("flood"));
    r.bring_up();
    r.guest.crq_slots = 40;
    let out = r.notify(0);
    assert_eq!(out.len(), 40, "USED plus extras until H_DROPPED");
    assert!(out
        .iter()
        .all(|e| Message::decode(e).unwrap().opcode == Opcode::Used));
    // With room for everything: the USED and exactly FLOOD_COUNT more.
    r.guest.crq_slots = 10_000;
    let res_out = {
        r.queue_blk(T_FLUSH, 0, &[], &[]);
        r.notify(0)
    };
    assert_eq!(res_out.len(), 1 + FLOOD_COUNT);
    assert!(res_out
        .iter()
        .all(|e| Message::decode(e).unwrap().arg64 == 1));
}

#[test]
fn die_mid_request_serves_half_then_stops_and_a_new_server_resumes() {
    let mut r = Rig::new(64, false, faults("die-mid-request"));
    r.bring_up();
    let reqs: Vec<_> = (0..4u8)
        .map(|k| r.queue_blk(T_OUT, u64::from(k), &[vec![0xA0 + k; 512]], &[]))
        .collect();
    let tag = r.next_tag();
    let Rig { guest, session, .. } = &mut r;
    let end = session
        .as_mut()
        .unwrap()
        .handle(guest, Message::request(Opcode::Notify, tag, 0, 0).encode());
    assert_eq!(end, Err(Ended::Died));
    assert!(r.guest.take_crq().is_empty(), "no USED");
    assert_eq!(r.vq.used_idx(&r.guest), 0, "used ring untouched");
    let disk = r.disk.contents();
    assert_eq!(
        &disk[..1024],
        &[vec![0xA0; 512], vec![0xA1; 512]].concat()[..],
        "first half served"
    );
    assert_eq!(&disk[1024..1536], &pattern(2)[..], "second half not");
    // A restarted server (no faults), the guest replays: all four are done, idempotently.
    r.faults = Faults::default();
    r.restart_server();
    r.connect();
    let f = r.probe().device_features;
    assert_eq!(
        r.status_of(Opcode::SetStatus, 0, ACK | DRIVER),
        virtio_vio::msg::Status::Ok
    );
    assert_eq!(
        r.status_of(Opcode::SetFeatures, 0, f),
        virtio_vio::msg::Status::Ok
    );
    assert_eq!(
        r.status_of(Opcode::SetStatus, 0, ACK | DRIVER | FEATURES_OK),
        virtio_vio::msg::Status::Ok
    );
    let setup = r.vq.setup(0);
    assert_eq!(r.queue_setup(setup), virtio_vio::msg::Status::Ok);
    assert_eq!(
        r.status_of(Opcode::SetStatus, 0, ACK | DRIVER | FEATURES_OK | DRIVER_OK),
        virtio_vio::msg::Status::Ok
    );
    assert_eq!(r.notify_one(0), 4);
    for (k, (head, bufs)) in reqs.iter().enumerate() {
        let res = r.finish_blk(*head, bufs, k as u16);
        assert_eq!((res.status, res.used_id), (S_OK, u32::from(*head)));
    }
    let disk = r.disk.contents();
    for k in 0..4u8 {
        assert_eq!(
            disk[usize::from(k) * 512..(usize::from(k) + 1) * 512],
            [0xA0 + k; 512]
        );
    }
}

#[test]
fn die_mid_request_with_one_chain_performs_it_but_marks_nothing_used() {
    let mut r = Rig::new(8, false, faults("die-mid-request"));
    r.bring_up();
    // Nothing available: no death, just USED.
    assert_eq!(r.notify_one(0), 0);
    r.queue_blk(T_OUT, 5, &[vec![0x5A; 512]], &[]);
    let tag = r.next_tag();
    let Rig { guest, session, .. } = &mut r;
    let end = session
        .as_mut()
        .unwrap()
        .handle(guest, Message::request(Opcode::Notify, tag, 0, 0).encode());
    assert_eq!(end, Err(Ended::Died));
    assert_eq!(r.vq.used_idx(&r.guest), 0);
    assert_eq!(r.disk.contents()[5 * 512], 0x5A);
}

#[test]
fn touch_unmapped_probes_past_the_buffers_and_goes_on() {
    let mut r = Rig::new(16, false, faults("touch-unmapped"));
    r.bring_up();
    let (head, bufs) = r.queue_blk(T_IN, 3, &[], &[512]);
    assert_eq!(r.notify_one(0), 1);
    let highest = bufs
        .iter()
        .map(|b| b.addr + u64::from(b.len))
        .max()
        .unwrap();
    let probe = highest.div_ceil(4096) * 4096;
    assert_eq!(
        r.refusals(),
        &[(probe, 1, false)],
        "exactly the touch, refused"
    );
    let res = r.finish_blk(head, &bufs, 0);
    assert_eq!((res.status, res.data), (S_OK, pattern(3)));
    // The partner's answer was H_DEST_PARM.
    let mut b = [0u8; 1];
    assert_eq!(
        r.partner().rdma_read(probe, &mut b),
        Err(PartnerError::Status(H_DEST_PARM))
    );
}
