//! What a v-scsi target sends: CRQ entries, MAD ADAPTER_INFO answers, login responses, SRP_RSP
//! (checked against what was asked, then its sense data and its data-in for INQUIRY, VPD,
//! REPORT LUNS, READ CAPACITY and MODE SENSE), and task management answers.
#![no_main]

use libfuzzer_sys::fuzz_target;
use srp::{data, iu, login, mad, rsp, sense, tsk};

fuzz_target!(|input: &[u8]| {
    // The first bytes choose what was asked; the rest is the target's answer.
    let Some((head, body)) = input.split_first_chunk::<8>() else {
        return;
    };
    let tag = u64::from(head[0]);
    let asked = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) % (1 << 20);
    if let Some(e) = body.first_chunk::<{ papr::crq::ENTRY_LEN }>() {
        let _ = iu::IuEntry::decode(e);
    }
    let _ = mad::parse_adapter_info_response(body, tag);
    let _ = mad::AdapterInfo::parse(body);
    let _ = login::parse(body, tag);
    let expect = rsp::Expect {
        tag,
        data_in: asked,
        data_out: if head[5] & 1 != 0 { asked } else { 0 },
    };
    if let Ok(r) = rsp::parse(body, expect) {
        assert!(r.data_in_len(asked) <= asked);
        if !r.sense.is_empty() {
            if let Ok(s) = sense::Sense::parse(r.sense) {
                let _ = s.to_string();
            }
        }
    }
    if let Ok(o) = tsk::parse_response(body, tag) {
        let _ = tsk::response_name(o.code);
    }
    if let Ok(i) = data::Inquiry::parse(body) {
        let _ = data::type_name(i.device_type);
    }
    for page in [0x80, 0x83] {
        if let Ok(p) = data::vpd(body, page) {
            let _ = data::serial(body);
            let _ = data::designators(body);
            let _ = p.len();
        }
    }
    if let Ok(l) = data::report_luns(body) {
        for lun in l.luns.iter().take(64) {
            let _ = data::lun_name(lun);
        }
    }
    let _ = data::capacity_10(body);
    let _ = data::capacity_16(body);
    let _ = data::write_protected(body);
});
