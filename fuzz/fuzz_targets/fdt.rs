//! A device tree from the hypervisor: validation, then (only for a tree that validates, as
//! vioboot does) the `fdt` crate and the inventory, which must name problems, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vioboot_core::{fdt_write, inventory};

fuzz_target!(|data: &[u8]| {
    let _ = fdt_write::total_size(data);
    if fdt_write::validate(data).is_err() {
        return;
    }
    if let Ok(fdt) = fdt::Fdt::new(data) {
        let inv = inventory::read(&fdt);
        let _ = inv.usable_memory();
        let _ = inv.console_vty();
    }
});
