//! The partition fuzz target's seeds (real tables written by sgdisk and sfdisk) read as they
//! should; a `regression-*` seed (an input a fuzzer once crashed on) must simply not panic.

use disk::{read_table, Disk, TableKind};
use std::path::Path;

struct Image(Vec<u8>);

impl Disk for Image {
    type Error = &'static str;
    fn block_size(&self) -> usize {
        512
    }
    fn blocks(&self) -> u64 {
        (self.0.len() / 512) as u64
    }
    fn read(&mut self, lba: u64, buf: &mut [u8]) -> Result<(), &'static str> {
        let at = lba as usize * 512;
        let src = self.0.get(at..at + buf.len()).ok_or("beyond the disk")?;
        buf.copy_from_slice(src);
        Ok(())
    }
}

fn seed(name: &str) -> Image {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/seeds/partitions")
        .join(name);
    Image(std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display())))
}

#[test]
fn the_seed_tables_read() {
    let t = read_table(&mut seed("gpt-prep-root")).expect("GPT");
    assert!(
        matches!(
            t.kind,
            TableKind::Gpt {
                primary_damaged: None,
                ..
            }
        ),
        "{t:?}"
    );
    let parts: Vec<(u32, u64, u64, &str)> = t
        .partitions
        .iter()
        .map(|p| (p.number, p.first_lba, p.blocks, p.name.as_str()))
        .collect();
    assert_eq!(parts, [(1, 34, 27, ""), (2, 61, 30, "root")]);

    let t = read_table(&mut seed("mbr-prep-logical")).expect("MBR");
    assert!(matches!(t.kind, TableKind::Mbr { .. }), "{t:?}");
    let parts: Vec<(u32, u64, u64)> = t
        .partitions
        .iter()
        .map(|p| (p.number, p.first_lba, p.blocks))
        .collect();
    assert_eq!(parts, [(1, 1, 20), (5, 22, 10)]);
}
