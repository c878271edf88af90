//! PCI as vioboot needs it, without hardware: which function a config address names, walking
//! a function's capability list, sizing BARs and giving them addresses from a host bridge's
//! windows, and enumerating a bus tree (behind PCI-to-PCI bridges too) through any
//! [`ConfigSpace`]: RTAS on pseries, a recorded or hostile config space in the tests.
//!
//! Nothing read from config space is trusted: capability pointers are bounded and loops
//! detected, BAR sizes must be powers of two and fit the window, bridges may not send the walk
//! to a bus it has seen.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod bar;
pub mod cap;
pub mod config;
pub mod enumerate;
pub mod virtio;

#[cfg(test)]
mod fake;
#[cfg(test)]
mod tests;

pub use bar::{Bar, BarKind, Window, WindowKind};
pub use config::{Bdf, ConfigSpace};
pub use enumerate::{Function, PciError, Scan};
