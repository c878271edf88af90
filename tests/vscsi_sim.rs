//! vioboot's v-scsi driver against a fake SRP target, in one host process, through the
//! simulated hypervisor (tests/sim): the whole bind (ADAPTER_INFO, login, REPORT LUNS,
//! INQUIRY, TEST UNIT READY with UNIT ATTENTION, READ CAPACITY, VPD, MODE SENSE), reads and
//! writes, and what QEMU never sends: an unknown tag, short and oversized responses, sense
//! data, a target that stops answering (then ABORT TASK and LOGICAL UNIT RESET, answered or
//! not). Each is a named failure, none hangs, and nothing stays mapped in the TCE window.
//! Large reads and writes go as one command with indirect descriptors of 128 KiB each.

mod sim;

use papr::crq::{Entry, ENTRY_LEN};
use papr::hcall::H_FREE_CRQ;
use sim::{Hv, Server, Sim, SERIAL, UNIT, WINDOW};
use srp::cdb;
use srp::cmd::{self, Descriptor};
use srp::iu::{IuEntry, FORMAT_MAD, FORMAT_SRP};
use srp::login::{self, Granted};
use srp::mad::AdapterInfo;
use srp::rsp;
use srp::sense::{self, Sense};
use srp::tsk;
use std::cell::RefCell;
use std::rc::Rc;
use vioboot::dev::{AnyDevice, BlockDevice};
use vioboot::drivers::{vscsi, Bound};

const NAME: &str = "v-scsi@71000010";
const DISK_SECTORS: usize = 4096;

/// What the target does to the commands whose CDB opcode is `on`.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Hostile {
    None,
    /// Answers with a tag no request carries.
    UnknownTag,
    /// A CRQ entry saying the response has 20 bytes.
    Short,
    /// A CRQ entry saying the response has 300 bytes.
    Oversized,
    /// CHECK CONDITION with this sense.
    Sense(u8, u8, u8),
    /// No answer at all.
    Mute,
    /// No answer until the next command, then a late one before that command's.
    Late,
}

/// How the target answers task management requests.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Tm {
    /// ABORT TASK and LOGICAL UNIT RESET complete (an aborted command gets no answer).
    Complete,
    /// ABORT TASK fails; LOGICAL UNIT RESET completes.
    AbortFails,
    /// No answer to either.
    Mute,
}

#[derive(Default)]
struct Seen {
    /// Task management requests: (function, task tag).
    tm: Vec<(u8, u64)>,
    /// Descriptor count of each command that moved data.
    descriptors: Vec<usize>,
}

struct Target {
    disk: Vec<u8>,
    tm: Tm,
    /// What the target saw, for the test to read after the target moved into the simulation.
    seen: Rc<RefCell<Seen>>,
    /// Tags of commands not answered (`Hostile::Mute`).
    unanswered: Vec<u64>,
    /// Maximum transfer the adapter names.
    max_transfer: u32,
    hostile: Hostile,
    on: u8,
    /// TEST UNIT READYs still to be answered with UNIT ATTENTION (as after a reset).
    unit_attentions: u32,
    commands: Vec<u8>,
    /// IU IOBA and tag of a command held back (`Hostile::Late`).
    held: Option<(u64, u64)>,
}

impl Target {
    fn new() -> Target {
        let mut disk = vec![0u8; DISK_SECTORS * 512];
        for (i, b) in disk.iter_mut().enumerate() {
            *b = (i / 512) as u8 ^ (i as u8);
        }
        Target {
            disk,
            tm: Tm::Complete,
            seen: Rc::default(),
            unanswered: Vec::new(),
            max_transfer: 64 << 10,
            hostile: Hostile::None,
            on: 0xFF,
            unit_attentions: 1,
            commands: Vec::new(),
            held: None,
        }
    }

    fn hostile(on: u8, h: Hostile) -> Target {
        Target {
            hostile: h,
            on,
            ..Target::new()
        }
    }
}

