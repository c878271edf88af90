//! Sense data (SPC-4 4.5): fixed (0x70/0x71) and descriptor (0x72/0x73) formats, decoded into
//! [`Sense`]: sense key, ASC/ASCQ and, for the common ones, their names.

use crate::{need, SrpError};
use core::fmt;

pub const NO_SENSE: u8 = 0x0;
pub const RECOVERED_ERROR: u8 = 0x1;
pub const NOT_READY: u8 = 0x2;
pub const MEDIUM_ERROR: u8 = 0x3;
pub const HARDWARE_ERROR: u8 = 0x4;
pub const ILLEGAL_REQUEST: u8 = 0x5;
pub const UNIT_ATTENTION: u8 = 0x6;
pub const DATA_PROTECT: u8 = 0x7;
pub const ABORTED_COMMAND: u8 = 0xB;
/// ASC: medium not present.
pub const ASC_MEDIUM_NOT_PRESENT: u8 = 0x3A;

/// Decoded sense data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sense {
    pub key: u8,
    pub asc: u8,
    pub ascq: u8,
    /// The response code said descriptor format.
    pub descriptor: bool,
}

impl Sense {
    /// Decodes `b` (the sense bytes a response carried), checking the additional length.
    pub fn parse(b: &[u8]) -> Result<Sense, SrpError> {
        need("sense data", b, 1)?;
        match b[0] & 0x7F {
            0x70 | 0x71 => {
                need("fixed sense data", b, 8)?;
                let end = 8 + usize::from(b[7]);
                need("fixed sense data", b, end)?;
                // ASC/ASCQ are bytes 12 and 13, present when the additional length covers them.
                let at = |i: usize| if i < end { b[i] } else { 0 };
                Ok(Sense {
                    key: b[2] & 0x0F,
                    asc: at(12),
                    ascq: at(13),
                    descriptor: false,
                })
            }
            0x72 | 0x73 => {
                need("descriptor sense data", b, 8)?;
                let end = 8 + usize::from(b[7]);
                need("descriptor sense data", b, end)?;
                let mut d = &b[8..end];
                while !d.is_empty() {
                    need("sense descriptor", d, 2)?;
                    let n = 2 + usize::from(d[1]);
                    need("sense descriptor", d, n)?;
                    d = &d[n..];
                }
                Ok(Sense {
                    key: b[1] & 0x0F,
                    asc: b[2],
                    ascq: b[3],
                    descriptor: true,
                })
            }
            code => Err(SrpError::Opcode {
                what: "sense response code",
                want: 0x70,
                got: code.into(),
            }),
        }
    }

    pub fn is(&self, key: u8, asc: u8) -> bool {
        self.key == key && self.asc == asc
    }

    pub fn key_name(&self) -> &'static str {
        key_name(self.key)
    }

    /// The name of ASC/ASCQ, for the common ones.
    pub fn asc_name(&self) -> Option<&'static str> {
        asc_name(self.asc, self.ascq)
    }

    /// Fixed-format sense data for `key`/`asc`/`ascq` (for fake targets in tests).
    pub fn fixed(key: u8, asc: u8, ascq: u8) -> [u8; 18] {
        let mut b = [0u8; 18];
        b[0] = 0x70;
        b[2] = key;
        b[7] = 10;
        b[12] = asc;
        b[13] = ascq;
        b
    }
}

impl fmt::Display for Sense {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}, ASC/ASCQ {:02x}/{:02x}",
            self.key_name(),
            self.asc,
            self.ascq
        )?;
        if let Some(n) = self.asc_name() {
            write!(f, " ({n})")?;
        }
        Ok(())
    }
}

