//! The partner's error: a PAPR hcall status (`papr::status`), or the connection gone.
//!
//! The statuses a server meets: H_CLOSED (the guest has no CRQ registered), H_DROPPED (its CRQ
//! is full), H_PARAMETER (an entry without its valid bit; an RDMA of more than 1 MiB),
//! H_DEST_PARM (an IOBA outside the window or without the needed TCE permission), H_FUNCTION
//! (QEMU's answer to an unknown socket frame type).

use core::fmt;

/// Why a partner operation did not happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartnerError {
    /// The hypervisor refused with this `H_*` status (never `H_SUCCESS`). Any nonzero status
    /// means "not done", also one this server does not know.
    Status(i64),
    /// The connection to the partner is gone: the session is over.
    Disconnected,
}

impl fmt::Display for PartnerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PartnerError::Status(s) => {
                write!(f, "{} ({s})", papr::status::name(*s).unwrap_or("H_?"))
            }
            PartnerError::Disconnected => f.write_str("partner disconnected"),
        }
    }
}
