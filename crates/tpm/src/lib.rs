//! The vTPM wire formats, written once for vioboot's driver and the host tests. Every parser
//! checks each count and length against the bytes it was given before it believes a field.
//!
//! - [`crq`]: the tpm-spapr CRQ messages (GET_VERSION, GET_RTCE_BUFFER_SIZE, TPM_COMMAND, and
//!   their answers; 0xFF an error), inside PAPR's 16-byte CRQ entry.
//! - [`cmd`]: TPM 2.0 commands vioboot sends (Startup, GetCapability for the PCR banks and the
//!   properties, PCR_Extend on every bank, PCR_Read) and their checked responses.
//! - [`log`]: the TCG2 crypto-agile event log (TCG PC Client Platform Firmware Profile): the
//!   Spec ID event, TCG_PCR_EVENT2 entries, and a replay that computes the PCRs it implies.
//! - [`error`]: [`TpmError`], what a parser or builder refused, or the TPM's response code.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod cmd;
pub mod crq;
pub mod error;
pub mod log;

pub use error::TpmError;

/// TPM_ALG_ID of SHA-1.
pub const ALG_SHA1: u16 = 0x0004;
/// TPM_ALG_ID of SHA-256.
pub const ALG_SHA256: u16 = 0x000B;
/// TPM_ALG_ID of SHA-384.
pub const ALG_SHA384: u16 = 0x000C;
/// TPM_ALG_ID of SHA-512.
pub const ALG_SHA512: u16 = 0x000D;
/// TPM_ALG_ID of SM3-256.
pub const ALG_SM3_256: u16 = 0x0012;

/// The digest length of a hash algorithm, if vioboot knows it.
pub const fn digest_len(alg: u16) -> Option<usize> {
    match alg {
        ALG_SHA1 => Some(20),
        ALG_SHA256 | ALG_SM3_256 => Some(32),
        ALG_SHA384 => Some(48),
        ALG_SHA512 => Some(64),
        _ => None,
    }
}

/// The name of a hash algorithm, for the report.
pub const fn alg_name(alg: u16) -> &'static str {
    match alg {
        ALG_SHA1 => "sha1",
        ALG_SHA256 => "sha256",
        ALG_SHA384 => "sha384",
        ALG_SHA512 => "sha512",
        ALG_SM3_256 => "sm3_256",
        _ => "unknown",
    }
}
