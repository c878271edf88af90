//! vioboot's TCE windows against the simulated hypervisor: how many hcalls a request's buffers
//! cost (none for small buffers, bounced; one H_PUT_TCE_INDIRECT and one H_STUFF_TCE for a
//! long one), what the device can reach through the window during and after a request, and that
//! a failed request's buffers (bounced or mapped) are all revoked.

mod sim;

use papr::hcall::{H_PUT_TCE, H_PUT_TCE_INDIRECT, H_STUFF_TCE};
use papr::tce::{TCE_INDIRECT_MAX, TCE_PAGE_SIZE};
use sim::{Hv, Server, Sim, SERIAL, WINDOW};
use vioboot::hcall::Ioba;
use vioboot::mem::DmaPages;
use vioboot::vio::tce::{self, Access, TceError, TceWindow, BOUNCE_MAX};

/// No server: these tests make no CRQ traffic.
struct Idle;

impl Server for Idle {
    fn pump(&mut self, _hv: &mut Hv) {}
}

/// The TCE hcalls made so far: (H_PUT_TCE, H_PUT_TCE_INDIRECT, H_STUFF_TCE).
fn tce_calls(sim: &Sim) -> (u64, u64, u64) {
    (
        sim.count(H_PUT_TCE),
        sim.count(H_PUT_TCE_INDIRECT),
        sim.count(H_STUFF_TCE),
    )
}

/// A simulated hypervisor, a fresh window with one standing mapping (a ring page), and the
/// ring's pages (kept alive by the caller).
fn setup() -> (Sim, usize, DmaPages, Ioba) {
    let sim = Sim::install(Box::new(Idle));
    let id = tce::register(TceWindow::new(WINDOW));
    let ring = DmaPages::alloc(1).expect("a ring page");
    let at = tce::with(id, |w| w.map(ring.addr(), 4096, Access::Both))
        .expect("window")
        .expect("the ring maps");
    (sim, id, ring, at)
}

fn win<R>(id: usize, f: impl FnOnce(&mut TceWindow) -> R) -> R {
    tce::with(id, f).expect("window")
}

/// The bytes the device reads at `ioba`, or the hypervisor's refusal.
fn device_reads(sim: &Sim, ioba: Ioba, len: usize) -> Result<Vec<u8>, i64> {
    let mut b = vec![0u8; len];
    sim.hv.borrow_mut().rdma_read(ioba.0, &mut b).map(|()| b)
}

/// Whether the hypervisor holds a TCE for the page of `ioba` (any permission).
fn mapped(sim: &Sim, ioba: Ioba) -> bool {
    sim.hv
        .borrow()
        .tces
        .contains_key(&(ioba.0 & !(TCE_PAGE_SIZE - 1)))
}

#[test]
fn a_small_request_costs_no_tce_hcall_and_leaves_nothing_reachable() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (sim, id, _ring, _) = setup();
    let standing = win(id, |w| w.pages_in_use());
    let mut before = tce_calls(&sim);
    for round in 0..3u8 {
        // A virtio-blk 4 KiB read: header (device reads), data and status (device writes).
        let header = [round; 16];
        let mut data = vec![0u8; 4096];
        let mut status = [0xffu8; 1];
        let h = win(id, |w| w.share(&header, Access::DeviceReads)).expect("header");
        let d = win(id, |w| w.share(&data, Access::DeviceWrites)).expect("data");
        let s = win(id, |w| w.share(&status, Access::DeviceWrites)).expect("status");
        if round == 0 {
            // The bounce area is mapped once, with one H_PUT_TCE_INDIRECT, and stays.
            let after = tce_calls(&sim);
            assert_eq!(after, (before.0, before.1 + 1, before.2));
            before = after;
        }
        assert_eq!(win(id, |w| w.pages_in_use()), standing + 3);
        // The device sees the header and writes data and status.
        assert_eq!(device_reads(&sim, h, 16), Ok(header.to_vec()));
        let written: Vec<u8> = (0..4096).map(|i| (i as u8) ^ round).collect();
        sim.hv.borrow_mut().rdma_write(d.0, &written).expect("data");
        sim.hv.borrow_mut().rdma_write(s.0, &[0]).expect("status");
        // The driver's buffers themselves were never mapped.
        let hv = sim.hv.borrow();
        for b in [header.as_ptr() as u64, data.as_ptr() as u64] {
            assert!(
                !hv.tces.values().any(|t| t & !0xfff == b & !0xfff),
                "a request buffer's page is mapped"
            );
        }
        drop(hv);
        win(id, |w| w.unshare(h, 16, None)).expect("header");
        win(id, |w| w.unshare(d, 4096, Some(&mut data))).expect("data");
        win(id, |w| w.unshare(s, 1, Some(&mut status))).expect("status");
        assert_eq!(data, written, "the device's bytes reach the buffer");
        assert_eq!(status, [0]);
        // Nothing of the request is left for the device to read: the slots are zeroed.
        assert_eq!(device_reads(&sim, h, 16), Ok(vec![0; 16]));
        assert_eq!(device_reads(&sim, d, 4096), Ok(vec![0; 4096]));
        assert_eq!(win(id, |w| w.pages_in_use()), standing);
    }
    assert_eq!(tce_calls(&sim), before, "no TCE hcall for small requests");
}

