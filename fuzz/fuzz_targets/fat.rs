//! A FAT12/16/32 image from a disk, read through vioboot's own file system layer
//! (`volume::fat` over `disk::fat`) as the bootloader reads an ESP or a `/boot` on FAT: mount,
//! the entries directories, files whole and by range, long names. Damage (looping or broken
//! chains, clusters out of range, directories naming their ancestors, impossible boot sectors)
//! must end as a named error, never a panic, a hang or a read outside the image.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vioboot::dev::{BlockDevice, Device, DeviceError, FileSystem, TransportStats};
use vioboot::volume::fat::FatFs;

/// The fuzz input as a disk of 512-byte blocks.
struct Image(Vec<u8>);

impl Device for Image {
    fn name(&self) -> &str {
        "fuzz"
    }
    fn pages_left_mapped(&self) -> usize {
        0
    }
    fn stats(&self) -> TransportStats {
        TransportStats::default()
    }
    fn shut_down(&mut self) -> Result<(), DeviceError> {
        Ok(())
    }
}

impl BlockDevice for Image {
    fn block_size(&self) -> usize {
        512
    }
    fn capacity(&self) -> u64 {
        (self.0.len() / 512) as u64
    }
    fn read_only(&self) -> bool {
        true
    }
    fn read(&mut self, block: u64, buf: &mut [u8]) -> Result<(), DeviceError> {
        let at = (block as usize).saturating_mul(512);
        let end = at.saturating_add(buf.len());
        assert!(
            end <= self.0.len(),
            "a read past the device ({end} > {})",
            self.0.len()
        );
        buf.copy_from_slice(&self.0[at..end]);
        Ok(())
    }
    fn write(&mut self, _block: u64, _buf: &[u8]) -> Result<(), DeviceError> {
        unreachable!("file systems are read-only")
    }
    fn flush(&mut self) -> Result<(), DeviceError> {
        Ok(())
    }
    fn identity(&mut self) -> Result<String, DeviceError> {
        Ok("fuzz".into())
    }
    fn as_device(&mut self) -> &mut dyn Device {
        self
    }
}

fuzz_target!(|data: &[u8]| {
    let mut bytes = data.to_vec();
    bytes.truncate(bytes.len() / 512 * 512);
    let mut fs = FatFs::new(Box::new(Image(bytes)), "fuzz");
    if fs.mount().is_err() {
        return;
    }
    for dir in [
        "/",
        "/loader/entries",
        "/boot/loader/entries",
        "/boot",
        "/EFI/BOOT",
    ] {
        if let Ok(list) = fs.list_dir(dir) {
            for e in list.iter().take(8) {
                let path = format!("{}/{}", dir.trim_end_matches('/'), e.name);
                let _ = fs.stat(&path);
                let _ = fs.read_stream(&path, Some((0, 1 << 16)), &mut |_| {});
            }
        }
    }
    let _ = fs.read_file("/loader/loader.conf");
    let _ = fs.stat("/loader/entries/a/b/c/d/e/f");
    let _ = fs.totals();
});