pub fn key_name(key: u8) -> &'static str {
    match key {
        NO_SENSE => "NO SENSE",
        RECOVERED_ERROR => "RECOVERED ERROR",
        NOT_READY => "NOT READY",
        MEDIUM_ERROR => "MEDIUM ERROR",
        HARDWARE_ERROR => "HARDWARE ERROR",
        ILLEGAL_REQUEST => "ILLEGAL REQUEST",
        UNIT_ATTENTION => "UNIT ATTENTION",
        DATA_PROTECT => "DATA PROTECT",
        0x8 => "BLANK CHECK",
        0x9 => "VENDOR SPECIFIC",
        0xA => "COPY ABORTED",
        ABORTED_COMMAND => "ABORTED COMMAND",
        0xD => "VOLUME OVERFLOW",
        0xE => "MISCOMPARE",
        0xF => "COMPLETED",
        _ => "RESERVED",
    }
}

pub fn asc_name(asc: u8, ascq: u8) -> Option<&'static str> {
    Some(match (asc, ascq) {
        (0x04, 0x00) => "logical unit not ready, cause not reportable",
        (0x04, 0x01) => "logical unit is in process of becoming ready",
        (0x04, 0x02) => "logical unit not ready, initializing command required",
        (0x0C, 0x00) => "write error",
        (0x11, 0x00) => "unrecovered read error",
        (0x1A, 0x00) => "parameter list length error",
        (0x20, 0x00) => "invalid command operation code",
        (0x21, 0x00) => "logical block address out of range",
        (0x24, 0x00) => "invalid field in CDB",
        (0x25, 0x00) => "logical unit not supported",
        (0x27, 0x00) => "write protected",
        (0x28, 0x00) => "not ready to ready change, medium may have changed",
        (0x29, 0x00) => "power on, reset, or bus device reset occurred",
        (0x29, _) => "power on or reset occurred",
        (0x2A, 0x01) => "mode parameters changed",
        (0x3A, _) => "medium not present",
        (0x3F, 0x0E) => "reported luns data has changed",
        (0x44, 0x00) => "internal target failure",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    #[test]
    fn fixed_format() {
        let s = Sense::parse(&Sense::fixed(UNIT_ATTENTION, 0x29, 0)).unwrap();
        assert!(s.is(UNIT_ATTENTION, 0x29) && !s.descriptor);
        assert_eq!(
            s.to_string(),
            "UNIT ATTENTION, ASC/ASCQ 29/00 (power on, reset, or bus device reset occurred)"
        );
        let s = Sense::parse(&Sense::fixed(NOT_READY, 0x3A, 0x01)).unwrap();
        assert_eq!(s.asc_name(), Some("medium not present"));
        // Additional length 0: key only.
        let s = Sense::parse(&[0xF0, 0, 3, 0, 0, 0, 0, 0]).unwrap();
        assert_eq!((s.key, s.asc), (MEDIUM_ERROR, 0));
        assert_eq!(
            Sense::parse(&[0x70, 0, 0x4, 0, 0, 0, 0, 0])
                .unwrap()
                .to_string(),
            "HARDWARE ERROR, ASC/ASCQ 00/00"
        );
    }

    #[test]
    fn descriptor_format() {
        let b = [
            0x72, 0x05, 0x24, 0x00, 0, 0, 0, 12, 0x00, 0x0A, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        ];
        let s = Sense::parse(&b).unwrap();
        assert!(s.descriptor && s.is(ILLEGAL_REQUEST, 0x24));
        let mut bad = b;
        bad[9] = 0x20;
        assert!(Sense::parse(&bad).is_err(), "a descriptor beyond the data");
    }

    #[test]
    fn hostile_sense() {
        assert!(Sense::parse(&[]).is_err());
        assert!(Sense::parse(&[0x70, 0, 6]).is_err());
        let mut long = Sense::fixed(UNIT_ATTENTION, 0x29, 0);
        long[7] = 200;
        assert!(matches!(
            Sense::parse(&long),
            Err(SrpError::Short { need: 208, .. })
        ));
        assert!(matches!(
            Sense::parse(&[0x12; 18]),
            Err(SrpError::Opcode { got: 0x12, .. })
        ));
    }
}
