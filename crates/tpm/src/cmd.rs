//! TPM 2.0 commands vioboot sends (TPM 2.0 Library, Part 3) and their responses, checked: the
//! header's tag, its size against the bytes received and the buffer, the response code, then
//! every count and length inside. Everything on the wire is big-endian.

use crate::{digest_len, TpmError};
use alloc::vec::Vec;

/// TPM_ST_NO_SESSIONS.
pub const ST_NO_SESSIONS: u16 = 0x8001;
/// TPM_ST_SESSIONS.
pub const ST_SESSIONS: u16 = 0x8002;
/// TPM_CC_Startup.
pub const CC_STARTUP: u32 = 0x144;
/// TPM_CC_GetCapability.
pub const CC_GET_CAPABILITY: u32 = 0x17A;
/// TPM_CC_PCR_Read.
pub const CC_PCR_READ: u32 = 0x17E;
/// TPM_CC_PCR_Extend.
pub const CC_PCR_EXTEND: u32 = 0x182;
/// TPM_SU_CLEAR.
pub const SU_CLEAR: u16 = 0;
/// TPM_CAP_PCRS.
pub const CAP_PCRS: u32 = 5;
/// TPM_CAP_TPM_PROPERTIES.
pub const CAP_TPM_PROPERTIES: u32 = 6;
/// TPM_PT_FAMILY_INDICATOR ("2.0").
pub const PT_FAMILY_INDICATOR: u32 = 0x100;
/// TPM_PT_MANUFACTURER (four ASCII bytes, e.g. "IBM ").
pub const PT_MANUFACTURER: u32 = 0x105;
/// TPM_PT_FIRMWARE_VERSION_1.
pub const PT_FIRMWARE_VERSION_1: u32 = 0x10B;
/// TPM_RS_PW: the password session, with an empty password.
pub const RS_PW: u32 = 0x4000_0009;
/// TPM_RC_SUCCESS.
pub const RC_SUCCESS: u32 = 0;
/// TPM_RC_INITIALIZE: Startup after Startup (the TPM is already started).
pub const RC_INITIALIZE: u32 = 0x100;
/// Response header: tag, size, response code.
pub const HEADER_LEN: usize = 10;
/// PCRs of a PC Client TPM.
pub const PCR_COUNT: u32 = 24;

fn with_header(tag: u16, cc: u32, body: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(HEADER_LEN + body.len());
    v.extend_from_slice(&tag.to_be_bytes());
    v.extend_from_slice(&((HEADER_LEN + body.len()) as u32).to_be_bytes());
    v.extend_from_slice(&cc.to_be_bytes());
    v.extend_from_slice(body);
    v
}

/// TPM2_Startup(TPM_SU_CLEAR).
pub fn startup() -> Vec<u8> {
    with_header(ST_NO_SESSIONS, CC_STARTUP, &SU_CLEAR.to_be_bytes())
}

/// TPM2_GetCapability(capability, property, count).
pub fn get_capability(capability: u32, property: u32, count: u32) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&capability.to_be_bytes());
    b.extend_from_slice(&property.to_be_bytes());
    b.extend_from_slice(&count.to_be_bytes());
    with_header(ST_NO_SESSIONS, CC_GET_CAPABILITY, &b)
}

/// One bank's digest for PCR_Extend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Digest {
    pub alg: u16,
    pub bytes: Vec<u8>,
}

fn check_pcr(pcr: u32) -> Result<(), TpmError> {
    if pcr >= PCR_COUNT {
        return Err(TpmError::TooLarge {
            what: "PCR index",
            len: pcr as usize,
        });
    }
    Ok(())
}

