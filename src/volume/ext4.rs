//! An ext2/3/4 file system, read-only through `ext4-view`, as a [`FileSystem`]: the loader and
//! the checks cannot tell it from a share. It reads any [`BlockDevice`] (a partition, or a whole
//! disk) through a read-ahead buffer, so `ext4-view`'s small reads stream. Its errors become
//! [`FsError`]s with the path and an errno (ENOENT, ENOTDIR, EISDIR, ELOOP, ENAMETOOLONG, EINVAL,
//! EFBIG, and EIO for corruption), or the device's own error.

use super::Blocks;
use crate::dev::fs::{errno, Attr, DirEntry, FileSystem, FsError, FsErrorKind, Totals};
use crate::dev::{BlockDevice, Device, DeviceError, TransportStats};
use alloc::boxed::Box;
use alloc::format;
use alloc::rc::Rc;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::cell::RefCell;
use core::fmt;
use disk::probe::ExtSuper;
use disk::reader::ReadError;
use disk::{Confined, ReadAhead};
use ext4_view::{Ext4, Ext4Error, Ext4Read, FileType};

type Shared = Rc<RefCell<Box<dyn BlockDevice>>>;

/// Bytes handed to `read_stream`'s sink at a time.
const PIECE: usize = 256 << 10;

/// A failed read, as `ext4-view` carries it (boxed) back to us.
#[derive(Debug)]
struct ReadFailed(ReadError<DeviceError>);

impl fmt::Display for ReadFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl core::error::Error for ReadFailed {}

/// What `ext4-view` reads through: the device and its read-ahead buffer.
struct Reader {
    dev: Shared,
    ra: ReadAhead,
}

impl Ext4Read for Reader {
    fn read(
        &mut self,
        start_byte: u64,
        dst: &mut [u8],
    ) -> Result<(), Box<dyn core::error::Error + Send + Sync + 'static>> {
        let mut d = self.dev.borrow_mut();
        self.ra
            .read(&mut Blocks(&mut **d), start_byte, dst)
            .map_err(|e| Box::new(ReadFailed(e)) as _)
    }
}

/// An ext file system on a block device.
pub struct Ext4Fs {
    dev: Shared,
    name: String,
    sb: ExtSuper,
    fs: Option<Ext4>,
}

impl Ext4Fs {
    /// `sb` is the superblock `disk::probe` found on `dev`.
    pub fn new(dev: Box<dyn BlockDevice>, sb: ExtSuper) -> Ext4Fs {
        Ext4Fs {
            name: String::from(dev.name()),
            dev: Rc::new(RefCell::new(dev)),
            sb,
            fs: None,
        }
    }

    fn mounted(&self, path: &str) -> Result<&Ext4, FsError> {
        self.fs.as_ref().ok_or_else(|| FsError {
            path: path.into(),
            kind: FsErrorKind::NotMounted,
        })
    }
}

/// What in the superblock cannot be right for a file system of `bytes` bytes, checked before
/// ext4-view sizes anything by it (it allocates the group table from these counts).
fn implausible(sb: &ExtSuper, bytes: u64) -> Option<String> {
    let per_bitmap = 8 * u64::from(sb.block_size);
    if sb.blocks_per_group == 0 || u64::from(sb.blocks_per_group) > per_bitmap {
        return Some(format!(
            "superblock: {} blocks per group is impossible with {}-byte blocks",
            sb.blocks_per_group, sb.block_size
        ));
    }
    if sb.inodes_per_group == 0 || u64::from(sb.inodes_per_group) > per_bitmap {
        return Some(format!(
            "superblock: {} inodes per group is impossible with {}-byte blocks",
            sb.inodes_per_group, sb.block_size
        ));
    }
    let size = sb.blocks.checked_mul(u64::from(sb.block_size));
    if size.is_none_or(|s| s > bytes) {
        return Some(format!(
            "superblock: {} blocks of {} bytes do not fit the {bytes} bytes of the partition",
            sb.blocks, sb.block_size
        ));
    }
    if u64::from(sb.first_data_block) >= sb.blocks {
        return Some(format!(
            "superblock: first data block {} is past its {} blocks",
            sb.first_data_block, sb.blocks
        ));
    }
    None
}

