//! How vioboot was booted, behind one interface: by Open Firmware ([`OpenFirmware`]: SLOF,
//! VOF, PowerVM's partition firmware) or handed a flattened tree with no firmware at all
//! ([`FlatTree`]: QEMU `-bios`, kexec). Everything that differs between the two (the early
//! console, where memory comes from, where the tree comes from, RTAS, quiescing, and how a
//! kernel is handed over) is a method here; nothing else asks which it is.

mod flat_tree;
mod open_firmware;

pub use flat_tree::FlatTree;
pub use open_firmware::OpenFirmware;

use crate::loader::Handoff;
use crate::of::{FlattenError, OfError};
use crate::rtas::RtasError;
use alloc::boxed::Box;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use vioboot_core::fdt_write::FdtError;
use vioboot_core::inventory::{Inventory, RtasInfo};
use vioboot_core::options::{FdtChoice, RtasChoice};
use vioboot_core::ranges::Range;

/// Largest device tree accepted (QEMU's own limit is 1 MiB).
pub const FDT_MAX: usize = 1 << 20;

/// The memory vioboot runs in, besides its image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Regions {
    pub image: Range,
    pub heap: Range,
    pub pool: Range,
}

impl Regions {
    /// Everything vioboot itself occupies.
    pub fn all(&self) -> [Range; 3] {
        [self.image, self.heap, self.pool]
    }
}

/// What the firmware could not give.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FirmwareError {
    /// Open Firmware refused memory for `what`.
    Claim { what: &'static str, error: OfError },
    /// No room for `what` below 4 GiB clear of the image, the tree and the reservations.
    NoRoom { what: &'static str },
    /// `fdt-fetch` failed, or gave no tree.
    FdtFetch(Option<OfError>),
    /// Walking the Open Firmware tree failed.
    Walk(FlattenError),
    /// The tree (from `source`) does not survive validation.
    Malformed {
        source: &'static str,
        error: FdtError,
    },
    /// Instantiating RTAS through Open Firmware failed; `asked` when `vioboot.rtas=of` asked
    /// for it, else because there is no H_RTAS.
    Rtas { asked: bool, error: RtasError },
    /// The firmware has no driver for the TPM (its node cannot be opened: QEMU's VOF).
    NoTpmDriver(OfError),
    /// The firmware's TPM driver failed `method` (`error`), or reported failure (`None`).
    TpmMethod {
        method: &'static str,
        error: Option<OfError>,
    },
    /// This firmware does not do what was asked (`what`).
    Unsupported { what: &'static str },
    /// `/memory`'s `available` property could not be read, or is not whole (address, size)
    /// pairs (`len` bytes).
    NoAvailable { error: Option<OfError>, len: usize },
}

impl fmt::Display for FirmwareError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FirmwareError::Claim { what, error } => write!(f, "{what}: {error}"),
            FirmwareError::NoRoom { what } => write!(f, "no room for the {what}"),
            FirmwareError::NoTpmDriver(e) => {
                write!(f, "the firmware has no driver for the TPM ({e})")
            }
            FirmwareError::TpmMethod {
                method,
                error: Some(e),
            } => write!(f, "the firmware's TPM driver: {method}: {e}"),
            FirmwareError::TpmMethod {
                method,
                error: None,
            } => {
                write!(f, "the firmware's TPM driver: {method} reported failure")
            }
            FirmwareError::NoAvailable { error: Some(e), .. } => {
                write!(f, "reading /memory's available property: {e}")
            }
            FirmwareError::NoAvailable { error: None, len } => write!(
                f,
                "/memory's available property ({len} bytes) is missing or not (address, size) pairs"
            ),
            FirmwareError::Unsupported { what } => {
                write!(f, "{what}: not offered by this firmware")
            }
            FirmwareError::FdtFetch(Some(e)) => write!(f, "{e}"),
            FirmwareError::FdtFetch(None) => write!(f, "fdt-fetch returned no device tree"),
            FirmwareError::Walk(e) => write!(f, "walking the Open Firmware tree: {e}"),
            FirmwareError::Malformed { source, error } => {
                write!(f, "device tree from {source} is malformed: {error}")
            }
            FirmwareError::Rtas { asked: true, error } => write!(f, "instantiate-rtas: {error}"),
            FirmwareError::Rtas {
                asked: false,
                error,
            } => {
                write!(f, "no H_RTAS and instantiate-rtas failed: {error}")
            }
        }
    }
}

