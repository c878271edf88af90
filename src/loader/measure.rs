//! Measured boot: what vioboot measures before the jump, as GRUB on POWER does (its
//! `2hash-ext-log` calls) and the TCG PC Client profile names it: the kernel and the initrd
//! file (their digests as loaded) into PCR 9, the command line (`kernel_cmdline: ...`, hashed
//! as that string) into PCR 8, each an EV_IPL event whose data is the path or the string. Each
//! is extended into every active bank (SHA-1, SHA-256, SHA-384, SHA-512: [`super::digest`])
//! and appended to a TCG2 crypto-agile event log for the kernel (`tpm::log`) naming them all.

use super::load::Loaded;
use crate::dev::fs::FsError;
use crate::dev::tpm::{self as ops, Tpm};
use crate::dev::{DeviceError, FileSystem};
use crate::firmware::{Firmware, FirmwareError};
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use tpm::cmd::Digest;
use tpm::log::{Log, EV_IPL};
use tpm::{TpmError, ALG_SHA256};
use vioboot_core::ranges::Range;
use vioboot_core::sha256;

/// The PCR GRUB measures commands and the kernel command line into.
pub const PCR_STRINGS: u32 = 8;
/// The PCR GRUB measures the files it loads into.
pub const PCR_FILES: u32 = 9;

/// One measurement: its digest in each bank measured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub pcr: u32,
    pub event_type: u32,
    pub digests: Vec<Digest>,
    pub data: Vec<u8>,
}

/// Why a measurement failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MeasureError {
    /// A file was loaded without its digest (a bug: `load_measured` hashes both).
    NotHashed(&'static str),
    /// The TPM has no active bank vioboot can hash (SHA-256 must be one).
    NoSha256Bank,
    /// A bank the files were hashed for is not active any more.
    BankGone(u16),
    Device(DeviceError),
    Log(TpmError),
    /// The firmware that keeps the log could not measure.
    Firmware(FirmwareError),
    /// Reading the kernel again, to hand it whole to the firmware, failed.
    Reread {
        path: String,
        error: alloc::boxed::Box<FsError>,
    },
    /// The file read again differs from the one loaded (size or SHA-256).
    Changed {
        path: String,
    },
}

impl From<FirmwareError> for MeasureError {
    fn from(e: FirmwareError) -> Self {
        MeasureError::Firmware(e)
    }
}

impl fmt::Display for MeasureError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MeasureError::NotHashed(what) => write!(f, "the {what} was not hashed"),
            MeasureError::NoSha256Bank => write!(f, "the TPM has no active SHA-256 bank"),
            MeasureError::BankGone(a) => write!(
                f,
                "the TPM's {} bank, hashed for at load, is no longer active",
                tpm::alg_name(*a)
            ),
            MeasureError::Device(e) => e.fmt(f),
            MeasureError::Log(e) => write!(f, "event log: {e}"),
            MeasureError::Firmware(e) => e.fmt(f),
            MeasureError::Reread { path, error } => {
                write!(f, "{path}: reading it again to measure it: {error}")
            }
            MeasureError::Changed { path } => write!(
                f,
                "{path}: read again to measure it, it differs from the file loaded"
            ),
        }
    }
}

impl From<DeviceError> for MeasureError {
    fn from(e: DeviceError) -> Self {
        MeasureError::Device(e)
    }
}

/// Starts the TPM if it is not and names the banks to measure with: every active one vioboot
/// can hash; SHA-256 must be among them.
pub fn algorithms(t: &mut dyn Tpm) -> Result<Vec<u16>, MeasureError> {
    ops::startup(t)?;
    let banks = ops::banks(t)?;
    let algs = ops::hashable(&banks);
    if !algs.contains(&ALG_SHA256) {
        return Err(MeasureError::NoSha256Bank);
    }
    Ok(algs)
}

