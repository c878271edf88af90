//! FAT12, FAT16 and FAT32 with VFAT long names, read-only (Microsoft's "FAT: General Overview of
//! On-Disk Format" 1.03). Everything read from the disk is untrusted: the boot sector's geometry
//! must fit the partition, every cluster number is checked against the cluster count before it
//! is used, a cluster chain longer than the volume has clusters ends with [`FatError::ChainLoop`],
//! a directory larger than FAT allows with [`FatError::DirectoryTooLarge`], and a directory that
//! names one of its own ancestors with [`FatError::DirectoryLoop`]. It reads through [`ReadAt`]
//! (bytes from the start of the partition), so it knows no device.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

/// What the reader reads through: bytes from the start of the file system.
pub trait ReadAt {
    type Error;
    /// Fills `buf` from byte `offset`.
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), Self::Error>;
}

/// FAT's flavour, from its cluster count (never from the label the boot sector carries).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FatType {
    Fat12,
    Fat16,
    Fat32,
}

impl fmt::Display for FatType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FatType::Fat12 => "FAT12",
            FatType::Fat16 => "FAT16",
            FatType::Fat32 => "FAT32",
        })
    }
}

/// A failed FAT read: the reader's error, or what is wrong with the file system or the path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FatError<E> {
    Io(E),
    /// The boot sector's geometry is impossible (what is wrong).
    BadBootSector(&'static str),
    /// A chain from `start` is longer than the volume has clusters: it loops.
    ChainLoop {
        start: u32,
    },
    /// Cluster `cluster`'s FAT entry points at `next`, which is no data cluster.
    ClusterOutOfRange {
        cluster: u32,
        next: u32,
    },
    /// A chain reaches a free (0) or bad (…F7) cluster after `cluster`.
    BrokenChain {
        cluster: u32,
        entry: u32,
    },
    /// A file's chain ends before its size: `size` bytes, `clusters` clusters of `cluster_size`.
    ChainTooShort {
        size: u32,
        clusters: u64,
    },
    /// A directory's chain is longer than FAT's 65536 entries allow.
    DirectoryTooLarge {
        start: u32,
    },
    /// A directory entry `name` points at the cluster of a directory on its own path.
    DirectoryLoop {
        name: String,
        cluster: u32,
    },
    NotFound,
    NotADirectory,
    IsADirectory,
    /// Not an absolute path, or a component too long for FAT (255 characters).
    BadPath,
}

impl<E: fmt::Display> fmt::Display for FatError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FatError::Io(e) => e.fmt(f),
            FatError::BadBootSector(w) => write!(f, "FAT boot sector: {w}"),
            FatError::ChainLoop { start } => write!(
                f,
                "FAT cluster chain from {start} is longer than the volume: it loops"
            ),
            FatError::ClusterOutOfRange { cluster, next } => write!(
                f,
                "FAT entry of cluster {cluster} points at {next:#x}, no data cluster"
            ),
            FatError::BrokenChain { cluster, entry } => write!(
                f,
                "FAT chain broken after cluster {cluster} (entry {entry:#x}: free or bad)"
            ),
            FatError::ChainTooShort { size, clusters } => write!(
                f,
                "FAT chain of {clusters} clusters is shorter than the file's {size} bytes"
            ),
            FatError::DirectoryTooLarge { start } => write!(
                f,
                "FAT directory at cluster {start} is larger than 65536 entries"
            ),
            FatError::DirectoryLoop { name, cluster } => write!(
                f,
                "FAT directory loop: \"{name}\" points at cluster {cluster}, a directory on its own path"
            ),
            FatError::NotFound => f.write_str("not found"),
            FatError::NotADirectory => f.write_str("not a directory"),
            FatError::IsADirectory => f.write_str("is a directory"),
            FatError::BadPath => f.write_str("not an absolute path of FAT names"),
        }
    }
}

/// A file or directory: where its chain starts and how big it says it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Node {
    /// First cluster (0: the FAT12/16 root directory, or an empty file).
    pub cluster: u32,
    pub size: u32,
    pub dir: bool,
}