fn reply(hv: &mut Hv, iu_ioba: u64, format: u8, tag: u64, bytes: &[u8]) {
    hv.rdma_write(iu_ioba, bytes)
        .expect("IU mapped for the answer");
    let e = IuEntry {
        format,
        status: 0,
        timeout: 0,
        len: bytes.len() as u16,
        addr: tag,
    };
    hv.deliver(e.encode()).expect("CRQ slot");
}

/// Reads the initiator's memory that `descs` describe, in order, into `buf`.
fn gather(hv: &mut Hv, descs: &[Descriptor], buf: &mut [u8]) -> Result<(), ()> {
    let mut at = 0;
    for d in descs {
        let n = (d.len as usize).min(buf.len() - at);
        hv.rdma_read(d.va, &mut buf[at..at + n]).map_err(|_| ())?;
        at += n;
    }
    Ok(())
}

/// Writes `data` into the initiator's memory that `descs` describe, in order.
fn scatter(hv: &mut Hv, descs: &[Descriptor], data: &[u8]) -> Result<(), ()> {
    let mut at = 0;
    for d in descs {
        let n = (d.len as usize).min(data.len() - at);
        hv.rdma_write(d.va, &data[at..at + n]).map_err(|_| ())?;
        at += n;
    }
    Ok(())
}

fn be64(b: &[u8], at: usize) -> u64 {
    u64::from_be_bytes(b[at..at + 8].try_into().unwrap())
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(b[at..at + 4].try_into().unwrap())
}

impl Target {
    /// Answers one SRP_CMD: (status, sense, data to send to the initiator).
    fn scsi(&mut self, iu: &[u8], hv: &mut Hv) -> (u8, Vec<u8>) {
        let cdb = &iu[32..48];
        let lun = &iu[20..28];
        let descs = match cmd::descriptors(iu) {
            Ok((_, d)) => d,
            Err(_) => {
                return (
                    rsp::CHECK_CONDITION,
                    Sense::fixed(sense::ILLEGAL_REQUEST, 0x0E, 0).to_vec(),
                )
            }
        };
        if !descs.is_empty() {
            self.seen.borrow_mut().descriptors.push(descs.len());
        }
        let len = descs.iter().map(|d| d.len as usize).sum::<usize>();
        let va = descs.first().map_or(0, |d| d.va);
        let check = |k, a, q| (rsp::CHECK_CONDITION, Sense::fixed(k, a, q).to_vec());
        if lun != [0; 8] && cdb[0] != cdb::REPORT_LUNS {
            return if cdb[0] == cdb::INQUIRY {
                let mut d = [0u8; 36];
                d[0] = 0x7F;
                let _ = hv.rdma_write(va, &d[..len.min(36)]);
                (rsp::GOOD, vec![])
            } else {
                check(sense::ILLEGAL_REQUEST, 0x25, 0)
            };
        }
        let data: Vec<u8> = match cdb[0] {
            cdb::REPORT_LUNS => {
                let mut d = vec![0u8; 16];
                d[3] = 8;
                d
            }
            cdb::INQUIRY if cdb[1] & 1 == 0 => {
                let mut d = vec![b' '; 36];
                d[..8].copy_from_slice(&[0, 0, 5, 2, 31, 0, 0, 0x10]);
                d[8..12].copy_from_slice(b"FAKE");
                d[16..20].copy_from_slice(b"DISK");
                d
            }
            cdb::INQUIRY if cdb[2] == cdb::VPD_SUPPORTED => vec![0, 0, 0, 2, 0x00, 0x80],
            cdb::INQUIRY if cdb[2] == cdb::VPD_SERIAL => {
                vec![0, 0x80, 0, 4, b'S', b'N', b'-', b'1']
            }
            cdb::INQUIRY => return check(sense::ILLEGAL_REQUEST, 0x24, 0),
            cdb::TEST_UNIT_READY if self.unit_attentions > 0 => {
                self.unit_attentions -= 1;
                return check(sense::UNIT_ATTENTION, 0x29, 0);
            }
            cdb::TEST_UNIT_READY | cdb::SYNCHRONIZE_CACHE_10 => vec![],
            cdb::READ_CAPACITY_10 => {
                let mut d = ((DISK_SECTORS - 1) as u32).to_be_bytes().to_vec();
                d.extend_from_slice(&512u32.to_be_bytes());
                d
            }
            cdb::MODE_SENSE_6 => vec![3, 0, 0, 0],
            cdb::READ_10 => {
                let lba = be32(cdb, 2) as usize;
                let n = u16::from_be_bytes([cdb[7], cdb[8]]) as usize;
                self.disk[lba * 512..(lba + n) * 512].to_vec()
            }
            cdb::WRITE_10 => {
                let lba = be32(cdb, 2) as usize;
                let mut buf = vec![0u8; len];
                if gather(hv, &descs, &mut buf).is_err() {
                    return check(sense::HARDWARE_ERROR, 0, 0);
                }
                self.disk[lba * 512..lba * 512 + len].copy_from_slice(&buf);
                vec![]
            }
            _ => return check(sense::ILLEGAL_REQUEST, 0x20, 0),
        };
        if !data.is_empty() && scatter(hv, &descs, &data[..len.min(data.len())]).is_err() {
            return check(sense::HARDWARE_ERROR, 0, 0);
        }
        (rsp::GOOD, vec![])
    }
}