#[test]
fn a_long_buffer_costs_one_indirect_and_one_stuff() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (sim, id, _ring, _) = setup();
    let standing = win(id, |w| w.pages_in_use());
    let buf = DmaPages::alloc(256).expect("1 MiB");
    let before = tce_calls(&sim);
    let at = win(id, |w| w.share(buf.bytes(), Access::DeviceReads)).expect("share");
    assert_eq!(tce_calls(&sim), (before.0, before.1 + 1, before.2));
    assert_eq!(win(id, |w| w.pages_in_use()), standing + 256);
    // Mapped in place, read-only.
    assert!(device_reads(&sim, Ioba(at.0 + (1 << 20) - 8), 8).is_ok());
    assert!(sim.hv.borrow_mut().rdma_write(at.0, &[1]).is_err());
    win(id, |w| w.unshare(at, 1 << 20, None)).expect("unshare");
    assert_eq!(tce_calls(&sim), (before.0, before.1 + 1, before.2 + 1));
    assert!(device_reads(&sim, at, 1).is_err(), "still reachable");
    assert_eq!(win(id, |w| w.pages_in_use()), standing);
}

#[test]
fn a_buffer_beyond_one_tce_list_takes_one_indirect_per_512_pages() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (sim, id, _ring, _) = setup();
    let pages = TCE_INDIRECT_MAX + 100;
    let buf = DmaPages::alloc(pages).expect("pages");
    let before = tce_calls(&sim);
    let at = win(id, |w| w.share(buf.bytes(), Access::DeviceWrites)).expect("share");
    assert_eq!(tce_calls(&sim), (before.0, before.1 + 2, before.2));
    // Every page is reachable, the last one too, and maps the right memory.
    let last = at.0 + (pages as u64 - 1) * TCE_PAGE_SIZE;
    sim.hv
        .borrow_mut()
        .rdma_write(last, &[0xab])
        .expect("last page");
    assert_eq!(buf.read_volatile((pages - 1) * 4096), 0xab);
    win(id, |w| w.unshare(at, buf.len(), None)).expect("unshare");
    assert_eq!(tce_calls(&sim), (before.0, before.1 + 2, before.2 + 1));
    assert!(sim.hv.borrow_mut().rdma_write(last, &[0]).is_err());
}

#[test]
fn a_failed_request_is_revoked_entirely_bounce_area_included() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (sim, id, ring, ring_at) = setup();
    let standing = win(id, |w| w.pages_in_use());
    let header = [7u8; 16];
    let big = DmaPages::alloc(64).expect("256 KiB");
    let h = win(id, |w| w.share(&header, Access::DeviceReads)).expect("header");
    let d = win(id, |w| w.share(big.bytes(), Access::DeviceWrites)).expect("data");
    assert!(win(id, |w| w.bounce_mapped()));
    // The request fails before its buffers are unshared: everything it shared is revoked,
    // and the bounce area that held its header is unmapped too.
    assert_eq!(win(id, |w| w.revoke_shared()), Ok(2));
    assert!(!mapped(&sim, h), "the bounce area is reachable");
    assert!(!mapped(&sim, d), "the data buffer is reachable");
    assert!(!win(id, |w| w.bounce_mapped()));
    assert_eq!(win(id, |w| w.pages_in_use()), standing);
    // Only the ring stays mapped.
    let ring_page = ring_at.0 & !(TCE_PAGE_SIZE - 1);
    let mapped: Vec<u64> = sim.hv.borrow().tces.keys().copied().collect();
    assert_eq!(mapped, vec![ring_page]);
    assert_eq!(sim.hv.borrow().tces[&ring_page] & !0xfff, ring.addr().0);
    // Revoked buffers are gone: unsharing them now is an error, not a second unmap.
    assert!(matches!(
        win(id, |w| w.unshare(h, 16, None)),
        Err(TceError::NotMapped { .. })
    ));
    // The next request maps a bounce area again and works.
    let h = win(id, |w| w.share(&header, Access::DeviceReads)).expect("header");
    assert_eq!(device_reads(&sim, h, 16), Ok(header.to_vec()));
    win(id, |w| w.unshare(h, 16, None)).expect("unshare");
    assert_eq!(win(id, |w| w.pages_in_use()), standing);
}

