//! vioboot's portable logic: everything that needs no hardware, tested on the host.
//!
//! The firmware (`src/`) and the host tools use these modules; nothing here touches a register,
//! a physical address or an hcall, so the crate forbids unsafe code.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

#[cfg(test)]
extern crate std;

pub mod bls;
pub mod cells;
pub mod checks;
pub mod elf;
pub mod fdt_write;
pub mod hvterm;
pub mod inventory;
pub mod memtest;
pub mod options;
pub mod pages;
pub mod pattern;
pub mod ranges;
pub mod rtas;
pub mod sha256;
pub mod tap;