impl Server for Target {
    fn pump(&mut self, hv: &mut Hv) {
        while let Some(e) = hv.to_server.pop_front() {
            let b = match Entry::parse(e) {
                Entry::Init => {
                    let _ = hv.deliver(Entry::init(true));
                    continue;
                }
                Entry::Message(b) => b,
                _ => continue,
            };
            let e = IuEntry::decode(&b).expect("an IU entry");
            let mut iu = vec![0u8; e.len as usize];
            hv.rdma_read(e.addr, &mut iu).expect("IU mapped");
            let tag = be64(&iu, 8);
            if e.format == FORMAT_MAD {
                let info = AdapterInfo {
                    srp_version: "16.a".into(),
                    partition_name: "fake".into(),
                    partition_number: 7,
                    mad_version: 1,
                    os_type: 2,
                    max_transfer: self.max_transfer,
                };
                hv.rdma_write(be64(&iu, 16), &info.encode())
                    .expect("buffer");
                reply(hv, e.addr, FORMAT_MAD, tag, &iu);
                continue;
            }
            assert_eq!(e.format, FORMAT_SRP);
            if iu[0] == login::SRP_LOGIN_REQ {
                let g = Granted {
                    request_limit: 4,
                    max_it_iu_len: 256,
                    max_ti_iu_len: 256,
                    buf_formats: 6,
                };
                reply(hv, e.addr, FORMAT_SRP, tag, &login::response(tag, g));
                continue;
            }
            if iu[0] == tsk::SRP_TSK_MGMT {
                let (tag, _, function, task) = tsk::parse_request(&iu).expect("a TM request");
                self.seen.borrow_mut().tm.push((function, task));
                let code = match (self.tm, function) {
                    (Tm::Mute, _) => continue,
                    (Tm::AbortFails, tsk::ABORT_TASK) => tsk::FAILED,
                    (_, tsk::ABORT_TASK) if self.unanswered.contains(&task) => tsk::COMPLETE,
                    (_, tsk::ABORT_TASK) => tsk::FAILED,
                    (_, tsk::LOGICAL_UNIT_RESET) => tsk::COMPLETE,
                    _ => tsk::NOT_SUPPORTED,
                };
                let mut out = [0u8; 256];
                let n = tsk::encode_response(tag, code, &mut out);
                reply(hv, e.addr, FORMAT_SRP, tag, &out[..n]);
                continue;
            }
            let op = iu[32];
            self.commands.push(op);
            if let Some((ioba, late)) = self.held.take() {
                let mut out = [0u8; 256];
                let n = rsp::encode(late, rsp::GOOD, 0, 0, &[], &mut out);
                // The guest gave up on it and unmapped its IU: this write must be refused.
                assert!(
                    hv.rdma_write(ioba, &out[..n]).is_err(),
                    "the IU of an abandoned request stayed mapped"
                );
                let e = IuEntry {
                    format: FORMAT_SRP,
                    status: 0,
                    timeout: 0,
                    len: n as u16,
                    addr: late,
                };
                hv.deliver(e.encode()).expect("slot");
            }
            let hostile = if op == self.on {
                self.hostile
            } else {
                Hostile::None
            };
            let (status, sense) = match hostile {
                Hostile::Sense(k, a, q) => (rsp::CHECK_CONDITION, Sense::fixed(k, a, q).to_vec()),
                Hostile::Mute => {
                    self.unanswered.push(tag);
                    continue;
                }
                Hostile::Late => {
                    self.held = Some((e.addr, tag));
                    continue;
                }
                _ => self.scsi(&iu, hv),
            };
            let mut out = [0u8; 256];
            let n = rsp::encode(tag, status, 0, 0, &sense, &mut out);
            match hostile {
                Hostile::UnknownTag => reply(hv, e.addr, FORMAT_SRP, tag ^ 0xDEAD, &out[..n]),
                Hostile::Short => reply(hv, e.addr, FORMAT_SRP, tag, &out[..20]),
                Hostile::Oversized => {
                    hv.rdma_write(e.addr, &out[..n]).expect("IU");
                    let mut raw = IuEntry {
                        format: FORMAT_SRP,
                        status: 0,
                        timeout: 0,
                        len: 0,
                        addr: tag,
                    }
                    .encode();
                    raw[6..8].copy_from_slice(&300u16.to_be_bytes());
                    let _: [u8; ENTRY_LEN] = raw;
                    hv.deliver(raw).expect("slot");
                }
                _ => reply(hv, e.addr, FORMAT_SRP, tag, &out[..n]),
            }
        }
    }
}

