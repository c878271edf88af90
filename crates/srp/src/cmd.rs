//! SRP_CMD (T10 SRP r16a 6.8): a 48-byte header (buffer formats, descriptor counts, tag, LUN,
//! task attribute, a 16-byte CDB), then the data descriptors: one direct descriptor
//! `{va, key, len}`, or an indirect table descriptor, the total length and the descriptors
//! themselves inline. Everything must fit one 256-byte IU; [`command`] refuses anything larger.

use crate::cdb::Cdb;
use crate::{SrpError, MAX_IU_LEN};

pub const SRP_CMD: u8 = 0x02;
/// Bytes before the data descriptors.
pub const HEADER_LEN: usize = 48;
/// Bytes of one direct descriptor.
pub const DESCRIPTOR_LEN: usize = 16;
/// Bytes of an indirect descriptor before its inline list (table descriptor, total length).
pub const INDIRECT_HEADER_LEN: usize = 20;
/// Most inline descriptors an indirect command can carry in one IU.
pub const MAX_INDIRECT: usize = (MAX_IU_LEN - HEADER_LEN - INDIRECT_HEADER_LEN) / DESCRIPTOR_LEN;
/// Buffer format nibble: no data.
pub const FMT_NONE: u8 = 0;
/// Buffer format nibble: one direct descriptor.
pub const FMT_DIRECT: u8 = 1;
/// Buffer format nibble: an indirect descriptor table.
pub const FMT_INDIRECT: u8 = 2;
/// Task attribute SIMPLE.
pub const TASK_SIMPLE: u8 = 0;

/// One memory segment the target may transfer to or from: an IOBA and a length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Descriptor {
    pub va: u64,
    pub key: u32,
    pub len: u32,
}

impl Descriptor {
    pub fn new(va: u64, len: u32) -> Descriptor {
        Descriptor { va, key: 0, len }
    }

    fn put(&self, b: &mut [u8]) {
        b[0..8].copy_from_slice(&self.va.to_be_bytes());
        b[8..12].copy_from_slice(&self.key.to_be_bytes());
        b[12..16].copy_from_slice(&self.len.to_be_bytes());
    }
}

/// Which way data moves, and through which segments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Data<'a> {
    None,
    /// From the target (a read).
    In(&'a [Descriptor]),
    /// To the target (a write).
    Out(&'a [Descriptor]),
}

/// A built IU: `bytes[..len]` is what goes on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Iu {
    pub bytes: [u8; MAX_IU_LEN],
    pub len: usize,
}

