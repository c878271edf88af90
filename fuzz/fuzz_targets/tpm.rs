//! What a vTPM sends: CRQ answers, TPM 2.0 responses (Startup, GetCapability for banks and
//! properties, PCR_Extend, PCR_Read), and what a kernel or firmware could hand over as a TCG2
//! event log. Nothing may panic; nothing parsed may claim more than it was given.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tpm::{cmd, crq, log};

fuzz_target!(|input: &[u8]| {
    let Some((head, body)) = input.split_first_chunk::<4>() else {
        return;
    };
    if let Some(e) = body.first_chunk::<{ papr::crq::ENTRY_LEN }>() {
        let _ = crq::parse(e);
    }
    let buffer = usize::from(u16::from_be_bytes([head[0], head[1]]));
    let pcr = u32::from(head[2] % 24);
    let alg = [tpm::ALG_SHA1, tpm::ALG_SHA256, tpm::ALG_SHA384, 0x1234][usize::from(head[3] % 4)];
    if let Ok(p) = cmd::response(body, buffer) {
        assert!(p.len() + cmd::HEADER_LEN == body.len() && body.len() <= buffer);
    }
    let _ = cmd::parse_startup(body, buffer);
    if let Ok(banks) = cmd::parse_pcrs(body, buffer) {
        assert!(banks.len() <= body.len());
    }
    if let Ok(props) = cmd::parse_properties(body, buffer) {
        assert!(props.len() * 8 <= body.len());
    }
    let _ = cmd::parse_extend(body, buffer);
    if let Ok(d) = cmd::parse_pcr_read(body, buffer, pcr, alg) {
        assert_eq!(Some(d.len()), tpm::digest_len(alg));
    }
    if let Ok(l) = log::parse(body) {
        for e in &l.events {
            assert!(e.data.len() <= body.len());
        }
        let _ = log::replay(&l, pcr, alg, |old, d| {
            let mut v = old.to_vec();
            v.extend_from_slice(d);
            v.truncate(old.len());
            v
        });
    }
});