/// One name in a directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The long name if a valid one precedes the entry, else the 8.3 name.
    pub name: String,
    /// The 8.3 name (`VMLINUZ.EFI`).
    pub short: String,
    pub node: Node,
}

/// Bytes of one directory entry.
const DIRENT: usize = 32;
/// FAT allows 65536 entries in a directory.
const MAX_DIR_BYTES: u64 = 65536 * DIRENT as u64;
const ATTR_VOLUME_ID: u8 = 0x08;
const ATTR_DIRECTORY: u8 = 0x10;
const ATTR_LONG_NAME: u8 = 0x0f;
/// Deepest path followed (each level is a directory read).
const MAX_DEPTH: usize = 64;

/// A mounted FAT volume's geometry, all checked against the partition's size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fat {
    pub kind: FatType,
    pub bytes_per_sector: u32,
    pub cluster_size: u32,
    /// Data clusters: valid numbers are 2..=clusters+1.
    pub clusters: u32,
    /// Byte offset of the FAT in use.
    fat_start: u64,
    fat_bytes: u64,
    /// FAT12/16: byte offset and size of the fixed root directory.
    root_start: u64,
    root_bytes: u64,
    /// FAT32: the root directory's first cluster.
    root_cluster: u32,
    data_start: u64,
    /// The volume label from the boot sector (trailing spaces removed).
    pub label: String,
    /// Volume serial number.
    pub serial: u32,
}

fn le16(b: &[u8], o: usize) -> u16 {
    u16::from_le_bytes([b[o], b[o + 1]])
}

fn le32(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]])
}

impl Fat {
    /// Reads and checks the boot sector of a FAT volume of `size` bytes.
    pub fn open<R: ReadAt + ?Sized>(r: &mut R, size: u64) -> Result<Fat, FatError<R::Error>> {
        let mut bs = [0u8; 512];
        if size < 512 {
            return Err(FatError::BadBootSector(
                "the partition is smaller than a sector",
            ));
        }
        r.read_at(0, &mut bs).map_err(FatError::Io)?;
        Fat::parse(&bs, size)
    }

