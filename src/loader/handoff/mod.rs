//! Entering Linux, one way per way vioboot was booted: [`OfHandoff`] with Open Firmware alive
//! (as GRUB and yaboot do), [`FdtHandoff`] with a rewritten flattened tree and no firmware (as
//! kexec does). Each also decides where the kernel and initrd may go.

mod fdt;
mod of;

pub use fdt::FdtHandoff;
pub use of::OfHandoff;

use super::load::Loaded;
use super::place::PlaceError;
use crate::arch;
use crate::of::OfError;
use alloc::string::String;
use core::fmt;
use vioboot_core::fdt_write::{FdtError, FdtWriteError};
use vioboot_core::ranges::Range;

/// Why the kernel could not be entered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HandoffError {
    /// An Open Firmware call the handoff needs failed.
    Of {
        what: &'static str,
        error: OfError,
    },
    NoRoom(PlaceError),
    /// The tree could not be rewritten for the kernel.
    Rewrite(FdtWriteError),
    /// The rewritten tree does not validate.
    Invalid(FdtError),
    /// The rewritten tree outgrew the room placed for it.
    TreeTooLarge {
        len: u64,
        room: u64,
    },
}

impl fmt::Display for HandoffError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HandoffError::Of { what, error } => write!(f, "{what}: {error}"),
            HandoffError::NoRoom(e) => write!(f, "{e}"),
            HandoffError::Rewrite(e) => write!(f, "rewriting the device tree: {e}"),
            HandoffError::Invalid(e) => write!(f, "the rewritten device tree: {e}"),
            HandoffError::TreeTooLarge { len, room } => write!(
                f,
                "the rewritten device tree ({len} bytes) outgrew its room ({room} bytes)"
            ),
        }
    }
}

impl From<PlaceError> for HandoffError {
    fn from(e: PlaceError) -> Self {
        HandoffError::NoRoom(e)
    }
}

/// One way of entering a kernel.
pub trait Handoff {
    /// Starts over for another entry (memory placed for a failed one may be used again).
    fn rewind(&mut self);
    /// Room for a kernel image spanning `span` bytes.
    fn take_kernel(&mut self, span: u64) -> Result<Range, PlaceError>;
    /// Room for `size` bytes well above `above` (the initrd above the kernel's end, clear of
    /// what the kernel allocates right after itself: Linux's prom_init puts the tree there).
    fn take_initrd(&mut self, size: u64, above: u64) -> Result<Range, PlaceError>;
    /// Puts in place what the kernel needs besides itself and says how to enter it.
    fn prepare(&mut self, l: &Loaded) -> Result<Jump, HandoffError>;
}

/// How to enter a loaded kernel: the registers, and what to say about it.
pub struct Jump {
    pub entry: u64,
    pub r3: u64,
    pub r4: u64,
    pub r5: u64,
    /// For the report's handoff line.
    pub summary: String,
}

impl Jump {
    /// Enters the kernel: 64-bit little-endian, FP/VMX/VSX off, interrupts off.
    pub fn go(self) -> ! {
        // SAFETY: a `Jump` is made only by `Handoff::prepare`, after the kernel was loaded and
        // checked at `entry` and everything r3..r5 name was put in place and reserved.
        unsafe { arch::jump_to_kernel(self.entry, self.r3, self.r4, self.r5) }
    }
}