/// TPM2_PCR_Extend(pcr, digests) with the empty password session; each digest must have its
/// algorithm's length.
pub fn pcr_extend(pcr: u32, digests: &[Digest]) -> Result<Vec<u8>, TpmError> {
    check_pcr(pcr)?;
    if digests.is_empty() || digests.len() > 8 {
        return Err(TpmError::TooLarge {
            what: "number of digests",
            len: digests.len(),
        });
    }
    let mut b = Vec::new();
    b.extend_from_slice(&pcr.to_be_bytes());
    // The authorization area: its size, then TPMS_AUTH_COMMAND {handle, nonce (empty),
    // attributes, hmac (empty password)}.
    b.extend_from_slice(&9u32.to_be_bytes());
    b.extend_from_slice(&RS_PW.to_be_bytes());
    b.extend_from_slice(&0u16.to_be_bytes());
    b.push(0);
    b.extend_from_slice(&0u16.to_be_bytes());
    b.extend_from_slice(&(digests.len() as u32).to_be_bytes());
    for d in digests {
        if digest_len(d.alg) != Some(d.bytes.len()) {
            return Err(TpmError::TooLarge {
                what: "digest length for its algorithm",
                len: d.bytes.len(),
            });
        }
        b.extend_from_slice(&d.alg.to_be_bytes());
        b.extend_from_slice(&d.bytes);
    }
    Ok(with_header(ST_SESSIONS, CC_PCR_EXTEND, &b))
}

/// TPM2_PCR_Read of one PCR in one bank.
pub fn pcr_read(pcr: u32, alg: u16) -> Result<Vec<u8>, TpmError> {
    check_pcr(pcr)?;
    let mut b = Vec::new();
    b.extend_from_slice(&1u32.to_be_bytes());
    b.extend_from_slice(&alg.to_be_bytes());
    b.push(3);
    let mut select = [0u8; 3];
    select[(pcr / 8) as usize] = 1 << (pcr % 8);
    b.extend_from_slice(&select);
    Ok(with_header(ST_NO_SESSIONS, CC_PCR_READ, &b))
}

/// A cursor over a response that refuses to read past its end.
struct Reader<'a> {
    b: &'a [u8],
    at: usize,
    what: &'static str,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], TpmError> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.b.len());
        let Some(end) = end else {
            return Err(TpmError::Short {
                what: self.what,
                need: self.at.saturating_add(n),
                have: self.b.len(),
            });
        };
        let s = &self.b[self.at..end];
        self.at = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, TpmError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, TpmError> {
        let s = self.take(2)?;
        Ok(u16::from_be_bytes([s[0], s[1]]))
    }
    fn u32(&mut self) -> Result<u32, TpmError> {
        let s = self.take(4)?;
        Ok(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
    }
}

/// Checks a response's header against the bytes received (at most `buffer` of them may come)
/// and returns its parameters: tag ST_NO_SESSIONS or ST_SESSIONS, size equal to the bytes,
/// response code success.
pub fn response(bytes: &[u8], buffer: usize) -> Result<&[u8], TpmError> {
    if bytes.len() > buffer {
        return Err(TpmError::Length {
            what: "response beyond the buffer",
            said: bytes.len(),
            have: buffer,
        });
    }
    let mut r = Reader {
        b: bytes,
        at: 0,
        what: "response header",
    };
    let tag = r.u16()?;
    let size = r.u32()? as usize;
    let rc = r.u32()?;
    if tag != ST_NO_SESSIONS && tag != ST_SESSIONS {
        return Err(TpmError::Unexpected {
            what: "response tag",
            got: tag.into(),
        });
    }
    if size != bytes.len() {
        return Err(TpmError::Length {
            what: "response size",
            said: size,
            have: bytes.len(),
        });
    }
    if rc != RC_SUCCESS {
        return Err(TpmError::Rc(rc));
    }
    Ok(&bytes[HEADER_LEN..])
}

/// Startup's answer: success, or TPM_RC_INITIALIZE (already started: `Ok(false)`).
pub fn parse_startup(bytes: &[u8], buffer: usize) -> Result<bool, TpmError> {
    match response(bytes, buffer) {
        Ok(_) => Ok(true),
        Err(TpmError::Rc(RC_INITIALIZE)) => Ok(false),
        Err(e) => Err(e),
    }
}

fn capability_body(bytes: &[u8], buffer: usize, cap: u32) -> Result<Reader<'_>, TpmError> {
    let p = response(bytes, buffer)?;
    let mut r = Reader {
        b: p,
        at: 0,
        what: "GetCapability response",
    };
    let _more = r.u8()?;
    let got = r.u32()?;
    if got != cap {
        return Err(TpmError::Unexpected {
            what: "capability",
            got,
        });
    }
    Ok(r)
}

/// A PCR bank and whether any PCR of it is allocated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bank {
    pub alg: u16,
    pub active: bool,
}