fn adapter() -> vioboot::vio::Adapter {
    vioboot::vio::Adapter {
        name: NAME.into(),
        unit: UNIT,
        window: WINDOW,
        irq: None,
    }
}

/// Binds the fake adapter; returns the simulation, the disk and the adapter's own part.
fn bind(t: Target, timeout_ms: u64) -> (Sim, Bound) {
    let sim = Sim::install(Box::new(t));
    let b = vscsi::bind(&adapter(), None, timeout_ms * 1000).expect("binds");
    (sim, b)
}

fn disk(b: &mut Bound) -> Box<dyn BlockDevice> {
    match b.units.remove(0).device {
        Ok(AnyDevice::Block(d)) => d,
        Ok(_) => panic!("not a block device"),
        Err((_, e)) => panic!("{e}"),
    }
}

/// After the adapter is shut down the hypervisor holds no TCE and no CRQ of ours.
fn assert_clean(sim: &Sim, mut b: Bound) {
    let mut shared = b.shared.take().expect("the adapter's own part");
    assert_eq!(shared.pages_left_mapped(), 0, "buffers left mapped");
    shared.shut_down().expect("shutdown");
    assert!(
        sim.hv.borrow().tces.is_empty(),
        "TCEs left: {:?}",
        sim.hv.borrow().tces
    );
    assert!(sim.hv.borrow().crq.is_none(), "CRQ still registered");
    assert_eq!(sim.count(H_FREE_CRQ), 1);
}

#[test]
fn binds_reads_writes_and_leaves_nothing_mapped() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (sim, mut b) = bind(Target::new(), 1000);
    let facts: Vec<String> = b.facts.iter().map(|(k, v)| format!("{k}: {v}")).collect();
    let facts = facts.join("\n");
    assert!(facts.contains("partition \"fake\" (number 7)"), "{facts}");
    assert!(
        facts.contains("max transfer 64 KiB; commands of up to 64 KiB"),
        "{facts}"
    );
    assert!(facts.contains("request limit 4"), "{facts}");
    assert!(
        facts.contains("1 LUN(s): 0:0:0 disk \"FAKE DISK\" 4096 x 512"),
        "{facts}"
    );
    assert_eq!(b.units[0].name.as_deref(), Some("v-scsi@71000010 0:0:0"));
    let mut d = disk(&mut b);
    assert_eq!(
        (d.block_size(), d.capacity(), d.read_only()),
        (512, DISK_SECTORS as u64, false)
    );
    assert_eq!(d.identity().unwrap(), "FAKE DISK, serial SN-1");
    let mut buf = vec![0u8; 4 * 512];
    d.read(2, &mut buf).expect("read");
    assert_eq!(buf[0], 2);
    assert_eq!(buf[513], 3 ^ 1);
    let data = vec![0xA5u8; 8 * 512];
    d.write(100, &data).expect("write");
    let mut back = vec![0u8; 8 * 512];
    d.read(100, &mut back).expect("read back");
    assert_eq!(back, data);
    d.flush().expect("flush");
    assert!(
        d.read(DISK_SECTORS as u64 - 1, &mut buf).is_err(),
        "a read past the end is refused"
    );
    assert_eq!(d.pages_left_mapped(), 0);
    // Many more requests than the request limit of 4: credits come back with each answer.
    for i in 0..20 {
        d.read(i, &mut buf[..512]).expect("read");
    }
    d.shut_down().expect("LUN done");
    assert_clean(&sim, b);
}