/// The errno (or device error) an `ext4-view` error stands for.
pub fn error(path: &str, e: Ext4Error) -> FsError {
    let errno = match e {
        Ext4Error::NotFound => errno::ENOENT,
        Ext4Error::NotADirectory => errno::ENOTDIR,
        Ext4Error::IsADirectory => errno::EISDIR,
        Ext4Error::TooManySymlinks => errno::ELOOP,
        Ext4Error::PathTooLong => errno::ENAMETOOLONG,
        Ext4Error::FileTooLarge => errno::EFBIG,
        Ext4Error::NotAbsolute
        | Ext4Error::MalformedPath
        | Ext4Error::NotASymlink
        | Ext4Error::IsASpecialFile
        | Ext4Error::NotUtf8 => errno::EINVAL,
        // An encrypted file, a feature ext4-view does not read: permission denied (EACCES).
        Ext4Error::Encrypted => 13,
        Ext4Error::Incompatible(_) => errno::EINVAL,
        Ext4Error::Io(ref b) => match b.downcast_ref::<ReadFailed>() {
            Some(ReadFailed(ReadError::Io(d))) => {
                return FsError {
                    path: path.into(),
                    kind: FsErrorKind::Transport(d.clone()),
                }
            }
            _ => errno::EIO,
        },
        // Corruption, and whatever later versions add.
        _ => errno::EIO,
    };
    FsError {
        path: path.into(),
        kind: FsErrorKind::Errno(errno),
    }
}

fn file_type_bits(t: FileType) -> (u32, u32) {
    // (S_IFMT bits, DT_* type)
    match t {
        FileType::Directory => (0o040000, 4),
        FileType::Regular => (0o100000, 8),
        FileType::Symlink => (0o120000, 10),
        FileType::BlockDevice => (0o060000, 6),
        FileType::CharacterDevice => (0o020000, 2),
        FileType::Fifo => (0o010000, 1),
        FileType::Socket => (0o140000, 12),
    }
}

impl Device for Ext4Fs {
    fn name(&self) -> &str {
        &self.name
    }
    fn pages_left_mapped(&self) -> usize {
        self.dev.borrow().pages_left_mapped()
    }
    fn stats(&self) -> TransportStats {
        self.dev.borrow().stats()
    }
    fn shut_down(&mut self) -> Result<(), DeviceError> {
        self.fs = None;
        self.dev.borrow_mut().shut_down()
    }
}

impl FileSystem for Ext4Fs {
    fn mount(&mut self) -> Result<String, FsError> {
        let (bs, blocks) = {
            let d = self.dev.borrow();
            (d.block_size(), d.capacity())
        };
        if let Some(what) = implausible(&self.sb, blocks.saturating_mul(bs as u64)) {
            return Err(FsError {
                path: "/".into(),
                kind: FsErrorKind::Transport(DeviceError::Corrupt {
                    device: String::from(self.dev.borrow().name()),
                    what,
                }),
            });
        }
        let reader = Reader {
            dev: self.dev.clone(),
            ra: ReadAhead::new(Confined::new(0, blocks), bs),
        };
        let fs = Ext4::load(Box::new(reader)).map_err(|e| error("/", e))?;
        self.fs = Some(fs);
        Ok(format!(
            "ext{} \"{}\" {}, {} blocks of {} bytes",
            self.sb.version, self.sb.label, self.sb.uuid, self.sb.blocks, self.sb.block_size
        ))
    }

    fn stat(&mut self, path: &str) -> Result<Attr, FsError> {
        let m = self
            .mounted(path)?
            .metadata(path)
            .map_err(|e| error(path, e))?;
        let (ifmt, _) = file_type_bits(m.file_type());
        Ok(Attr {
            ino: 0,
            size: m.len(),
            mode: ifmt | u32::from(m.mode()),
            nlink: 1,
        })
    }

    fn read_stream(
        &mut self,
        path: &str,
        range: Option<(u64, u64)>,
        sink: &mut dyn FnMut(&[u8]),
    ) -> Result<(u64, u64), FsError> {
        let fs = self.mounted(path)?;
        let mut f = fs.open(path).map_err(|e| error(path, e))?;
        let size = f.metadata().len();
        let (off, len) = range.unwrap_or((0, size));
        let start = off.min(size);
        let end = start.saturating_add(len).min(size);
        f.seek_to(start).map_err(|e| error(path, e))?;
        let mut buf = vec![0u8; PIECE];
        let mut done = 0u64;
        while done < end - start {
            let want = (end - start - done).min(PIECE as u64) as usize;
            let mut filled = 0;
            while filled < want {
                match f.read_bytes(&mut buf[filled..want]) {
                    Ok(0) => {
                        // Shorter than its size says: the inode is damaged.
                        return Err(FsError {
                            path: path.into(),
                            kind: FsErrorKind::Errno(errno::EIO),
                        });
                    }
                    Ok(n) => filled += n,
                    Err(e) => return Err(error(path, e)),
                }
            }
            sink(&buf[..filled]);
            done += filled as u64;
        }
        Ok((size, done))
    }

