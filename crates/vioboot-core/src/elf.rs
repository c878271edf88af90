//! Checking a kernel ELF before loading it: a little-endian 64-bit PowerPC executable whose
//! program headers and loadable segments all lie within the file and the address space.

use alloc::vec::Vec;
use core::fmt;

const EM_PPC64: u16 = 21;
const PT_LOAD: u32 = 1;

/// A loadable segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    pub offset: u64,
    pub vaddr: u64,
    pub filesz: u64,
    pub memsz: u64,
}

/// What a checked kernel needs from the loader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kernel {
    pub entry: u64,
    pub segments: Vec<Segment>,
    /// Lowest virtual address of any segment: the image's base.
    pub base: u64,
    /// Bytes from `base` to the end of the highest segment.
    pub span: u64,
}

impl Kernel {
    /// The entry point as an offset from the image's base.
    pub fn entry_offset(&self) -> u64 {
        self.entry - self.base
    }
}

/// Why a file is not a kernel vioboot can load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ElfError {
    TooShort {
        len: usize,
    },
    NotElf,
    Not64Bit,
    BigEndian,
    /// Another architecture (62 is x86-64).
    WrongMachine(u16),
    /// Not an executable or position-independent image (e.g. a relocatable object).
    WrongType(u16),
    BadProgramHeaders,
    SegmentOutsideFile {
        index: usize,
    },
    SegmentWraps {
        index: usize,
    },
    MemszBelowFilesz {
        index: usize,
    },
    NoLoadableSegment,
    EntryOutsideImage {
        entry: u64,
    },
    /// Larger than vioboot will load.
    TooLarge {
        span: u64,
    },
}

impl fmt::Display for ElfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ElfError::TooShort { len } => write!(f, "{len} bytes is too short for an ELF header"),
            ElfError::NotElf => write!(f, "not an ELF file"),
            ElfError::Not64Bit => write!(f, "not a 64-bit ELF"),
            ElfError::BigEndian => {
                write!(f, "a big-endian ELF (vioboot boots little-endian kernels)")
            }
            ElfError::WrongMachine(62) => write!(f, "an x86-64 ELF, not PowerPC 64"),
            ElfError::WrongMachine(m) => write!(f, "ELF machine {m}, not PowerPC 64 (21)"),
            ElfError::WrongType(t) => write!(f, "ELF type {t} is not an executable"),
            ElfError::BadProgramHeaders => write!(f, "program headers lie outside the file"),
            ElfError::SegmentOutsideFile { index } => {
                write!(f, "segment {index} lies outside the file")
            }
            ElfError::SegmentWraps { index } => {
                write!(f, "segment {index} wraps the address space")
            }
            ElfError::MemszBelowFilesz { index } => {
                write!(f, "segment {index} has memsz below filesz")
            }
            ElfError::NoLoadableSegment => write!(f, "no loadable segment"),
            ElfError::EntryOutsideImage { entry } => {
                write!(f, "entry point {entry:#x} lies outside the loaded image")
            }
            ElfError::TooLarge { span } => {
                write!(f, "image spans {span:#x} bytes, more than vioboot loads")
            }
        }
    }
}

/// Largest image span vioboot loads.
pub const MAX_SPAN: u64 = 512 << 20;
/// Bytes of the file the header and program headers must fit in (vioboot reads this much first).
pub const HEAD_BYTES: usize = 64 * 1024;

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// Checks the ELF header and program headers in `head` (the file's first bytes) against a file
/// of `file_len` bytes.
pub fn parse(head: &[u8], file_len: u64) -> Result<Kernel, ElfError> {
    if head.len() < 64 {
        return Err(ElfError::TooShort { len: head.len() });
    }
    if &head[..4] != b"\x7fELF" {
        return Err(ElfError::NotElf);
    }
    if head[4] != 2 {
        return Err(ElfError::Not64Bit);
    }
    if head[5] != 1 {
        return Err(ElfError::BigEndian);
    }
    let bad = ElfError::BadProgramHeaders;
    let machine = u16_at(head, 18).ok_or(ElfError::NotElf)?;
    if machine != EM_PPC64 {
        return Err(ElfError::WrongMachine(machine));
    }
    let kind = u16_at(head, 16).ok_or(ElfError::NotElf)?;
    if kind != 2 && kind != 3 {
        return Err(ElfError::WrongType(kind));
    }
    let entry = u64_at(head, 24).ok_or(ElfError::NotElf)?;
    let phoff = u64_at(head, 32).ok_or(ElfError::NotElf)? as usize;
    let phentsize = u16_at(head, 54).ok_or(ElfError::NotElf)? as usize;
    let phnum = u16_at(head, 56).ok_or(ElfError::NotElf)? as usize;
    if phentsize < 56 || phnum == 0 {
        return Err(bad);
    }
    let end = phoff
        .checked_add(
            phentsize
                .checked_mul(phnum)
                .ok_or(ElfError::BadProgramHeaders)?,
        )
        .ok_or(ElfError::BadProgramHeaders)?;
    if end > head.len() || end as u64 > file_len {
        return Err(bad);
    }
    let mut segments = Vec::new();
    for i in 0..phnum {
        let p = phoff + i * phentsize;
        if u32_at(head, p) != Some(PT_LOAD) {
            continue;
        }
        let g = |at: usize| u64_at(head, p + at).ok_or(ElfError::BadProgramHeaders);
        let s = Segment {
            offset: g(8)?,
            vaddr: g(16)?,
            filesz: g(32)?,
            memsz: g(40)?,
        };
        if s.offset.checked_add(s.filesz).is_none_or(|e| e > file_len) {
            return Err(ElfError::SegmentOutsideFile { index: i });
        }
        if s.vaddr.checked_add(s.memsz).is_none() {
            return Err(ElfError::SegmentWraps { index: i });
        }
        if s.memsz < s.filesz {
            return Err(ElfError::MemszBelowFilesz { index: i });
        }
        if s.memsz > 0 {
            segments.push(s);
        }
    }
    let base = segments
        .iter()
        .map(|s| s.vaddr)
        .min()
        .ok_or(ElfError::NoLoadableSegment)?;
    let top = segments
        .iter()
        .map(|s| s.vaddr + s.memsz)
        .max()
        .unwrap_or(base);
    let span = top - base;
    if span > MAX_SPAN {
        return Err(ElfError::TooLarge { span });
    }
    if !(base..top).contains(&entry) {
        return Err(ElfError::EntryOutsideImage { entry });
    }
    Ok(Kernel {
        entry,
        segments,
        base,
        span,
    })
}

