//! What a parser or builder refused, with the numbers that made it refuse.

use core::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SrpError {
    /// Fewer bytes than the structure (or its own length fields) need.
    Short {
        what: &'static str,
        need: usize,
        got: usize,
    },
    /// More bytes than an IU may hold.
    Oversized { what: &'static str, len: usize },
    /// An IU whose opcode (or a MAD whose type) is not the one expected.
    Opcode {
        what: &'static str,
        want: u32,
        got: u32,
    },
    /// A response to a request this tag does not name.
    Tag { want: u64, got: u64 },
    /// A CRQ entry that is not a command/response carrying an IU.
    NotAnIu { byte0: u8, format: u8 },
    /// Fields that contradict each other or the IU (both overflow and underflow, a residual
    /// larger than the transfer, a length field that is not a multiple of its unit).
    Inconsistent { what: &'static str, value: u64 },
    /// A command with more data descriptors than fit one IU.
    TooManyDescriptors { count: usize, max: usize },
    /// A CDB longer than the 16 bytes SRP_CMD carries, or an allocation length it cannot say.
    BadCdb { len: usize },
}

impl fmt::Display for SrpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SrpError::Short { what, need, got } => {
                write!(f, "{what}: {got} bytes where {need} are needed")
            }
            SrpError::Oversized { what, len } => {
                write!(
                    f,
                    "{what}: {len} bytes, more than an IU's {}",
                    crate::MAX_IU_LEN
                )
            }
            SrpError::Opcode { what, want, got } => {
                write!(f, "{what}: type {got:#x} where {want:#x} was expected")
            }
            SrpError::Tag { want, got } => {
                write!(
                    f,
                    "response tag {got:#x} does not match the request's {want:#x}"
                )
            }
            SrpError::NotAnIu { byte0, format } => {
                write!(f, "CRQ entry {byte0:#04x} {format:#04x} carries no IU")
            }
            SrpError::Inconsistent { what, value } => write!(f, "{what} ({value})"),
            SrpError::TooManyDescriptors { count, max } => {
                write!(f, "{count} data descriptors; one IU holds at most {max}")
            }
            SrpError::BadCdb { len } => write!(f, "a CDB of {len} bytes (SRP_CMD carries 16)"),
        }
    }
}
