//! A kernel (or firmware image) ELF: the kernel checks on its head with a claimed file size,
//! and the relocation and raw-image readers on the whole file.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vioboot_core::elf;

fuzz_target!(|data: &[u8]| {
    // The first 8 bytes claim the file's size (a share reports it; the head may be shorter).
    let (claimed, file) = match data.split_first_chunk::<8>() {
        Some((c, rest)) => (u64::from_le_bytes(*c), rest),
        None => (data.len() as u64, data),
    };
    let head = &file[..file.len().min(elf::HEAD_BYTES)];
    for len in [file.len() as u64, claimed] {
        if let Ok(k) = elf::parse(head, len) {
            assert!(k.span <= elf::MAX_SPAN);
            assert!(k.entry_offset() < k.span);
            if len == file.len() as u64 {
                let _ = elf::raw_binary(file, &k.segments);
            }
        }
    }
    let _ = elf::relocations(file);
});