/// A minimal ELF for tests: one PT_LOAD segment of `body` at `vaddr`, entry at its start.
pub fn build_test_elf(machine: u16, vaddr: u64, body: &[u8]) -> Vec<u8> {
    let mut v = alloc::vec![0u8; 0x100];
    v[..4].copy_from_slice(b"\x7fELF");
    v[4] = 2;
    v[5] = 1;
    v[6] = 1;
    v[16..18].copy_from_slice(&2u16.to_le_bytes());
    v[18..20].copy_from_slice(&machine.to_le_bytes());
    v[24..32].copy_from_slice(&vaddr.to_le_bytes());
    v[32..40].copy_from_slice(&64u64.to_le_bytes());
    v[52..54].copy_from_slice(&64u16.to_le_bytes());
    v[54..56].copy_from_slice(&56u16.to_le_bytes());
    v[56..58].copy_from_slice(&1u16.to_le_bytes());
    let p = 64;
    v[p..p + 4].copy_from_slice(&PT_LOAD.to_le_bytes());
    v[p + 8..p + 16].copy_from_slice(&0x100u64.to_le_bytes());
    v[p + 16..p + 24].copy_from_slice(&vaddr.to_le_bytes());
    v[p + 24..p + 32].copy_from_slice(&vaddr.to_le_bytes());
    v[p + 32..p + 40].copy_from_slice(&(body.len() as u64).to_le_bytes());
    v[p + 40..p + 48].copy_from_slice(&(body.len() as u64 + 0x1000).to_le_bytes());
    v.extend_from_slice(body);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_a_ppc64le_kernel() {
        let f = build_test_elf(EM_PPC64, 0xc000_0000_0000_0000, &[0x60; 64]);
        let k = parse(&f, f.len() as u64).unwrap();
        assert_eq!(k.base, 0xc000_0000_0000_0000);
        assert_eq!(k.span, 64 + 0x1000);
        assert_eq!(k.entry_offset(), 0);
    }

    #[test]
    fn names_what_is_wrong() {
        let good = build_test_elf(EM_PPC64, 0, &[0; 64]);
        let x86 = build_test_elf(62, 0, &[0; 64]);
        assert_eq!(
            parse(&x86, x86.len() as u64),
            Err(ElfError::WrongMachine(62))
        );
        assert_eq!(
            parse(b"#!/bin/sh\n", 10),
            Err(ElfError::TooShort { len: 10 })
        );
        assert_eq!(parse(&[0u8; 64], 64), Err(ElfError::NotElf));
        let mut be = good.clone();
        be[5] = 2;
        assert_eq!(parse(&be, be.len() as u64), Err(ElfError::BigEndian));
        // Truncated file: the segment runs past its end.
        assert_eq!(
            parse(&good, good.len() as u64 - 1),
            Err(ElfError::SegmentOutsideFile { index: 0 })
        );
        let mut rel = good.clone();
        rel[16] = 1;
        assert_eq!(parse(&rel, rel.len() as u64), Err(ElfError::WrongType(1)));
        let mut ent = good.clone();
        ent[24..32].copy_from_slice(&0x9999_0000u64.to_le_bytes());
        assert!(matches!(
            parse(&ent, ent.len() as u64),
            Err(ElfError::EntryOutsideImage { .. })
        ));
        let mut wrap = good;
        wrap[64 + 16..64 + 24].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(matches!(
            parse(&wrap, wrap.len() as u64),
            Err(ElfError::SegmentWraps { .. })
        ));
    }
}