/// The events for a loaded kernel, in the order they are extended, with the digests the
/// loader computed (one per bank it was asked for).
pub fn events(l: &Loaded) -> Result<Vec<Event>, MeasureError> {
    if l.kernel_digests.is_empty() {
        return Err(MeasureError::NotHashed("kernel"));
    }
    let algs: Vec<u16> = l.kernel_digests.iter().map(|d| d.alg).collect();
    let mut v = alloc::vec![Event {
        pcr: PCR_FILES,
        event_type: EV_IPL,
        digests: l.kernel_digests.clone(),
        data: l.path.as_bytes().to_vec(),
    }];
    match (&l.initrd, &l.initrd_sha256) {
        (None, _) => {}
        (Some(_), Some((path, _))) if l.initrd_digests.len() == algs.len() => v.push(Event {
            pcr: PCR_FILES,
            event_type: EV_IPL,
            digests: l.initrd_digests.clone(),
            data: path.as_bytes().to_vec(),
        }),
        (Some(_), _) => return Err(MeasureError::NotHashed("initrd")),
    }
    let cmdline = format!("kernel_cmdline: {}", l.cmdline);
    v.push(Event {
        pcr: PCR_STRINGS,
        event_type: EV_IPL,
        digests: super::digest::digests(&algs, cmdline.as_bytes()),
        data: cmdline.into_bytes(),
    });
    Ok(v)
}

/// Measures the loaded kernel, initrd and command line through the firmware that keeps the
/// TPM event log (SLOF: the vTPM's `2hash-ext-log`, which hashes a buffer in memory into every
/// active bank and logs it; Linux's prom_init then takes that log by `sml-handover`): the
/// same events as [`events`], each hashed by the firmware from the bytes themselves. The
/// initrd and the command line are in memory; the kernel was streamed into its segments, so
/// it is read again, whole, into memory the firmware lends for the call and gives back after,
/// and must have the SHA-256 it had when it was loaded (the bytes measured are the bytes
/// booted). Returns the summary for the report.
pub fn through_firmware(
    fw: &dyn Firmware,
    node: &str,
    fs: &mut dyn FileSystem,
    l: &Loaded,
) -> Result<String, MeasureError> {
    let loaded = l.kernel_sha256.ok_or(MeasureError::NotHashed("kernel"))?;
    let size = l.bytes;
    let lent = fw.lend("the kernel file, to measure", size)?;
    let r = reread(fs, &l.path, lent).and_then(|digest| {
        if digest != loaded {
            return Err(MeasureError::Changed {
                path: l.path.clone(),
            });
        }
        fw.hash_ext_log(node, PCR_FILES, EV_IPL, l.path.as_bytes(), lent)?;
        Ok(())
    });
    fw.give_back(lent);
    r?;
    let mut n = 1;
    if let (Some(r), Some((path, _))) = (l.initrd, &l.initrd_sha256) {
        fw.hash_ext_log(node, PCR_FILES, EV_IPL, path.as_bytes(), r)?;
        n += 1;
    }
    let cmdline = format!("kernel_cmdline: {}", l.cmdline);
    let at = cmdline.as_ptr() as u64;
    let r = Range {
        start: at,
        end: at + cmdline.len() as u64,
    };
    fw.hash_ext_log(node, PCR_STRINGS, EV_IPL, cmdline.as_bytes(), r)?;
    n += 1;
    Ok(format!(
        "{n} events (kernel and initrd into PCR {PCR_FILES}, command line into PCR {PCR_STRINGS}) measured through Open Firmware's 2hash-ext-log into every active bank; its event log goes to Linux's prom_init (sml-handover); the kernel re-read whole ({size} bytes) with the SHA-256 it was loaded with"
    ))
}