#[test]
fn a_full_bounce_area_falls_back_to_mapping() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (sim, id, _ring, _) = setup();
    let standing = win(id, |w| w.pages_in_use());
    let bufs: Vec<Vec<u8>> = (0..12u8).map(|i| vec![i; BOUNCE_MAX]).collect();
    let at: Vec<Ioba> = bufs
        .iter()
        .map(|b| win(id, |w| w.share(b, Access::DeviceReads)).expect("share"))
        .collect();
    // Each buffer reads as itself, bounced or mapped, and all IOBAs differ.
    for (b, &a) in bufs.iter().zip(&at) {
        assert_eq!(device_reads(&sim, a, BOUNCE_MAX).as_ref(), Ok(b));
    }
    let before = tce_calls(&sim);
    for (b, &a) in bufs.iter().zip(&at) {
        win(id, |w| w.unshare(a, b.len(), None)).expect("unshare");
    }
    // The buffers that did not fit were mapped, and are unmapped one hcall each.
    let (put, _, stuff) = tce_calls(&sim);
    assert!(put + stuff > before.0 + before.2, "nothing was mapped");
    assert_eq!(win(id, |w| w.pages_in_use()), standing);
}

#[test]
fn the_bounce_area_goes_with_the_last_ring_and_is_not_unmapped_by_other_calls() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (sim, id, _ring, ring_at) = setup();
    let b = [1u8; 32];
    let at = win(id, |w| w.share(&b, Access::DeviceReads)).expect("share");
    // `unmap` is for what `map` mapped: a bounced buffer's IOBA is refused.
    assert!(matches!(
        win(id, |w| w.unmap(at, 32)),
        Err(TceError::NotMapped { .. })
    ));
    win(id, |w| w.unshare(at, 32, None)).expect("unshare");
    assert!(win(id, |w| w.bounce_mapped()), "kept while rings exist");
    let stuff = sim.count(H_STUFF_TCE);
    win(id, |w| w.unmap(ring_at, 4096)).expect("the ring unmaps");
    assert!(!win(id, |w| w.bounce_mapped()));
    assert_eq!(sim.count(H_STUFF_TCE), stuff + 1);
    assert!(
        sim.hv.borrow().tces.is_empty(),
        "TCEs left after the last ring"
    );
    assert_eq!(win(id, |w| w.pages_in_use()), 1);
    // A window cleared whole gives its bounce area back too.
    let page = DmaPages::alloc(1).expect("page");
    win(id, |w| w.map(page.addr(), 4096, Access::Both)).expect("map");
    win(id, |w| w.share(&b, Access::DeviceReads)).expect("share");
    win(id, |w| w.clear_all()).expect("clear");
    assert!(!win(id, |w| w.bounce_mapped()));
    assert!(sim.hv.borrow().tces.is_empty());
}

/// A window whose puts wait for the notify (virtio-vio's), with a ring mapped.
fn deferred() -> (Sim, usize, DmaPages) {
    let (sim, id, ring, _) = setup();
    win(id, |w| w.defer_puts_until_notify());
    (sim, id, ring)
}

/// `n` buffers of `pages` pages each (page aligned), shared with the device writing them.
fn share_pages(id: usize, n: usize, pages: usize) -> (Vec<DmaPages>, Vec<Ioba>) {
    let bufs: Vec<DmaPages> = (0..n)
        .map(|_| DmaPages::alloc(pages).expect("pages"))
        .collect();
    let at = bufs
        .iter()
        .map(|b| win(id, |w| w.share(b.bytes(), Access::DeviceWrites)).expect("share"))
        .collect();
    (bufs, at)
}

#[test]
fn a_batch_is_put_with_one_indirect_at_the_notify_and_cleared_with_one_stuff() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (sim, id, _ring) = deferred();
    let standing = win(id, |w| w.pages_in_use());
    // Eight 256 KiB buffers (as virtio-fs's READs under one NOTIFY): 512 pages.
    let before = tce_calls(&sim);
    let (bufs, at) = share_pages(id, 8, 64);
    assert_eq!(tce_calls(&sim), before, "nothing is put before the notify");
    assert!(at.iter().all(|a| !mapped(&sim, *a)));
    win(id, |w| w.flush()).expect("flush");
    assert_eq!(tce_calls(&sim), (before.0, before.1 + 1, before.2));
    for (b, a) in bufs.iter().zip(&at) {
        sim.hv
            .borrow_mut()
            .rdma_write(a.0 + 4095, &[0x5a])
            .expect("mapped");
        assert_eq!(b.read_volatile(4095), 0x5a, "the IOBA maps its own buffer");
    }
    // Unshared one by one: the batch is cleared when its last buffer is, in one hcall.
    for (i, (b, a)) in bufs.iter().zip(&at).enumerate() {
        win(id, |w| w.unshare(*a, b.len(), None)).expect("unshare");
        let stuffs = if i == 7 { 1 } else { 0 };
        assert_eq!(tce_calls(&sim), (before.0, before.1 + 1, before.2 + stuffs));
    }
    for a in &at {
        assert!(!mapped(&sim, *a), "still reachable");
    }
    assert_eq!(win(id, |w| w.pages_in_use()), standing);
}

