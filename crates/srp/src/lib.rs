//! The v-scsi wire formats (PAPR's virtual SCSI: SRP over a CRQ), written once for vioboot's
//! driver and the tests' fake target. Every parser checks each count and length against the
//! bytes it was given before it believes any field; every builder refuses what would not fit
//! the 256-byte IU.
//!
//! - [`iu`]: the 16-byte CRQ entry that carries an IU (format, status, length, IOBA or tag).
//! - [`mad`]: MAD ADAPTER_INFO, request and the adapter's answer.
//! - [`login`]: SRP_LOGIN_REQ, and SRP_LOGIN_RSP / SRP_LOGIN_REJ.
//! - [`cmd`]: SRP_CMD with direct or indirect data descriptors.
//! - [`rsp`]: SRP_RSP, checked (opcode, tag, flags, residuals, sense and response lengths).
//! - [`cdb`]: the SCSI commands vioboot sends (SPC-4, SBC-3).
//! - [`data`]: what they return: INQUIRY and its VPD pages, REPORT LUNS, READ CAPACITY, MODE
//!   SENSE.
//! - [`tsk`]: SRP_TSK_MGMT (ABORT TASK, LOGICAL UNIT RESET, ...) and its answer.
//! - [`sense`]: sense data (fixed and descriptor formats) as a typed error with names.
//! - [`error`]: [`SrpError`], what a parser or builder refused.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod cdb;
pub mod cmd;
pub mod data;
pub mod error;
pub mod iu;
pub mod login;
pub mod mad;
pub mod rsp;
pub mod sense;
pub mod tsk;

pub use error::SrpError;

/// Largest IU QEMU's and PowerVM's v-scsi accept (QEMU drops a longer one without a word).
pub const MAX_IU_LEN: usize = 256;

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn be64(b: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[at..at + 8]);
    u64::from_be_bytes(w)
}

/// Requires `b` to hold at least `need` bytes of `what`.
fn need(what: &'static str, b: &[u8], need: usize) -> Result<(), SrpError> {
    if b.len() < need {
        return Err(SrpError::Short {
            what,
            need,
            got: b.len(),
        });
    }
    Ok(())
}

/// ASCII text of a fixed-width, space- or NUL-padded field, trimmed.
fn text(b: &[u8]) -> alloc::string::String {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    let s: alloc::string::String = b[..end]
        .iter()
        .map(|&c| {
            if c.is_ascii_graphic() || c == b' ' {
                c as char
            } else {
                '?'
            }
        })
        .collect();
    s.trim().into()
}
