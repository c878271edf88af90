//! The vTPM checks: Startup, what the TPM is (manufacturer, family, active banks), and an
//! extend round trip on PCR 16 (the debug PCR, which Linux and the boot chain leave alone):
//! read, extend with a known digest, read again, and compare with vioboot's own SHA-256.

use crate::dev::tpm::{self, Tpm};
use crate::report::Scope;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use vioboot_core::sha256;

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
    let names: Vec<String> = banks
        .iter()
        .map(|b| {
            let name = ::tpm::alg_name(b.alg);
            match (b.active, b.alg == ::tpm::ALG_SHA256) {
                (false, _) => format!("{name} inactive"),
                (true, true) => format!("{name} active"),
                (true, false) => {
                    format!("{name} active (not extended: vioboot hashes SHA-256 only)")
                }
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
    if tpm::hashable(&banks).is_empty() {
        return s.fail(
            "extend",
            &"no active SHA-256 bank: vioboot cannot extend any bank",
        );
    }
    match round_trip(t) {
        Ok(detail) => s.pass("extend", format_args!("{detail}")),
        Err(e) => s.fail("extend", &e),
    }
}

fn round_trip(t: &mut dyn Tpm) -> Result<String, crate::dev::DeviceError> {
    let alg = ::tpm::ALG_SHA256;
    let old = tpm::read(t, TEST_PCR, alg)?;
    let d = sha256::digest(b"vioboot smoke test: extend round trip");
    tpm::extend(
        t,
        TEST_PCR,
        &[::tpm::cmd::Digest {
            alg,
            bytes: d.to_vec(),
        }],
    )?;
    let new = tpm::read(t, TEST_PCR, alg)?;
    let want = tpm::sha256_extended(&old, &d);
    if new[..] != want[..] {
        return Err(crate::dev::DeviceError::TpmCommand {
            device: t.name().into(),
            op: "PCR 16 round trip",
            error: ::tpm::TpmError::Unexpected {
                what: "PCR value after extend (first word)",
                got: u32::from_be_bytes([new[0], new[1], new[2], new[3]]),
            },
        });
    }
    Ok(format!(
        "PCR {TEST_PCR} sha256 {}.. extended to {}.. as computed",
        &sha256::hex(&old.as_slice().try_into().unwrap_or([0; 32]))[..16],
        &sha256::hex(&want)[..16]
    ))
}
