//! vioboot's virtio-blk driver against the real VIO server logic (`vio-server`'s `Session`),
//! through the simulated hypervisor, in one process: every CRQ entry, TCE and remote DMA is
//! real on both sides, only the hypervisor and QEMU are simulated. Fault injection comes from
//! the server's own `Faults`.

mod sim;

use sim::{adapter, Hv, Server, Sim, SERIAL, WINDOW};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use vio_server::{Faults, Partner, PartnerError, Session, Stats};
use vioboot::dev::{BlockDevice, Device};
use vioboot::drivers::virtio_blk::VirtioBlk as Blk;
use vioboot::virtio::VioTransport;
use vioboot_core::pattern;

/// The server's view of the simulated hypervisor.
struct HvPartner<'a>(&'a mut Hv);

impl Partner for HvPartner<'_> {
    fn send_crq(&mut self, entry: [u8; 16]) -> Result<(), PartnerError> {
        self.0.deliver(entry).map_err(PartnerError::Status)
    }
    fn rdma_read(&mut self, ioba: u64, buf: &mut [u8]) -> Result<(), PartnerError> {
        self.0.rdma_read(ioba, buf).map_err(PartnerError::Status)
    }
    fn rdma_write(&mut self, ioba: u64, data: &[u8]) -> Result<(), PartnerError> {
        self.0.rdma_write(ioba, data).map_err(PartnerError::Status)
    }
    fn next_event(&mut self, _timeout: std::time::Duration) -> Option<vio_server::Event> {
        self.0
            .to_server
            .pop_front()
            .map(vio_server::Event::GuestCrq)
    }
    fn disconnect(&mut self) {
        self.0.partner_failed();
    }
}

/// One server session serving a disk file.
struct Real {
    session: Session<vio_server::Blk>,
}

impl Real {
    fn new(disk: &Path, faults: Faults, stats: Arc<Stats>) -> Real {
        let blk =
            vio_server::Blk::open(disk, false, Some("sim-disk"), stats.clone()).expect("disk");
        let mirror =
            vio_server::Mirror::new(WINDOW.ioba, WINDOW.size, stats.clone()).expect("mirror");
        Real {
            session: Session::new(mirror, blk, faults, stats),
        }
    }
}

impl Server for Real {
    fn pump(&mut self, hv: &mut Hv) {
        while let Some(e) = hv.to_server.pop_front() {
            if self.session.handle(&mut HvPartner(hv), e).is_err() {
                // Died or disconnected: the hypervisor tells the guest its partner failed.
                hv.partner_failed();
                return;
            }
        }
    }
}

fn disk(name: &str, mib: u64) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/test-serve");
    std::fs::create_dir_all(&dir).expect("dir");
    let p = dir.join(format!("{name}.img"));
    vioboot_harness::pattern_disk(&p, mib).expect("disk image");
    p
}

/// Boots the guest side against a server with `faults`; later servers (after a failure) have none.
fn setup(name: &str, faults: &str) -> (Sim, Blk, Arc<Stats>, PathBuf) {
    let path = disk(name, 4);
    let stats = Arc::new(Stats::default());
    let sim = Sim::install(Box::new(Real::new(
        &path,
        Faults::parse(faults).expect("faults"),
        stats.clone(),
    )));
    let (p2, s2) = (path.clone(), stats.clone());
    sim.on_failure(Box::new(move || {
        Box::new(Real::new(&p2, Faults::default(), s2.clone()))
    }));
    let a = adapter();
    let t = VioTransport::open(&a, 2_000_000).expect("the transport opens");
    let blk = Blk::over(a.name.clone(), t).expect("the device opens");
    (sim, blk, stats, path)
}

fn fill(seed: u64, first: u64, sectors: usize) -> Vec<u8> {
    let mut v = vec![0u8; sectors * 512];
    pattern::fill_run(seed, first, &mut v);
    v
}

fn check(seed: u64, first: u64, buf: &[u8]) {
    assert_eq!(
        pattern::check_run(seed, first, buf),
        Ok(()),
        "(sector, byte) that differs"
    );
}

