//! The vTPM checks: Startup, what the TPM is (manufacturer, family, active banks), and an
//! extend round trip on PCR 16 (the debug PCR, which Linux and the boot chain leave alone):
//! read, extend every active bank vioboot hashes with a known digest each, read again, and
//! compare with vioboot's own computation.

use crate::dev::tpm::{self, Tpm};
use crate::loader::digest;
use crate::report::Scope;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

/// The debug PCR the round trip extends.
pub const TEST_PCR: u32 = 16;

pub fn run(s: &Scope, t: &mut dyn Tpm) {
    let started = match tpm::startup(t) {
        Ok(true) => "Startup(SU_CLEAR) done",
        Ok(false) => "already started",
        Err(e) => return s.fail("tpm", &e),
    };
    let id = match tpm::identity(t) {
        Ok(i) => i,
        Err(e) => return s.fail("tpm", &e),
    };
    let banks = match tpm::banks(t) {
        Ok(b) => b,
        Err(e) => return s.fail("tpm", &e),
    };
    let hashable = tpm::hashable(&banks);
    let names: Vec<String> = banks
        .iter()
        .map(|b| {
            let name = ::tpm::alg_name(b.alg);
            match (b.active, hashable.contains(&b.alg)) {
                (false, _) => format!("{name} inactive"),
                (true, true) => format!("{name} active"),
                (true, false) => format!("{name} active (not extended: vioboot cannot hash it)"),
            }
        })
        .collect();
    s.pass(
        "tpm",
        format_args!(
            "manufacturer \"{}\", family \"{}\", firmware {:#x}, {}; banks: {}",
            id.manufacturer,
            id.family,
            id.firmware,
            started,
            names.join(", ")
        ),
    );
    if hashable.is_empty() {
        return s.fail(
            "extend",
            &"no active bank vioboot can hash: it cannot extend any",
        );
    }
    match round_trip(t, &hashable) {
        Ok(detail) => s.pass("extend", format_args!("{detail}")),
        Err(e) => s.fail("extend", &e),
    }
}

/// Extends PCR 16 in every bank of `algs` at once and checks each bank's new value.
fn round_trip(t: &mut dyn Tpm, algs: &[u16]) -> Result<String, crate::dev::DeviceError> {
    let mut old = Vec::new();
    for &alg in algs {
        old.push(tpm::read(t, TEST_PCR, alg)?);
    }
    let digests = digest::digests(algs, b"vioboot smoke test: extend round trip");
    tpm::extend(t, TEST_PCR, &digests)?;
    let mut done = Vec::new();
    for ((&alg, old), d) in algs.iter().zip(&old).zip(&digests) {
        let new = tpm::read(t, TEST_PCR, alg)?;
        let want = digest::extended(alg, old, &d.bytes).unwrap_or_default();
        if new != want {
            return Err(crate::dev::DeviceError::TpmCommand {
                device: t.name().into(),
                op: "PCR 16 round trip",
                error: ::tpm::TpmError::Unexpected {
                    what: "PCR value after extend (first word)",
                    got: new
                        .get(..4)
                        .map_or(0, |w| u32::from_be_bytes([w[0], w[1], w[2], w[3]])),
                },
            });
        }
        if alg == ::tpm::ALG_SHA256 {
            done.insert(
                0,
                format!(
                    "PCR {TEST_PCR} sha256 {}.. extended to {}.. as computed",
                    hex8(old),
                    hex8(&want)
                ),
            );
        } else {
            done.push(String::from(::tpm::alg_name(alg)));
        }
    }
    let first = if done.is_empty() {
        String::new()
    } else {
        done.remove(0)
    };
    Ok(if done.is_empty() {
        first
    } else {
        format!("{first}; {} likewise", done.join(", "))
    })
}

/// The first eight bytes of `b` in hex.
fn hex8(b: &[u8]) -> String {
    b.iter().take(8).map(|x| format!("{x:02x}")).collect()
}
