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
