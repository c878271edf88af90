//! virtio-blk requests through a virtqueue the test builds by hand in fake guest memory:
//! reads, writes, flush, GET_ID, refusals, malformed chains and resumption.

mod common;

use common::*;
use papr::crq::Entry;
use papr::tce::{TCE_READ, TCE_WRITE};
use vio_server::Faults;
use virtio_vio::msg::{Message, Opcode, Status};

#[test]
fn reads_sectors() {
    let mut r = Rig::new(64, false, Faults::default());
    r.bring_up();
    let res = r.blk(T_IN, 3, &[], &[1024]);
    assert_eq!(res.status, S_OK);
    assert_eq!(res.data, [pattern(3), pattern(4)].concat());
    assert_eq!((res.used_id, res.used_len), (u32::from(res.head), 1025));
}

#[test]
fn writes_then_reads_back() {
    let mut r = Rig::new(64, false, Faults::default());
    r.bring_up();
    let a: Vec<u8> = (0..512).map(|i| (i * 7) as u8).collect();
    let b: Vec<u8> = (0..1024).map(|i| (i * 13 + 1) as u8).collect();
    let res = r.blk(T_OUT, 10, &[a.clone(), b.clone()], &[]);
    assert_eq!((res.status, res.used_len), (S_OK, 1));
    let disk = r.disk.contents();
    assert_eq!(&disk[10 * 512..11 * 512], &a[..]);
    assert_eq!(&disk[11 * 512..13 * 512], &b[..]);
    assert_eq!(
        &disk[13 * 512..14 * 512],
        &pattern(13)[..],
        "neighbour untouched"
    );
    // Read back in two writable buffers.
    let res = r.blk(T_IN, 10, &[], &[512, 1024]);
    assert_eq!(res.status, S_OK);
    assert_eq!(res.data, [a, b].concat());
}

#[test]
fn large_transfers_cross_the_one_mib_frame_limit() {
    let mut r = Rig::new(8192, false, Faults::default());
    r.bring_up();
    let data: Vec<u8> = (0..3 * 1024 * 1024 + 512)
        .map(|i| (i % 251) as u8)
        .collect();
    let res = r.blk(T_OUT, 100, std::slice::from_ref(&data), &[]);
    assert_eq!(res.status, S_OK);
    assert_eq!(
        &r.disk.contents()[100 * 512..100 * 512 + data.len()],
        &data[..]
    );
    let res = r.blk(T_IN, 100, &[], &[data.len() as u32]);
    assert_eq!(res.status, S_OK);
    assert!(res.data == data, "read back differs");
}

#[test]
fn flush_and_get_id() {
    let mut r = Rig::new(8, false, Faults::default());
    r.bring_up();
    assert_eq!(r.blk(T_FLUSH, 0, &[], &[]).status, S_OK);
    let res = r.blk(T_GET_ID, 0, &[], &[20]);
    assert_eq!(res.status, S_OK);
    let mut want = b"vioboot-disk-0".to_vec();
    want.resize(20, 0);
    assert_eq!(res.data, want);
    assert_eq!(res.used_len, 21);
}

#[test]
fn read_only_disk_refuses_writes() {
    let mut r = Rig::new(8, true, Faults::default());
    let h = r.bring_up();
    assert_ne!(h.device_features & 1 << 5, 0, "VIRTIO_BLK_F_RO");
    let before = r.disk.contents();
    assert_eq!(r.blk(T_OUT, 1, &[vec![0xAB; 512]], &[]).status, S_IOERR);
    assert_eq!(r.disk.contents(), before);
    assert_eq!(r.blk(T_IN, 1, &[], &[512]).data, pattern(1));
    assert_eq!(r.blk(T_FLUSH, 0, &[], &[]).status, S_OK);
}

