//! An in-memory file system for host tests of what reads files (the loader).

use super::fs::{errno, Attr, DirEntry, FileSystem, FsError, FsErrorKind, Totals};
use super::{Device, DeviceError, TransportStats};
use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;

/// Files by absolute path; directories are implied by the paths.
#[derive(Default)]
pub struct MemFs {
    pub files: BTreeMap<String, Vec<u8>>,
    /// Bytes handed out per piece by `read_stream`.
    pub piece: usize,
}

impl MemFs {
    pub fn new(files: &[(&str, &[u8])]) -> MemFs {
        MemFs {
            files: files
                .iter()
                .map(|(p, b)| (String::from(*p), b.to_vec()))
                .collect(),
            piece: 4096,
        }
    }

    fn enoent(path: &str) -> FsError {
        FsError {
            path: path.into(),
            kind: FsErrorKind::Errno(errno::ENOENT),
        }
    }
}

impl Device for MemFs {
    fn name(&self) -> &str {
        "memfs"
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

impl FileSystem for MemFs {
    fn mount(&mut self) -> Result<String, FsError> {
        Ok("memfs".into())
    }

    fn stat(&mut self, path: &str) -> Result<Attr, FsError> {
        let f = self.files.get(path).ok_or_else(|| Self::enoent(path))?;
        Ok(Attr {
            ino: 1,
            size: f.len() as u64,
            mode: 0o100644,
            nlink: 1,
        })
    }

    fn read_stream(
        &mut self,
        path: &str,
        range: Option<(u64, u64)>,
        sink: &mut dyn FnMut(&[u8]),
    ) -> Result<(u64, u64), FsError> {
        let f = self.files.get(path).ok_or_else(|| Self::enoent(path))?;
        let (off, len) = range.unwrap_or((0, f.len() as u64));
        let start = (off as usize).min(f.len());
        let end = (start + len as usize).min(f.len());
        for piece in f[start..end].chunks(self.piece.max(1)) {
            sink(piece);
        }
        Ok((f.len() as u64, (end - start) as u64))
    }

    fn list_dir(&mut self, path: &str) -> Result<Vec<DirEntry>, FsError> {
        let prefix = alloc::format!("{}/", path.trim_end_matches('/'));
        let names: Vec<DirEntry> = self
            .files
            .keys()
            .filter_map(|k| k.strip_prefix(&prefix))
            .filter(|rest| !rest.contains('/'))
            .map(|name| DirEntry {
                name: name.into(),
                ino: 1,
                kind: 8,
            })
            .collect();
        if names.is_empty() {
            return Err(Self::enoent(path));
        }
        Ok(names)
    }

    fn totals(&mut self) -> Result<Totals, FsError> {
        Ok(Totals {
            blocks: 0,
            free: 0,
            block_size: 4096,
            files: self.files.len() as u64,
        })
    }

    fn unmount(&mut self) -> Result<String, FsError> {
        Ok(String::new())
    }

    fn label(&self) -> &str {
        "memfs"
    }

    fn as_device(&mut self) -> &mut dyn Device {
        self
    }
}
