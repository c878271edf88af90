//! PAPR, as vioboot speaks it: one definition of each hypervisor interface constant, used by the
//! firmware (the guest side), the VIO server (the partner side) and the tests' simulated
//! hypervisor, so the three cannot drift. Names are PAPR's and Linux's (`hvcall.h`), so they
//! stay greppable against both.
//!
//! - [`hcall`]: the hcall opcodes vioboot makes.
//! - [`status`]: hcall status codes, their names and the long-busy delays.
//! - [`tce`]: TCE permission bits and page size.
//! - [`crq`]: the 16-byte Command/Response Queue entry (valid byte, INIT handshake, transport
//!   events), shared by every CRQ-based adapter kind.
//! - [`xics`]: the XICS interrupt presentation values (XIRR fields, the IPI source, priorities).
#![no_std]
#![forbid(unsafe_code)]

pub mod crq;
pub mod hcall;
pub mod status;
pub mod tce;
pub mod xics;
