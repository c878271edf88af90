//! tpm-spapr CRQ messages (QEMU's `hw/tpm/tpm_spapr.c`, Linux's `tpm_ibmvtpm`): a 16-byte PAPR
//! CRQ entry {valid 0x80, message, length be16, data be32, reserved be64}. GET_VERSION is
//! answered with the TPM version in `data`, GET_RTCE_BUFFER_SIZE with the largest command in
//! `len`; TPM_COMMAND carries the command's length and the IOBA of its buffer, and is answered
//! (later) with the response length, the response written over the same buffer. An answer's
//! message is the request's with [`RESPONSE`] set; [`ERROR`] says the vTPM refused.

use crate::TpmError;
use papr::crq::{ENTRY_LEN, VALID_CMD_RESP};

/// Asks for the TPM version (1 or 2).
pub const GET_VERSION: u8 = 0x01;
/// Runs a TPM command held in the buffer at the IOBA in `data`.
pub const TPM_COMMAND: u8 = 0x02;
/// Asks for the size of the command/response buffer the vTPM takes.
pub const GET_RTCE_BUFFER_SIZE: u8 = 0x03;
/// Set in the message of an answer.
pub const RESPONSE: u8 = 0x80;
/// The message of an answer that reports an error.
pub const ERROR: u8 = 0xFF;
/// The largest buffer vioboot uses (QEMU reads a whole 4 KiB whatever the length).
pub const BUFFER_SIZE: usize = 4096;

/// A request entry.
pub fn request(msg: u8, len: u16, data: u32) -> [u8; ENTRY_LEN] {
    let mut b = [0u8; ENTRY_LEN];
    b[0] = VALID_CMD_RESP;
    b[1] = msg;
    b[2..4].copy_from_slice(&len.to_be_bytes());
    b[4..8].copy_from_slice(&data.to_be_bytes());
    b
}

/// TPM_COMMAND for a command of `len` bytes at `ioba`; refuses what the 4 KiB buffer or the
/// 32-bit IOBA field cannot hold.
pub fn command(len: usize, ioba: u64) -> Result<[u8; ENTRY_LEN], TpmError> {
    if len > BUFFER_SIZE {
        return Err(TpmError::TooLarge {
            what: "TPM command",
            len,
        });
    }
    let data = u32::try_from(ioba).map_err(|_| TpmError::TooLarge {
        what: "IOBA beyond 32 bits",
        len: 8,
    })?;
    Ok(request(TPM_COMMAND, len as u16, data))
}

/// An answer from the vTPM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// GET_VERSION: 1 (TPM 1.2) or 2 (TPM 2.0).
    Version(u32),
    /// GET_RTCE_BUFFER_SIZE.
    BufferSize(u16),
    /// TPM_COMMAND: the response's length, written over the command buffer.
    Response(u16),
    /// The error message.
    Error,
}

/// Reads an answer entry (a message entry: byte 0 = 0x80).
pub fn parse(b: &[u8; ENTRY_LEN]) -> Result<Answer, TpmError> {
    if b[0] != VALID_CMD_RESP {
        return Err(TpmError::Unexpected {
            what: "CRQ entry kind",
            got: b[0].into(),
        });
    }
    let len = u16::from_be_bytes([b[2], b[3]]);
    let data = u32::from_be_bytes([b[4], b[5], b[6], b[7]]);
    match b[1] {
        ERROR => Ok(Answer::Error),
        m if m == GET_VERSION | RESPONSE => Ok(Answer::Version(data)),
        m if m == GET_RTCE_BUFFER_SIZE | RESPONSE => Ok(Answer::BufferSize(len)),
        m if m == TPM_COMMAND | RESPONSE => Ok(Answer::Response(len)),
        m => Err(TpmError::Unexpected {
            what: "vTPM message",
            got: m.into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_big_endian() {
        let e = command(12, 0x1000).unwrap();
        assert_eq!(e[..8], [0x80, 0x02, 0, 12, 0, 0, 0x10, 0]);
        assert_eq!(request(GET_VERSION, 0, 0)[..2], [0x80, 0x01]);
        assert!(command(4097, 0x1000).is_err());
        assert!(command(10, 1 << 32).is_err());
    }

    #[test]
    fn answers() {
        let mut e = [0u8; 16];
        e[0] = 0x80;
        e[1] = 0x81;
        e[7] = 2;
        assert_eq!(parse(&e), Ok(Answer::Version(2)));
        e[1] = 0x83;
        e[2] = 0x10;
        e[3] = 0;
        assert_eq!(parse(&e), Ok(Answer::BufferSize(4096)));
        e[1] = 0x82;
        e[2] = 0;
        e[3] = 10;
        assert_eq!(parse(&e), Ok(Answer::Response(10)));
        e[1] = 0xFF;
        assert_eq!(parse(&e), Ok(Answer::Error));
        e[1] = 0x05;
        assert!(parse(&e).is_err());
        e[0] = 0xC0;
        assert!(parse(&e).is_err());
    }
}
