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