/// GetCapability(TPM_CAP_PCRS): every bank the TPM has, and which are active.
pub fn parse_pcrs(bytes: &[u8], buffer: usize) -> Result<Vec<Bank>, TpmError> {
    let mut r = capability_body(bytes, buffer, CAP_PCRS)?;
    let count = r.u32()?;
    // Each selection is at least 3 bytes: a count beyond the bytes left is a lie.
    if count as usize > r.b.len() / 3 {
        return Err(TpmError::Length {
            what: "PCR selection count",
            said: count as usize,
            have: r.b.len(),
        });
    }
    let mut banks = Vec::new();
    for _ in 0..count {
        let alg = r.u16()?;
        let n = r.u8()?;
        let select = r.take(n.into())?;
        banks.push(Bank {
            alg,
            active: select.iter().any(|&b| b != 0),
        });
    }
    Ok(banks)
}

/// GetCapability(TPM_CAP_TPM_PROPERTIES): (property, value) pairs.
pub fn parse_properties(bytes: &[u8], buffer: usize) -> Result<Vec<(u32, u32)>, TpmError> {
    let mut r = capability_body(bytes, buffer, CAP_TPM_PROPERTIES)?;
    let count = r.u32()?;
    if count as usize > r.b.len() / 8 {
        return Err(TpmError::Length {
            what: "property count",
            said: count as usize,
            have: r.b.len(),
        });
    }
    (0..count).map(|_| Ok((r.u32()?, r.u32()?))).collect()
}

/// PCR_Extend's answer: success.
pub fn parse_extend(bytes: &[u8], buffer: usize) -> Result<(), TpmError> {
    response(bytes, buffer).map(|_| ())
}

/// PCR_Read's answer: the one digest asked for, of its algorithm's length.
pub fn parse_pcr_read(
    bytes: &[u8],
    buffer: usize,
    pcr: u32,
    alg: u16,
) -> Result<Vec<u8>, TpmError> {
    let p = response(bytes, buffer)?;
    let mut r = Reader {
        b: p,
        at: 0,
        what: "PCR_Read response",
    };
    let _update_counter = r.u32()?;
    let sels = r.u32()?;
    if sels != 1 {
        return Err(TpmError::Unexpected {
            what: "PCR selection count",
            got: sels,
        });
    }
    let got = r.u16()?;
    if got != alg {
        return Err(TpmError::Unexpected {
            what: "bank",
            got: got.into(),
        });
    }
    let n = r.u8()?;
    let select = r.take(n.into())?;
    let (byte, bit) = ((pcr / 8) as usize, 1u8 << (pcr % 8));
    if select.get(byte).is_none_or(|b| b & bit == 0) {
        return Err(TpmError::Unexpected {
            what: "PCR not selected in the answer, PCR",
            got: pcr,
        });
    }
    let digests = r.u32()?;
    if digests != 1 {
        return Err(TpmError::Unexpected {
            what: "digest count",
            got: digests,
        });
    }
    let size = r.u16()? as usize;
    if digest_len(alg) != Some(size) {
        return Err(TpmError::Length {
            what: "PCR digest",
            said: size,
            have: digest_len(alg).unwrap_or(0),
        });
    }
    Ok(r.take(size)?.to_vec())
}

