//! The bootloader, split by concern: [`entries`] (Boot Loader Specification entries from a
//! file system), [`menu`] (the console menu), [`load`] (kernel and initrd, checked on the
//! way), [`place`] (where they go when no firmware claims memory) and [`handoff`] (one way of
//! entering Linux per way vioboot was booted). None of them reports: `crate::boot` does.

pub mod entries;
pub mod handoff;
pub mod load;
pub mod menu;
pub mod place;

pub use handoff::{FdtHandoff, Handoff, HandoffError, Jump, OfHandoff};
pub use load::{LoadError, Loaded};
pub use place::PlaceError;
