//! vioboot's vTPM driver and TPM commands against a fake vTPM, in one host process, through
//! the simulated hypervisor (tests/sim): the bind (INIT, GET_VERSION, GET_RTCE_BUFFER_SIZE),
//! Startup, the banks, the properties and an extend round trip; and what a hostile or broken
//! vTPM sends: a wrong response tag, a length beyond the buffer, a TPM error code, the CRQ
//! error message, silence. Each is a named failure, none hangs, and nothing stays mapped.

mod sim;

use papr::crq::{Entry, ENTRY_LEN};
use papr::hcall::H_FREE_CRQ;
use sim::{Hv, Server, Sim, SERIAL, UNIT, WINDOW};
use tpm::cmd;
use vioboot::dev::tpm as t;
use vioboot::dev::{AnyDevice, Tpm};
use vioboot::drivers::vtpm;
use vioboot_core::sha256;

const NAME: &str = "vtpm@71000010";

#[derive(Clone, Copy, PartialEq, Eq)]
enum Hostile {
    None,
    /// Responses carry tag 0x00C4 (a TPM 1.2 tag).
    WrongTag,
    /// The CRQ answer says 5000 bytes.
    BeyondBuffer,
    /// Every command fails with TPM_RC_FAILURE.
    Failure,
    /// The CRQ error message instead of a response.
    CrqError,
    /// No answer to TPM_COMMAND.
    Mute,
}

struct FakeTpm {
    hostile: Hostile,
    pcr16: [u8; 32],
    started: bool,
}

fn rsp(tag: u16, rc: u32, params: &[u8]) -> Vec<u8> {
    let mut v = tag.to_be_bytes().to_vec();
    v.extend_from_slice(&((10 + params.len()) as u32).to_be_bytes());
    v.extend_from_slice(&rc.to_be_bytes());
    v.extend_from_slice(params);
    v
}

impl FakeTpm {
    fn answer(&mut self, c: &[u8]) -> Vec<u8> {
        let cc = u32::from_be_bytes(c[6..10].try_into().unwrap());
        match cc {
            cmd::CC_STARTUP if self.started => rsp(0x8001, cmd::RC_INITIALIZE, &[]),
            cmd::CC_STARTUP => {
                self.started = true;
                rsp(0x8001, 0, &[])
            }
            cmd::CC_GET_CAPABILITY if c[13] == cmd::CAP_PCRS as u8 => {
                let mut p = vec![0, 0, 0, 0, 5, 0, 0, 0, 2];
                p.extend_from_slice(&[0, 4, 3, 0xFF, 0xFF, 0xFF, 0, 0x0B, 3, 0xFF, 0xFF, 0xFF]);
                rsp(0x8001, 0, &p)
            }
            cmd::CC_GET_CAPABILITY => {
                let mut p = vec![0, 0, 0, 0, 6, 0, 0, 0, 2];
                p.extend_from_slice(&cmd::PT_FAMILY_INDICATOR.to_be_bytes());
                p.extend_from_slice(b"2.0\0");
                p.extend_from_slice(&cmd::PT_MANUFACTURER.to_be_bytes());
                p.extend_from_slice(b"FAKE");
                rsp(0x8001, 0, &p)
            }
            cmd::CC_PCR_EXTEND => {
                // handle, auth size 9, auth area, count, then (alg, digest) pairs: take SHA-256.
                let mut at = 10 + 4 + 4 + 9 + 4;
                while at < c.len() {
                    let alg = u16::from_be_bytes([c[at], c[at + 1]]);
                    let n = tpm::digest_len(alg).unwrap();
                    if alg == tpm::ALG_SHA256 {
                        let mut h = sha256::Sha256::new();
                        h.update(&self.pcr16);
                        h.update(&c[at + 2..at + 2 + n]);
                        self.pcr16 = h.finish();
                    }
                    at += 2 + n;
                }
                rsp(0x8002, 0, &[0, 0, 0, 0, 0, 0, 1, 0, 0])
            }
            cmd::CC_PCR_READ => {
                let mut p = vec![
                    0, 0, 0, 1, 0, 0, 0, 1, 0, 0x0B, 3, 0, 0, 1, 0, 0, 0, 1, 0, 32,
                ];
                p.extend_from_slice(&self.pcr16);
                rsp(0x8001, 0, &p)
            }
            _ => rsp(0x8001, 0x143, &[]),
        }
    }
}

fn entry(msg: u8, len: u16, data: u32) -> [u8; ENTRY_LEN] {
    tpm::crq::request(msg, len, data)
}