#[test]
fn unit_attention_is_retried() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut t = Target::new();
    t.unit_attentions = 3;
    let (sim, b) = bind(t, 1000);
    assert!(b.units[0].device.is_ok());
    assert_clean(&sim, b);
}

/// Binds a target hostile to READ(10), reads, and returns the failure's text after checking
/// that nothing stayed mapped.
fn hostile_read(h: Hostile, timeout_ms: u64) -> String {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (sim, mut b) = bind(Target::hostile(cdb::READ_10, h), timeout_ms);
    let mut d = disk(&mut b);
    let mut buf = vec![0u8; 512];
    let e = d.read(0, &mut buf).expect_err("the read fails").to_string();
    assert_eq!(d.pages_left_mapped(), 0, "{e}: buffers left mapped");
    assert_clean(&sim, b);
    e
}

#[test]
fn an_unknown_tag_is_named() {
    let e = hostile_read(Hostile::UnknownTag, 1000);
    assert!(
        e.starts_with("v-scsi@71000010 0:0:0: READ(10): answer with unknown tag"),
        "{e}"
    );
}

#[test]
fn a_short_response_is_named() {
    let e = hostile_read(Hostile::Short, 1000);
    assert!(
        e.contains("READ(10): malformed answer: SRP_RSP: 20 bytes where 36 are needed"),
        "{e}"
    );
}

#[test]
fn an_oversized_response_is_named() {
    let e = hostile_read(Hostile::Oversized, 1000);
    assert!(
        e.contains("malformed answer: response IU: 300 bytes, more than an IU's 256"),
        "{e}"
    );
}

#[test]
fn sense_data_is_named() {
    let e = hostile_read(Hostile::Sense(sense::MEDIUM_ERROR, 0x11, 0), 1000);
    assert!(
        e.contains(
            "READ(10): CHECK CONDITION: MEDIUM ERROR, ASC/ASCQ 11/00 (unrecovered read error)"
        ),
        "{e}"
    );
}

#[test]
fn a_target_that_stops_answering_times_out_and_the_command_is_aborted() {
    let start = std::time::Instant::now();
    let e = hostile_read(Hostile::Mute, 200);
    assert!(
        e.contains("READ(10): no answer within 200 ms (tag 0x")
            && e.ends_with("; ABORT TASK: function complete"),
        "{e}"
    );
    assert!(start.elapsed().as_secs() < 5);
}

/// A read that goes unanswered by a target whose task management behaves as `tm`: the error,
/// the task management requests the target saw, and the READ's tag.
fn unanswered_read(tm: Tm) -> (String, Vec<(u8, u64)>) {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut t = Target::hostile(cdb::READ_10, Hostile::Mute);
    t.tm = tm;
    let seen = t.seen.clone();
    let (sim, mut b) = bind(t, 200);
    let mut d = disk(&mut b);
    let mut buf = vec![0u8; 512];
    let start = std::time::Instant::now();
    let e = d.read(0, &mut buf).expect_err("the read fails").to_string();
    // The timeout, then at most one more for each task management request.
    assert!(start.elapsed().as_millis() < 3 * 200 + 500, "{e}");
    assert_eq!(d.pages_left_mapped(), 0, "{e}: buffers left mapped");
    if tm != Tm::Mute {
        // The adapter still works: a command the target answers completes.
        d.flush().expect("SYNCHRONIZE CACHE after the recovery");
    }
    assert_clean(&sim, b);
    let tm = seen.borrow().tm.clone();
    (e, tm)
}

