//! What a vTPM parser or builder refused, or what the TPM answered instead of success.

use core::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TpmError {
    /// Fewer bytes than the structure needs.
    Short {
        what: &'static str,
        need: usize,
        have: usize,
    },
    /// A length field that does not agree with the bytes given.
    Length {
        what: &'static str,
        said: usize,
        have: usize,
    },
    /// A tag, message code or algorithm that is not the one expected.
    Unexpected { what: &'static str, got: u32 },
    /// The TPM's response code (not TPM_RC_SUCCESS).
    Rc(u32),
    /// The vTPM answered a CRQ message with its error message (0xFF).
    CrqError,
    /// A request that would not fit (a digest of the wrong length, too many banks, a PCR
    /// beyond 23).
    TooLarge { what: &'static str, len: usize },
}

impl fmt::Display for TpmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TpmError::Short { what, need, have } => {
                write!(f, "{what}: {have} bytes, at least {need} needed")
            }
            TpmError::Length { what, said, have } => {
                write!(f, "{what}: says {said} bytes, {have} given")
            }
            TpmError::Unexpected { what, got } => write!(f, "unexpected {what} {got:#x}"),
            TpmError::Rc(rc) => write!(f, "TPM response code {rc:#x} ({})", rc_name(*rc)),
            TpmError::CrqError => write!(f, "the vTPM answered with its error message (0xFF)"),
            TpmError::TooLarge { what, len } => write!(f, "{what}: {len} does not fit"),
        }
    }
}

/// The name of the TPM 2.0 response codes vioboot meets most.
pub fn rc_name(rc: u32) -> &'static str {
    match rc {
        0 => "TPM_RC_SUCCESS",
        0x100 => "TPM_RC_INITIALIZE",
        0x101 => "TPM_RC_FAILURE",
        0x143 => "TPM_RC_COMMAND_CODE",
        0x908 => "TPM_RC_YIELDED",
        0x922 => "TPM_RC_RETRY",
        0x923 => "TPM_RC_NV_RATE",
        _ if rc & 0x080 != 0 => "format-one error",
        _ => "error",
    }
}
