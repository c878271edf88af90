//! A FAT12/16/32 file system (VFAT long names), read-only through `disk::fat`, as a
//! [`FileSystem`]: an EFI system partition or a separate `/boot` on FAT looks to the loader like
//! any share. It reads any [`BlockDevice`] through a read-ahead buffer. A damaged volume (a
//! looping or broken cluster chain, a directory naming its ancestor, an impossible boot sector)
//! is the device's [`DeviceError::Corrupt`] with the reader's words; a missing name is ENOENT.

use super::Blocks;
use crate::dev::fs::{errno, Attr, DirEntry, FileSystem, FsError, FsErrorKind, Totals};
use crate::dev::{BlockDevice, Device, DeviceError, TransportStats};
use alloc::boxed::Box;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;
use disk::fat::{Fat, FatError, Node, ReadAt};
use disk::reader::ReadError;
use disk::{Confined, ReadAhead};

/// Bytes handed to `read_stream`'s sink at a time.
const PIECE: usize = 256 << 10;

/// The device and its read-ahead buffer, read by byte offset.
struct Reader {
    dev: Box<dyn BlockDevice>,
    ra: ReadAhead,
}

impl ReadAt for Reader {
    type Error = ReadError<DeviceError>;
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), Self::Error> {
        self.ra.read(&mut Blocks(self.dev.as_mut()), offset, buf)
    }
}

/// A FAT file system on a block device.
pub struct FatFs {
    name: String,
    /// What the probe read from the boot sector.
    label: String,
    r: Reader,
    fat: Option<Fat>,
}

impl FatFs {
    /// `label` is the volume label `disk::probe` found.
    pub fn new(dev: Box<dyn BlockDevice>, label: &str) -> FatFs {
        let (bs, blocks) = (dev.block_size(), dev.capacity());
        FatFs {
            name: String::from(dev.name()),
            label: String::from(label),
            r: Reader {
                dev,
                ra: ReadAhead::new(Confined::new(0, blocks), bs),
            },
            fat: None,
        }
    }

    fn error(&self, path: &str, e: FatError<ReadError<DeviceError>>) -> FsError {
        let kind = match e {
            FatError::Io(ReadError::Io(d)) => FsErrorKind::Transport(d),
            FatError::NotFound => FsErrorKind::Errno(errno::ENOENT),
            FatError::NotADirectory => FsErrorKind::Errno(errno::ENOTDIR),
            FatError::IsADirectory => FsErrorKind::Errno(errno::EISDIR),
            FatError::BadPath => FsErrorKind::Errno(errno::EINVAL),
            other => FsErrorKind::Transport(DeviceError::Corrupt {
                device: self.name.clone(),
                what: other.to_string(),
            }),
        };
        FsError {
            path: path.into(),
            kind,
        }
    }

    fn mounted(&self, path: &str) -> Result<Fat, FsError> {
        self.fat.clone().ok_or_else(|| FsError {
            path: path.into(),
            kind: FsErrorKind::NotMounted,
        })
    }

    fn node(&mut self, path: &str) -> Result<(Fat, Node), FsError> {
        let fat = self.mounted(path)?;
        let n = fat
            .lookup(&mut self.r, path)
            .map_err(|e| self.error(path, e))?;
        Ok((fat, n))
    }
}

impl Device for FatFs {
    fn name(&self) -> &str {
        &self.name
    }
    fn pages_left_mapped(&self) -> usize {
        self.r.dev.pages_left_mapped()
    }
    fn stats(&self) -> TransportStats {
        self.r.dev.stats()
    }
    fn shut_down(&mut self) -> Result<(), DeviceError> {
        self.fat = None;
        self.r.dev.shut_down()
    }
}

impl FileSystem for FatFs {
    fn mount(&mut self) -> Result<String, FsError> {
        let size = self.r.ra.size();
        let fat = Fat::open(&mut self.r, size).map_err(|e| self.error("/", e))?;
        let said = format!(
            "{} \"{}\" {:04X}-{:04X}, {} clusters of {} bytes, {}-byte sectors",
            fat.kind,
            fat.label,
            fat.serial >> 16,
            fat.serial & 0xffff,
            fat.clusters,
            fat.cluster_size,
            fat.bytes_per_sector
        );
        self.fat = Some(fat);
        Ok(said)
    }

    fn stat(&mut self, path: &str) -> Result<Attr, FsError> {
        let (_, n) = self.node(path)?;
        Ok(Attr {
            ino: u64::from(n.cluster),
            size: if n.dir { 0 } else { u64::from(n.size) },
            mode: if n.dir { 0o040755 } else { 0o100644 },
            nlink: 1,
        })
    }

    fn read_stream(
        &mut self,
        path: &str,
        range: Option<(u64, u64)>,
        sink: &mut dyn FnMut(&[u8]),
    ) -> Result<(u64, u64), FsError> {
        let (fat, n) = self.node(path)?;
        if n.dir {
            return Err(FsError {
                path: path.into(),
                kind: FsErrorKind::Errno(errno::EISDIR),
            });
        }
        let size = u64::from(n.size);
        let (off, len) = range.unwrap_or((0, size));
        let start = off.min(size);
        let end = start.saturating_add(len).min(size);
        let runs = fat
            .extents(&mut self.r, &n)
            .map_err(|e| self.error(path, e))?;
        let mut buf = vec![0u8; PIECE];
        let mut file_pos = 0u64;
        let mut done = 0u64;
        for (at, run_len) in runs {
            let (run_start, run_end) = (file_pos, file_pos + run_len);
            file_pos = run_end;
            if run_end <= start || run_start >= end {
                continue;
            }
            let mut p = run_start.max(start);
            let stop = run_end.min(end);
            while p < stop {
                let k = (stop - p).min(PIECE as u64) as usize;
                self.r
                    .read_at(at + (p - run_start), &mut buf[..k])
                    .map_err(|e| self.error(path, FatError::Io(e)))?;
                sink(&buf[..k]);
                p += k as u64;
                done += k as u64;
            }
        }
        Ok((size, done))
    }

