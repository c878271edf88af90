//! SRP_LOGIN_REQ and its answers, SRP_LOGIN_RSP (with the request limit the target grants)
//! and SRP_LOGIN_REJ (T10 SRP r16a 6.2-6.4).

use crate::{be16, be32, be64, need, SrpError};

pub const SRP_LOGIN_REQ: u8 = 0x00;
pub const SRP_LOGIN_RSP: u8 = 0xC0;
pub const SRP_LOGIN_REJ: u8 = 0xC2;
/// Bytes of the request.
pub const LOGIN_REQ_LEN: usize = 64;
/// Bytes of SRP_LOGIN_RSP.
pub const LOGIN_RSP_LEN: usize = 52;
/// Bytes of SRP_LOGIN_REJ.
pub const LOGIN_REJ_LEN: usize = 32;
/// Buffer formats: direct descriptors.
pub const BUF_FORMAT_DIRECT: u16 = 1 << 1;
/// Buffer formats: indirect descriptor tables.
pub const BUF_FORMAT_INDIRECT: u16 = 1 << 2;

/// The login request: the largest IU we send, and both descriptor formats.
pub fn request(tag: u64, max_iu_len: u32) -> [u8; LOGIN_REQ_LEN] {
    let mut b = [0u8; LOGIN_REQ_LEN];
    b[0] = SRP_LOGIN_REQ;
    b[8..16].copy_from_slice(&tag.to_be_bytes());
    b[16..20].copy_from_slice(&max_iu_len.to_be_bytes());
    b[24..26].copy_from_slice(&(BUF_FORMAT_DIRECT | BUF_FORMAT_INDIRECT).to_be_bytes());
    b
}

/// What the target granted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Granted {
    /// Requests we may have outstanding (the first credit grant).
    pub request_limit: u32,
    /// Largest IU the target accepts from us.
    pub max_it_iu_len: u32,
    /// Largest IU it sends us.
    pub max_ti_iu_len: u32,
    pub buf_formats: u16,
}

/// How a login ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Login {
    Accepted(Granted),
    /// SRP_LOGIN_REJ and its reason code.
    Rejected {
        reason: u32,
    },
}

/// Reads the answer to login `tag`: SRP_LOGIN_RSP or SRP_LOGIN_REJ, whole, with our tag. A
/// grant of no requests, or an IU limit below a command's 64 bytes, is refused.
pub fn parse(iu: &[u8], tag: u64) -> Result<Login, SrpError> {
    need("login answer", iu, 16)?;
    let got = be64(iu, 8);
    let check_tag = || {
        if got == tag {
            Ok(())
        } else {
            Err(SrpError::Tag { want: tag, got })
        }
    };
    match iu[0] {
        SRP_LOGIN_RSP => {
            need("SRP_LOGIN_RSP", iu, LOGIN_RSP_LEN)?;
            check_tag()?;
            let g = Granted {
                request_limit: be32(iu, 4),
                max_it_iu_len: be32(iu, 16),
                max_ti_iu_len: be32(iu, 20),
                buf_formats: be16(iu, 24),
            };
            if g.request_limit == 0 {
                return Err(SrpError::Inconsistent {
                    what: "login grants no requests",
                    value: 0,
                });
            }
            if g.max_it_iu_len < 64 {
                return Err(SrpError::Inconsistent {
                    what: "login allows IUs too small for a command",
                    value: g.max_it_iu_len.into(),
                });
            }
            Ok(Login::Accepted(g))
        }
        SRP_LOGIN_REJ => {
            need("SRP_LOGIN_REJ", iu, LOGIN_REJ_LEN)?;
            check_tag()?;
            Ok(Login::Rejected {
                reason: be32(iu, 4),
            })
        }
        op => Err(SrpError::Opcode {
            what: "login answer",
            want: SRP_LOGIN_RSP.into(),
            got: op.into(),
        }),
    }
}

/// An SRP_LOGIN_RSP as a target sends it (for fake targets in tests).
pub fn response(tag: u64, g: Granted) -> [u8; LOGIN_RSP_LEN] {
    let mut b = [0u8; LOGIN_RSP_LEN];
    b[0] = SRP_LOGIN_RSP;
    b[4..8].copy_from_slice(&g.request_limit.to_be_bytes());
    b[8..16].copy_from_slice(&tag.to_be_bytes());
    b[16..20].copy_from_slice(&g.max_it_iu_len.to_be_bytes());
    b[20..24].copy_from_slice(&g.max_ti_iu_len.to_be_bytes());
    b[24..26].copy_from_slice(&g.buf_formats.to_be_bytes());
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    const G: Granted = Granted {
        request_limit: 22,
        max_it_iu_len: 256,
        max_ti_iu_len: 256,
        buf_formats: 6,
    };

    #[test]
    fn request_layout() {
        let r = request(5, 256);
        assert_eq!(r[0], 0);
        assert_eq!(be64(&r, 8), 5);
        assert_eq!(be32(&r, 16), 256);
        assert_eq!(be16(&r, 24), 6);
    }

    #[test]
    fn accepts_a_grant() {
        assert_eq!(parse(&response(5, G), 5), Ok(Login::Accepted(G)));
    }

    #[test]
    fn rejects_hostile_answers() {
        let r = response(5, G);
        assert!(matches!(parse(&r, 6), Err(SrpError::Tag { .. })));
        assert!(matches!(
            parse(&r[..40], 5),
            Err(SrpError::Short { need: 52, .. })
        ));
        let mut z = r;
        z[4..8].fill(0);
        assert!(matches!(parse(&z, 5), Err(SrpError::Inconsistent { .. })));
        let mut small = r;
        small[16..20].copy_from_slice(&32u32.to_be_bytes());
        assert!(matches!(
            parse(&small, 5),
            Err(SrpError::Inconsistent { value: 32, .. })
        ));
        let mut op = r;
        op[0] = 0xC1;
        assert!(matches!(
            parse(&op, 5),
            Err(SrpError::Opcode { got: 0xC1, .. })
        ));
    }

    #[test]
    fn reads_a_rejection() {
        let mut j = [0u8; LOGIN_REJ_LEN];
        j[0] = SRP_LOGIN_REJ;
        j[4..8].copy_from_slice(&0x0001_0006u32.to_be_bytes());
        j[8..16].copy_from_slice(&5u64.to_be_bytes());
        assert_eq!(
            parse(&j, 5),
            Ok(Login::Rejected {
                reason: 0x0001_0006
            })
        );
        assert!(parse(&j[..20], 5).is_err());
    }
}