    /// Checks the first 512 bytes of a FAT volume of `size` bytes.
    pub fn parse<E>(bs: &[u8; 512], size: u64) -> Result<Fat, FatError<E>> {
        let bad = |w| Err(FatError::BadBootSector(w));
        if bs[510] != 0x55 || bs[511] != 0xaa {
            return bad("no 55 AA signature");
        }
        let bps = u32::from(le16(bs, 11));
        if !(512..=4096).contains(&bps) || !bps.is_power_of_two() {
            return bad("bytes per sector is not 512, 1024, 2048 or 4096");
        }
        let spc = u32::from(bs[13]);
        if spc == 0 || !spc.is_power_of_two() {
            return bad("sectors per cluster is not a power of two");
        }
        let cluster_size = bps * spc;
        if cluster_size > 256 << 10 {
            return bad("clusters are larger than 256 KiB");
        }
        let reserved = u64::from(le16(bs, 14));
        if reserved == 0 {
            return bad("no reserved sectors");
        }
        let nfats = u64::from(bs[16]);
        if nfats == 0 {
            return bad("no FAT");
        }
        let root_entries = u64::from(le16(bs, 17));
        let total16 = u64::from(le16(bs, 19));
        let fat16_size = u64::from(le16(bs, 22));
        let total = if total16 != 0 {
            total16
        } else {
            u64::from(le32(bs, 32))
        };
        let fat_size = if fat16_size != 0 {
            fat16_size
        } else {
            u64::from(le32(bs, 36))
        };
        if fat_size == 0 {
            return bad("the FAT has no sectors");
        }
        let bps64 = u64::from(bps);
        if total.checked_mul(bps64).is_none_or(|b| b > size) {
            return bad("the volume is larger than its partition");
        }
        let root_sectors = (root_entries * DIRENT as u64).div_ceil(bps64);
        let meta = reserved + nfats * fat_size + root_sectors;
        if meta >= total {
            return bad("FATs and root directory fill the whole volume");
        }
        let clusters = (total - meta) / u64::from(spc);
        let kind = if clusters < 4085 {
            FatType::Fat12
        } else if clusters < 65525 {
            FatType::Fat16
        } else {
            FatType::Fat32
        };
        if clusters == 0 || clusters > 0x0fff_fff5 {
            return bad("impossible cluster count");
        }
        // The FAT must hold an entry for every cluster (and the two reserved ones).
        let entries_bytes = match kind {
            FatType::Fat12 => (clusters + 2) * 3 / 2 + 1,
            FatType::Fat16 => (clusters + 2) * 2,
            FatType::Fat32 => (clusters + 2) * 4,
        };
        if fat_size * bps64 < entries_bytes {
            return bad("the FAT is too small for the cluster count");
        }
        let (fat_index, root_cluster, label_at) = if kind == FatType::Fat32 {
            if root_entries != 0 || fat16_size != 0 {
                return bad("FAT32 with a fixed root directory or a 16-bit FAT size");
            }
            let flags = le16(bs, 40);
            // Bit 7: only the FAT numbered in bits 0-3 is active (no mirroring).
            let active = if flags & 0x80 != 0 {
                u64::from(flags & 0xf)
            } else {
                0
            };
            if active >= nfats {
                return bad("the active FAT does not exist");
            }
            let rc = le32(bs, 44) & 0x0fff_ffff;
            if rc < 2 || u64::from(rc) > clusters + 1 {
                return bad("the root directory's cluster is no data cluster");
            }
            (active, rc, 71)
        } else {
            if root_entries == 0 {
                return bad("FAT12/16 without root directory entries");
            }
            (0, 0, 43)
        };
        // Volume label and serial are only there with the extended boot signature 0x29.
        let sig_at = label_at - 5;
        let (label, serial) = if bs[sig_at] == 0x29 {
            let l = &bs[label_at..label_at + 11];
            let label: String = l
                .iter()
                .map(|&c| {
                    if c.is_ascii_graphic() || c == b' ' {
                        c as char
                    } else {
                        '?'
                    }
                })
                .collect();
            (String::from(label.trim_end()), le32(bs, sig_at + 1))
        } else {
            (String::new(), 0)
        };
        Ok(Fat {
            kind,
            bytes_per_sector: bps,
            cluster_size,
            clusters: clusters as u32,
            fat_start: (reserved + fat_index * fat_size) * bps64,
            fat_bytes: fat_size * bps64,
            root_start: (reserved + nfats * fat_size) * bps64,
            root_bytes: root_sectors * bps64,
            root_cluster,
            data_start: meta * bps64,
            label: if label == "NO NAME" {
                String::new()
            } else {
                label
            },
            serial,
        })
    }

    /// The root directory.
    pub fn root(&self) -> Node {
        Node {
            cluster: self.root_cluster,
            size: 0,
            dir: true,
        }
    }

    fn is_data_cluster(&self, c: u32) -> bool {
        c >= 2 && c - 2 < self.clusters
    }

    /// Byte offset of data cluster `c` (checked by the caller).
    fn cluster_offset(&self, c: u32) -> u64 {
        self.data_start + u64::from(c - 2) * u64::from(self.cluster_size)
    }