    fn list_dir(&mut self, path: &str) -> Result<Vec<DirEntry>, FsError> {
        let fs = self.mounted(path)?;
        let mut out = Vec::new();
        for e in fs.read_dir(path).map_err(|e| error(path, e))? {
            let e = e.map_err(|e| error(path, e))?;
            let name = e.file_name();
            let name = String::from_utf8_lossy(name.as_ref());
            if name == "." || name == ".." {
                continue;
            }
            let kind = e.file_type().map_or(0, |t| file_type_bits(t).1);
            out.push(DirEntry {
                name: name.into_owned(),
                ino: 0,
                kind,
            });
        }
        Ok(out)
    }

    fn totals(&mut self) -> Result<Totals, FsError> {
        Ok(Totals {
            blocks: self.sb.blocks,
            free: self.sb.free_blocks,
            block_size: self.sb.block_size,
            files: u64::from(self.sb.inodes),
        })
    }

    fn unmount(&mut self) -> Result<String, FsError> {
        self.fs = None;
        Ok(String::from("ext4 closed"))
    }

    fn label(&self) -> &str {
        &self.sb.label
    }

    fn as_device(&mut self) -> &mut dyn Device {
        self
    }
}

#[cfg(test)]
pub(crate) mod tests {
    //! An ext4 image made by Debian's `mkfs.ext4 -d` from a directory built here, read through
    //! a block device in memory.
    extern crate std;
    use super::*;
    use crate::dev::fs::FileSystem;
    use std::path::PathBuf;
    use std::process::Command;

    /// A disk in memory; `fail_from` makes reads at or past that block fail.
    pub(crate) struct MemBlock {
        bytes: Vec<u8>,
        fail_from: Option<u64>,
    }

    impl MemBlock {
        pub(crate) fn new(bytes: Vec<u8>) -> MemBlock {
            MemBlock {
                bytes,
                fail_from: None,
            }
        }
    }

    impl Device for MemBlock {
        fn name(&self) -> &str {
            "mem"
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

    impl BlockDevice for MemBlock {
        fn block_size(&self) -> usize {
            512
        }
        fn capacity(&self) -> u64 {
            self.bytes.len() as u64 / 512
        }
        fn read_only(&self) -> bool {
            true
        }
        fn read(&mut self, block: u64, buf: &mut [u8]) -> Result<(), DeviceError> {
            let end = block + buf.len() as u64 / 512;
            if self.fail_from.is_some_and(|f| end > f) || end > self.capacity() {
                return Err(DeviceError::OutOfRange {
                    device: "mem".into(),
                    block,
                    blocks: buf.len() as u64 / 512,
                    capacity: self.capacity(),
                });
            }
            let s = block as usize * 512;
            buf.copy_from_slice(&self.bytes[s..s + buf.len()]);
            Ok(())
        }
        fn write(&mut self, _: u64, _: &[u8]) -> Result<(), DeviceError> {
            unreachable!("never written")
        }
        fn flush(&mut self) -> Result<(), DeviceError> {
            Ok(())
        }
        fn identity(&mut self) -> Result<String, DeviceError> {
            Ok("mem".into())
        }
        fn as_device(&mut self) -> &mut dyn Device {
            self
        }
    }

    /// An 8 MiB ext4 image with `block` bytes per block.
    fn image(block: u32) -> Vec<u8> {
        static N: core::sync::atomic::AtomicUsize = core::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, core::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("vioboot-ext4-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let src: PathBuf = dir.join("src");
        std::fs::create_dir_all(src.join("boot/loader/entries")).unwrap();
        let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 253) as u8).collect();
        std::fs::write(src.join("boot/big"), &big).unwrap();
        std::fs::write(src.join("boot/loader/entries/a.conf"), "title A\n").unwrap();
        std::os::unix::fs::symlink("loop2", src.join("loop1")).unwrap();
        std::os::unix::fs::symlink("loop1", src.join("loop2")).unwrap();
        std::os::unix::fs::symlink("boot/big", src.join("link")).unwrap();
        let img = dir.join("fs.img");
        let out = Command::new("mkfs.ext4")
            .args(["-q", "-F", "-L", "tiny", "-b", &block.to_string(), "-d"])
            .arg(&src)
            .arg(&img)
            .arg("8M")
            .output()
            .expect("mkfs.ext4 (Debian's e2fsprogs; `cargo xtask test` installs it)");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let bytes = std::fs::read(&img).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        bytes
    }

