//! Reading little-endian 64-bit PowerPC ELF files, every offset and length checked: a kernel
//! before vioboot loads it ([`parse`]), and vioboot's own image when the build turns it into a
//! raw binary ([`relocations`], [`raw_binary`]).

use alloc::vec::Vec;
use core::fmt;

const EM_PPC64: u16 = 21;
const PT_LOAD: u32 = 1;
const SHT_RELA: u32 = 4;
/// Bytes of an ELF64 section header.
const SHDR_LEN: usize = 64;
/// Bytes of an Elf64_Rela entry.
const RELA_LEN: usize = 24;

/// Relocation type R_PPC64_RELATIVE: the load base plus the addend (the only type vioboot's
/// entry code applies to itself).
pub const R_PPC64_RELATIVE: u32 = 22;

/// A loadable segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    pub offset: u64,
    pub vaddr: u64,
    /// Physical address: where a raw image ([`raw_binary`]) puts the segment.
    pub paddr: u64,
    pub filesz: u64,
    pub memsz: u64,
}

/// One entry of a RELA section.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rela {
    /// Where the relocation applies (`r_offset`).
    pub offset: u64,
    /// The relocation type (the low 32 bits of `r_info`), e.g. [`R_PPC64_RELATIVE`].
    pub kind: u32,
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
    /// The section header table lies outside the file.
    BadSectionHeaders,
    /// A RELA section lies outside the file or ends in the middle of an entry.
    BadRelocations {
        section: usize,
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
            ElfError::BadSectionHeaders => write!(f, "section headers lie outside the file"),
            ElfError::BadRelocations { section } => write!(
                f,
                "relocation section {section} lies outside the file or ends mid-entry"
            ),
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

/// Checks the identification and machine of the ELF header at the start of `head`: a
/// little-endian ELF64 for 64-bit PowerPC.
fn check_ident(head: &[u8]) -> Result<(), ElfError> {
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
    let machine = u16_at(head, 18).ok_or(ElfError::NotElf)?;
    if machine != EM_PPC64 {
        return Err(ElfError::WrongMachine(machine));
    }
    Ok(())
}

/// Checks the ELF header and program headers in `head` (the file's first bytes) against a file
/// of `file_len` bytes.
pub fn parse(head: &[u8], file_len: u64) -> Result<Kernel, ElfError> {
    check_ident(head)?;
    let bad = ElfError::BadProgramHeaders;
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
            paddr: g(24)?,
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

/// The entries of every SHT_RELA section of a whole ELF `file`, in section order.
pub fn relocations(file: &[u8]) -> Result<Vec<Rela>, ElfError> {
    check_ident(file)?;
    let shoff = u64_at(file, 40).ok_or(ElfError::NotElf)?;
    let shentsize = usize::from(u16_at(file, 58).ok_or(ElfError::NotElf)?);
    let shnum = usize::from(u16_at(file, 60).ok_or(ElfError::NotElf)?);
    if shnum == 0 {
        return Ok(Vec::new());
    }
    let table_end = usize::try_from(shoff).ok().and_then(|start| {
        shentsize
            .checked_mul(shnum)
            .and_then(|n| n.checked_add(start))
    });
    if shentsize < SHDR_LEN || table_end.is_none_or(|end| end > file.len()) {
        return Err(ElfError::BadSectionHeaders);
    }
    let mut out = Vec::new();
    for i in 0..shnum {
        let sh = shoff as usize + i * shentsize;
        if u32_at(file, sh + 4) != Some(SHT_RELA) {
            continue;
        }
        let bad = || ElfError::BadRelocations { section: i };
        let field = |at: usize| u64_at(file, sh + at).and_then(|v| usize::try_from(v).ok());
        let (offset, size) = (field(24).ok_or_else(bad)?, field(32).ok_or_else(bad)?);
        if !size.is_multiple_of(RELA_LEN) {
            return Err(bad());
        }
        let entries = offset
            .checked_add(size)
            .and_then(|end| file.get(offset..end))
            .ok_or_else(bad)?;
        for e in entries.chunks_exact(RELA_LEN) {
            out.push(Rela {
                offset: u64_at(e, 0).ok_or_else(bad)?,
                kind: u64_at(e, 8).ok_or_else(bad)? as u32,
            });
        }
    }
    Ok(out)
}

/// The file bytes of `segments` (read from `file`, e.g. a [`Kernel`]'s) laid out by physical
/// address from 0, with zeros between them: a raw image such as QEMU's `-bios` loads. It ends
/// with the last file byte; the zero-filled rest of each segment (BSS) is not stored. An error
/// names a segment by its index in `segments`.
pub fn raw_binary(file: &[u8], segments: &[Segment]) -> Result<Vec<u8>, ElfError> {
    let mut len = 0u64;
    for (index, s) in segments.iter().enumerate() {
        let end = s
            .paddr
            .checked_add(s.filesz)
            .ok_or(ElfError::SegmentWraps { index })?;
        len = len.max(end);
    }
    if len > MAX_SPAN {
        return Err(ElfError::TooLarge { span: len });
    }
    // Every `paddr + filesz` is at most MAX_SPAN, so the conversions below cannot truncate.
    let mut out = alloc::vec![0u8; len as usize];
    for (index, s) in segments.iter().enumerate() {
        let outside = || ElfError::SegmentOutsideFile { index };
        let (at, n) = (s.paddr as usize, s.filesz as usize);
        let bytes = usize::try_from(s.offset)
            .ok()
            .and_then(|from| file.get(from..from.checked_add(n)?))
            .ok_or_else(outside)?;
        out.get_mut(at..at + n)
            .ok_or_else(outside)?
            .copy_from_slice(bytes);
    }
    Ok(out)
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

    #[test]
    fn reads_the_physical_address() {
        let mut f = build_test_elf(EM_PPC64, 0x1000, &[0; 64]);
        f[64 + 24..64 + 32].copy_from_slice(&0x20_0000u64.to_le_bytes());
        let k = parse(&f, f.len() as u64).unwrap();
        assert_eq!(
            (k.segments[0].vaddr, k.segments[0].paddr),
            (0x1000, 0x20_0000)
        );
    }

    const SHOFF: usize = 40;
    const SHNUM: usize = 60;

    /// A test ELF with a RELA section of relocations of `kinds` (each with a symbol index in the
    /// upper half of `r_info`) and a section header table after it: [null, RELA].
    fn with_relocations(kinds: &[u32]) -> Vec<u8> {
        let mut v = build_test_elf(EM_PPC64, 0, &[0; 64]);
        let rela_at = v.len() as u64;
        for (i, &k) in kinds.iter().enumerate() {
            v.extend_from_slice(&(0x100 + 8 * i as u64).to_le_bytes());
            v.extend_from_slice(&(7u64 << 32 | u64::from(k)).to_le_bytes());
            v.extend_from_slice(&0x40u64.to_le_bytes());
        }
        let shoff = v.len() as u64;
        v.extend_from_slice(&[0; SHDR_LEN]);
        let mut sh = [0u8; SHDR_LEN];
        sh[4..8].copy_from_slice(&SHT_RELA.to_le_bytes());
        sh[24..32].copy_from_slice(&rela_at.to_le_bytes());
        sh[32..40].copy_from_slice(&((kinds.len() * RELA_LEN) as u64).to_le_bytes());
        sh[56..64].copy_from_slice(&(RELA_LEN as u64).to_le_bytes());
        v.extend_from_slice(&sh);
        v[SHOFF..SHOFF + 8].copy_from_slice(&shoff.to_le_bytes());
        v[58..60].copy_from_slice(&(SHDR_LEN as u16).to_le_bytes());
        v[SHNUM..SHNUM + 2].copy_from_slice(&2u16.to_le_bytes());
        v
    }

    /// File offset of the RELA section's header in a [`with_relocations`] file.
    fn rela_header(f: &[u8]) -> usize {
        u64_at(f, SHOFF).unwrap() as usize + SHDR_LEN
    }

    #[test]
    fn reads_relocation_types() {
        let f = with_relocations(&[R_PPC64_RELATIVE, R_PPC64_RELATIVE, 1]);
        let r = relocations(&f).unwrap();
        let kinds: Vec<u32> = r.iter().map(|r| r.kind).collect();
        assert_eq!(kinds, [R_PPC64_RELATIVE, R_PPC64_RELATIVE, 1]);
        assert_eq!(r[1].offset, 0x108);
        // No section headers: nothing to relocate.
        let plain = build_test_elf(EM_PPC64, 0, &[0; 64]);
        assert_eq!(relocations(&plain), Ok(Vec::new()));
        // The header checks come first.
        let x86 = build_test_elf(62, 0, &[0; 64]);
        assert_eq!(relocations(&x86), Err(ElfError::WrongMachine(62)));
    }

    #[test]
    fn refuses_section_tables_and_relocations_outside_the_file() {
        let good = with_relocations(&[R_PPC64_RELATIVE; 2]);
        let set = |at: usize, value: &[u8]| {
            let mut f = good.clone();
            f[at..at + value.len()].copy_from_slice(value);
            relocations(&f)
        };
        let table = Err(ElfError::BadSectionHeaders);
        assert_eq!(set(SHOFF, &u64::MAX.to_le_bytes()), table);
        assert_eq!(set(SHOFF, &(good.len() as u64 - 8).to_le_bytes()), table);
        assert_eq!(set(SHNUM, &u16::MAX.to_le_bytes()), table);
        assert_eq!(set(58, &8u16.to_le_bytes()), table);
        let rela = Err(ElfError::BadRelocations { section: 1 });
        let sh = rela_header(&good);
        assert_eq!(set(sh + 24, &u64::MAX.to_le_bytes()), rela);
        assert_eq!(set(sh + 24, &(good.len() as u64).to_le_bytes()), rela);
        assert_eq!(set(sh + 32, &u64::MAX.to_le_bytes()), rela);
        assert_eq!(set(sh + 32, &(2 * RELA_LEN as u64 + 1).to_le_bytes()), rela);
        assert_eq!(set(sh + 32, &(1u64 << 20).to_le_bytes()), rela);
    }

    #[test]
    fn lays_out_a_raw_binary_by_physical_address() {
        let file = [1u8, 2, 3, 4, 5, 6, 7, 8];
        let seg = |offset, paddr, filesz, memsz| Segment {
            offset,
            vaddr: 0xc000_0000_0000_0000 + paddr,
            paddr,
            filesz,
            memsz,
        };
        let out = raw_binary(&file, &[seg(0, 0, 4, 4), seg(6, 0x10, 2, 0x100)]).unwrap();
        let mut want = [0u8; 0x12];
        want[..4].copy_from_slice(&[1, 2, 3, 4]);
        want[0x10..].copy_from_slice(&[7, 8]);
        assert_eq!(out, want);
        // A segment with no file bytes still ends the image at its address (as the BSS does).
        let out = raw_binary(&file, &[seg(0, 0, 2, 2), seg(8, 0x20, 0, 0x40)]).unwrap();
        assert_eq!(out.len(), 0x20);
        assert_eq!(raw_binary(&file, &[]), Ok(Vec::new()));
    }

    #[test]
    fn a_raw_binary_refuses_what_does_not_fit() {
        let file = [0u8; 16];
        let seg = |offset, paddr, filesz| Segment {
            offset,
            vaddr: paddr,
            paddr,
            filesz,
            memsz: filesz,
        };
        let ok = seg(0, 0, 16);
        assert_eq!(
            raw_binary(&file, &[ok, seg(8, 0x100, 9)]),
            Err(ElfError::SegmentOutsideFile { index: 1 })
        );
        assert_eq!(
            raw_binary(&file, &[seg(u64::MAX, 0, 2)]),
            Err(ElfError::SegmentOutsideFile { index: 0 })
        );
        assert_eq!(
            raw_binary(&file, &[ok, seg(0, u64::MAX, 1)]),
            Err(ElfError::SegmentWraps { index: 1 })
        );
        assert_eq!(
            raw_binary(&file, &[seg(0, MAX_SPAN, 1)]),
            Err(ElfError::TooLarge { span: MAX_SPAN + 1 })
        );
    }

    #[test]
    fn truncated_or_corrupted_files_are_errors_not_panics() {
        let good = with_relocations(&[R_PPC64_RELATIVE, 9]);
        let try_all = |f: &[u8]| {
            let _ = relocations(f);
            for file_len in [f.len() as u64, good.len() as u64, u64::MAX] {
                if let Ok(k) = parse(f, file_len) {
                    let _ = raw_binary(f, &k.segments);
                }
            }
        };
        for len in 0..=good.len() {
            try_all(&good[..len]);
        }
        for at in 0..good.len() {
            for value in [0x00, 0x7F, 0x80, 0xFF] {
                let mut f = good.clone();
                f[at] = value;
                try_all(&f);
            }
        }
    }
}
