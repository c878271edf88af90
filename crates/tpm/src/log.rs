//! The TCG2 crypto-agile event log (TCG PC Client Platform Firmware Profile, 1.05, section 10):
//! little-endian throughout. The first event is in the SHA-1 format (TCG_PCClientPCREvent,
//! EV_NO_ACTION into PCR 0, a zero digest) and carries the Spec ID event ("Spec ID Event03",
//! the digest sizes of every bank the log holds); every later event is a TCG_PCR_EVENT2: PCR,
//! event type, one digest per bank in the header's order, then the event data.
//! [`Log`] builds one; [`parse`] reads one back, checked, and [`replay`] computes the PCR
//! values it implies for one bank.

use crate::{digest_len, TpmError};
use alloc::vec::Vec;

/// EV_NO_ACTION: an event that extends nothing (the Spec ID event).
pub const EV_NO_ACTION: u32 = 0x3;
/// EV_SEPARATOR.
pub const EV_SEPARATOR: u32 = 0x4;
/// EV_IPL: what the boot loader loads and runs (GRUB on POWER logs files and commands so).
pub const EV_IPL: u32 = 0xD;
/// The Spec ID event's signature.
pub const SPEC_ID_SIGNATURE: &[u8; 16] = b"Spec ID Event03\0";
/// The largest event data vioboot accepts when reading a log.
const MAX_EVENT_DATA: usize = 1 << 20;

/// A log under construction for the banks it was made with.
#[derive(Debug, Clone)]
pub struct Log {
    banks: Vec<u16>,
    bytes: Vec<u8>,
}

impl Log {
    /// A log for `banks` (each a known algorithm), holding its Spec ID event.
    pub fn new(banks: &[u16]) -> Result<Log, TpmError> {
        if banks.is_empty() || banks.len() > 8 {
            return Err(TpmError::TooLarge {
                what: "number of banks",
                len: banks.len(),
            });
        }
        let mut spec = Vec::new();
        spec.extend_from_slice(SPEC_ID_SIGNATURE);
        spec.extend_from_slice(&0u32.to_le_bytes()); // platformClass: client
        spec.extend_from_slice(&[0, 2, 0, 2]); // spec 2.0 errata 0, UINTN 64-bit
        spec.extend_from_slice(&(banks.len() as u32).to_le_bytes());
        for &alg in banks {
            let n = digest_len(alg).ok_or(TpmError::Unexpected {
                what: "bank algorithm",
                got: alg.into(),
            })?;
            spec.extend_from_slice(&alg.to_le_bytes());
            spec.extend_from_slice(&(n as u16).to_le_bytes());
        }
        spec.push(0); // vendorInfoSize
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&0u32.to_le_bytes());
        bytes.extend_from_slice(&EV_NO_ACTION.to_le_bytes());
        bytes.extend_from_slice(&[0; 20]);
        bytes.extend_from_slice(&(spec.len() as u32).to_le_bytes());
        bytes.extend_from_slice(&spec);
        Ok(Log {
            banks: banks.to_vec(),
            bytes,
        })
    }

    pub fn banks(&self) -> &[u16] {
        &self.banks
    }

    /// Appends an event; `digests` must give one digest per bank, in the log's order.
    pub fn push(
        &mut self,
        pcr: u32,
        event_type: u32,
        digests: &[&[u8]],
        data: &[u8],
    ) -> Result<(), TpmError> {
        if digests.len() != self.banks.len() {
            return Err(TpmError::Length {
                what: "digests for the log's banks",
                said: digests.len(),
                have: self.banks.len(),
            });
        }
        for (alg, d) in self.banks.iter().zip(digests) {
            if digest_len(*alg) != Some(d.len()) {
                return Err(TpmError::TooLarge {
                    what: "digest length for its bank",
                    len: d.len(),
                });
            }
        }
        self.bytes.extend_from_slice(&pcr.to_le_bytes());
        self.bytes.extend_from_slice(&event_type.to_le_bytes());
        self.bytes
            .extend_from_slice(&(digests.len() as u32).to_le_bytes());
        for (alg, d) in self.banks.iter().zip(digests) {
            self.bytes.extend_from_slice(&alg.to_le_bytes());
            self.bytes.extend_from_slice(d);
        }
        self.bytes
            .extend_from_slice(&(data.len() as u32).to_le_bytes());
        self.bytes.extend_from_slice(data);
        Ok(())
    }

    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }
}

/// One event read back from a log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event<'a> {
    pub pcr: u32,
    pub event_type: u32,
    /// (algorithm, digest) in the log's order.
    pub digests: Vec<(u16, &'a [u8])>,
    pub data: &'a [u8],
}

/// A log read back: its banks (from the Spec ID event) and its events after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed<'a> {
    pub banks: Vec<(u16, usize)>,
    pub events: Vec<Event<'a>>,
}

struct Le<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Le<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], TpmError> {
        match self.at.checked_add(n).filter(|&e| e <= self.b.len()) {
            Some(end) => {
                let s = &self.b[self.at..end];
                self.at = end;
                Ok(s)
            }
            None => Err(TpmError::Short {
                what: "event log",
                need: self.at.saturating_add(n),
                have: self.b.len(),
            }),
        }
    }
    fn u16(&mut self) -> Result<u16, TpmError> {
        let s = self.take(2)?;
        Ok(u16::from_le_bytes([s[0], s[1]]))
    }
    fn u32(&mut self) -> Result<u32, TpmError> {
        let s = self.take(4)?;
        Ok(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
    }
    fn data(&mut self) -> Result<&'a [u8], TpmError> {
        let n = self.u32()? as usize;
        if n > MAX_EVENT_DATA {
            return Err(TpmError::TooLarge {
                what: "event data",
                len: n,
            });
        }
        self.take(n)
    }
}

