//! Writing and checking flattened device trees (DTB, version 17).
//!
//! [`FdtBuilder`] turns a walk of Open Firmware's tree into a blob (PowerVM and VOF offer no
//! `fdt-fetch`); [`validate`] checks every offset and length of a blob from anywhere before the
//! `fdt` crate, which trusts its input, reads it.

use alloc::vec::Vec;
use core::fmt;

pub const MAGIC: u32 = 0xd00d_feed;
const HEADER_LEN: usize = 40;
const BEGIN_NODE: u32 = 1;
const END_NODE: u32 = 2;
const PROP: u32 = 3;
const NOP: u32 = 4;
const END: u32 = 9;
/// Deepest nesting accepted (real trees are < 10 deep).
pub const MAX_DEPTH: usize = 32;

/// A blob that is not a well-formed device tree; offsets are from the start of the blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FdtError {
    TooShort {
        len: usize,
    },
    BadMagic(u32),
    BadVersion {
        version: u32,
        last_compatible: u32,
    },
    /// `totalsize` is larger than the bytes we have.
    SizeBeyondBuffer {
        totalsize: u32,
        have: usize,
    },
    /// A block named in the header lies outside `totalsize` or is misaligned.
    BadBlock {
        block: &'static str,
        offset: u32,
        size: u32,
    },
    /// A token the format does not have.
    BadToken {
        token: u32,
        at: usize,
    },
    /// A node or property name or value runs past the structure block.
    Overrun {
        what: &'static str,
        at: usize,
    },
    /// A property name offset outside the strings block.
    BadNameOffset {
        nameoff: u32,
        at: usize,
    },
    /// Nodes that do not close, close too often, or nest deeper than [`MAX_DEPTH`].
    BadNesting {
        at: usize,
    },
    /// A node or property name that is not UTF-8 (the `fdt` crate reads names as `str`).
    NameNotUtf8 {
        at: usize,
    },
    /// `#address-cells` or `#size-cells` whose value is not one cell.
    BadCellCount {
        at: usize,
        len: u32,
    },
    /// A property after a child node (DTSpec 5.4.1: properties precede subnodes).
    PropertyAfterChild {
        at: usize,
    },
    /// An FDT_NOP token: allowed by DTSpec, but the `fdt` crate vioboot reads trees with
    /// mis-parses them in several places, so such a tree is refused by name.
    Nop {
        at: usize,
    },
    /// A memory reservation list with no terminating entry.
    UnterminatedReservations,
}

impl fmt::Display for FdtError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FdtError::TooShort { len } => write!(f, "only {len} bytes, shorter than an FDT header"),
            FdtError::BadMagic(m) => write!(f, "bad magic {m:#x} (expected {MAGIC:#x})"),
            FdtError::BadVersion {
                version,
                last_compatible,
            } => {
                write!(
                    f,
                    "version {version} (last compatible {last_compatible}) is not 16 or 17"
                )
            }
            FdtError::SizeBeyondBuffer { totalsize, have } => {
                write!(
                    f,
                    "totalsize {totalsize} exceeds the {have} bytes available"
                )
            }
            FdtError::BadBlock {
                block,
                offset,
                size,
            } => {
                write!(
                    f,
                    "{block} block at offset {offset:#x} size {size:#x} lies outside the blob"
                )
            }
            FdtError::BadToken { token, at } => write!(f, "bad token {token:#x} at offset {at:#x}"),
            FdtError::Overrun { what, at } => {
                write!(f, "{what} at offset {at:#x} runs past its block")
            }
            FdtError::BadNameOffset { nameoff, at } => {
                write!(f, "property at offset {at:#x} names string offset {nameoff:#x} outside the strings block")
            }
            FdtError::BadNesting { at } => write!(f, "nodes badly nested at offset {at:#x}"),
            FdtError::NameNotUtf8 { at } => {
                write!(
                    f,
                    "the name of the node or property at offset {at:#x} is not UTF-8"
                )
            }
            FdtError::PropertyAfterChild { at } => {
                write!(f, "property at offset {at:#x} follows a child node")
            }
            FdtError::Nop { at } => write!(
                f,
                "FDT_NOP at offset {at:#x}: vioboot reads only trees without NOP tokens"
            ),
            FdtError::BadCellCount { at, len } => write!(
                f,
                "#address-cells or #size-cells at offset {at:#x} is {len} bytes, not one cell"
            ),
            FdtError::UnterminatedReservations => write!(f, "memory reservation list has no end"),
        }
    }
}

