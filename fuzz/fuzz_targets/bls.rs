//! Boot Loader Specification entries and loader.conf from a share or disk: parsing, version
//! comparison, ordering, hiding, menu titles and the default glob (fnmatch classes included).
//! The input is split into a loader.conf and several entries at NUL bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vioboot_core::bls;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.split('\0');
    let conf = bls::parse_loader_conf(parts.next().unwrap_or(""));
    let mut entries: Vec<bls::Entry> = parts
        .take(16)
        .enumerate()
        .map(|(i, t)| bls::parse_entry(&format!("e{i}.conf"), t))
        .collect();
    for e in &entries {
        let _ = (e.hidden(), e.unused(), e.is_bad());
    }
    bls::sort(&mut entries);
    let _ = bls::menu_titles(&entries);
    let _ = bls::default_index(&entries, conf.default.as_deref());
    if let [a, b, ..] = entries.as_slice() {
        let _ = bls::vercmp(
            a.version.as_deref().unwrap_or(""),
            b.version.as_deref().unwrap_or(""),
        );
        let _ = bls::glob(a.display_title(), &b.id);
    }
});
