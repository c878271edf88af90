//! vioboot: bare-metal firmware for POWER LPARs that proves the virtio-vio path and boots Linux.
//!
//! `main.rs` holds the boot path; these modules hold the layers it walks through, each depending
//! only on those above it in this list. Only `arch` knows the processor; on the host it is a
//! stand-in so the rest compiles and unit-tests there.
#![cfg_attr(target_os = "none", no_std)]

extern crate alloc;

pub mod arch;
pub mod console;
pub mod exit;
pub mod hcall;
pub mod loader;
pub mod mem;
pub mod of;
pub mod report;
pub mod rtas;
pub mod time;
pub mod vio;
pub mod virtio;