#[test]
fn a_batch_beyond_one_tce_list_page_takes_one_indirect_per_512_pages() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (sim, id, _ring) = deferred();
    let standing = win(id, |w| w.pages_in_use());
    let before = tce_calls(&sim);
    // Nine buffers of 64 pages: 576 TCEs, more than one list page holds.
    let (bufs, at) = share_pages(id, 9, 64);
    win(id, |w| w.flush()).expect("flush");
    assert_eq!(tce_calls(&sim), (before.0, before.1 + 2, before.2));
    let last = at[8].0 + 63 * TCE_PAGE_SIZE;
    sim.hv
        .borrow_mut()
        .rdma_write(last, &[7])
        .expect("the last page is mapped");
    assert_eq!(bufs[8].read_volatile(63 * 4096), 7);
    for (b, a) in bufs.iter().zip(&at) {
        win(id, |w| w.unshare(*a, b.len(), None)).expect("unshare");
    }
    assert_eq!(tce_calls(&sim), (before.0, before.1 + 2, before.2 + 1));
    assert!(sim.hv.borrow_mut().rdma_write(last, &[0]).is_err());
    assert_eq!(win(id, |w| w.pages_in_use()), standing);
}

#[test]
fn a_batch_that_fails_half_way_is_revoked_whole() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (sim, id, _ring) = deferred();
    let standing = win(id, |w| w.pages_in_use());
    // Put, partly unshared, then the request fails.
    let (bufs, at) = share_pages(id, 4, 16);
    let small = [9u8; 100];
    let s = win(id, |w| w.share(&small, Access::DeviceReads)).expect("small");
    win(id, |w| w.flush()).expect("flush");
    for (b, a) in bufs.iter().zip(&at).take(2) {
        win(id, |w| w.unshare(*a, b.len(), None)).expect("unshare");
    }
    assert_eq!(win(id, |w| w.revoke_shared()), Ok(3));
    for a in at.iter().chain([&s]) {
        assert!(!mapped(&sim, *a), "reachable after revoke");
    }
    assert_eq!(win(id, |w| w.pages_in_use()), standing);
    // Shared but never notified (the notify failed): revoked too, and a later flush puts
    // nothing of it.
    let (_bufs, at) = share_pages(id, 2, 16);
    assert_eq!(win(id, |w| w.revoke_shared()), Ok(2));
    let before = tce_calls(&sim);
    win(id, |w| w.flush()).expect("flush");
    assert_eq!(tce_calls(&sim), before);
    assert!(!mapped(&sim, at[0]));
    assert_eq!(win(id, |w| w.pages_in_use()), standing);
}

#[test]
fn a_batch_left_in_flight_does_not_hold_back_later_ones() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    // Without deferred puts (a virtio-pci window): each buffer is put when shared.
    let (sim, id, _ring, _) = setup();
    let standing = win(id, |w| w.pages_in_use());
    // Batch 1 never completes (a device that was given up keeps it).
    let (_stuck, stuck_at) = share_pages(id, 1, 4);
    win(id, |w| w.flush()).expect("notify");
    // Batch 2: three buffers, put one each, cleared together at the last unshare.
    let before = tce_calls(&sim);
    let (bufs, at) = share_pages(id, 3, 4);
    assert_eq!(tce_calls(&sim), (before.0, before.1 + 3, before.2));
    win(id, |w| w.flush()).expect("notify");
    for (b, a) in bufs.iter().zip(&at) {
        win(id, |w| w.unshare(*a, b.len(), None)).expect("unshare");
    }
    assert_eq!(tce_calls(&sim), (before.0, before.1 + 3, before.2 + 1));
    for a in &at {
        assert!(!mapped(&sim, *a), "batch 2 still reachable");
    }
    assert!(mapped(&sim, stuck_at[0]));
    assert_eq!(win(id, |w| w.pages_in_use()), standing + 4);
    assert_eq!(win(id, |w| w.revoke_shared()), Ok(1));
    assert!(!mapped(&sim, stuck_at[0]));
    assert_eq!(win(id, |w| w.pages_in_use()), standing);
}