    /// The FAT entry of data cluster `c`: the next cluster, or `None` at the end of the chain.
    fn next<R: ReadAt + ?Sized>(
        &self,
        r: &mut R,
        c: u32,
    ) -> Result<Option<u32>, FatError<R::Error>> {
        let raw = match self.kind {
            FatType::Fat12 => {
                let off = u64::from(c) + u64::from(c / 2);
                let mut b = [0u8; 2];
                self.read_fat(r, off, &mut b)?;
                let v = u16::from_le_bytes(b);
                u32::from(if c & 1 == 1 { v >> 4 } else { v & 0xfff })
            }
            FatType::Fat16 => {
                let off = u64::from(c) * 2;
                let mut b = [0u8; 2];
                self.read_fat(r, off, &mut b)?;
                u32::from(u16::from_le_bytes(b))
            }
            FatType::Fat32 => {
                let off = u64::from(c) * 4;
                let mut b = [0u8; 4];
                self.read_fat(r, off, &mut b)?;
                u32::from_le_bytes(b) & 0x0fff_ffff
            }
        };
        let (eoc, bad) = match self.kind {
            FatType::Fat12 => (0xff8, 0xff7),
            FatType::Fat16 => (0xfff8, 0xfff7),
            FatType::Fat32 => (0x0fff_fff8, 0x0fff_fff7),
        };
        if raw >= eoc {
            return Ok(None);
        }
        if raw == 0 || raw == bad {
            return Err(FatError::BrokenChain {
                cluster: c,
                entry: raw,
            });
        }
        if !self.is_data_cluster(raw) {
            return Err(FatError::ClusterOutOfRange {
                cluster: c,
                next: raw,
            });
        }
        Ok(Some(raw))
    }

    fn read_fat<R: ReadAt + ?Sized>(
        &self,
        r: &mut R,
        off: u64,
        b: &mut [u8],
    ) -> Result<(), FatError<R::Error>> {
        // Open checked that the FAT holds every data cluster's entry; checked again here.
        if off + b.len() as u64 > self.fat_bytes {
            return Err(FatError::BadBootSector("a FAT entry lies past the FAT"));
        }
        r.read_at(self.fat_start + off, b).map_err(FatError::Io)
    }

    /// The chain from `start` as runs of contiguous bytes (offset, length), at most `limit`
    /// clusters long (more is [`FatError::ChainLoop`], or `too_long` when given).
    fn runs<R: ReadAt + ?Sized>(
        &self,
        r: &mut R,
        start: u32,
        limit: u64,
        too_long: Option<FatError<R::Error>>,
    ) -> Result<Vec<(u64, u64)>, FatError<R::Error>> {
        let mut runs: Vec<(u64, u64)> = Vec::new();
        if !self.is_data_cluster(start) {
            return Err(FatError::ClusterOutOfRange {
                cluster: 0,
                next: start,
            });
        }
        let cs = u64::from(self.cluster_size);
        let mut c = start;
        let mut n = 0u64;
        loop {
            n += 1;
            if n > limit.min(u64::from(self.clusters)) {
                return Err(too_long
                    .filter(|_| n <= u64::from(self.clusters))
                    .unwrap_or(FatError::ChainLoop { start }));
            }
            let off = self.cluster_offset(c);
            match runs.last_mut() {
                Some((o, l)) if *o + *l == off => *l += cs,
                _ => runs.push((off, cs)),
            }
            match self.next(r, c)? {
                Some(next) => c = next,
                None => return Ok(runs),
            }
        }
    }

    /// The byte runs holding `node`'s data, exactly its size long (a directory: its chain).
    pub fn extents<R: ReadAt + ?Sized>(
        &self,
        r: &mut R,
        node: &Node,
    ) -> Result<Vec<(u64, u64)>, FatError<R::Error>> {
        if node.dir {
            if node.cluster == 0 {
                return Ok(alloc::vec![(self.root_start, self.root_bytes)]);
            }
            let most = MAX_DIR_BYTES.div_ceil(u64::from(self.cluster_size));
            return self.runs(
                r,
                node.cluster,
                most,
                Some(FatError::DirectoryTooLarge {
                    start: node.cluster,
                }),
            );
        }
        if node.size == 0 {
            return Ok(Vec::new());
        }
        let need = u64::from(node.size).div_ceil(u64::from(self.cluster_size));
        let mut runs = self.runs(r, node.cluster, u64::from(self.clusters), None)?;
        let have: u64 = runs.iter().map(|(_, l)| l).sum::<u64>() / u64::from(self.cluster_size);
        if have < need {
            return Err(FatError::ChainTooShort {
                size: node.size,
                clusters: have,
            });
        }
        // Trim to the size (a longer chain is tolerated: fsck would free the rest).
        let mut left = u64::from(node.size);
        runs.retain_mut(|(_, l)| {
            if left == 0 {
                return false;
            }
            *l = (*l).min(left);
            left -= *l;
            true
        });
        Ok(runs)
    }

