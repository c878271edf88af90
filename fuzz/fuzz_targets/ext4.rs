//! An ext2/3/4 file system image from a disk, read through vioboot's own file system layer
//! (`volume::ext4` over ext4-view) as the bootloader reads a `/boot`: mount, the entries
//! directories, files whole and by range, symlinked paths. Corruption must end as a named
//! error (EIO and friends), never a panic or a read outside the image.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vioboot::dev::{BlockDevice, Device, DeviceError, FileSystem, TransportStats};
use vioboot::volume::ext4::Ext4Fs;

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
    let Some(sb) = disk::probe::ext_super(&bytes) else {
        return;
    };
    let mut fs = Ext4Fs::new(Box::new(Image(bytes)), sb);
    if fs.mount().is_err() {
        return;
    }
    for dir in ["/", "/loader/entries", "/boot/loader/entries", "/boot"] {
        if let Ok(list) = fs.list_dir(dir) {
            for e in list.iter().take(8) {
                let path = format!("{}/{}", dir.trim_end_matches('/'), e.name);
                let _ = fs.stat(&path);
                let _ = fs.read_stream(&path, Some((0, 1 << 16)), &mut |_| {});
            }
        }
    }
    let _ = fs.read_file("/loader/loader.conf");
    let _ = fs.stat("/boot/vmlinux/../link/x");
    let _ = fs.totals();
});