/// Reads `path` whole into `into` (exactly its size); returns its SHA-256.
fn reread(fs: &mut dyn FileSystem, path: &str, into: Range) -> Result<[u8; 32], MeasureError> {
    // SAFETY: `into` was lent by the firmware for this call alone; nothing else refers to it
    // until it is given back.
    let buf = unsafe { crate::mem::region_mut(into) };
    let mut sha = sha256::Sha256::new();
    let mut n = 0usize;
    let (_, got) = fs
        .read_stream(path, None, &mut |piece| {
            if n + piece.len() <= buf.len() {
                buf[n..n + piece.len()].copy_from_slice(piece);
                sha.update(piece);
            }
            n += piece.len();
        })
        .map_err(|e| MeasureError::Reread {
            path: path.into(),
            error: alloc::boxed::Box::new(e),
        })?;
    if n != buf.len() || got != n as u64 {
        return Err(MeasureError::Changed { path: path.into() });
    }
    Ok(sha.finish())
}

/// What measuring did, for the report.
pub struct Measured {
    pub log: Vec<u8>,
    pub summary: String,
}

/// Extends each event into every bank it carries a digest for (one PCR_Extend each) and logs
/// it in a log naming those banks; the TPM must have each of them active.
pub fn measure(t: &mut dyn Tpm, events: &[Event]) -> Result<Measured, MeasureError> {
    let algs = algorithms(t)?;
    let banks: Vec<u16> = events
        .first()
        .map(|e| e.digests.iter().map(|d| d.alg).collect())
        .unwrap_or_default();
    if let Some(missing) = banks.iter().find(|a| !algs.contains(a)) {
        return Err(MeasureError::BankGone(*missing));
    }
    let mut log = Log::new(&banks).map_err(MeasureError::Log)?;
    for e in events {
        ops::extend(t, e.pcr, &e.digests)?;
        let d: Vec<&[u8]> = e.digests.iter().map(|d| &d.bytes[..]).collect();
        log.push(e.pcr, e.event_type, &d, &e.data)
            .map_err(MeasureError::Log)?;
    }
    let names: Vec<&str> = banks.iter().map(|&a| tpm::alg_name(a)).collect();
    let summary = format!(
        "{} events (kernel and initrd into PCR {PCR_FILES}, command line into PCR {PCR_STRINGS}) extended into {}; event log {} bytes",
        events.len(),
        names.join(", "),
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

    fn d(alg: u16, b: u8, n: usize) -> Digest {
        Digest {
            alg,
            bytes: alloc::vec![b; n],
        }
    }

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
            kernel_digests: alloc::vec![d(tpm::ALG_SHA1, 3, 20), d(ALG_SHA256, 1, 32)],
            initrd_digests: if initrd {
                alloc::vec![d(tpm::ALG_SHA1, 4, 20), d(ALG_SHA256, 2, 32)]
            } else {
                alloc::vec![]
            },
            event_log: None,
        }
    }

    #[test]
    fn kernel_initrd_and_command_line_as_grub_measures_them() {
        let e = events(&loaded(true)).unwrap();
        assert_eq!(e.len(), 3);
        assert_eq!(
            (e[0].pcr, &e[0].digests[1].bytes[..], &e[0].data[..]),
            (9, &[1u8; 32][..], &b"/vmlinux"[..])
        );
        assert_eq!(e[1].digests[0], d(tpm::ALG_SHA1, 4, 20));
        assert_eq!((e[1].pcr, &e[1].data[..]), (9, &b"/initrd.img"[..]));
        assert_eq!(e[2].pcr, 8);
        assert_eq!(e[2].data, b"kernel_cmdline: console=hvc0 quiet");
        assert_eq!(
            e[2].digests[1].bytes,
            sha256::digest(b"kernel_cmdline: console=hvc0 quiet")
        );
        assert_eq!(
            e[2].digests[0].bytes,
            super::super::digest::digests(&[tpm::ALG_SHA1], b"kernel_cmdline: console=hvc0 quiet")
                [0]
            .bytes
        );
        assert!(e.iter().all(|e| e.event_type == EV_IPL));
        assert_eq!(events(&loaded(false)).unwrap().len(), 2);
        let mut l = loaded(true);
        l.initrd_digests.clear();
        assert_eq!(events(&l), Err(MeasureError::NotHashed("initrd")));
    }
}
