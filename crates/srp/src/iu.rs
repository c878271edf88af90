//! The CRQ entry that carries a v-scsi IU (PAPR; Linux `struct viosrp_crq`): byte 0 0x80,
//! format (SRP or MAD), status, timeout, IU length, and in bytes 8..15 the IU's IOBA (a
//! request) or the request's tag, copied from the IU (a response).

use crate::{be16, be64, SrpError, MAX_IU_LEN};
use papr::crq::{ENTRY_LEN, VALID_CMD_RESP};

/// Format of an SRP IU (login, command, response).
pub const FORMAT_SRP: u8 = 0x01;
/// Format of a management datagram (MAD).
pub const FORMAT_MAD: u8 = 0x02;

/// Status the server puts in a response entry: the IU was delivered.
pub const VIOSRP_OK: u8 = 0x00;
pub const VIOSRP_NONRECOVERABLE_ERR: u8 = 0x01;
pub const VIOSRP_VIOLATES_MAX_XFER: u8 = 0x02;
pub const VIOSRP_PARTNER_PANIC: u8 = 0x03;
pub const VIOSRP_DEVICE_BUSY: u8 = 0x08;
pub const VIOSRP_ADAPTER_FAIL: u8 = 0x10;

/// The name of an entry status.
pub fn status_name(s: u8) -> &'static str {
    match s {
        VIOSRP_OK => "VIOSRP_OK",
        VIOSRP_NONRECOVERABLE_ERR => "VIOSRP_NONRECOVERABLE_ERR",
        VIOSRP_VIOLATES_MAX_XFER => "VIOSRP_VIOLATES_MAX_XFER",
        VIOSRP_PARTNER_PANIC => "VIOSRP_PARTNER_PANIC",
        VIOSRP_DEVICE_BUSY => "VIOSRP_DEVICE_BUSY",
        VIOSRP_ADAPTER_FAIL => "VIOSRP_ADAPTER_FAIL",
        _ => "unknown status",
    }
}

/// One IU entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IuEntry {
    pub format: u8,
    pub status: u8,
    pub timeout: u16,
    /// Bytes of the IU.
    pub len: u16,
    /// The IU's IOBA in a request; the request's tag in a response.
    pub addr: u64,
}

impl IuEntry {
    /// A request: the IU of `len` bytes at `ioba`. Refuses an IU longer than 256 bytes.
    pub fn request(format: u8, len: usize, ioba: u64) -> Result<IuEntry, SrpError> {
        if len > MAX_IU_LEN {
            return Err(SrpError::Oversized { what: "IU", len });
        }
        Ok(IuEntry {
            format,
            status: VIOSRP_OK,
            timeout: 0,
            len: len as u16,
            addr: ioba,
        })
    }

    pub fn encode(&self) -> [u8; ENTRY_LEN] {
        let mut b = [0u8; ENTRY_LEN];
        b[0] = VALID_CMD_RESP;
        b[1] = self.format;
        b[2] = self.status;
        b[4..6].copy_from_slice(&self.timeout.to_be_bytes());
        b[6..8].copy_from_slice(&self.len.to_be_bytes());
        b[8..16].copy_from_slice(&self.addr.to_be_bytes());
        b
    }

    /// Reads an entry: byte 0 must be 0x80 and the format SRP or MAD; the length at most 256.
    pub fn decode(b: &[u8; ENTRY_LEN]) -> Result<IuEntry, SrpError> {
        if b[0] != VALID_CMD_RESP || !matches!(b[1], FORMAT_SRP | FORMAT_MAD) {
            return Err(SrpError::NotAnIu {
                byte0: b[0],
                format: b[1],
            });
        }
        let len = be16(b, 6);
        if usize::from(len) > MAX_IU_LEN {
            return Err(SrpError::Oversized {
                what: "response IU",
                len: len.into(),
            });
        }
        Ok(IuEntry {
            format: b[1],
            status: b[2],
            timeout: be16(b, 4),
            len,
            addr: be64(b, 8),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_layout() {
        let e = IuEntry::request(FORMAT_SRP, 64, 0x1234_5000).unwrap();
        let b = e.encode();
        assert_eq!(&b[..8], &[0x80, 1, 0, 0, 0, 0, 0, 64]);
        assert_eq!(&b[8..], &0x1234_5000u64.to_be_bytes());
        assert_eq!(IuEntry::decode(&b), Ok(e));
    }

    #[test]
    fn refuses_oversized_and_foreign_entries() {
        assert!(matches!(
            IuEntry::request(FORMAT_SRP, 257, 0),
            Err(SrpError::Oversized { len: 257, .. })
        ));
        let mut b = IuEntry::request(FORMAT_MAD, 24, 8).unwrap().encode();
        b[6..8].copy_from_slice(&300u16.to_be_bytes());
        assert!(matches!(
            IuEntry::decode(&b),
            Err(SrpError::Oversized { len: 300, .. })
        ));
        b[6..8].copy_from_slice(&24u16.to_be_bytes());
        b[1] = 0x03;
        assert!(matches!(
            IuEntry::decode(&b),
            Err(SrpError::NotAnIu { format: 3, .. })
        ));
        b[1] = FORMAT_MAD;
        b[0] = 0xC0;
        assert!(matches!(
            IuEntry::decode(&b),
            Err(SrpError::NotAnIu { byte0: 0xC0, .. })
        ));
    }

    #[test]
    fn names_statuses() {
        assert_eq!(status_name(0x10), "VIOSRP_ADAPTER_FAIL");
        assert_eq!(status_name(0x42), "unknown status");
    }
}
