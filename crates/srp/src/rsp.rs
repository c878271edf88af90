//! SRP_RSP (T10 SRP r16a 6.9): the status of a command, its residuals, and optional response
//! and sense data after a 36-byte header. [`parse`] believes nothing until the opcode, tag,
//! flags, residuals and both data lengths agree with each other, with what was asked, and with
//! the IU's length.

use crate::{be32, be64, need, SrpError};

pub const SRP_RSP: u8 = 0xC1;
/// Bytes before response and sense data.
pub const HEADER_LEN: usize = 36;
/// Flag: response data is present.
pub const RSPVALID: u8 = 0x01;
/// Flag: sense data is present.
pub const SNSVALID: u8 = 0x02;
/// Flag: the target had more data-out than the buffer described.
pub const DOOVER: u8 = 0x04;
/// Flag: the target took less data-out than described.
pub const DOUNDER: u8 = 0x08;
/// Flag: the target had more data-in than the buffer holds.
pub const DIOVER: u8 = 0x10;
/// Flag: the target sent less data-in than the buffer holds.
pub const DIUNDER: u8 = 0x20;
/// SCSI status GOOD.
pub const GOOD: u8 = 0x00;
/// SCSI status CHECK CONDITION.
pub const CHECK_CONDITION: u8 = 0x02;
/// SCSI status BUSY.
pub const BUSY: u8 = 0x08;
/// SCSI status TASK SET FULL.
pub const TASK_SET_FULL: u8 = 0x28;

/// A residual count and which way it went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Residual {
    None,
    /// The target had this many bytes more than the buffer described.
    Over(u32),
    /// This many bytes of the buffer were not transferred.
    Under(u32),
}

/// What was asked of the command the response answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expect {
    pub tag: u64,
    /// Bytes described for data-in and data-out.
    pub data_in: u32,
    pub data_out: u32,
}

/// A checked SRP_RSP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Response<'a> {
    pub req_lim_delta: u32,
    pub tag: u64,
    pub flags: u8,
    /// The SCSI status.
    pub status: u8,
    pub data_in: Residual,
    pub data_out: Residual,
    /// Response data (RSPVALID), e.g. a task management function's result.
    pub response: &'a [u8],
    /// Sense data (SNSVALID).
    pub sense: &'a [u8],
}

impl Response<'_> {
    /// Bytes of data-in actually transferred, out of `asked`.
    pub fn data_in_len(&self, asked: u32) -> u32 {
        match self.data_in {
            Residual::Under(n) => asked - n,
            _ => asked,
        }
    }
}

fn residual(
    flags: u8,
    over: u8,
    under: u8,
    count: u32,
    asked: u32,
    what: &'static str,
) -> Result<Residual, SrpError> {
    match (flags & over != 0, flags & under != 0) {
        (true, true) => Err(SrpError::Inconsistent {
            what,
            value: flags.into(),
        }),
        (false, true) if count > asked => Err(SrpError::Inconsistent {
            what: "underflow residual larger than the buffer",
            value: count.into(),
        }),
        (false, true) => Ok(Residual::Under(count)),
        (true, false) => Ok(Residual::Over(count)),
        (false, false) => Ok(Residual::None),
    }
}

/// Checks `iu` (the bytes the CRQ entry says the response has) as the answer to `e`.
pub fn parse(iu: &[u8], e: Expect) -> Result<Response<'_>, SrpError> {
    need("SRP_RSP", iu, HEADER_LEN)?;
    if iu[0] != SRP_RSP {
        return Err(SrpError::Opcode {
            what: "response",
            want: SRP_RSP.into(),
            got: iu[0].into(),
        });
    }
    let tag = be64(iu, 8);
    if tag != e.tag {
        return Err(SrpError::Tag {
            want: e.tag,
            got: tag,
        });
    }
    let flags = iu[18];
    let data_out = residual(
        flags,
        DOOVER,
        DOUNDER,
        be32(iu, 20),
        e.data_out,
        "both data-out overflow and underflow",
    )?;
    let data_in = residual(
        flags,
        DIOVER,
        DIUNDER,
        be32(iu, 24),
        e.data_in,
        "both data-in overflow and underflow",
    )?;
    let sense_len = if flags & SNSVALID != 0 {
        be32(iu, 28) as usize
    } else {
        0
    };
    let resp_len = if flags & RSPVALID != 0 {
        be32(iu, 32) as usize
    } else {
        0
    };
    if flags & SNSVALID != 0 && sense_len == 0 {
        return Err(SrpError::Inconsistent {
            what: "sense flagged valid with no sense data",
            value: 0,
        });
    }
    let end = HEADER_LEN
        .checked_add(resp_len)
        .and_then(|n| n.checked_add(sense_len))
        .ok_or(SrpError::Inconsistent {
            what: "response and sense lengths overflow",
            value: sense_len as u64,
        })?;
    need("SRP_RSP with its response and sense data", iu, end)?;
    Ok(Response {
        req_lim_delta: be32(iu, 4),
        tag,
        flags,
        status: iu[19],
        data_in,
        data_out,
        response: &iu[HEADER_LEN..HEADER_LEN + resp_len],
        sense: &iu[HEADER_LEN + resp_len..end],
    })
}

