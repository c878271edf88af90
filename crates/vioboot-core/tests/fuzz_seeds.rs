//! The fuzz targets' seeds and every input a fuzzer once crashed on (`fuzz/seeds/*/regression-*`),
//! run through the same code as the fuzz targets in an ordinary `cargo test`.

use std::path::Path;
use vioboot_core::{elf, fdt_write, inventory};

fn seeds(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/seeds")
        .join(target);
    let mut v: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("entry").path())
        .map(|p| (p.display().to_string(), std::fs::read(&p).expect("seed")))
        .collect();
    v.sort();
    assert!(!v.is_empty(), "no seeds in {}", dir.display());
    v
}

#[test]
fn device_trees() {
    let mut valid = 0;
    for (name, blob) in seeds("fdt") {
        let Ok(summary) = fdt_write::validate(&blob) else {
            assert!(name.contains("regression-"), "{name} does not validate");
            continue;
        };
        let fdt = fdt::Fdt::new(&blob).expect("a validated tree parses");
        let inv = inventory::read(&fdt);
        if !name.contains("regression-") {
            valid += 1;
            assert!(
                summary.nodes > 10 && inv.problems.is_empty(),
                "{name}: {inv:?}"
            );
            assert!(inv.console_vty().is_some(), "{name}");
        }
    }
    assert!(valid >= 2, "the real pseries trees are seeds");
}

#[test]
fn kernels() {
    for (name, data) in seeds("elf") {
        let (claimed, head) = data.split_at(8);
        let claimed = u64::from_le_bytes(claimed.try_into().expect("8 bytes"));
        let k = elf::parse(head, claimed).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(k.span > 0 && k.entry_offset() < k.span, "{name}");
    }
}