/// What a valid blob holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    pub totalsize: u32,
    pub nodes: usize,
    pub properties: usize,
    pub reservations: usize,
    pub boot_cpuid_phys: u32,
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    b.get(at..at + 4)
        .map(|s| u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
}

fn be64(b: &[u8], at: usize) -> Option<u64> {
    let hi = be32(b, at)?;
    let lo = be32(b, at + 4)?;
    Some(u64::from(hi) << 32 | u64::from(lo))
}

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// Reads the `totalsize` field of a blob header, if the magic is right.
pub fn total_size(header: &[u8]) -> Option<u32> {
    (be32(header, 0)? == MAGIC)
        .then(|| be32(header, 4))
        .flatten()
}

/// Checks a whole blob. On success the `fdt` crate may read `&blob[..totalsize]` safely.
pub fn validate(blob: &[u8]) -> Result<Summary, FdtError> {
    let h = |i: usize| be32(blob, 4 * i).ok_or(FdtError::TooShort { len: blob.len() });
    if blob.len() < HEADER_LEN {
        return Err(FdtError::TooShort { len: blob.len() });
    }
    let magic = h(0)?;
    if magic != MAGIC {
        return Err(FdtError::BadMagic(magic));
    }
    let totalsize = h(1)?;
    if totalsize as usize > blob.len() || (totalsize as usize) < HEADER_LEN {
        return Err(FdtError::SizeBeyondBuffer {
            totalsize,
            have: blob.len(),
        });
    }
    let (off_struct, off_strings, off_rsv) = (h(2)?, h(3)?, h(4)?);
    let (version, last_compatible, boot_cpuid_phys) = (h(5)?, h(6)?, h(7)?);
    if !(16..=17).contains(&version) || last_compatible > 16 {
        return Err(FdtError::BadVersion {
            version,
            last_compatible,
        });
    }
    let (size_strings, size_struct) = (h(8)?, h(9)?);
    let blob = &blob[..totalsize as usize];
    let block = |name: &'static str, off: u32, size: u32, align: u32| {
        let end = u64::from(off) + u64::from(size);
        if end > u64::from(totalsize) || !off.is_multiple_of(align) || (off as usize) < HEADER_LEN {
            Err(FdtError::BadBlock {
                block: name,
                offset: off,
                size,
            })
        } else {
            Ok(&blob[off as usize..end as usize])
        }
    };
    let structure = block("structure", off_struct, size_struct, 4)?;
    let strings = block("strings", off_strings, size_strings, 1)?;
    let rsv = block(
        "reservation",
        off_rsv,
        totalsize - off_rsv.min(totalsize),
        8,
    )?;

    let mut reservations = 0;
    let mut at = 0;
    loop {
        let (Some(addr), Some(size)) = (be64(rsv, at), be64(rsv, at + 8)) else {
            return Err(FdtError::UnterminatedReservations);
        };
        if addr == 0 && size == 0 {
            break;
        }
        reservations += 1;
        at += 16;
    }

    let (mut nodes, mut properties, mut depth, mut at) = (0, 0, 0usize, 0usize);
    let mut seen_root = false;
    // Per depth: whether the node open there has had a child yet.
    let mut has_child = [false; MAX_DEPTH + 2];
    loop {
        let base = off_struct as usize + at;
        let token = be32(structure, at).ok_or(FdtError::Overrun {
            what: "token",
            at: base,
        })?;
        at += 4;
        match token {
            BEGIN_NODE => {
                if seen_root && depth == 0 {
                    return Err(FdtError::BadNesting { at: base });
                }
                seen_root = true;
                let name_len = structure
                    .get(at..)
                    .and_then(|s| s.iter().position(|&b| b == 0))
                    .ok_or(FdtError::Overrun {
                        what: "node name",
                        at: base,
                    })?;
                if core::str::from_utf8(&structure[at..at + name_len]).is_err() {
                    return Err(FdtError::NameNotUtf8 { at: base });
                }
                at = align4(at + name_len + 1);
                has_child[depth] = true;
                depth += 1;
                nodes += 1;
                if depth > MAX_DEPTH {
                    return Err(FdtError::BadNesting { at: base });
                }
                has_child[depth] = false;
            }
            END_NODE => {
                depth = depth
                    .checked_sub(1)
                    .ok_or(FdtError::BadNesting { at: base })?;
            }
            PROP => {
                if depth == 0 {
                    return Err(FdtError::BadNesting { at: base });
                }
                if has_child[depth] {
                    return Err(FdtError::PropertyAfterChild { at: base });
                }
                let len = be32(structure, at).ok_or(FdtError::Overrun {
                    what: "property header",
                    at: base,
                })?;
                let nameoff = be32(structure, at + 4).ok_or(FdtError::Overrun {
                    what: "property header",
                    at: base,
                })?;
                at += 8;
                let end = at
                    .checked_add(len as usize)
                    .filter(|&e| e <= structure.len());
                at = align4(end.ok_or(FdtError::Overrun {
                    what: "property value",
                    at: base,
                })?);
                let name = strings
                    .get(nameoff as usize..)
                    .and_then(|s| s.split(|&b| b == 0).next().filter(|_| s.contains(&0)))
                    .ok_or(FdtError::BadNameOffset { nameoff, at: base })?;
                let name =
                    core::str::from_utf8(name).map_err(|_| FdtError::NameNotUtf8 { at: base })?;
                if matches!(name, "#address-cells" | "#size-cells") && len != 4 {
                    return Err(FdtError::BadCellCount { at: base, len });
                }
                properties += 1;
            }
            NOP => return Err(FdtError::Nop { at: base }),
            END => {
                if depth != 0 || !seen_root {
                    return Err(FdtError::BadNesting { at: base });
                }
                break;
            }
            other => {
                return Err(FdtError::BadToken {
                    token: other,
                    at: base,
                })
            }
        }
    }
    Ok(Summary {
        totalsize,
        nodes,
        properties,
        reservations,
        boot_cpuid_phys,
    })
}