    fn open(bytes: Vec<u8>, fail_from: Option<u64>) -> Ext4Fs {
        let sb = disk::probe::ext_super(&bytes[..4096]).expect("an ext superblock");
        Ext4Fs::new(Box::new(MemBlock { bytes, fail_from }), sb)
    }

    fn errno_of(r: Result<impl core::fmt::Debug, FsError>) -> i32 {
        r.unwrap_err().errno().expect("an errno")
    }

    #[test]
    fn reads_files_directories_and_names_errors() {
        for block in [1024, 4096] {
            let mut fs = open(image(block), None);
            let said = fs.mount().unwrap();
            assert!(
                said.contains("\"tiny\"") && said.contains(&format!("of {block} bytes")),
                "{said}"
            );
            assert_eq!(fs.label(), "tiny");
            let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 253) as u8).collect();
            assert_eq!(fs.read_file("/boot/big").unwrap(), big);
            assert_eq!(fs.read_file("/link").unwrap(), big, "a symlink is followed");
            assert_eq!(fs.stat("/boot/big").unwrap().size, 3_000_000);
            assert_eq!(fs.stat("/boot").unwrap().mode & 0o170000, 0o040000);
            let mut part = Vec::new();
            let (size, n) = fs
                .read_stream("/boot/big", Some((1_000_001, 70_000)), &mut |p| {
                    part.extend_from_slice(p)
                })
                .unwrap();
            assert_eq!((size, n), (3_000_000, 70_000));
            assert_eq!(part, big[1_000_001..1_070_001]);
            let names: Vec<String> = fs
                .list_dir("/boot/loader/entries")
                .unwrap()
                .into_iter()
                .map(|e| e.name)
                .collect();
            assert_eq!(names, ["a.conf"]);
            assert_eq!(crate::loader::entries::locate(&mut fs), Some("/boot"));
            assert_eq!(errno_of(fs.stat("/missing")), errno::ENOENT);
            assert_eq!(errno_of(fs.read_file("/boot/big/x")), errno::ENOTDIR);
            assert_eq!(errno_of(fs.read_file("/loop1")), errno::ELOOP);
            assert_eq!(errno_of(fs.read_file("/boot")), errno::EISDIR);
            assert_eq!(errno_of(fs.read_file("relative")), errno::EINVAL);
            let e = fs.stat("/missing").unwrap_err();
            assert_eq!(e.path, "/missing");
            let t = fs.totals().unwrap();
            assert_eq!(
                (t.block_size, t.blocks),
                (block, (8 << 20) / u64::from(block))
            );
            fs.unmount().unwrap();
            assert_eq!(fs.stat("/boot").unwrap_err().kind, FsErrorKind::NotMounted);
        }
    }

    #[test]
    fn corruption_is_eio_and_a_device_error_is_the_devices() {
        // The superblock's label changed behind its checksum.
        let mut bytes = image(4096);
        bytes[1024 + 0x78] ^= 0x20;
        let mut fs = open(bytes, None);
        assert_eq!(errno_of(fs.mount()), errno::EIO);
        // A device that fails past the first MiB: the file's data cannot be read.
        let mut fs = open(image(4096), Some(2048));
        fs.mount().unwrap();
        let e = fs.read_file("/boot/big").unwrap_err();
        assert!(
            matches!(
                e.kind,
                FsErrorKind::Transport(DeviceError::OutOfRange { .. })
            ),
            "{e}"
        );
        assert_eq!(e.path, "/boot/big");
    }

    #[test]
    fn an_impossible_superblock_is_named_before_the_reader_sizes_by_it() {
        // A superblock (found by the ext4 fuzz target) whose counts would have ext4-view
        // allocate a table of 17 GB: refused by name.
        let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("fuzz/seeds/ext4/regression-huge-group-count");
        let mut bytes = std::fs::read(&p).expect("the regression seed");
        bytes.resize(bytes.len().max(4096).next_multiple_of(512), 0);
        let mut fs = open(bytes, None);
        let e = fs.mount().expect_err("refused");
        assert!(
            matches!(e.kind, FsErrorKind::Transport(DeviceError::Corrupt { .. })),
            "{e:?}"
        );
        assert!(e.to_string().contains("superblock"), "{e}");
        // A good image is not refused.
        let mut ok = open(image(4096), None);
        ok.mount().expect("mounts");
    }
}