impl Server for FakeTpm {
    fn pump(&mut self, hv: &mut Hv) {
        while let Some(e) = hv.to_server.pop_front() {
            let b = match Entry::parse(e) {
                Entry::Init => {
                    let _ = hv.deliver(Entry::init(false));
                    continue;
                }
                Entry::Message(b) => b,
                _ => continue,
            };
            match b[1] {
                tpm::crq::GET_VERSION => hv.deliver(entry(0x81, 0, 2)).unwrap(),
                tpm::crq::GET_RTCE_BUFFER_SIZE => hv.deliver(entry(0x83, 4096, 0)).unwrap(),
                tpm::crq::TPM_COMMAND => {
                    let ioba = u32::from_be_bytes(b[4..8].try_into().unwrap()) as u64;
                    // QEMU reads the whole 4 KiB: it must all be mapped.
                    let mut page = vec![0u8; 4096];
                    hv.rdma_read(ioba, &mut page)
                        .expect("the whole 4 KiB buffer is mapped");
                    let len = u16::from_be_bytes([b[2], b[3]]) as usize;
                    let mut r = self.answer(&page[..len]);
                    match self.hostile {
                        Hostile::Mute => continue,
                        Hostile::CrqError => {
                            hv.deliver(entry(0xFF, 0, 0)).unwrap();
                            continue;
                        }
                        Hostile::WrongTag => r[..2].copy_from_slice(&[0, 0xC4]),
                        Hostile::Failure => r = rsp(0x8001, 0x101, &[]),
                        _ => {}
                    }
                    hv.rdma_write(ioba, &r).expect("buffer mapped");
                    let n = if self.hostile == Hostile::BeyondBuffer {
                        5000
                    } else {
                        r.len() as u16
                    };
                    hv.deliver(entry(0x82, n, ioba as u32)).unwrap();
                }
                _ => hv.deliver(entry(0xFF, 0, 0)).unwrap(),
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

fn bind(h: Hostile, timeout_ms: u64) -> (Sim, Box<dyn Tpm>) {
    let sim = Sim::install(Box::new(FakeTpm {
        hostile: h,
        pcr16: [0; 32],
        started: false,
    }));
    let mut b = vtpm::bind(&adapter(), None, timeout_ms * 1000).expect("binds");
    assert!(
        b.summary.contains("TPM 2.0, 4096-byte command buffer"),
        "{}",
        b.summary
    );
    match b.units.remove(0).device {
        Ok(AnyDevice::Tpm(t)) => (sim, t),
        _ => panic!("not a TPM"),
    }
}

fn assert_clean(sim: &Sim, mut d: Box<dyn Tpm>) {
    assert_eq!(d.pages_left_mapped(), 0, "buffer left mapped");
    d.shut_down().expect("shutdown");
    assert!(sim.hv.borrow().tces.is_empty(), "TCEs left");
    assert!(sim.hv.borrow().crq.is_none(), "CRQ still registered");
    assert_eq!(sim.count(H_FREE_CRQ), 1);
}

#[test]
fn starts_reads_banks_and_extends() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (sim, mut d) = bind(Hostile::None, 1000);
    assert_eq!(t::startup(d.as_mut()), Ok(true));
    assert_eq!(
        t::startup(d.as_mut()),
        Ok(false),
        "TPM_RC_INITIALIZE is fine"
    );
    let id = t::identity(d.as_mut()).unwrap();
    assert_eq!(
        (id.manufacturer.as_str(), id.family.as_str()),
        ("FAKE", "2.0")
    );
    let banks = t::banks(d.as_mut()).unwrap();
    assert_eq!(t::hashable(&banks), [tpm::ALG_SHA1, tpm::ALG_SHA256]);
    let old = t::read(d.as_mut(), 16, tpm::ALG_SHA256).unwrap();
    let dg = sha256::digest(b"x");
    let dig = cmd::Digest {
        alg: tpm::ALG_SHA256,
        bytes: dg.to_vec(),
    };
    t::extend(d.as_mut(), 16, &[dig]).unwrap();
    let new = t::read(d.as_mut(), 16, tpm::ALG_SHA256).unwrap();
    assert_eq!(
        Some(new),
        vioboot::loader::digest::extended(tpm::ALG_SHA256, &old, &dg)
    );
    assert_clean(&sim, d);
}

fn hostile_startup(h: Hostile, timeout_ms: u64) -> String {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (sim, mut d) = bind(h, timeout_ms);
    let e = t::startup(d.as_mut()).expect_err("fails").to_string();
    assert_clean(&sim, d);
    e
}

#[test]
fn a_wrong_tag_is_named() {
    let e = hostile_startup(Hostile::WrongTag, 1000);
    assert_eq!(
        e,
        "vtpm@71000010: TPM2_Startup: unexpected response tag 0xc4"
    );
}

#[test]
fn a_length_beyond_the_buffer_is_named() {
    let e = hostile_startup(Hostile::BeyondBuffer, 1000);
    assert_eq!(
        e,
        "vtpm@71000010: TPM2_Startup: a 5000-byte response for a 4096-byte buffer"
    );
}

#[test]
fn a_tpm_error_code_is_named() {
    let e = hostile_startup(Hostile::Failure, 1000);
    assert_eq!(
        e,
        "vtpm@71000010: TPM2_Startup: TPM response code 0x101 (TPM_RC_FAILURE)"
    );
}

#[test]
fn the_crq_error_message_is_named() {
    let e = hostile_startup(Hostile::CrqError, 1000);
    assert!(e.contains("answered with its error message (0xFF)"), "{e}");
}

#[test]
fn a_tpm_that_never_answers_times_out_and_is_closed() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let start = std::time::Instant::now();
    let (sim, mut d) = bind(Hostile::Mute, 200);
    let e = t::startup(d.as_mut()).expect_err("times out").to_string();
    assert_eq!(e, "vtpm@71000010: TPM2_Startup: no answer within 200 ms");
    assert!(start.elapsed().as_secs() < 5);
    assert_eq!(d.pages_left_mapped(), 0, "the buffer stayed mapped");
    let again = t::startup(d.as_mut()).expect_err("refused").to_string();
    assert!(again.contains("shut down"), "{again}");
    assert_clean(&sim, d);
}