/// Why a tree could not be written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FdtWriteError {
    /// A node name with '/' or NUL, or an empty name below the root.
    BadNodeName,
    /// A property name that is empty or holds NUL.
    BadPropertyName,
    /// A property outside any node, an `end_node` with no open node, or `finish` with open nodes.
    BadNesting,
    /// A value longer than the format can say.
    TooLarge,
}

impl fmt::Display for FdtWriteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FdtWriteError::BadNodeName => "node name is empty or holds '/' or NUL",
            FdtWriteError::BadPropertyName => "property name is empty or holds NUL",
            FdtWriteError::BadNesting => "nodes are not properly nested",
            FdtWriteError::TooLarge => "tree larger than 4 GiB",
        })
    }
}

/// Builds a blob node by node, as a walk of a tree visits it.
#[derive(Default)]
pub struct FdtBuilder {
    structure: Vec<u8>,
    strings: Vec<u8>,
    reservations: Vec<(u64, u64)>,
    depth: usize,
    boot_cpuid_phys: u32,
}

impl FdtBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    fn word(&mut self, w: u32) {
        self.structure.extend_from_slice(&w.to_be_bytes());
    }

    fn pad(&mut self) {
        while !self.structure.len().is_multiple_of(4) {
            self.structure.push(0);
        }
    }

    /// Opens a node; the root's name is "". `name` is the full unit name, e.g. `vty@71000000`.
    pub fn begin_node(&mut self, name: &str) -> Result<(), FdtWriteError> {
        let is_root = self.depth == 0;
        if name.contains(['/', '\0']) || (name.is_empty() != is_root) {
            return Err(FdtWriteError::BadNodeName);
        }
        if is_root && !self.structure.is_empty() {
            return Err(FdtWriteError::BadNesting);
        }
        self.word(BEGIN_NODE);
        self.structure.extend_from_slice(name.as_bytes());
        self.structure.push(0);
        self.pad();
        self.depth += 1;
        Ok(())
    }

    /// Adds a property to the open node.
    pub fn property(&mut self, name: &str, value: &[u8]) -> Result<(), FdtWriteError> {
        if self.depth == 0 {
            return Err(FdtWriteError::BadNesting);
        }
        if name.is_empty() || name.contains('\0') {
            return Err(FdtWriteError::BadPropertyName);
        }
        let len = u32::try_from(value.len()).map_err(|_| FdtWriteError::TooLarge)?;
        let nameoff = self.string_offset(name)?;
        self.word(PROP);
        self.word(len);
        self.word(nameoff);
        self.structure.extend_from_slice(value);
        self.pad();
        Ok(())
    }

    /// Adds a property of one big-endian cell.
    pub fn property_u32(&mut self, name: &str, value: u32) -> Result<(), FdtWriteError> {
        self.property(name, &value.to_be_bytes())
    }

    /// Closes the open node.
    pub fn end_node(&mut self) -> Result<(), FdtWriteError> {
        self.depth = self.depth.checked_sub(1).ok_or(FdtWriteError::BadNesting)?;
        self.word(END_NODE);
        Ok(())
    }

    /// Adds a memory reservation entry.
    pub fn reserve(&mut self, address: u64, size: u64) {
        self.reservations.push((address, size));
    }

    pub fn set_boot_cpuid_phys(&mut self, id: u32) {
        self.boot_cpuid_phys = id;
    }

    fn string_offset(&mut self, name: &str) -> Result<u32, FdtWriteError> {
        let mut at = 0;
        for s in self.strings.split(|&b| b == 0) {
            if s == name.as_bytes() {
                return u32::try_from(at).map_err(|_| FdtWriteError::TooLarge);
            }
            at += s.len() + 1;
        }
        let off = u32::try_from(self.strings.len()).map_err(|_| FdtWriteError::TooLarge)?;
        self.strings.extend_from_slice(name.as_bytes());
        self.strings.push(0);
        Ok(off)
    }

    /// Finishes the blob: header, reservations, structure, strings.
    pub fn finish(mut self) -> Result<Vec<u8>, FdtWriteError> {
        if self.depth != 0 || self.structure.is_empty() {
            return Err(FdtWriteError::BadNesting);
        }
        self.word(END);
        let rsv_off = HEADER_LEN.next_multiple_of(8);
        let struct_off = rsv_off + 16 * (self.reservations.len() + 1);
        let strings_off = struct_off + self.structure.len();
        let total = strings_off + self.strings.len();
        let fits = |n: usize| u32::try_from(n).map_err(|_| FdtWriteError::TooLarge);
        let mut out = Vec::with_capacity(total);
        for w in [
            MAGIC,
            fits(total)?,
            fits(struct_off)?,
            fits(strings_off)?,
            fits(rsv_off)?,
            17,
            16,
            self.boot_cpuid_phys,
            fits(self.strings.len())?,
            fits(self.structure.len())?,
        ] {
            out.extend_from_slice(&w.to_be_bytes());
        }
        for (a, s) in self.reservations.iter().chain(&[(0, 0)]) {
            out.extend_from_slice(&a.to_be_bytes());
            out.extend_from_slice(&s.to_be_bytes());
        }
        out.extend_from_slice(&self.structure);
        out.extend_from_slice(&self.strings);
        Ok(out)
    }
}

