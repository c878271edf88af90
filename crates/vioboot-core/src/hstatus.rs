//! PAPR hypervisor-call status codes, now defined in `papr::status`.

// TEMPORARY: firmware imports switch to papr
pub use papr::status::*;
pub use papr::status::{
    H_BUSY as BUSY, H_CLOSED as CLOSED, H_FUNCTION as FUNCTION, H_PARAMETER as PARAMETER,
    H_RESOURCE as RESOURCE, H_SUCCESS as SUCCESS,
};