impl From<FlattenError> for FirmwareError {
    fn from(e: FlattenError) -> Self {
        FirmwareError::Walk(e)
    }
}

/// The device tree as a blob vioboot owns.
pub struct Tree {
    pub blob: Vec<u8>,
    /// Where it came from, for the report.
    pub source: &'static str,
}

/// One way of being booted.
pub trait Firmware {
    /// Who started vioboot, for the banner ("Open Firmware").
    fn booted_by(&self) -> &'static str;
    /// The interface it was entered through, for the entry check.
    fn interface(&self) -> &'static str;
    /// The console and RTAS, before anything else: from here on every failure can be seen
    /// and can terminate. Runs before the heap exists.
    fn early(&mut self);
    /// Memory for the heap and the DMA page pool, clear of the image.
    fn regions(&self, image: Range) -> Result<Regions, FirmwareError>;
    /// `/chosen/bootargs`, before the tree is vioboot's (options decide how it is obtained).
    fn bootargs(&self) -> String;
    /// The device tree, as a blob in the heap.
    fn tree(&self, choice: FdtChoice) -> Result<Tree, FirmwareError>;
    /// Whether the firmware keeps the TPM event log and gives it to the kernel itself (Open
    /// Firmware: `sml-handover`), so vioboot leaves the vTPM alone when it boots a kernel.
    fn keeps_tpm_log(&self) -> bool;
    /// Where the firmware keeps the log: has its driver of the TPM at `node` hash `data` (real
    /// addresses below 4 GiB) into every active bank of PCR `pcr` and log it as an event of
    /// `event_type` whose data is `info` (Open Firmware: the vTPM's `2hash-ext-log`, as GRUB
    /// on POWER calls it).
    fn hash_ext_log(
        &self,
        node: &str,
        pcr: u32,
        event_type: u32,
        info: &[u8],
        data: Range,
    ) -> Result<(), FirmwareError>;
    /// Memory below 4 GiB lent for `size` bytes (claimed from Open Firmware), and its return.
    fn lend(&self, what: &'static str, size: u64) -> Result<Range, FirmwareError>;
    fn give_back(&self, r: Range);
    /// Whether the console must move to the hvterm vty now (there is no firmware console).
    fn console_needs_vty(&self) -> bool;
    /// Makes RTAS callable where H_RTAS is not used (`instantiate-rtas`).
    fn prepare_rtas(&self, info: &RtasInfo, choice: RtasChoice) -> Result<(), FirmwareError>;
    /// Memory the firmware itself still uses beyond the tree's reservations, which the memory
    /// test leaves alone. Open Firmware: everything below 4 GiB that `/memory`'s `available`
    /// property does not list, read now (claiming each block instead would move VOF's
    /// allocator past it for good); without firmware: the tree at r3.
    fn memory_in_use(&self) -> Result<Vec<Range>, FirmwareError>;
    /// Leaves the firmware before the end of a smoke run; `None` when there is none to leave.
    fn quiesce(&self) -> Option<Result<(), OfError>>;
    /// How a kernel is handed over: memory for it, and the jump.
    fn handoff<'a>(
        &'a self,
        tree: &'a [u8],
        inv: &Inventory,
        regions: &Regions,
    ) -> Box<dyn Handoff + 'a>;
}

/// Runs `run` with the firmware the entry registers describe: Open Firmware's client
/// interface in r5, else a flattened tree in r3. (On the stack: there is no heap yet.)
///
/// # Safety
/// `r5`, when nonzero, must be Open Firmware's client-interface entry; otherwise `r3` must
/// point at a flattened device tree in RAM.
pub unsafe fn with_entry<R>(r3: u64, r5: u64, run: impl FnOnce(&mut dyn Firmware) -> R) -> R {
    if r5 != 0 {
        // SAFETY: forwarded contract.
        let mut of = unsafe { OpenFirmware::new(r5) };
        run(&mut of)
    } else {
        // SAFETY: forwarded contract.
        run(&mut unsafe { FlatTree::new(r3) })
    }
}

/// Highest address a kernel, initrd or tree may occupy: real mode reaches the first memory
/// range (the RMA), and Open Firmware only addresses the first 4 GiB.
pub fn real_mode_limit(inv: &Inventory) -> u64 {
    inv.memory
        .ranges()
        .first()
        .map_or(1 << 30, |r| r.end)
        .min(1 << 32)
}
