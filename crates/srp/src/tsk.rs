//! SRP_TSK_MGMT (T10 SRP r16a 6.7): a task management request for one logical unit, and the
//! SRP_RSP that answers it, whose four bytes of response data carry the outcome. vioboot sends
//! ABORT TASK for a command that went unanswered and, if that does not succeed, LOGICAL UNIT
//! RESET: the escalation SAM-5 describes and Linux's SCSI error handler follows.

use crate::rsp::{self, Expect};
use crate::{need, SrpError};

pub const SRP_TSK_MGMT: u8 = 0x01;
/// Bytes of the request.
pub const LEN: usize = 48;

/// Task management functions (SRP r16a table 23).
pub const ABORT_TASK: u8 = 0x01;
pub const ABORT_TASK_SET: u8 = 0x02;
pub const CLEAR_TASK_SET: u8 = 0x04;
pub const LOGICAL_UNIT_RESET: u8 = 0x08;
pub const CLEAR_ACA: u8 = 0x40;

/// Response codes in byte 3 of the response data (SRP r16a table 24).
pub const COMPLETE: u8 = 0x00;
pub const FIELDS_INVALID: u8 = 0x02;
pub const NOT_SUPPORTED: u8 = 0x04;
pub const FAILED: u8 = 0x05;

/// The name of a task management function.
pub fn function_name(f: u8) -> &'static str {
    match f {
        ABORT_TASK => "ABORT TASK",
        ABORT_TASK_SET => "ABORT TASK SET",
        CLEAR_TASK_SET => "CLEAR TASK SET",
        LOGICAL_UNIT_RESET => "LOGICAL UNIT RESET",
        CLEAR_ACA => "CLEAR ACA",
        _ => "task management",
    }
}

/// The name of a response code.
pub fn response_name(c: u8) -> &'static str {
    match c {
        COMPLETE => "function complete",
        FIELDS_INVALID => "request fields invalid",
        NOT_SUPPORTED => "function not supported",
        FAILED => "function failed",
        _ => "unknown response code",
    }
}

/// The request `tag` asking for `function` on `lun`; `task` names the command ABORT TASK
/// aborts (ignored by the other functions).
pub fn request(tag: u64, lun: [u8; 8], function: u8, task: u64) -> [u8; LEN] {
    let mut b = [0u8; LEN];
    b[0] = SRP_TSK_MGMT;
    b[8..16].copy_from_slice(&tag.to_be_bytes());
    b[20..28].copy_from_slice(&lun);
    b[30] = function;
    b[32..40].copy_from_slice(&task.to_be_bytes());
    b
}

/// A request as a target reads it: (tag, LUN, function, task tag).
pub fn parse_request(b: &[u8]) -> Result<(u64, [u8; 8], u8, u64), SrpError> {
    need("SRP_TSK_MGMT", b, LEN)?;
    if b[0] != SRP_TSK_MGMT {
        return Err(SrpError::Opcode {
            what: "task management request",
            want: SRP_TSK_MGMT.into(),
            got: b[0].into(),
        });
    }
    let mut lun = [0u8; 8];
    lun.copy_from_slice(&b[20..28]);
    Ok((crate::be64(b, 8), lun, b[30], crate::be64(b, 32)))
}

/// A checked answer to a task management request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// The response code; [`COMPLETE`] when the target sent no response data and status GOOD.
    pub code: u8,
    pub req_lim_delta: u32,
}

/// Checks `iu` as the answer to task management request `tag`: an SRP_RSP with that tag and
/// no data residuals; its response data, when present, at least four bytes. A target that
/// sends no response data answers with the status alone: GOOD is taken as complete.
pub fn parse_response(iu: &[u8], tag: u64) -> Result<Outcome, SrpError> {
    let r = rsp::parse(
        iu,
        Expect {
            tag,
            data_in: 0,
            data_out: 0,
        },
    )?;
    let code = match r.response.len() {
        0 if r.status == rsp::GOOD => COMPLETE,
        0 => FAILED,
        n if n < 4 => {
            return Err(SrpError::Inconsistent {
                what: "task management response data shorter than 4 bytes",
                value: n as u64,
            })
        }
        _ => r.response[3],
    };
    Ok(Outcome {
        code,
        req_lim_delta: r.req_lim_delta,
    })
}

/// The answer a target sends (for fake targets in tests): status GOOD, response data holding
/// `code`.
pub fn encode_response(tag: u64, code: u8, out: &mut [u8]) -> usize {
    let n = rsp::encode(tag, rsp::GOOD, rsp::RSPVALID, 0, &[], out);
    out[32..36].copy_from_slice(&4u32.to_be_bytes());
    out[n..n + 4].copy_from_slice(&[0, 0, 0, code]);
    n + 4
}

#[cfg(test)]
mod tests {
    use super::*;

    const LUN: [u8; 8] = [0x81, 0x02, 0, 0, 0, 0, 0, 0];

    #[test]
    fn request_layout_as_srp_r16a() {
        let b = request(0x11, LUN, ABORT_TASK, 0x22);
        assert_eq!(b[0], 0x01);
        assert_eq!(crate::be64(&b, 8), 0x11);
        assert_eq!(&b[20..28], &LUN);
        assert_eq!(b[30], 0x01);
        assert_eq!(crate::be64(&b, 32), 0x22);
        assert_eq!(parse_request(&b), Ok((0x11, LUN, ABORT_TASK, 0x22)));
        assert!(parse_request(&b[..47]).is_err());
        let mut c = b;
        c[0] = 2;
        assert!(parse_request(&c).is_err());
    }

    #[test]
    fn responses_are_checked() {
        let mut out = [0u8; 64];
        for code in [COMPLETE, FIELDS_INVALID, NOT_SUPPORTED, FAILED, 0x09] {
            let n = encode_response(9, code, &mut out);
            assert_eq!(
                parse_response(&out[..n], 9),
                Ok(Outcome {
                    code,
                    req_lim_delta: 1
                })
            );
            assert!(parse_response(&out[..n], 8).is_err(), "wrong tag");
            for cut in 0..n {
                assert!(parse_response(&out[..cut], 9).is_err(), "cut at {cut}");
            }
        }
        // Status alone: GOOD is complete, anything else failed.
        let n = rsp::encode(9, rsp::GOOD, 0, 0, &[], &mut out);
        assert_eq!(parse_response(&out[..n], 9).unwrap().code, COMPLETE);
        let n = rsp::encode(9, rsp::BUSY, 0, 0, &[], &mut out);
        assert_eq!(parse_response(&out[..n], 9).unwrap().code, FAILED);
        // Response data of two bytes: refused.
        let n = rsp::encode(9, rsp::GOOD, rsp::RSPVALID, 0, &[], &mut out);
        out[32..36].copy_from_slice(&2u32.to_be_bytes());
        assert!(parse_response(&out[..n + 2], 9).is_err());
    }
}
