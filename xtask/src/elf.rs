//! Just enough ELF64 reading to turn the firmware ELF into a raw image and check it.

/// The loadable image described by an ELF file.
pub struct Image<'a> {
    bytes: &'a [u8],
    /// (file offset, file size, address, memory size) of each PT_LOAD segment.
    segments: Vec<(usize, usize, u64, u64)>,
    pub relocations: usize,
}

const EM_PPC64: u16 = 21;
const PT_LOAD: u32 = 1;
const SHT_RELA: u32 = 4;
const R_PPC64_RELATIVE: u64 = 22;

fn u16_at(b: &[u8], at: usize) -> Result<u16, String> {
    b.get(at..at + 2)
        .map(|s| u16::from_le_bytes([s[0], s[1]]))
        .ok_or_else(|| format!("truncated at {at:#x}"))
}

fn u32_at(b: &[u8], at: usize) -> Result<u32, String> {
    b.get(at..at + 4)
        .map(|s| u32::from_le_bytes(s.try_into().unwrap_or([0; 4])))
        .ok_or_else(|| format!("truncated at {at:#x}"))
}

fn u64_at(b: &[u8], at: usize) -> Result<u64, String> {
    b.get(at..at + 8)
        .map(|s| u64::from_le_bytes(s.try_into().unwrap_or([0; 8])))
        .ok_or_else(|| format!("truncated at {at:#x}"))
}

impl<'a> Image<'a> {
    /// Parses and checks: little-endian ELF64 for PPC64, linked at 0, only R_PPC64_RELATIVE
    /// relocations (the only kind the entry code applies).
    pub fn parse(bytes: &'a [u8]) -> Result<Image<'a>, String> {
        if bytes.get(..4) != Some(b"\x7fELF")
            || bytes.get(4) != Some(&2)
            || bytes.get(5) != Some(&1)
        {
            return Err("not a little-endian ELF64 file".into());
        }
        if u16_at(bytes, 18)? != EM_PPC64 {
            return Err("not a PPC64 ELF".into());
        }
        let (phoff, shoff) = (u64_at(bytes, 32)? as usize, u64_at(bytes, 40)? as usize);
        let (phentsize, phnum) = (u16_at(bytes, 54)? as usize, u16_at(bytes, 56)? as usize);
        let (shentsize, shnum) = (u16_at(bytes, 58)? as usize, u16_at(bytes, 60)? as usize);
        let mut segments = Vec::new();
        for i in 0..phnum {
            let p = phoff + i * phentsize;
            if u32_at(bytes, p)? == PT_LOAD {
                let off = u64_at(bytes, p + 8)? as usize;
                let paddr = u64_at(bytes, p + 24)?;
                let filesz = u64_at(bytes, p + 32)? as usize;
                let memsz = u64_at(bytes, p + 40)?;
                if bytes.get(off..off + filesz).is_none() {
                    return Err(format!("segment {i} lies outside the file"));
                }
                segments.push((off, filesz, paddr, memsz));
            }
        }
        if segments.iter().map(|s| s.2).min() != Some(0) {
            return Err("the image is not linked at address 0".into());
        }
        let mut relocations = 0;
        for i in 0..shnum {
            let s = shoff + i * shentsize;
            if u32_at(bytes, s + 4)? != SHT_RELA {
                continue;
            }
            let (off, size) = (
                u64_at(bytes, s + 24)? as usize,
                u64_at(bytes, s + 32)? as usize,
            );
            for r in (off..off + size).step_by(24) {
                let kind = u64_at(bytes, r + 8)? & 0xffff_ffff;
                if kind != R_PPC64_RELATIVE {
                    return Err(format!("relocation of type {kind} at {r:#x}: the entry code applies only R_PPC64_RELATIVE"));
                }
                relocations += 1;
            }
        }
        Ok(Image {
            bytes,
            segments,
            relocations,
        })
    }

    /// The segments' file contents laid out at their addresses from 0 (what `-bios` loads).
    pub fn raw_binary(&self) -> Vec<u8> {
        let len = self
            .segments
            .iter()
            .map(|s| s.2 as usize + s.1)
            .max()
            .unwrap_or(0);
        let mut out = vec![0u8; len];
        for &(off, filesz, paddr, _) in &self.segments {
            out[paddr as usize..paddr as usize + filesz]
                .copy_from_slice(&self.bytes[off..off + filesz]);
        }
        out
    }

    /// Bytes the image spans in memory, BSS included.
    pub fn memory_size(&self) -> u64 {
        self.segments.iter().map(|s| s.2 + s.3).max().unwrap_or(0)
    }
}