/// The manufacturer's four ASCII characters, trailing spaces and NULs removed.
pub fn manufacturer(value: u32) -> alloc::string::String {
    value
        .to_be_bytes()
        .iter()
        .map(|&c| {
            if c.is_ascii_graphic() || c == b' ' {
                c as char
            } else {
                ' '
            }
        })
        .collect::<alloc::string::String>()
        .trim_end()
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ALG_SHA1, ALG_SHA256};
    use alloc::vec;

    fn rsp(tag: u16, rc: u32, params: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&tag.to_be_bytes());
        v.extend_from_slice(&((10 + params.len()) as u32).to_be_bytes());
        v.extend_from_slice(&rc.to_be_bytes());
        v.extend_from_slice(params);
        v
    }

    #[test]
    fn startup_bytes_are_the_specs() {
        assert_eq!(
            startup(),
            [0x80, 0x01, 0, 0, 0, 0x0C, 0, 0, 0x01, 0x44, 0, 0]
        );
        assert_eq!(parse_startup(&rsp(0x8001, 0, &[]), 4096), Ok(true));
        assert_eq!(parse_startup(&rsp(0x8001, 0x100, &[]), 4096), Ok(false));
        assert_eq!(
            parse_startup(&rsp(0x8001, 0x101, &[]), 4096),
            Err(TpmError::Rc(0x101))
        );
    }

    #[test]
    fn hostile_headers_are_refused() {
        assert!(matches!(response(&[], 4096), Err(TpmError::Short { .. })));
        assert!(matches!(
            response(&rsp(0x00C4, 0, &[]), 4096),
            Err(TpmError::Unexpected { .. })
        ));
        let mut long = rsp(0x8001, 0, &[0; 4]);
        long[5] = 0xFF;
        assert!(matches!(
            response(&long, 4096),
            Err(TpmError::Length { .. })
        ));
        let big = rsp(0x8001, 0, &[0; 5000]);
        assert!(matches!(response(&big, 4096), Err(TpmError::Length { .. })));
    }

    #[test]
    fn banks_and_properties() {
        let mut p = vec![0, 0, 0, 0, 5, 0, 0, 0, 2];
        p.extend_from_slice(&[0x00, 0x04, 3, 0, 0, 0]);
        p.extend_from_slice(&[0x00, 0x0B, 3, 0xFF, 0xFF, 0xFF]);
        let b = parse_pcrs(&rsp(0x8001, 0, &p), 4096).unwrap();
        assert_eq!(
            b,
            [
                Bank {
                    alg: ALG_SHA1,
                    active: false
                },
                Bank {
                    alg: ALG_SHA256,
                    active: true
                }
            ]
        );
        // A count that promises more than is there.
        let lie = [0, 0, 0, 0, 5, 0xFF, 0xFF, 0xFF, 0xFF];
        assert!(parse_pcrs(&rsp(0x8001, 0, &lie), 4096).is_err());
        let trunc = [0, 0, 0, 0, 5, 0, 0, 0, 1, 0, 0x0B, 200, 0];
        assert!(parse_pcrs(&rsp(0x8001, 0, &trunc), 4096).is_err());
        let mut q = vec![0, 0, 0, 0, 6, 0, 0, 0, 1];
        q.extend_from_slice(&PT_MANUFACTURER.to_be_bytes());
        q.extend_from_slice(b"IBM ");
        let props = parse_properties(&rsp(0x8001, 0, &q), 4096).unwrap();
        assert_eq!(props, [(PT_MANUFACTURER, u32::from_be_bytes(*b"IBM "))]);
        assert_eq!(manufacturer(props[0].1), "IBM");
        // The wrong capability in the answer.
        assert!(parse_properties(&rsp(0x8001, 0, &p), 4096).is_err());
    }

    #[test]
    fn extend_and_read() {
        let d = Digest {
            alg: ALG_SHA256,
            bytes: vec![7; 32],
        };
        let c = pcr_extend(16, core::slice::from_ref(&d)).unwrap();
        assert_eq!(c.len(), 10 + 4 + 4 + 9 + 4 + 2 + 32);
        assert_eq!(&c[0..2], &[0x80, 0x02]);
        assert!(pcr_extend(24, &[d]).is_err());
        let bad = Digest {
            alg: ALG_SHA256,
            bytes: vec![0; 20],
        };
        assert!(pcr_extend(16, &[bad]).is_err());
        let r = pcr_read(16, ALG_SHA256).unwrap();
        assert_eq!(&r[r.len() - 3..], &[0, 0, 1]);
        let mut p = vec![
            0, 0, 0, 9, 0, 0, 0, 1, 0x00, 0x0B, 3, 0, 0, 1, 0, 0, 0, 1, 0, 32,
        ];
        p.extend_from_slice(&[0xAB; 32]);
        let got = parse_pcr_read(&rsp(0x8001, 0, &p), 4096, 16, ALG_SHA256).unwrap();
        assert_eq!(got, [0xAB; 32]);
        // Another PCR, another bank, a short digest: refused.
        assert!(parse_pcr_read(&rsp(0x8001, 0, &p), 4096, 17, ALG_SHA256).is_err());
        assert!(parse_pcr_read(&rsp(0x8001, 0, &p), 4096, 16, ALG_SHA1).is_err());
        let short = &p[..p.len() - 1];
        assert!(parse_pcr_read(&rsp(0x8001, 0, short), 4096, 16, ALG_SHA256).is_err());
    }
}