#[test]
fn out_of_range_and_unsupported_requests() {
    let mut r = Rig::new(16, false, Faults::default());
    r.bring_up();
    assert_eq!(r.blk(T_IN, 16, &[], &[512]).status, S_IOERR);
    assert_eq!(
        r.blk(T_IN, 15, &[], &[1024]).status,
        S_IOERR,
        "runs past the end"
    );
    assert_eq!(
        r.blk(T_OUT, u64::MAX / 256, &[vec![1; 512]], &[]).status,
        S_IOERR,
        "overflows"
    );
    assert_eq!(
        r.blk(T_IN, 0, &[], &[100]).status,
        S_IOERR,
        "not whole sectors"
    );
    let res = r.blk(T_IN, 16, &[], &[512]);
    assert_eq!(
        res.data,
        vec![0; 512],
        "failed read leaves zeros, not stale bytes"
    );
    assert_eq!(
        r.blk(11, 0, &[], &[]).status,
        S_UNSUPP,
        "discard not offered"
    );
    assert_eq!(
        r.blk(T_IN, 15, &[], &[512]).data,
        pattern(15),
        "still serving"
    );
}

#[test]
fn unreadable_and_unwritable_buffers() {
    let mut r = Rig::new(16, false, Faults::default());
    r.bring_up();
    // The guest forgot to map a write's data: IOERR, disk untouched.
    let before = r.disk.contents();
    let (head, bufs) = r.queue_blk(T_OUT, 2, &[vec![9; 512]], &[]);
    r.guest.unmap(bufs[1].addr, 512);
    assert_eq!(r.notify_one(0), 1);
    let res = r.finish_blk(head, &bufs, 0);
    assert_eq!(res.status, S_IOERR);
    assert_eq!(r.disk.contents(), before);
    // A read whose buffer is mapped read-only: the data cannot land, the status does.
    let (head, bufs) = r.queue_blk(T_IN, 2, &[], &[512]);
    r.guest.map(bufs[1].addr, 512, TCE_READ);
    assert_eq!(r.notify_one(0), 2);
    let res = r.finish_blk(head, &bufs, 1);
    assert_eq!(res.status, S_OK);
    assert_eq!(res.data, vec![0xEE; 512]);
    assert!(r.refusals().iter().any(|&(a, _, w)| a == bufs[1].addr && w));
}

#[test]
fn several_chains_in_one_notify() {
    let mut r = Rig::new(64, false, Faults::default());
    r.bring_up();
    let reqs: Vec<_> = (0..5).map(|s| r.queue_blk(T_IN, s, &[], &[512])).collect();
    assert_eq!(r.notify_one(0), 5);
    for (pos, (head, bufs)) in reqs.iter().enumerate() {
        let res = r.finish_blk(*head, bufs, pos as u16);
        assert_eq!((res.status, res.used_id), (S_OK, u32::from(*head)));
        assert_eq!(res.data, pattern(pos as u64));
    }
}

/// Puts a hand-made chain at descriptor 0 (after the existing ones are used), makes `head`
/// available, NOTIFYs; returns the used element; then checks a good request still works.
fn bad_chain(descs: &[(u16, u64, u32, u16, u16)], head: u16) -> (u16, (u32, u32), Rig) {
    let mut r = Rig::new(16, false, Faults::default());
    r.bring_up();
    r.guest.map(BUFFERS, 0x10000, TCE_READ | TCE_WRITE);
    for &(i, addr, len, flags, next) in descs {
        r.vq.put_desc(&mut r.guest, i, addr, len, flags, next);
    }
    r.vq.push_avail(&mut r.guest, head);
    let idx = r.notify_one(0);
    let elem = r.vq.used_elem(&r.guest, 0);
    // The server goes on: a good request in descriptors 10.. .
    r.vq.next_desc = 10;
    let res = r.blk(T_IN, 1, &[], &[512]);
    assert_eq!((res.status, res.data), (S_OK, pattern(1)));
    (idx, elem, r)
}

