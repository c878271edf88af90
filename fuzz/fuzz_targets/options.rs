//! The boot arguments: any bytes the firmware's `/chosen/bootargs` may hold.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vioboot_core::options;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (opts, errors) = options::parse(&text);
    let _ = opts.kernel_args.join(" ");
    for e in errors {
        let _ = e.to_string();
    }
});
