//! vioboot: bare-metal firmware for POWER LPARs that proves the virtual I/O path and boots
//! Linux.
//!
//! `main.rs` holds the boot path; these modules are its layers, each depending only on those
//! listed before it. Only `arch` knows the processor; on the host it is a stand-in so the rest
//! compiles and unit-tests there. Unsafe code lives in `arch`, `hcall`, `of`, `rtas`, `mem`,
//! `console`/`report` (the panic path), `firmware` (the entry registers), `virtio::hal`,
//! `virtio::fs` (its virtqueue buffers) and `loader` (placed memory and the jump).
#![cfg_attr(target_os = "none", no_std)]

extern crate alloc;

// The processor, the hypervisor and the firmware interfaces.
pub mod arch;
pub mod console;
pub mod exit;
pub mod firmware;
pub mod hcall;
pub mod mem;
pub mod of;
pub mod report;
pub mod rtas;
pub mod time;

// Buses, transports and devices.
pub mod bus;
pub mod dev;
pub mod drivers;
pub mod vio;
pub mod virtio;

// What vioboot does with them: the checks and the bootloader.
pub mod boot;
pub mod checks;
pub mod loader;

pub mod error;

pub use error::Error;