#[test]
fn a_descriptor_loop_is_refused() {
    let (idx, elem, r) = bad_chain(
        &[
            (0, BUFFERS, 16, F_NEXT, 1),
            (1, BUFFERS + 16, 1, F_NEXT | F_WRITE, 0),
        ],
        0,
    );
    assert_eq!((idx, elem), (1, (0, 0)), "returned with length 0");
    assert_eq!(vio_server::Stats::get(&r.stats.bad_chains), 1);
}

#[test]
fn a_self_loop_and_a_next_out_of_range_are_refused() {
    let (idx, elem, _) = bad_chain(&[(0, BUFFERS, 16, F_NEXT, 0)], 0);
    assert_eq!((idx, elem), (1, (0, 0)));
    let (idx, elem, _) = bad_chain(&[(0, BUFFERS, 16, F_NEXT, 300)], 0);
    assert_eq!((idx, elem), (1, (0, 0)));
}

#[test]
fn buffers_outside_the_window_are_refused() {
    let hdr = BUFFERS;
    let (idx, elem, r) = bad_chain(
        &[
            (0, hdr, 16, F_NEXT, 1),
            (1, WINDOW - 256, 512, F_NEXT | F_WRITE, 2),
            (2, BUFFERS + 0x100, 1, F_WRITE, 0),
        ],
        0,
    );
    assert_eq!((idx, elem), (1, (0, 0)));
    assert!(
        r.refusals().is_empty(),
        "nothing outside the window was even asked for"
    );
    let (_, elem, _) = bad_chain(&[(0, u64::MAX - 8, 16, 0, 0)], 0);
    assert_eq!(elem, (0, 0));
}

#[test]
fn indirect_and_misordered_chains_are_refused() {
    let (_, elem, _) = bad_chain(&[(0, BUFFERS, 32, F_INDIRECT, 0)], 0);
    assert_eq!(elem, (0, 0));
    let (_, elem, _) = bad_chain(
        &[
            (0, BUFFERS, 1, F_NEXT | F_WRITE, 1),
            (1, BUFFERS + 16, 16, 0, 0),
        ],
        0,
    );
    assert_eq!(elem, (0, 0));
    // No status byte at all.
    let (_, elem, _) = bad_chain(&[(0, BUFFERS, 16, 0, 0)], 0);
    assert_eq!(elem, (0, 0));
}

#[test]
fn a_head_out_of_range_is_skipped() {
    let mut r = Rig::new(16, false, Faults::default());
    r.bring_up();
    r.vq.push_avail(&mut r.guest, 999);
    let res = r.blk(T_IN, 2, &[], &[512]);
    // The bad head cannot be returned; the good request behind it is served.
    assert_eq!((res.status, res.data), (S_OK, pattern(2)));
}

#[test]
fn an_avail_index_too_far_ahead_needs_reset() {
    let mut r = Rig::new(16, false, Faults::default());
    r.bring_up();
    r.guest.write(AVAIL + 2, &300u16.to_le_bytes());
    let out = r.notify(0);
    let msgs: Vec<Message> = out.iter().map(|e| Message::decode(e).unwrap()).collect();
    assert_eq!(msgs.len(), 2, "{msgs:?}");
    assert_eq!(msgs[0].opcode, Opcode::ConfigChanged);
    assert_eq!((msgs[1].opcode, msgs[1].arg64), (Opcode::Used, 0));
    assert_ne!(
        r.call(Opcode::GetStatus, 0, 0).arg64 & 64,
        0,
        "DEVICE_NEEDS_RESET"
    );
    // Later NOTIFYs are answered, not served; a reset and replay bring it back.
    assert_eq!(r.notify_one(0), 0);
    assert_eq!(r.status_of(Opcode::SetStatus, 0, 0), Status::Ok);
    r.guest.write(AVAIL + 2, &0u16.to_le_bytes());
    r.vq = GuestVq::new(256);
    r.deliver(Entry::init(false));
    r.guest.take_crq();
    let f = r.probe().device_features;
    assert_eq!(r.status_of(Opcode::SetFeatures, 0, f), Status::Ok);
    assert_eq!(
        r.status_of(Opcode::SetStatus, 0, ACK | DRIVER | FEATURES_OK),
        Status::Ok
    );
    let setup = r.vq.setup(0);
    assert_eq!(r.queue_setup(setup), Status::Ok);
    assert_eq!(
        r.status_of(Opcode::SetStatus, 0, ACK | DRIVER | FEATURES_OK | DRIVER_OK),
        Status::Ok
    );
    assert_eq!(r.blk(T_IN, 3, &[], &[512]).data, pattern(3));
}