impl Iu {
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

/// Builds SRP_CMD `tag` for `lun` (the 8 bytes of a REPORT LUNS entry, verbatim). One
/// descriptor goes direct; several go indirect, inline, with the table descriptor pointing at
/// them inside the IU itself, which will be at `iu_ioba`. More than [`MAX_INDIRECT`] is
/// refused, as is a total length beyond u32.
pub fn command(
    tag: u64,
    lun: [u8; 8],
    cdb: &Cdb,
    data: Data,
    iu_ioba: u64,
) -> Result<Iu, SrpError> {
    let mut b = [0u8; MAX_IU_LEN];
    b[0] = SRP_CMD;
    b[8..16].copy_from_slice(&tag.to_be_bytes());
    b[20..28].copy_from_slice(&lun);
    b[29] = TASK_SIMPLE;
    let c = cdb.as_bytes();
    if c.len() > 16 {
        return Err(SrpError::BadCdb { len: c.len() });
    }
    b[32..32 + c.len()].copy_from_slice(c);
    let (descs, out) = match data {
        Data::None => {
            return Ok(Iu {
                bytes: b,
                len: HEADER_LEN,
            })
        }
        Data::In(d) => (d, false),
        Data::Out(d) => (d, true),
    };
    let (fmt, len) = match descs.len() {
        0 => (FMT_NONE, HEADER_LEN),
        1 => {
            descs[0].put(&mut b[HEADER_LEN..]);
            (FMT_DIRECT, HEADER_LEN + DESCRIPTOR_LEN)
        }
        n if n <= MAX_INDIRECT => {
            let list = HEADER_LEN + INDIRECT_HEADER_LEN;
            let total = descs
                .iter()
                .try_fold(0u32, |t, d| t.checked_add(d.len))
                .ok_or(SrpError::Inconsistent {
                    what: "data descriptors total more than 4 GiB",
                    value: n as u64,
                })?;
            Descriptor::new(iu_ioba + list as u64, (n * DESCRIPTOR_LEN) as u32)
                .put(&mut b[HEADER_LEN..]);
            b[HEADER_LEN + 16..HEADER_LEN + 20].copy_from_slice(&total.to_be_bytes());
            for (i, d) in descs.iter().enumerate() {
                d.put(&mut b[list + i * DESCRIPTOR_LEN..]);
            }
            (FMT_INDIRECT, list + n * DESCRIPTOR_LEN)
        }
        n => {
            return Err(SrpError::TooManyDescriptors {
                count: n,
                max: MAX_INDIRECT,
            })
        }
    };
    let count = if fmt == FMT_INDIRECT {
        descs.len() as u8
    } else {
        0
    };
    if out {
        b[5] = fmt << 4;
        b[6] = count;
    } else {
        b[5] = fmt;
        b[7] = count;
    }
    Ok(Iu { bytes: b, len })
}

/// The data descriptors of an SRP_CMD as a target reads them: which way, and the segments.
/// Inline descriptors only (the way vioboot and Linux's ibmvscsi send up to a table's worth):
/// a table descriptor that points anywhere but at the list inside this IU, a count or total
/// that disagrees with the list, or both directions at once, is refused.
pub fn descriptors(iu: &[u8]) -> Result<(bool, alloc::vec::Vec<Descriptor>), SrpError> {
    crate::need("SRP_CMD", iu, HEADER_LEN)?;
    if iu[0] != SRP_CMD {
        return Err(SrpError::Opcode {
            what: "command",
            want: SRP_CMD.into(),
            got: iu[0].into(),
        });
    }
    let (out_fmt, in_fmt) = (iu[5] >> 4, iu[5] & 0xF);
    let (fmt, count, out) = match (out_fmt, in_fmt) {
        (FMT_NONE, FMT_NONE) => return Ok((false, alloc::vec::Vec::new())),
        (f, FMT_NONE) => (f, iu[6], true),
        (FMT_NONE, f) => (f, iu[7], false),
        _ => {
            return Err(SrpError::Inconsistent {
                what: "data-out and data-in descriptors in one command",
                value: iu[5].into(),
            })
        }
    };
    // Additional CDB bytes come before the descriptors (in 4-byte words, bits 7..2 of byte 31).
    let at = HEADER_LEN + usize::from(iu[31] & !3);
    let read = |b: &[u8], i: usize| Descriptor {
        va: crate::be64(b, i),
        key: crate::be32(b, i + 8),
        len: crate::be32(b, i + 12),
    };
    match fmt {
        FMT_DIRECT => {
            crate::need("SRP_CMD direct descriptor", iu, at + DESCRIPTOR_LEN)?;
            Ok((out, alloc::vec![read(iu, at)]))
        }
        FMT_INDIRECT => {
            let list = at + INDIRECT_HEADER_LEN;
            let n = usize::from(count);
            crate::need(
                "SRP_CMD indirect descriptors",
                iu,
                list + n * DESCRIPTOR_LEN,
            )?;
            let table = read(iu, at);
            if table.len as usize != n * DESCRIPTOR_LEN {
                return Err(SrpError::Inconsistent {
                    what: "indirect table length disagrees with the descriptor count",
                    value: table.len.into(),
                });
            }
            let v: alloc::vec::Vec<Descriptor> = (0..n)
                .map(|i| read(iu, list + i * DESCRIPTOR_LEN))
                .collect();
            let total = v.iter().map(|d| u64::from(d.len)).sum::<u64>();
            if total != u64::from(crate::be32(iu, at + 16)) {
                return Err(SrpError::Inconsistent {
                    what: "indirect total length disagrees with the descriptors",
                    value: total,
                });
            }
            Ok((out, v))
        }
        f => Err(SrpError::Inconsistent {
            what: "unknown data buffer format",
            value: f.into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{be32, be64, cdb};

    const LUN: [u8; 8] = [0x81, 0x02, 0, 0, 0, 0, 0, 0];

    #[test]
    fn header_and_direct_descriptor() {
        let d = [Descriptor::new(0x3000, 512)];
        let iu = command(0xAB, LUN, &cdb::read(7, 1), Data::In(&d), 0x1000).unwrap();
        let b = iu.as_bytes();
        assert_eq!(b.len(), 64);
        assert_eq!((b[0], b[5], b[6], b[7]), (SRP_CMD, 0x01, 0, 0));
        assert_eq!(be64(b, 8), 0xAB);
        assert_eq!(&b[20..28], &LUN);
        assert_eq!(b[32], 0x28);
        assert_eq!(be64(b, 48), 0x3000);
        assert_eq!(be32(b, 60), 512);
        let w = command(1, LUN, &cdb::write(7, 1), Data::Out(&d), 0).unwrap();
        assert_eq!(w.bytes[5], 0x10);
        let n = command(1, LUN, &cdb::test_unit_ready(), Data::None, 0).unwrap();
        assert_eq!((n.len, n.bytes[5]), (48, 0));
    }

    #[test]
    fn indirect_descriptors_inline_with_the_table_in_the_iu() {
        let d: [Descriptor; 3] =
            core::array::from_fn(|i| Descriptor::new(0x10_000 * (i as u64 + 1), 4096));
        let iu = command(2, LUN, &cdb::read(0, 24), Data::In(&d), 0x7000).unwrap();
        let b = iu.as_bytes();
        assert_eq!((b[5], b[7]), (0x02, 3));
        assert_eq!(b.len(), 48 + 20 + 3 * 16);
        assert_eq!(
            be64(b, 48),
            0x7000 + 68,
            "table descriptor points into the IU"
        );
        assert_eq!(be32(b, 60), 48);
        assert_eq!(be32(b, 64), 3 * 4096, "total length");
        assert_eq!(be64(b, 68 + 32), 0x30_000);
        let max = [Descriptor::new(0x1000, 1); MAX_INDIRECT];
        assert_eq!(
            command(2, LUN, &cdb::read(0, 1), Data::Out(&max), 0)
                .unwrap()
                .len,
            MAX_IU_LEN - 12
        );
    }

    #[test]
    fn a_target_reads_back_what_was_built() {
        let d: [Descriptor; 4] =
            core::array::from_fn(|i| Descriptor::new(0x20_000 * (i as u64 + 1), 8192));
        let iu = command(3, LUN, &cdb::read(0, 64), Data::In(&d), 0x9000).unwrap();
        assert_eq!(descriptors(iu.as_bytes()), Ok((false, d.to_vec())));
        let w = command(3, LUN, &cdb::write(0, 16), Data::Out(&d[..1]), 0).unwrap();
        assert_eq!(descriptors(w.as_bytes()), Ok((true, d[..1].to_vec())));
        let n = command(3, LUN, &cdb::test_unit_ready(), Data::None, 0).unwrap();
        assert_eq!(descriptors(n.as_bytes()), Ok((false, alloc::vec![])));
        // A count beyond the IU, a table length that disagrees, a wrong total: refused.
        let mut b = iu.bytes;
        b[7] = 9;
        assert!(descriptors(&b[..iu.len]).is_err());
        let mut b = iu.bytes;
        b[63] ^= 0x10;
        assert!(descriptors(&b[..iu.len]).is_err());
        let mut b = iu.bytes;
        b[67] ^= 1;
        assert!(descriptors(&b[..iu.len]).is_err());
        let mut b = iu.bytes;
        b[5] = 0x11;
        assert!(descriptors(&b[..iu.len]).is_err());
        for cut in 0..iu.len {
            assert!(descriptors(&iu.bytes[..cut]).is_err());
        }
    }

    #[test]
    fn refuses_what_does_not_fit() {
        let many = [Descriptor::new(0x1000, 1); MAX_INDIRECT + 1];
        assert_eq!(
            command(2, LUN, &cdb::read(0, 1), Data::In(&many), 0),
            Err(SrpError::TooManyDescriptors {
                count: MAX_INDIRECT + 1,
                max: MAX_INDIRECT
            })
        );
        let huge = [Descriptor::new(0, u32::MAX), Descriptor::new(0, 2)];
        assert!(matches!(
            command(2, LUN, &cdb::read(0, 1), Data::In(&huge), 0),
            Err(SrpError::Inconsistent { .. })
        ));
    }
}
