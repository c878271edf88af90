//! vioboot: bare-metal firmware for POWER LPARs that proves the virtual I/O path and boots
//! Linux.
//!
//! `main.rs` holds the boot path; these modules are its layers, in three groups that depend
//! only on the groups before them (docs/architecture.md draws the order within each). Only `arch` knows the processor; on the host it is a stand-in so the rest
//! compiles and unit-tests there. Unsafe code lives in `arch`, `hcall`, `of`, `rtas`, `mem`,
//! `console`/`report` (the panic path), `firmware` (the entry registers), `pci` (a BAR's
//! registers), `virtio::hal`, `smp` (a secondary thread's slot, from r3),
//! `drivers::virtio_fs` (its virtqueue buffers) and `loader` (placed memory and the jump).
#![cfg_attr(target_os = "none", no_std)]

extern crate alloc;

// The processor, the hypervisor and the firmware interfaces.
pub mod arch;
pub mod console;
pub mod exit;
pub mod hcall;
pub mod mem;
pub mod of;
pub mod pci;
pub mod report;
pub mod rtas;
pub mod smp;
pub mod time;
pub mod xics;

// Buses, transports and devices.
pub mod bus;
pub mod dev;
pub mod drivers;
pub mod vio;
pub mod virtio;
pub mod volume;

// What vioboot does with them: the checks, the bootloader, and the two ways of being booted
// (which build the bootloader's handoffs).
pub mod boot;
pub mod checks;
pub mod firmware;
pub mod loader;

pub mod error;

pub use error::Error;
