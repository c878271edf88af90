//! vioboot's boot path, start to finish: entry, console, memory, device tree, inventory, the
//! smoke checks, and the exit protocol. Each step logs what it did; each check is a TAP line.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!(
        "vioboot is firmware: build it with `cargo xtask image`, boot it with `cargo xtask run`"
    );
    std::process::exit(2);
}

#[cfg(target_os = "none")]
mod boot;