/// Reads a crypto-agile log: the Spec ID event first, then TCG_PCR_EVENT2 entries whose
/// digests are exactly the header's banks. Trailing zero bytes (an unused tail) end it.
pub fn parse(bytes: &[u8]) -> Result<Parsed<'_>, TpmError> {
    let mut r = Le { b: bytes, at: 0 };
    let (pcr, ty) = (r.u32()?, r.u32()?);
    if pcr != 0 || ty != EV_NO_ACTION {
        return Err(TpmError::Unexpected {
            what: "first event type",
            got: ty,
        });
    }
    r.take(20)?;
    let spec = r.data()?;
    let mut s = Le { b: spec, at: 0 };
    if s.take(16)? != SPEC_ID_SIGNATURE {
        return Err(TpmError::Unexpected {
            what: "Spec ID signature",
            got: 0,
        });
    }
    s.take(8)?;
    let n = s.u32()?;
    if n == 0 || n > 8 {
        return Err(TpmError::TooLarge {
            what: "number of banks",
            len: n as usize,
        });
    }
    let mut banks = Vec::new();
    for _ in 0..n {
        let (alg, size) = (s.u16()?, s.u16()?);
        banks.push((alg, size.into()));
    }
    let mut events = Vec::new();
    while r.at < bytes.len() {
        if bytes[r.at..].iter().all(|&b| b == 0) {
            break;
        }
        let pcr = r.u32()?;
        let event_type = r.u32()?;
        let count = r.u32()?;
        if count as usize != banks.len() {
            return Err(TpmError::Length {
                what: "digests in an event",
                said: count as usize,
                have: banks.len(),
            });
        }
        let mut digests = Vec::new();
        for &(alg, size) in &banks {
            let got = r.u16()?;
            if got != alg {
                return Err(TpmError::Unexpected {
                    what: "digest algorithm",
                    got: got.into(),
                });
            }
            digests.push((alg, r.take(size)?));
        }
        let data = r.data()?;
        events.push(Event {
            pcr,
            event_type,
            digests,
            data,
        });
    }
    Ok(Parsed { banks, events })
}

/// The value of `pcr` in bank `alg` after the log's events, from all zeros, with `extend`
/// computing H(old || digest).
pub fn replay(
    log: &Parsed<'_>,
    pcr: u32,
    alg: u16,
    extend: impl Fn(&[u8], &[u8]) -> Vec<u8>,
) -> Option<Vec<u8>> {
    let size = log.banks.iter().find(|b| b.0 == alg)?.1;
    let mut v = alloc::vec![0u8; size];
    for e in log.events.iter().filter(|e| e.pcr == pcr) {
        if e.event_type == EV_NO_ACTION {
            continue;
        }
        let d = e.digests.iter().find(|d| d.0 == alg)?.1;
        v = extend(&v, d);
    }
    Some(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ALG_SHA1, ALG_SHA256};
    use vioboot_core::sha256;

    fn ext(old: &[u8], d: &[u8]) -> Vec<u8> {
        let mut h = sha256::Sha256::new();
        h.update(old);
        h.update(d);
        h.finish().to_vec()
    }

    #[test]
    fn builds_and_reads_back_the_spec_layout() {
        let mut log = Log::new(&[ALG_SHA256]).unwrap();
        // TCG_PCClientPCREvent header (32 bytes) + Spec ID event (16 + 8 + 4 + 4 + 1).
        assert_eq!(log.bytes().len(), 32 + 33);
        assert_eq!(&log.bytes()[32..48], SPEC_ID_SIGNATURE);
        let k = sha256::digest(b"kernel");
        let c = sha256::digest(b"kernel_cmdline: quiet");
        log.push(9, EV_IPL, &[&k], b"/vmlinuz\0").unwrap();
        log.push(8, EV_IPL, &[&c], b"kernel_cmdline: quiet\0")
            .unwrap();
        let p = parse(log.bytes()).unwrap();
        assert_eq!(p.banks, [(ALG_SHA256, 32)]);
        assert_eq!(p.events.len(), 2);
        assert_eq!(p.events[0].pcr, 9);
        assert_eq!(p.events[0].data, b"/vmlinuz\0");
        let v = replay(&p, 9, ALG_SHA256, ext).unwrap();
        assert_eq!(v, ext(&[0; 32], &k));
        assert_eq!(replay(&p, 10, ALG_SHA256, ext).unwrap(), [0; 32]);
        assert!(replay(&p, 9, ALG_SHA1, ext).is_none());
        // A zero tail is where the log ends.
        let mut padded = log.bytes().to_vec();
        padded.extend_from_slice(&[0; 64]);
        assert_eq!(parse(&padded).unwrap().events.len(), 2);
    }

    #[test]
    fn refuses_wrong_digests_and_hostile_logs() {
        let mut log = Log::new(&[ALG_SHA1, ALG_SHA256]).unwrap();
        assert!(log.push(8, EV_IPL, &[&[0; 32]], b"").is_err());
        assert!(log.push(8, EV_IPL, &[&[0; 32], &[0; 32]], b"").is_err());
        log.push(8, EV_IPL, &[&[1; 20], &[2; 32]], b"x").unwrap();
        let good = log.bytes().to_vec();
        assert!(parse(&good).is_ok());
        for cut in 1..good.len() {
            // Every truncation that does not end on an event boundary is an error, never a
            // panic.
            let _ = parse(&good[..cut]);
        }
        let mut huge = good.clone();
        let n = huge.len();
        huge[n - 5..n - 1].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(parse(&huge).is_err());
        let mut sig = good.clone();
        sig[32] = b'X';
        assert!(parse(&sig).is_err());
        assert!(Log::new(&[]).is_err());
        assert!(Log::new(&[0x1234]).is_err());
    }
}