#[test]
fn read_write_flush_id_and_nothing_left_mapped() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (sim, mut blk, stats, path) = setup("plain", "");
    assert_eq!(blk.capacity(), 8192);
    assert_eq!(blk.identity().expect("serial"), "sim-disk");
    let mut buf = vec![0u8; 64 * 512];
    blk.read(0, &mut buf).expect("read");
    check(0, 0, &buf);
    let data = fill(7, 100, 128);
    blk.write(100, &data).expect("write");
    blk.flush().expect("flush");
    let mut back = vec![0u8; data.len()];
    blk.read(100, &mut back).expect("read back");
    check(7, 100, &back);
    // The file holds it too.
    let file = std::fs::read(&path).expect("disk");
    check(7, 100, &file[100 * 512..228 * 512]);
    assert_eq!(
        blk.pages_left_mapped(),
        0,
        "buffers left mapped after the requests"
    );
    assert!(Stats::get(&stats.rdma_reads) > 0 && Stats::get(&stats.requests) >= 5);
    blk.shut_down().expect("shutdown");
    assert!(sim.hv.borrow().tces.is_empty(), "TCEs left after shutdown");
    assert!(sim.hv.borrow().crq.is_none());
}

/// The TCE and CRQ hcalls one `op` makes: (H_PUT_TCE, H_PUT_TCE_INDIRECT, H_STUFF_TCE,
/// H_SEND_CRQ).
fn hcalls_of(sim: &Sim, op: impl FnOnce()) -> [u64; 4] {
    use papr::hcall::{H_PUT_TCE, H_PUT_TCE_INDIRECT, H_SEND_CRQ, H_STUFF_TCE};
    let kinds = [H_PUT_TCE, H_PUT_TCE_INDIRECT, H_STUFF_TCE, H_SEND_CRQ];
    let before = kinds.map(|k| sim.count(k));
    op();
    let after = kinds.map(|k| sim.count(k));
    core::array::from_fn(|i| after[i] - before[i])
}

#[test]
fn a_4k_request_costs_one_hcall_and_a_1m_request_three() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (sim, mut blk, stats, _path) = setup("hcalls", "");
    let rdma = || Stats::get(&stats.rdma_reads) + Stats::get(&stats.rdma_writes);
    let mut small = vec![0u8; 4096];
    let mut big = vec![0u8; 1 << 20];
    // The first request maps the window's bounce area (once for the device's lifetime).
    blk.read(0, &mut small).expect("read");
    for first in [8u64, 64, 1000] {
        let ops = rdma();
        let n = hcalls_of(&sim, || blk.read(first, &mut small).expect("4 KiB read"));
        assert_eq!(n, [0, 0, 0, 1], "4 KiB read at {first}: only the NOTIFY");
        // The server: rings (one read), header; data, status, used element, used index.
        assert_eq!(rdma() - ops, 6, "remote-DMA operations of a 4 KiB read");
        check(0, first, &small);
        let data = fill(3, first, 8);
        let n = hcalls_of(&sim, || blk.write(first, &data).expect("4 KiB write"));
        assert_eq!(n, [0, 0, 0, 1], "4 KiB write at {first}");
        let n = hcalls_of(&sim, || blk.read(first, &mut big).expect("1 MiB read"));
        assert_eq!(n, [0, 1, 1, 1], "1 MiB read at {first}: map, NOTIFY, unmap");
        check(3, first, &big[..4096]);
        check(0, first + 8, &big[4096..]);
        assert_eq!(blk.pages_left_mapped(), 0, "buffers left mapped");
        // Put the pattern back for the next round.
        let orig = fill(0, first, 8);
        blk.write(first, &orig).expect("restore");
    }
    blk.shut_down().expect("shutdown");
    assert!(sim.hv.borrow().tces.is_empty(), "TCEs left after shutdown");
}

#[test]
fn a_server_that_dies_mid_request_loses_nothing() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (sim, mut blk, _stats, path) = setup("die", "die-mid-request");
    // The first NOTIFY kills the first server after serving half its chains.
    let data = fill(9, 512, 256);
    blk.write(512, &data)
        .expect("the write completes on the restarted server");
    let mut back = vec![0u8; data.len()];
    blk.read(512, &mut back).expect("read back");
    check(9, 512, &back);
    let file = std::fs::read(&path).expect("disk");
    check(9, 512, &file[512 * 512..768 * 512]);
    assert_eq!(sim.hv.borrow().failures, 1);
    let (link, crq) = blk.handle().counters();
    assert!(link.resets >= 1 && crq.recoveries >= 1, "{link:?} {crq:?}");
    assert_eq!(blk.pages_left_mapped(), 0);
}

#[test]
fn a_used_id_out_of_range_is_an_error_not_a_hang() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (_sim, mut blk, _stats, _path) = setup("badid", "bad-used-id");
    let mut buf = vec![0u8; 4096];
    let e = blk.read(0, &mut buf).expect_err("refused");
    let text = e.to_string();
    assert!(text.contains("virtio@71000010"), "{text}");
    // The failed request's buffers are unmapped before their memory is reused.
    assert_eq!(
        blk.pages_left_mapped(),
        0,
        "buffers of the failed request still mapped"
    );
}

