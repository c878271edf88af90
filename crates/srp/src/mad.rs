//! Management datagrams (MADs, Linux `viosrp.h`): a 16-byte common header (type, status,
//! length, tag) and a buffer IOBA. vioboot sends ADAPTER_INFO: the server writes a
//! [`ADAPTER_INFO_LEN`]-byte description of itself into the buffer and answers over the IU.

use crate::{be16, be32, be64, need, text, SrpError};
use alloc::string::String;

/// MAD type: adapter information.
pub const ADAPTER_INFO: u32 = 0x03;
/// Bytes of the ADAPTER_INFO request and response IU.
pub const ADAPTER_INFO_IU_LEN: usize = 24;
/// Bytes of `mad_adapter_info_data` (srp_version[8], partition_name[96], partition_number,
/// mad_version, os_type, port_max_txu[8]).
pub const ADAPTER_INFO_LEN: usize = 148;
/// MAD status: done.
pub const MAD_SUCCESS: u16 = 0x00;
/// MAD status: the server does not know this type.
pub const MAD_NOT_SUPPORTED: u16 = 0xF1;
/// MAD status: it failed.
pub const MAD_FAILED: u16 = 0xF7;

/// The ADAPTER_INFO request: its tag, and the IOBA of a buffer of [`ADAPTER_INFO_LEN`] bytes
/// the server may write.
pub fn adapter_info_request(tag: u64, buffer: u64) -> [u8; ADAPTER_INFO_IU_LEN] {
    let mut b = [0u8; ADAPTER_INFO_IU_LEN];
    b[0..4].copy_from_slice(&ADAPTER_INFO.to_be_bytes());
    b[6..8].copy_from_slice(&(ADAPTER_INFO_LEN as u16).to_be_bytes());
    b[8..16].copy_from_slice(&tag.to_be_bytes());
    b[16..24].copy_from_slice(&buffer.to_be_bytes());
    b
}

/// The common header of a MAD response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MadResponse {
    pub kind: u32,
    pub status: u16,
    pub length: u16,
    pub tag: u64,
}

/// Checks the response to ADAPTER_INFO `tag`: its type, tag, and a length no larger than asked.
pub fn parse_adapter_info_response(iu: &[u8], tag: u64) -> Result<MadResponse, SrpError> {
    need("MAD response", iu, 16)?;
    let r = MadResponse {
        kind: be32(iu, 0),
        status: be16(iu, 4),
        length: be16(iu, 6),
        tag: be64(iu, 8),
    };
    if r.kind != ADAPTER_INFO {
        return Err(SrpError::Opcode {
            what: "MAD response",
            want: ADAPTER_INFO,
            got: r.kind,
        });
    }
    if r.tag != tag {
        return Err(SrpError::Tag {
            want: tag,
            got: r.tag,
        });
    }
    if usize::from(r.length) > ADAPTER_INFO_LEN {
        return Err(SrpError::Inconsistent {
            what: "ADAPTER_INFO length larger than the buffer",
            value: r.length.into(),
        });
    }
    Ok(r)
}

/// What the server says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdapterInfo {
    pub srp_version: String,
    pub partition_name: String,
    pub partition_number: u32,
    pub mad_version: u32,
    pub os_type: u32,
    /// Largest transfer of the first port, in bytes (0: not said).
    pub max_transfer: u32,
}

impl AdapterInfo {
    pub fn parse(b: &[u8]) -> Result<AdapterInfo, SrpError> {
        need("ADAPTER_INFO data", b, ADAPTER_INFO_LEN)?;
        Ok(AdapterInfo {
            srp_version: text(&b[0..8]),
            partition_name: text(&b[8..104]),
            partition_number: be32(b, 104),
            mad_version: be32(b, 108),
            os_type: be32(b, 112),
            max_transfer: be32(b, 116),
        })
    }

    /// The bytes a server writes (for fake targets in tests).
    pub fn encode(&self) -> [u8; ADAPTER_INFO_LEN] {
        let mut b = [0u8; ADAPTER_INFO_LEN];
        let v = self.srp_version.as_bytes();
        b[..v.len().min(7)].copy_from_slice(&v[..v.len().min(7)]);
        let p = self.partition_name.as_bytes();
        b[8..8 + p.len().min(95)].copy_from_slice(&p[..p.len().min(95)]);
        b[104..108].copy_from_slice(&self.partition_number.to_be_bytes());
        b[108..112].copy_from_slice(&self.mad_version.to_be_bytes());
        b[112..116].copy_from_slice(&self.os_type.to_be_bytes());
        b[116..120].copy_from_slice(&self.max_transfer.to_be_bytes());
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_layout() {
        let r = adapter_info_request(0x77, 0x5000);
        assert_eq!(&r[..8], &[0, 0, 0, 3, 0, 0, 0, 148]);
        assert_eq!(be64(&r, 8), 0x77);
        assert_eq!(be64(&r, 16), 0x5000);
    }

    #[test]
    fn response_checked() {
        let mut r = adapter_info_request(9, 0x5000);
        assert_eq!(parse_adapter_info_response(&r, 9).unwrap().status, 0);
        assert!(matches!(
            parse_adapter_info_response(&r, 8),
            Err(SrpError::Tag { want: 8, got: 9 })
        ));
        assert!(matches!(
            parse_adapter_info_response(&r[..10], 9),
            Err(SrpError::Short { .. })
        ));
        r[3] = 4;
        assert!(matches!(
            parse_adapter_info_response(&r, 9),
            Err(SrpError::Opcode { got: 4, .. })
        ));
        r[3] = 3;
        r[6..8].copy_from_slice(&1000u16.to_be_bytes());
        assert!(matches!(
            parse_adapter_info_response(&r, 9),
            Err(SrpError::Inconsistent { value: 1000, .. })
        ));
    }

    #[test]
    fn info_round_trip_and_short() {
        let i = AdapterInfo {
            srp_version: "16.a".into(),
            partition_name: "qemu".into(),
            partition_number: 0,
            mad_version: 1,
            os_type: 2,
            max_transfer: 2 << 20,
        };
        assert_eq!(AdapterInfo::parse(&i.encode()), Ok(i.clone()));
        assert!(AdapterInfo::parse(&i.encode()[..147]).is_err());
        let mut junk = i.encode();
        junk[8..104].fill(0xFF);
        assert_eq!(AdapterInfo::parse(&junk).unwrap().partition_name.len(), 96);
    }
}