    /// The entries of directory `dir` (without `.` and `..`, volume labels and deleted ones).
    pub fn list<R: ReadAt + ?Sized>(
        &self,
        r: &mut R,
        dir: &Node,
    ) -> Result<Vec<Entry>, FatError<R::Error>> {
        if !dir.dir {
            return Err(FatError::NotADirectory);
        }
        let mut out = Vec::new();
        let mut lfn = Lfn::default();
        let mut buf = alloc::vec![0u8; self.cluster_size.max(self.bytes_per_sector) as usize];
        for (off, len) in self.extents(r, dir)? {
            let mut done = 0u64;
            while done < len {
                let n = (len - done).min(buf.len() as u64) as usize;
                r.read_at(off + done, &mut buf[..n]).map_err(FatError::Io)?;
                done += n as u64;
                for d in buf[..n].chunks_exact(DIRENT) {
                    match d[0] {
                        0 => return Ok(out),
                        0xe5 => {
                            lfn = Lfn::default();
                            continue;
                        }
                        _ => {}
                    }
                    let attr = d[11];
                    if attr & 0x3f == ATTR_LONG_NAME {
                        lfn.push(d);
                        continue;
                    }
                    let taken = core::mem::take(&mut lfn);
                    if attr & ATTR_VOLUME_ID != 0 {
                        continue;
                    }
                    let short = short_name(d);
                    if short == "." || short == ".." {
                        continue;
                    }
                    let hi = if self.kind == FatType::Fat32 {
                        u32::from(le16(d, 20))
                    } else {
                        0
                    };
                    let cluster = hi << 16 | u32::from(le16(d, 26));
                    let name = taken
                        .finish(checksum(d))
                        .unwrap_or_else(|| display_short(d));
                    out.push(Entry {
                        name,
                        short,
                        node: Node {
                            cluster,
                            size: le32(d, 28),
                            dir: attr & ATTR_DIRECTORY != 0,
                        },
                    });
                }
            }
        }
        Ok(out)
    }

    /// The node at absolute `path` (`/` separated; names match case-insensitively, long or 8.3).
    pub fn lookup<R: ReadAt + ?Sized>(
        &self,
        r: &mut R,
        path: &str,
    ) -> Result<Node, FatError<R::Error>> {
        let rest = path.strip_prefix('/').ok_or(FatError::BadPath)?;
        let mut node = self.root();
        // Clusters of the directories on the way, to catch a directory naming its ancestor.
        let mut on_path: Vec<u32> = alloc::vec![self.root_cluster];
        for comp in rest.split('/').filter(|c| !c.is_empty() && *c != ".") {
            if comp.chars().count() > 255 || on_path.len() > MAX_DEPTH {
                return Err(FatError::BadPath);
            }
            if !node.dir {
                return Err(FatError::NotADirectory);
            }
            if comp == ".." {
                return Err(FatError::BadPath);
            }
            let e = self
                .list(r, &node)?
                .into_iter()
                .find(|e| e.name.eq_ignore_ascii_case(comp) || e.short.eq_ignore_ascii_case(comp))
                .ok_or(FatError::NotFound)?;
            if e.node.dir {
                if on_path.contains(&e.node.cluster) || e.node.cluster == 0 {
                    return Err(FatError::DirectoryLoop {
                        name: e.name,
                        cluster: e.node.cluster,
                    });
                }
                on_path.push(e.node.cluster);
            }
            node = e.node;
        }
        Ok(node)
    }
}

/// The 8.3 name as stored (`KERNEL.IMG`), 0x05 standing for 0xE5.
fn short_name(d: &[u8]) -> String {
    name83(d, false, false)
}