#[test]
fn a_used_length_beyond_the_buffer_reads_nothing_extra() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (_sim, mut blk, _stats, _path) = setup("badlen", "bad-used-len");
    let mut buf = vec![0u8; 8192 + 512];
    let guard = buf.len() - 512;
    buf[guard..].fill(0xEE);
    blk.read(0, &mut buf[..guard]).expect("read");
    check(0, 0, &buf[..guard]);
    assert!(
        buf[guard..].iter().all(|&b| b == 0xEE),
        "bytes past the buffer changed"
    );
}

#[test]
fn a_flooded_crq_does_not_confuse_completions() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (_sim, mut blk, _stats, _path) = setup("flood", "flood");
    let mut buf = vec![0u8; 16 * 512];
    for round in 0..6u64 {
        blk.read(round * 16, &mut buf).expect("read");
        check(0, round * 16, &buf);
    }
    let (link, crq) = blk.handle().counters();
    assert!(
        link.used_notices > 250,
        "the flood did not arrive: {link:?} {crq:?}"
    );
    assert_eq!(blk.pages_left_mapped(), 0);
}

#[test]
fn unknown_opcodes_and_unmapped_probes_are_survived() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (sim, mut blk, stats, _path) = setup("noise", "unknown-opcode,touch-unmapped");
    let mut buf = vec![0u8; 16 * 512];
    for round in 0..4u64 {
        blk.read(round * 16, &mut buf).expect("read");
        check(0, round * 16, &buf);
    }
    let (link, _) = blk.handle().counters();
    assert!(
        link.protocol_errors >= 4,
        "unknown opcodes were not counted: {link:?}"
    );
    assert!(
        sim.hv.borrow().refused_rdma >= 4,
        "the server reached an unmapped IOBA"
    );
    assert!(Stats::get(&stats.rdma_refused) >= 4);
    assert_eq!(blk.pages_left_mapped(), 0);
}

/// The server dies for good: FLUSH and GET_ID (once virtio-drivers' blocking calls, which
/// spun on the used ring) fail by name within the bound, and the device is given up with
/// nothing left mapped. Setting it up again fails at once while no server is there; once one
/// is, the device is set up again (a new session, the device reset, a new queue) and reads,
/// writes, FLUSH and GET_ID work on it, the write made before the failure intact.
#[test]
fn a_dead_server_fails_flush_and_get_id_by_name_and_a_new_one_takes_the_device_again() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (sim, mut blk, stats, path) = setup("gone", "");
    *sim.respawn.borrow_mut() = None;
    let data = fill(3, 64, 32);
    blk.write(64, &data).expect("write");
    sim.hv.borrow_mut().partner_failed();
    let e = blk
        .flush()
        .expect_err("FLUSH to a dead server fails")
        .to_string();
    assert!(
        e.starts_with("virtio@71000010: ") && e.contains("did not answer INIT within 2000 ms"),
        "{e}"
    );
    let id = blk.identity().expect_err("GET_ID fails too").to_string();
    assert_eq!(id, e, "a device given up answers with its failure");
    assert_eq!(
        blk.pages_left_mapped(),
        0,
        "buffers of the failed FLUSH left mapped"
    );
    let start = std::time::Instant::now();
    let e = blk
        .reconnect()
        .expect_err("no server to set it up with")
        .to_string();
    assert!(e.contains("H_CLOSED"), "{e}");
    assert!(
        start.elapsed() < std::time::Duration::from_millis(500),
        "waited {:?} for a server that is not there",
        start.elapsed()
    );
    sim.restart_server(Box::new(Real::new(&path, Faults::default(), stats.clone())));
    assert_eq!(blk.reconnect(), Ok(true), "set up again");
    assert_eq!(blk.identity().expect("serial"), "sim-disk");
    assert_eq!(blk.capacity(), 8192);
    let mut back = vec![0u8; data.len()];
    blk.read(64, &mut back).expect("read back");
    check(3, 64, &back);
    let more = fill(4, 1024, 64);
    blk.write(1024, &more).expect("write on the new session");
    blk.flush().expect("flush on the new session");
    let mut back = vec![0u8; more.len()];
    blk.read(1024, &mut back).expect("read back");
    check(4, 1024, &back);
    assert_eq!(blk.reconnect(), Ok(false), "nothing to set up again");
    assert_eq!(blk.pages_left_mapped(), 0);
    blk.shut_down().expect("shutdown");
    assert!(sim.hv.borrow().tces.is_empty(), "TCEs left after shutdown");
    assert!(sim.hv.borrow().crq.is_none());
}
