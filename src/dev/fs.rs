//! The file system interface: paths from the root, read-only. A share, or a partition's
//! ext4 or FAT, looks the same to the loader and the checks.

use super::Device;
use super::DeviceError;
use alloc::string::String;
use alloc::vec::Vec;

pub use fuse_client::{Attr, DirEntry};

/// A file system error: the path and what went wrong (an errno, a bad reply, the device).
pub type FsError = fuse_client::FsError<DeviceError>;
pub type FsErrorKind = fuse_client::FsErrorKind<DeviceError>;

/// Linux errno values the checks and the loader name.
pub use fuse_client::fs::errno;

/// Totals of a file system (statfs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Totals {
    pub blocks: u64,
    pub free: u64,
    pub block_size: u32,
    pub files: u64,
}

pub trait FileSystem: Device {
    /// Makes the file system usable; returns what to say about it.
    fn mount(&mut self) -> Result<String, FsError>;
    /// Attributes of `path`, symlinks followed.
    fn stat(&mut self, path: &str) -> Result<Attr, FsError>;
    /// Streams `path` (or `range` = (offset, length) of it) into `sink` piece by piece;
    /// returns (file size, bytes delivered).
    fn read_stream(
        &mut self,
        path: &str,
        range: Option<(u64, u64)>,
        sink: &mut dyn FnMut(&[u8]),
    ) -> Result<(u64, u64), FsError>;
    /// The whole file.
    fn read_file(&mut self, path: &str) -> Result<Vec<u8>, FsError> {
        let mut v = Vec::new();
        self.read_stream(path, None, &mut |p| v.extend_from_slice(p))?;
        Ok(v)
    }
    fn list_dir(&mut self, path: &str) -> Result<Vec<DirEntry>, FsError>;
    fn totals(&mut self) -> Result<Totals, FsError>;
    /// Ends the session (FUSE DESTROY for a share); returns what to say about it.
    fn unmount(&mut self) -> Result<String, FsError>;
    /// What the file system is called where it lives (a share's tag).
    fn label(&self) -> &str;
    fn as_device(&mut self) -> &mut dyn Device;
}
