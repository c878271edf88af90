//! Measured boot: what vioboot measures before the jump, as GRUB on POWER does (its
//! `2hash-ext-log` calls) and the TCG PC Client profile names it: the kernel and the initrd
//! file (their SHA-256 as loaded) into PCR 9, the command line (`kernel_cmdline: ...`, hashed
//! as that string) into PCR 8, each an EV_IPL event whose data is the path or the string. Each
//! is extended into every active bank vioboot can hash (SHA-256) and appended to a TCG2
//! crypto-agile event log for the kernel (`tpm::log`).

use super::load::Loaded;
use crate::dev::tpm::{self as ops, Tpm};
use crate::dev::DeviceError;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use tpm::cmd::Digest;
use tpm::log::{Log, EV_IPL};
use tpm::{TpmError, ALG_SHA256};
use vioboot_core::sha256;

/// The PCR GRUB measures commands and the kernel command line into.
pub const PCR_STRINGS: u32 = 8;
/// The PCR GRUB measures the files it loads into.
pub const PCR_FILES: u32 = 9;

/// One measurement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub pcr: u32,
    pub event_type: u32,
    pub sha256: [u8; 32],
    pub data: Vec<u8>,
}

/// Why a measurement failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MeasureError {
    /// A file was loaded without its digest (a bug: `load_measured` hashes both).
    NotHashed(&'static str),
    /// The TPM has no active SHA-256 bank: vioboot cannot extend any bank.
    NoSha256Bank,
    Device(DeviceError),
    Log(TpmError),
}

impl fmt::Display for MeasureError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MeasureError::NotHashed(what) => write!(f, "the {what} was not hashed"),
            MeasureError::NoSha256Bank => write!(f, "the TPM has no active SHA-256 bank"),
            MeasureError::Device(e) => e.fmt(f),
            MeasureError::Log(e) => write!(f, "event log: {e}"),
        }
    }
}

impl From<DeviceError> for MeasureError {
    fn from(e: DeviceError) -> Self {
        MeasureError::Device(e)
    }
}

/// The events for a loaded kernel, in the order they are extended.
pub fn events(l: &Loaded) -> Result<Vec<Event>, MeasureError> {
    let kernel = l.kernel_sha256.ok_or(MeasureError::NotHashed("kernel"))?;
    let mut v = alloc::vec![Event {
        pcr: PCR_FILES,
        event_type: EV_IPL,
        sha256: kernel,
        data: l.path.as_bytes().to_vec(),
    }];
    match (&l.initrd, &l.initrd_sha256) {
        (None, _) => {}
        (Some(_), None) => return Err(MeasureError::NotHashed("initrd")),
        (Some(_), Some((path, d))) => v.push(Event {
            pcr: PCR_FILES,
            event_type: EV_IPL,
            sha256: *d,
            data: path.as_bytes().to_vec(),
        }),
    }
    let cmdline = format!("kernel_cmdline: {}", l.cmdline);
    v.push(Event {
        pcr: PCR_STRINGS,
        event_type: EV_IPL,
        sha256: sha256::digest(cmdline.as_bytes()),
        data: cmdline.into_bytes(),
    });
    Ok(v)
}

/// What measuring did, for the report.
pub struct Measured {
    pub log: Vec<u8>,
    pub summary: String,
}

/// Starts the TPM if it is not, extends each event into the SHA-256 bank and logs it.
pub fn measure(t: &mut dyn Tpm, events: &[Event]) -> Result<Measured, MeasureError> {
    ops::startup(t)?;
    let banks = ops::banks(t)?;
    if ops::hashable(&banks).is_empty() {
        return Err(MeasureError::NoSha256Bank);
    }
    let mut log = Log::new(&[ALG_SHA256]).map_err(MeasureError::Log)?;
    for e in events {
        let d = Digest {
            alg: ALG_SHA256,
            bytes: e.sha256.to_vec(),
        };
        ops::extend(t, e.pcr, &[d])?;
        log.push(e.pcr, e.event_type, &[&e.sha256], &e.data)
            .map_err(MeasureError::Log)?;
    }
    let skipped: Vec<&str> = banks
        .iter()
        .filter(|b| b.active && b.alg != ALG_SHA256)
        .map(|b| tpm::alg_name(b.alg))
        .collect();
    let summary = format!(
        "{} events (kernel and initrd into PCR {PCR_FILES}, command line into PCR {PCR_STRINGS}) extended into sha256{}; event log {} bytes",
        events.len(),
        if skipped.is_empty() {
            String::new()
        } else {
            format!(" (not into {}: vioboot hashes SHA-256 only)", skipped.join(", "))
        },
        log.bytes().len()
    );
    Ok(Measured {
        log: log.bytes().to_vec(),
        summary,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use vioboot_core::ranges::Range;

    fn loaded(initrd: bool) -> Loaded {
        Loaded {
            kernel: Range { start: 0, end: 1 },
            entry_point: 0,
            initrd: initrd.then_some(Range { start: 8, end: 9 }),
            cmdline: "console=hvc0 quiet".into(),
            path: "/vmlinux".into(),
            bytes: 1,
            load_us: 1,
            kernel_sha256: Some([1; 32]),
            initrd_sha256: initrd.then(|| ("/initrd.img".into(), [2; 32])),
            event_log: None,
        }
    }

    #[test]
    fn kernel_initrd_and_command_line_as_grub_measures_them() {
        let e = events(&loaded(true)).unwrap();
        assert_eq!(e.len(), 3);
        assert_eq!(
            (e[0].pcr, e[0].sha256, &e[0].data[..]),
            (9, [1; 32], &b"/vmlinux"[..])
        );
        assert_eq!((e[1].pcr, &e[1].data[..]), (9, &b"/initrd.img"[..]));
        assert_eq!(e[2].pcr, 8);
        assert_eq!(e[2].data, b"kernel_cmdline: console=hvc0 quiet");
        assert_eq!(
            e[2].sha256,
            sha256::digest(b"kernel_cmdline: console=hvc0 quiet")
        );
        assert!(e.iter().all(|e| e.event_type == EV_IPL));
        assert_eq!(events(&loaded(false)).unwrap().len(), 2);
        let mut l = loaded(true);
        l.initrd_sha256 = None;
        assert_eq!(events(&l), Err(MeasureError::NotHashed("initrd")));
    }
}