#[test]
fn an_abort_that_fails_is_followed_by_a_logical_unit_reset() {
    let (e, tm) = unanswered_read(Tm::AbortFails);
    assert!(
        e.ends_with("; ABORT TASK: function failed; LOGICAL UNIT RESET: function complete"),
        "{e}"
    );
    assert_eq!(tm.len(), 2, "{tm:?}");
    assert_eq!(tm[0].0, tsk::ABORT_TASK);
    assert_eq!(tm[1], (tsk::LOGICAL_UNIT_RESET, 0));
    assert!(
        e.contains(&format!("(tag {:#x})", tm[0].1)),
        "ABORT TASK names the READ: {e}"
    );
}

#[test]
fn a_target_that_answers_no_task_management_is_a_named_failure() {
    let (e, tm) = unanswered_read(Tm::Mute);
    assert!(
        e.ends_with("; ABORT TASK: no answer; LOGICAL UNIT RESET: no answer"),
        "{e}"
    );
    assert_eq!(
        tm.iter().map(|t| t.0).collect::<Vec<_>>(),
        [tsk::ABORT_TASK, tsk::LOGICAL_UNIT_RESET]
    );
}

#[test]
fn large_requests_go_as_one_command_with_indirect_descriptors() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut t = Target::new();
    t.max_transfer = 2 << 20;
    let seen = t.seen.clone();
    let want = t.disk.clone();
    let (sim, mut b) = bind(t, 1000);
    assert!(
        b.facts
            .iter()
            .any(|(_, v)| v.contains("commands of up to 1024 KiB (indirect descriptors)")),
        "{:?}",
        b.facts
    );
    let mut d = disk(&mut b);
    seen.borrow_mut().descriptors.clear();
    // 1 MiB from sector 8: one READ(10) of eight 128 KiB segments.
    let mut buf = vec![0u8; 1 << 20];
    d.read(8, &mut buf).expect("read");
    assert!(buf == want[8 * 512..8 * 512 + (1 << 20)], "data differs");
    assert_eq!(seen.borrow().descriptors, [8]);
    // 1.25 MiB written: a 1 MiB command of eight, then one direct descriptor of 256 KiB is
    // two segments (indirect); read back through 512-byte and 1 MiB reads.
    let data: Vec<u8> = (0..(5 << 18)).map(|i| (i * 7 + 3) as u8).collect();
    d.write(100, &data).expect("write");
    assert_eq!(seen.borrow().descriptors[1..], [8, 2]);
    let mut back = vec![0u8; data.len()];
    d.read(100, &mut back).expect("read back");
    assert!(back == data, "written data reads back different");
    assert_eq!(d.pages_left_mapped(), 0);
    assert_clean(&sim, b);
}

#[test]
fn a_late_answer_is_dropped_and_the_next_request_works() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (sim, mut b) = bind(Target::hostile(cdb::READ_10, Hostile::Late), 200);
    let mut d = disk(&mut b);
    let mut buf = vec![0u8; 512];
    let e = d.read(0, &mut buf).expect_err("times out").to_string();
    assert!(e.contains("no answer within 200 ms"), "{e}");
    // The next command brings the late answer first: dropped, and this one completes.
    d.flush().expect("SYNCHRONIZE CACHE after the timeout");
    assert_eq!(d.pages_left_mapped(), 0);
    assert_clean(&sim, b);
}

#[test]
fn a_target_without_disks_is_listed_and_the_adapter_closes() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut t = Target::new();
    t.hostile = Hostile::Sense(sense::NOT_READY, sense::ASC_MEDIUM_NOT_PRESENT, 0);
    t.on = cdb::TEST_UNIT_READY;
    let (sim, b) = bind(t, 1000);
    assert!(b.units.is_empty());
    assert!(
        b.facts
            .iter()
            .any(|(_, v)| v.contains("0:0:0 disk \"FAKE DISK\" (no medium)")),
        "{:?}",
        b.facts
    );
    assert_clean(&sim, b);
}
