//! A disk image: its partition table (GPT with CRCs and backup, MBR with its logical chain) and
//! the file system each partition's first bytes name. The input is the disk; reads past it
//! fail as a device would, and a partition must never extend past the disk.
#![no_main]

use disk::{probe, read_table, Disk};
use libfuzzer_sys::fuzz_target;

/// The fuzz input as a disk of 512- or 4096-byte blocks.
struct Image<'a> {
    bytes: &'a [u8],
    block: usize,
}

impl Disk for Image<'_> {
    type Error = &'static str;

    fn block_size(&self) -> usize {
        self.block
    }

    fn blocks(&self) -> u64 {
        (self.bytes.len() / self.block) as u64
    }

    fn read(&mut self, lba: u64, buf: &mut [u8]) -> Result<(), &'static str> {
        let at = usize::try_from(lba)
            .ok()
            .and_then(|l| l.checked_mul(self.block))
            .ok_or("beyond the disk")?;
        let src = self
            .bytes
            .get(at..at.checked_add(buf.len()).ok_or("beyond the disk")?)
            .ok_or("beyond the disk")?;
        buf.copy_from_slice(src);
        Ok(())
    }
}

fuzz_target!(|data: &[u8]| {
    for block in [512, 4096] {
        let mut d = Image { bytes: data, block };
        let blocks = d.blocks();
        if let Ok(t) = read_table(&mut d) {
            for p in &t.partitions {
                let end = p.first_lba.checked_add(p.blocks);
                assert!(
                    p.blocks > 0 && end.is_some_and(|e| e <= blocks),
                    "partition {p:?} is not on a disk of {blocks} blocks"
                );
                let at = (p.first_lba as usize) * block;
                let first = &data[at..data.len().min(at + 64 * 1024)];
                let _ = probe::probe(first);
            }
        }
    }
    let _ = probe::probe(data);
    let _ = probe::ext_super(data);
});
