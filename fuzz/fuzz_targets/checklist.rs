//! A share's check list (`/vioboot-checks.txt`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use vioboot_core::checks;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (list, bad) = checks::parse(&text);
    for b in bad {
        let _ = b.to_string();
    }
    let _ = list.len();
});