/// A property to set (or add) on the node at `path` while copying a tree.
pub struct Edit<'a> {
    pub path: &'a str,
    pub name: &'a str,
    pub value: Vec<u8>,
}

/// Copies a (validated) tree, applying `edits` (a property that exists is replaced, one that
/// does not is added; the node must exist) and adding `reserve` to its reservations.
pub fn rewrite(
    blob: &[u8],
    edits: &[Edit],
    reserve: &[(u64, u64)],
) -> Result<Vec<u8>, FdtWriteError> {
    let fdt = fdt::Fdt::new(blob).map_err(|_| FdtWriteError::BadNesting)?;
    let mut b = FdtBuilder::new();
    for r in fdt.memory_reservations() {
        b.reserve(r.address() as u64, r.size() as u64);
    }
    for &(a, s) in reserve {
        b.reserve(a, s);
    }
    b.set_boot_cpuid_phys(u32::from_be_bytes([blob[28], blob[29], blob[30], blob[31]]));
    let root = fdt.find_node("/").ok_or(FdtWriteError::BadNesting)?;
    copy_node(&mut b, &root, "", "/", edits)?;
    b.finish()
}

fn copy_node(
    b: &mut FdtBuilder,
    n: &fdt::node::FdtNode,
    name: &str,
    path: &str,
    edits: &[Edit],
) -> Result<(), FdtWriteError> {
    b.begin_node(name)?;
    let mine: Vec<&Edit> = edits.iter().filter(|e| e.path == path).collect();
    for p in n.properties() {
        match mine.iter().find(|e| e.name == p.name) {
            Some(e) => b.property(p.name, &e.value)?,
            None => b.property(p.name, p.value)?,
        }
    }
    for e in &mine {
        if n.property(e.name).is_none() {
            b.property(e.name, &e.value)?;
        }
    }
    for c in n.children() {
        let child_path = if path == "/" {
            alloc::format!("/{}", c.name)
        } else {
            alloc::format!("{path}/{}", c.name)
        };
        copy_node(b, &c, c.name, &child_path, edits)?;
    }
    b.end_node()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        let mut b = FdtBuilder::new();
        b.begin_node("").unwrap();
        b.property_u32("#address-cells", 2).unwrap();
        b.property_u32("#size-cells", 2).unwrap();
        b.begin_node("chosen").unwrap();
        b.property("bootargs", b"vioboot.log=debug\0").unwrap();
        b.end_node().unwrap();
        b.begin_node("memory@0").unwrap();
        b.property("device_type", b"memory\0").unwrap();
        b.property("reg", &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x40, 0, 0, 0])
            .unwrap();
        b.end_node().unwrap();
        b.end_node().unwrap();
        b.reserve(0x1000, 0x2000);
        b.set_boot_cpuid_phys(0);
        b.finish().unwrap()
    }

    #[test]
    fn names_the_fdt_crate_would_panic_on_are_refused() {
        // A property name that is not UTF-8 (found by the fdt fuzz target).
        let mut blob = sample();
        let at = blob
            .windows(9)
            .position(|w| w == b"bootargs\0")
            .expect("the name is in the strings block");
        blob[at] = 0xff;
        assert!(matches!(validate(&blob), Err(FdtError::NameNotUtf8 { .. })));
        // A node name likewise.
        let mut blob = sample();
        let at = blob.windows(7).position(|w| w == b"chosen\0").unwrap();
        blob[at + 1] = 0xc3;
        assert!(matches!(validate(&blob), Err(FdtError::NameNotUtf8 { .. })));
        // #address-cells must be one cell: the fdt crate reads it with expect().
        let mut b = FdtBuilder::new();
        b.begin_node("").unwrap();
        b.property("#address-cells", &[0, 2]).unwrap();
        b.end_node().unwrap();
        let blob = b.finish().unwrap();
        assert_eq!(
            validate(&blob).unwrap_err(),
            FdtError::BadCellCount { at: 0x40, len: 2 }
        );
    }

    #[test]
    fn layouts_the_fdt_crate_misreads_are_refused() {
        // A property after a child node.
        let mut b = FdtBuilder::new();
        b.begin_node("").unwrap();
        b.begin_node("a").unwrap();
        b.end_node().unwrap();
        b.property_u32("late", 1).unwrap();
        b.end_node().unwrap();
        let blob = b.finish().unwrap();
        assert!(matches!(
            validate(&blob),
            Err(FdtError::PropertyAfterChild { .. })
        ));
        // A NOP token (in place of the first property's tag).
        let mut blob = sample();
        let s = validate(&blob).unwrap();
        assert_eq!(s.nodes, 3);
        let off = u32::from_be_bytes(blob[8..12].try_into().unwrap()) as usize;
        // Root BEGIN_NODE and its empty name take 8 bytes; the next token is a PROP.
        assert_eq!(blob[off + 8..off + 12], PROP.to_be_bytes());
        blob[off + 8..off + 12].copy_from_slice(&NOP.to_be_bytes());
        assert!(matches!(validate(&blob), Err(FdtError::Nop { .. })));
        // Nesting deeper than MAX_DEPTH.
        let mut b = FdtBuilder::new();
        b.begin_node("").unwrap();
        for _ in 0..MAX_DEPTH {
            b.begin_node("n").unwrap();
        }
        for _ in 0..=MAX_DEPTH {
            b.end_node().unwrap();
        }
        let blob = b.finish().unwrap();
        assert!(matches!(validate(&blob), Err(FdtError::BadNesting { .. })));
    }

    #[test]
    fn written_tree_validates_and_reads_back_with_the_fdt_crate() {
        let blob = sample();
        let s = validate(&blob).unwrap();
        assert_eq!((s.nodes, s.properties, s.reservations), (3, 5, 1));
        let fdt = fdt::Fdt::new(&blob).unwrap();
        let chosen = fdt.find_node("/chosen").unwrap();
        assert_eq!(
            chosen.property("bootargs").unwrap().as_str(),
            Some("vioboot.log=debug")
        );
        let mem = fdt.find_node("/memory@0").unwrap();
        let r = mem.reg().unwrap().next().unwrap();
        assert_eq!(r.size, Some(0x4000_0000));
        let rsv: std::vec::Vec<_> = fdt
            .memory_reservations()
            .map(|r| (r.address() as u64, r.size()))
            .collect();
        assert_eq!(rsv, [(0x1000, 0x2000)]);
    }

    #[test]
    fn rewrite_replaces_adds_and_reserves() {
        let blob = sample();
        let edits = [
            Edit {
                path: "/chosen",
                name: "bootargs",
                value: b"root=/dev/vda\0".to_vec(),
            },
            Edit {
                path: "/chosen",
                name: "linux,initrd-start",
                value: 0x100_0000u64.to_be_bytes().to_vec(),
            },
        ];
        let out = rewrite(&blob, &edits, &[(0x200_0000, 0x1000)]).unwrap();
        validate(&out).unwrap();
        let fdt = fdt::Fdt::new(&out).unwrap();
        let chosen = fdt.find_node("/chosen").unwrap();
        assert_eq!(
            chosen.property("bootargs").unwrap().as_str(),
            Some("root=/dev/vda")
        );
        assert_eq!(
            chosen.property("linux,initrd-start").unwrap().value,
            &0x100_0000u64.to_be_bytes()
        );
        assert!(fdt.find_node("/memory@0").is_some());
        assert_eq!(fdt.memory_reservations().count(), 2);
    }

    #[test]
    fn property_names_are_shared_in_the_strings_block() {
        let mut b = FdtBuilder::new();
        b.begin_node("").unwrap();
        for n in ["a@1", "a@2", "a@3"] {
            b.begin_node(n).unwrap();
            b.property("reg", &[0; 4]).unwrap();
            b.end_node().unwrap();
        }
        b.end_node().unwrap();
        let blob = b.finish().unwrap();
        let strings_size = u32::from_be_bytes(blob[32..36].try_into().unwrap());
        assert_eq!(strings_size, 4, "\"reg\\0\" once");
    }

    #[test]
    fn builder_refuses_bad_names_and_nesting() {
        let mut b = FdtBuilder::new();
        assert_eq!(b.property("x", &[]), Err(FdtWriteError::BadNesting));
        assert_eq!(b.begin_node("root"), Err(FdtWriteError::BadNodeName));
        b.begin_node("").unwrap();
        assert_eq!(b.begin_node("a/b"), Err(FdtWriteError::BadNodeName));
        assert_eq!(b.begin_node(""), Err(FdtWriteError::BadNodeName));
        assert_eq!(b.property("", &[]), Err(FdtWriteError::BadPropertyName));
        let open = FdtBuilder {
            depth: 1,
            ..FdtBuilder::new()
        };
        assert_eq!(open.finish().unwrap_err(), FdtWriteError::BadNesting);
    }

    #[test]
    fn validate_rejects_every_kind_of_damage() {
        let good = sample();
        assert!(matches!(
            validate(&good[..20]),
            Err(FdtError::TooShort { .. })
        ));
        let mut bad = good.clone();
        bad[0] = 0;
        assert!(matches!(validate(&bad), Err(FdtError::BadMagic(_))));
        // Truncated: the header claims more than we have.
        assert!(matches!(
            validate(&good[..good.len() - 1]),
            Err(FdtError::SizeBeyondBuffer { .. })
        ));
        // A property whose length runs past the structure block.
        let struct_off = u32::from_be_bytes(good[8..12].try_into().unwrap()) as usize;
        let mut bad = good.clone();
        // First token is BEGIN_NODE "" (8 bytes), then PROP len nameoff.
        bad[struct_off + 12..struct_off + 16].copy_from_slice(&0xffffu32.to_be_bytes());
        assert!(
            matches!(
                validate(&bad),
                Err(FdtError::Overrun {
                    what: "property value",
                    ..
                })
            ),
            "{:?}",
            validate(&bad)
        );
        // A name offset outside the strings block.
        let mut bad = good.clone();
        bad[struct_off + 16..struct_off + 20].copy_from_slice(&0x7777u32.to_be_bytes());
        assert!(matches!(
            validate(&bad),
            Err(FdtError::BadNameOffset {
                nameoff: 0x7777,
                ..
            })
        ));
        // An unknown token.
        let mut bad = good.clone();
        bad[struct_off..struct_off + 4].copy_from_slice(&7u32.to_be_bytes());
        assert!(matches!(
            validate(&bad),
            Err(FdtError::BadToken { token: 7, .. })
        ));
        // A structure block that ends early (no FDT_END): shrink size_dt_struct.
        let mut bad = good.clone();
        bad[36..40].copy_from_slice(&16u32.to_be_bytes());
        assert!(validate(&bad).is_err());
    }
}
