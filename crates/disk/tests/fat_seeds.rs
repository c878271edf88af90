//! The fat fuzz target's seed (a FAT12 volume made by mkfs.vfat and mcopy) reads as it should;
//! a `regression-*` seed (an input a fuzzer once crashed on) must simply not panic.

use disk::fat::{read_node, Fat, ReadAt};
use std::path::Path;

struct Image(Vec<u8>);

impl ReadAt for Image {
    type Error = &'static str;
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), &'static str> {
        let at = usize::try_from(offset).map_err(|_| "beyond the image")?;
        let src = self.0.get(at..at + buf.len()).ok_or("beyond the image")?;
        buf.copy_from_slice(src);
        Ok(())
    }
}

fn seeds() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/seeds/fat")
}

#[test]
fn the_seed_volume_reads() {
    let mut img = Image(std::fs::read(seeds().join("fat12-128k")).expect("the seed"));
    let size = img.0.len() as u64;
    let fat = Fat::open(&mut img, size).expect("FAT");
    assert_eq!(fat.label, "SEED");
    let n = fat
        .lookup(&mut img, "/loader/entries/long-entry-name.conf")
        .expect("the entry");
    assert_eq!(
        read_node(&fat, &mut img, &n).expect("read"),
        b"title A\nlinux /vmlinux\n"
    );
    let v = fat.lookup(&mut img, "/VMLINUX").expect("the kernel");
    assert_eq!(read_node(&fat, &mut img, &v).expect("read").len(), 3000);
}

#[test]
fn regression_seeds_do_not_panic() {
    for e in std::fs::read_dir(seeds()).expect("seeds") {
        let p = e.expect("entry").path();
        if !p
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("regression-")
        {
            continue;
        }
        let mut img = Image(std::fs::read(&p).expect("seed"));
        let size = img.0.len() as u64;
        if let Ok(fat) = Fat::open(&mut img, size) {
            let root = fat.root();
            if let Ok(list) = fat.list(&mut img, &root) {
                for e in list {
                    let _ = read_node(&fat, &mut img, &e.node);
                }
            }
        }
    }
}
