//! PAPR hcall status values a VIO server gets back from its partner, and the partner's error.
//!
//! The names are PAPR's (`hvcall.h` in Linux), so they stay greppable against both.

use core::fmt;

/// The hcall succeeded.
pub const H_SUCCESS: i64 = 0;
/// The partner has no CRQ registered (H_SEND_CRQ).
pub const H_CLOSED: i64 = 2;
/// Unknown function (QEMU's answer to an unknown socket frame type).
pub const H_FUNCTION: i64 = -2;
/// A parameter is out of range (an entry without its valid bit; an RDMA of more than 1 MiB).
pub const H_PARAMETER: i64 = -4;
/// The partner's CRQ is full.
pub const H_DROPPED: i64 = -12;
/// An IOBA is outside the window or its TCE lacks the needed permission.
pub const H_DEST_PARM: i64 = -14;

/// The PAPR name of an hcall status, for logs.
pub fn name(status: i64) -> &'static str {
    match status {
        H_SUCCESS => "H_SUCCESS",
        H_CLOSED => "H_CLOSED",
        H_FUNCTION => "H_FUNCTION",
        H_PARAMETER => "H_PARAMETER",
        H_DROPPED => "H_DROPPED",
        H_DEST_PARM => "H_DEST_PARM",
        _ => "H_?",
    }
}

/// Why a partner operation did not happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartnerError {
    /// The hypervisor refused with this `H_*` status (never [`H_SUCCESS`]). Any nonzero status
    /// means "not done", also one this server does not know.
    Status(i64),
    /// The connection to the partner is gone: the session is over.
    Disconnected,
}

impl fmt::Display for PartnerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PartnerError::Status(s) => write!(f, "{} ({s})", name(*s)),
            PartnerError::Disconnected => f.write_str("partner disconnected"),
        }
    }
}
