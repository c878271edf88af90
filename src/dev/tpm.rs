//! A TPM 2.0 as the checks and the measured boot see it: a [`Tpm`] runs commands, and the
//! functions here build them with the `tpm` crate and check every response.

use super::{Device, DeviceError};
use alloc::string::String;
use alloc::vec::Vec;
use tpm::cmd::{self, Bank, Digest};
use tpm::TpmError;

/// A TPM 2.0: commands in, responses out (their TPM header unchecked: the functions below
/// check it).
pub trait Tpm: Device {
    /// Runs one command; `op` names it in an error.
    fn command(&mut self, op: &'static str, cmd: &[u8]) -> Result<Vec<u8>, DeviceError>;
    /// The largest command and response the TPM takes.
    fn buffer_size(&self) -> usize;
    fn as_device(&mut self) -> &mut dyn Device;
}

fn run<T>(
    t: &mut dyn Tpm,
    op: &'static str,
    c: &[u8],
    parse: impl FnOnce(&[u8], usize) -> Result<T, TpmError>,
) -> Result<T, DeviceError> {
    let r = t.command(op, c)?;
    parse(&r, t.buffer_size()).map_err(|error| DeviceError::TpmCommand {
        device: t.name().into(),
        op,
        error,
    })
}

fn built<T>(t: &dyn Tpm, op: &'static str, r: Result<T, TpmError>) -> Result<T, DeviceError> {
    r.map_err(|error| DeviceError::TpmCommand {
        device: t.name().into(),
        op,
        error,
    })
}

/// TPM2_Startup(SU_CLEAR): `true` if this started it, `false` if it was started already.
pub fn startup(t: &mut dyn Tpm) -> Result<bool, DeviceError> {
    run(t, "TPM2_Startup", &cmd::startup(), cmd::parse_startup)
}

/// Every PCR bank, and which are active.
pub fn banks(t: &mut dyn Tpm) -> Result<Vec<Bank>, DeviceError> {
    let c = cmd::get_capability(cmd::CAP_PCRS, 0, 1);
    run(t, "TPM2_GetCapability(PCRS)", &c, cmd::parse_pcrs)
}

/// What the TPM says it is: manufacturer, family, firmware version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub manufacturer: String,
    pub family: String,
    pub firmware: u32,
}

pub fn identity(t: &mut dyn Tpm) -> Result<Identity, DeviceError> {
    let c = cmd::get_capability(cmd::CAP_TPM_PROPERTIES, cmd::PT_FAMILY_INDICATOR, 16);
    let props = run(
        t,
        "TPM2_GetCapability(TPM_PROPERTIES)",
        &c,
        cmd::parse_properties,
    )?;
    let get = |p| props.iter().find(|x| x.0 == p).map(|x| x.1);
    Ok(Identity {
        manufacturer: get(cmd::PT_MANUFACTURER)
            .map(cmd::manufacturer)
            .unwrap_or_else(|| "(none)".into()),
        family: get(cmd::PT_FAMILY_INDICATOR)
            .map(cmd::manufacturer)
            .unwrap_or_else(|| "(none)".into()),
        firmware: get(cmd::PT_FIRMWARE_VERSION_1).unwrap_or(0),
    })
}

/// The banks vioboot can hash (SHA-1, SHA-256, SHA-384, SHA-512) among the active ones.
pub fn hashable(banks: &[Bank]) -> Vec<u16> {
    banks
        .iter()
        .filter(|b| b.active && crate::loader::digest::ALGORITHMS.contains(&b.alg))
        .map(|b| b.alg)
        .collect()
}

/// PCR_Extend of `pcr` with one digest per bank given.
pub fn extend(t: &mut dyn Tpm, pcr: u32, digests: &[Digest]) -> Result<(), DeviceError> {
    let c = built(t, "TPM2_PCR_Extend", cmd::pcr_extend(pcr, digests))?;
    run(t, "TPM2_PCR_Extend", &c, cmd::parse_extend)
}

/// PCR_Read of `pcr` in bank `alg`.
pub fn read(t: &mut dyn Tpm, pcr: u32, alg: u16) -> Result<Vec<u8>, DeviceError> {
    let c = built(t, "TPM2_PCR_Read", cmd::pcr_read(pcr, alg))?;
    run(t, "TPM2_PCR_Read", &c, |b, n| {
        cmd::parse_pcr_read(b, n, pcr, alg)
    })
}