/// The 8.3 name as Windows NT and Linux show it: the case bits of byte 12 applied.
fn display_short(d: &[u8]) -> String {
    name83(d, d[12] & 0x08 != 0, d[12] & 0x10 != 0)
}

fn name83(d: &[u8], lower_base: bool, lower_ext: bool) -> String {
    let part = |b: &[u8], lower: bool| -> String {
        let mut s: String = b
            .iter()
            .enumerate()
            .map(|(i, &c)| {
                let c = if i == 0 && c == 0x05 { 0xe5 } else { c };
                let c = if lower { c.to_ascii_lowercase() } else { c };
                // Code-page bytes above 0x7f are not decoded: shown as '?'.
                if c.is_ascii() && c >= 0x20 {
                    c as char
                } else {
                    '?'
                }
            })
            .collect();
        while s.ends_with(' ') {
            s.pop();
        }
        s
    };
    let base = part(&d[0..8], lower_base);
    let ext = part(&d[8..11], lower_ext);
    if ext.is_empty() {
        base
    } else {
        alloc::format!("{base}.{ext}")
    }
}

/// The checksum of an 8.3 name that its long-name entries carry.
fn checksum(d: &[u8]) -> u8 {
    d[..11]
        .iter()
        .fold(0u8, |s, &c| s.rotate_right(1).wrapping_add(c))
}

/// Long-name entries gathered before their 8.3 entry (they come last piece first).
#[derive(Default)]
struct Lfn {
    /// UCS-2 units by piece number (1-based, at most 20 pieces of 13).
    units: Vec<u16>,
    /// Pieces expected, the next one expected, and the checksum they all carry.
    count: u8,
    next: u8,
    sum: u8,
    broken: bool,
}

impl Lfn {
    fn push(&mut self, d: &[u8]) {
        let ord = d[0];
        let seq = ord & 0x3f;
        if ord & 0x40 != 0 {
            // The last piece starts a new name.
            *self = Lfn::default();
            if seq == 0 || seq > 20 {
                self.broken = true;
                return;
            }
            self.count = seq;
            self.next = seq;
            self.sum = d[13];
            self.units = alloc::vec![0xffff; usize::from(seq) * 13];
        }
        if self.broken || self.count == 0 || seq != self.next || d[13] != self.sum || seq == 0 {
            self.broken = true;
            return;
        }
        let at = usize::from(seq - 1) * 13;
        let pieces = (1..11)
            .step_by(2)
            .chain((14..26).step_by(2))
            .chain((28..32).step_by(2));
        for (i, o) in pieces.enumerate() {
            self.units[at + i] = le16(d, o);
        }
        self.next -= 1;
    }

    /// The name, if every piece came in order with `sum` (the 8.3 entry's checksum).
    fn finish(self, sum: u8) -> Option<String> {
        if self.broken || self.count == 0 || self.next != 0 || self.sum != sum {
            return None;
        }
        let end = self
            .units
            .iter()
            .position(|&u| u == 0)
            .unwrap_or(self.units.len());
        let units = &self.units[..end];
        if units.is_empty() || units.len() > 255 {
            return None;
        }
        Some(
            char::decode_utf16(units.iter().copied())
                .map(|c| c.unwrap_or(char::REPLACEMENT_CHARACTER))
                .collect(),
        )
    }
}

/// Reads `node`'s bytes `offset..offset+buf.len()` through its extents (a helper for small
/// files such as boot entries; large ones should stream the extents).
pub fn read_node<R: ReadAt + ?Sized>(
    fat: &Fat,
    r: &mut R,
    node: &Node,
) -> Result<Vec<u8>, FatError<R::Error>> {
    if node.dir {
        return Err(FatError::IsADirectory);
    }
    // The extents first: they prove the volume holds the size before it is allocated.
    let runs = fat.extents(r, node)?;
    let mut out = alloc::vec![0u8; node.size as usize];
    let mut at = 0usize;
    for (off, len) in runs {
        let len = len as usize;
        r.read_at(off, &mut out[at..at + len])
            .map_err(FatError::Io)?;
        at += len;
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