/// An SRP_RSP as a target sends it (for fake targets in tests): header and sense data.
pub fn encode(
    tag: u64,
    status: u8,
    flags: u8,
    residual_in: u32,
    sense: &[u8],
    out: &mut [u8],
) -> usize {
    let len = HEADER_LEN + sense.len();
    out[..len].fill(0);
    out[0] = SRP_RSP;
    out[4..8].copy_from_slice(&1u32.to_be_bytes());
    out[8..16].copy_from_slice(&tag.to_be_bytes());
    out[18] = flags | if sense.is_empty() { 0 } else { SNSVALID };
    out[19] = status;
    out[24..28].copy_from_slice(&residual_in.to_be_bytes());
    out[28..32].copy_from_slice(&(sense.len() as u32).to_be_bytes());
    out[HEADER_LEN..len].copy_from_slice(sense);
    len
}

#[cfg(test)]
mod tests {
    use super::*;

    const E: Expect = Expect {
        tag: 7,
        data_in: 512,
        data_out: 0,
    };

    fn rsp(status: u8, flags: u8, res: u32, sense: &[u8]) -> ([u8; 256], usize) {
        let mut b = [0u8; 256];
        let n = encode(7, status, flags, res, sense, &mut b);
        (b, n)
    }

    #[test]
    fn good_response() {
        let (b, n) = rsp(GOOD, 0, 0, &[]);
        let r = parse(&b[..n], E).unwrap();
        assert_eq!(
            (r.status, r.req_lim_delta, r.data_in),
            (GOOD, 1, Residual::None)
        );
        assert!(r.sense.is_empty() && r.response.is_empty());
        assert_eq!(r.data_in_len(512), 512);
    }

    #[test]
    fn sense_and_residuals() {
        let sense = [0x70, 0, 6, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x29, 0, 0, 0, 0, 0];
        let (b, n) = rsp(CHECK_CONDITION, 0, 0, &sense);
        let r = parse(&b[..n], E).unwrap();
        assert_eq!(r.sense, &sense);
        let (b, n) = rsp(GOOD, DIUNDER, 12, &[]);
        let r = parse(&b[..n], E).unwrap();
        assert_eq!((r.data_in, r.data_in_len(512)), (Residual::Under(12), 500));
        let (b, n) = rsp(GOOD, DIOVER, 100, &[]);
        assert_eq!(parse(&b[..n], E).unwrap().data_in, Residual::Over(100));
    }

    #[test]
    fn hostile_responses_are_refused() {
        let (b, n) = rsp(GOOD, 0, 0, &[]);
        assert!(matches!(parse(&b[..20], E), Err(SrpError::Short { .. })));
        assert!(matches!(
            parse(&b[..n], Expect { tag: 8, ..E }),
            Err(SrpError::Tag { .. })
        ));
        let mut op = b;
        op[0] = 0xC0;
        assert!(matches!(
            parse(&op[..n], E),
            Err(SrpError::Opcode { got: 0xC0, .. })
        ));
        let (b, n) = rsp(GOOD, DIUNDER | DIOVER, 1, &[]);
        assert!(matches!(
            parse(&b[..n], E),
            Err(SrpError::Inconsistent { .. })
        ));
        let (b, n) = rsp(GOOD, DIUNDER, 513, &[]);
        assert!(matches!(
            parse(&b[..n], E),
            Err(SrpError::Inconsistent { value: 513, .. })
        ));
        // Sense longer than the IU carries.
        let (mut b, n) = rsp(CHECK_CONDITION, 0, 0, &[0x70; 18]);
        b[28..32].copy_from_slice(&200u32.to_be_bytes());
        assert!(matches!(
            parse(&b[..n], E),
            Err(SrpError::Short { need: 236, .. })
        ));
        b[28..32].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(parse(&b[..n], E).is_err());
        // Flagged sense of zero bytes.
        b[28..32].fill(0);
        assert!(matches!(
            parse(&b[..n], E),
            Err(SrpError::Inconsistent { .. })
        ));
        // Response data longer than the IU.
        let (mut b, n) = rsp(GOOD, RSPVALID, 0, &[]);
        b[32..36].copy_from_slice(&4u32.to_be_bytes());
        assert!(parse(&b[..n], E).is_err());
        assert_eq!(parse(&b[..n + 4], E).unwrap().response.len(), 4);
    }
}