    fn list_dir(&mut self, path: &str) -> Result<Vec<DirEntry>, FsError> {
        let (fat, n) = self.node(path)?;
        let list = fat.list(&mut self.r, &n).map_err(|e| self.error(path, e))?;
        Ok(list
            .into_iter()
            .map(|e| DirEntry {
                name: e.name,
                ino: u64::from(e.node.cluster),
                kind: if e.node.dir { 4 } else { 8 },
            })
            .collect())
    }

    fn totals(&mut self) -> Result<Totals, FsError> {
        let fat = self.mounted("/")?;
        Ok(Totals {
            blocks: u64::from(fat.clusters),
            // Counting free clusters reads the whole FAT: not done.
            free: 0,
            block_size: fat.cluster_size,
            files: 0,
        })
    }

    fn unmount(&mut self) -> Result<String, FsError> {
        self.fat = None;
        Ok(String::from("FAT closed"))
    }

    fn label(&self) -> &str {
        &self.label
    }

    fn as_device(&mut self) -> &mut dyn Device {
        self
    }
}

#[cfg(test)]
mod tests {
    //! A FAT32 image made by `mkfs.vfat` and `mcopy`, read through a block device in memory.
    extern crate std;
    use super::*;
    use crate::volume::ext4::tests::MemBlock;
    use std::process::Command;

    fn image() -> Vec<u8> {
        let dir = std::env::temp_dir().join(format!("vioboot-fatfs-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("loader/entries")).unwrap();
        std::fs::write(
            dir.join("loader/entries/fedora-6.10.conf"),
            "title Fedora\nlinux /vmlinuz\n",
        )
        .unwrap();
        let big: Vec<u8> = (0..700_000u32).map(|i| (i % 241) as u8).collect();
        std::fs::write(dir.join("vmlinuz"), &big).unwrap();
        let img = dir.join("fat.img");
        for cmd in [
            Command::new("mkfs.vfat")
                .args(["-C", "-F", "32", "-n", "BOOTFAT"])
                .arg(&img)
                .arg("40960")
                .output(),
            Command::new("mcopy")
                .env("MTOOLS_SKIP_CHECK", "1")
                .arg("-i")
                .arg(&img)
                .arg("-s")
                .arg(dir.join("loader"))
                .arg(dir.join("vmlinuz"))
                .arg("::/")
                .output(),
        ] {
            let out = cmd.expect("dosfstools and mtools (`cargo xtask test` installs them)");
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let bytes = std::fs::read(&img).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        bytes
    }

    #[test]
    fn a_fat_volume_reads_like_a_share() {
        let bytes = image();
        let mut fs = FatFs::new(Box::new(MemBlock::new(bytes.clone())), "BOOTFAT");
        assert_eq!(fs.stat("/").unwrap_err().kind, FsErrorKind::NotMounted);
        let said = fs.mount().unwrap();
        assert!(said.starts_with("FAT32 \"BOOTFAT\""), "{said}");
        assert_eq!(crate::loader::entries::locate(&mut fs), Some(""));
        let big: Vec<u8> = (0..700_000u32).map(|i| (i % 241) as u8).collect();
        assert_eq!(fs.read_file("/vmlinuz").unwrap(), big);
        assert_eq!(fs.stat("/vmlinuz").unwrap().size, 700_000);
        let mut part = Vec::new();
        let r = fs
            .read_stream("/vmlinuz", Some((123_457, 300_000)), &mut |p| {
                part.extend_from_slice(p)
            })
            .unwrap();
        assert_eq!(r, (700_000, 300_000));
        assert_eq!(part, big[123_457..423_457]);
        let names: Vec<String> = fs
            .list_dir("/loader/entries")
            .unwrap()
            .into_iter()
            .map(|e| e.name)
            .collect();
        assert_eq!(names, ["fedora-6.10.conf"]);
        assert_eq!(
            fs.stat("/nothing").unwrap_err().errno(),
            Some(errno::ENOENT)
        );
        assert_eq!(
            fs.read_file("/loader").unwrap_err().errno(),
            Some(errno::EISDIR)
        );
        // A FAT chain looping on the kernel's first cluster: a named corruption, not a hang.
        let mut bad = bytes;
        let first = fs.stat("/vmlinuz").unwrap().ino as usize;
        let reserved = usize::from(u16::from_le_bytes([bad[14], bad[15]]));
        let fat = reserved * 512;
        bad[fat + 4 * (first + 2)..fat + 4 * (first + 3)]
            .copy_from_slice(&(first as u32).to_le_bytes());
        let mut fs = FatFs::new(Box::new(MemBlock::new(bad)), "BOOTFAT");
        fs.mount().unwrap();
        let e = fs.read_file("/vmlinuz").unwrap_err();
        assert!(
            matches!(e.kind, FsErrorKind::Transport(DeviceError::Corrupt { .. })),
            "{e:?}"
        );
        assert!(e.to_string().contains("loops"), "{e}");
    }
}