#[test]
fn unmapped_rings_need_reset() {
    let mut r = Rig::new(16, false, Faults::default());
    r.bring_up();
    r.queue_blk(T_IN, 1, &[], &[512]);
    r.guest.unmap(USED, 4096);
    let out = r.notify(0);
    assert_eq!(out.len(), 2, "CONFIG_CHANGED and USED");
    let used = Message::decode(&out[1]).unwrap();
    assert_eq!(
        (used.opcode, used.arg64),
        (Opcode::Used, 0),
        "USED tells what the guest's ring holds"
    );
    assert_ne!(r.call(Opcode::GetStatus, 0, 0).arg64 & 64, 0);
}

#[test]
fn setup_resumes_at_the_used_index() {
    let mut r = Rig::new(64, false, Faults::default());
    r.connect();
    let f = r.probe().device_features;
    assert_eq!(r.status_of(Opcode::SetFeatures, 0, f), Status::Ok);
    assert_eq!(
        r.status_of(Opcode::SetStatus, 0, ACK | DRIVER | FEATURES_OK),
        Status::Ok
    );
    // A small ring that has wrapped many times: the old server marked 65534 buffers used (ring
    // slot 14);
    // three more are available, the last two past the u16 wrap.
    r.vq = GuestVq::new(16);
    r.vq.map(&mut r.guest);
    r.vq.avail_idx = 65534;
    r.guest.write(USED + 2, &65534u16.to_le_bytes());
    let reqs: Vec<_> = (0..3)
        .map(|s| r.queue_blk(T_IN, 20 + s, &[], &[512]))
        .collect();
    let setup = r.vq.setup(0);
    assert_eq!(r.queue_setup(setup), Status::Ok);
    assert_eq!(
        r.status_of(Opcode::SetStatus, 0, ACK | DRIVER | FEATURES_OK | DRIVER_OK),
        Status::Ok
    );
    assert_eq!(r.notify_one(0), 1, "65534 + 3 wraps to 1");
    for (k, (head, bufs)) in reqs.iter().enumerate() {
        let res = r.finish_blk(*head, bufs, 65534u16.wrapping_add(k as u16));
        assert_eq!((res.status, res.used_id), (S_OK, u32::from(*head)));
        assert_eq!(res.data, pattern(20 + k as u64));
    }
}

#[test]
fn a_writable_buffer_over_the_rings_is_refused() {
    let mut r = Rig::new(16, false, Faults::default());
    r.bring_up();
    // A read whose data buffer is the descriptor table itself (mapped read/write for the test).
    r.guest.map(DESC, 4096, TCE_READ | TCE_WRITE);
    let hdr = r.alloc(16);
    let st = r.alloc(1);
    r.guest.write(hdr, &[0; 16]);
    r.guest.map(hdr, 16, TCE_READ);
    r.guest.map(st, 1, TCE_READ | TCE_WRITE);
    let bufs = [
        Buf {
            addr: hdr,
            len: 16,
            flags: 0,
        },
        Buf {
            addr: DESC,
            len: 512,
            flags: F_WRITE,
        },
        Buf {
            addr: st,
            len: 1,
            flags: F_WRITE,
        },
    ];
    r.vq.add_chain(&mut r.guest, &bufs);
    assert_eq!(r.notify_one(0), 1);
    assert_eq!(r.vq.used_elem(&r.guest, 0), (0, 0));
    assert_eq!(
        r.guest.read(DESC + 16, 8),
        DESC.to_le_bytes(),
        "the table is not overwritten"
    );
}
