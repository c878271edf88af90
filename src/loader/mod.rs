//! The bootloader, split by concern: [`entries`] (Boot Loader Specification entries from a
//! file system), [`menu`] (the console menu), [`load`] (kernel and initrd, checked on the
//! way), [`place`] (where they go when no firmware claims memory) and [`handoff`] (one way of
//! entering Linux per way vioboot was booted), [`digest`] (file digests for a TPM's banks), [`measure`] (the TPM measurements and event log
//! of a loaded kernel). None of them reports: `crate::boot` does.

pub mod digest;
pub mod entries;
pub mod handoff;
pub mod load;
pub mod measure;
pub mod menu;
pub mod place;

pub use handoff::{FdtHandoff, Handoff, HandoffError, Jump, OfHandoff};
pub use load::{EventLog, LoadError, Loaded};
pub use place::PlaceError;
