//! What the commands return (SPC-4, SBC-3): standard INQUIRY data, VPD pages (supported
//! pages, unit serial number, device identification designators), the REPORT LUNS list, READ
//! CAPACITY(10)/(16) data and the MODE SENSE(6) header. Each parser checks the structure's
//! own length fields against the bytes actually transferred.

use crate::{be16, be32, be64, need, text, SrpError};
use alloc::string::String;
use alloc::vec::Vec;

/// Peripheral qualifier 0: a device of the given type is connected here.
pub const PQ_CONNECTED: u8 = 0;
/// Peripheral qualifier 3: the target cannot have a device at this LUN.
pub const PQ_NONE: u8 = 3;
/// Peripheral device type: direct access (a disk).
pub const TYPE_DISK: u8 = 0x00;
/// Peripheral device type: CD/DVD.
pub const TYPE_CDROM: u8 = 0x05;
/// Bytes of standard INQUIRY data vioboot reads (SPC's minimum is 36).
pub const INQUIRY_LEN: usize = 36;

/// Standard INQUIRY data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inquiry {
    pub qualifier: u8,
    pub device_type: u8,
    pub removable: bool,
    pub version: u8,
    pub vendor: String,
    pub product: String,
    pub revision: String,
}

impl Inquiry {
    /// `b`: the bytes transferred. The additional length must cover the 36 bytes read.
    pub fn parse(b: &[u8]) -> Result<Inquiry, SrpError> {
        need("INQUIRY data", b, 5)?;
        // A target with nothing at this LUN may answer with only the first bytes.
        let qualifier = b[0] >> 5;
        if qualifier == PQ_NONE || b.len() < INQUIRY_LEN {
            need(
                "INQUIRY data",
                b,
                if qualifier == PQ_NONE { 1 } else { INQUIRY_LEN },
            )?;
            return Ok(Inquiry {
                qualifier,
                device_type: b[0] & 0x1F,
                removable: false,
                version: 0,
                vendor: String::new(),
                product: String::new(),
                revision: String::new(),
            });
        }
        if usize::from(b[4]) + 5 < INQUIRY_LEN {
            return Err(SrpError::Inconsistent {
                what: "INQUIRY additional length shorter than the standard data",
                value: b[4].into(),
            });
        }
        Ok(Inquiry {
            qualifier,
            device_type: b[0] & 0x1F,
            removable: b[1] & 0x80 != 0,
            version: b[2],
            vendor: text(&b[8..16]),
            product: text(&b[16..32]),
            revision: text(&b[32..36]),
        })
    }

    /// Whether a device is there.
    pub fn present(&self) -> bool {
        self.qualifier == PQ_CONNECTED && self.device_type != 0x1F
    }
}

/// The name of a peripheral device type.
pub fn type_name(t: u8) -> &'static str {
    match t {
        TYPE_DISK => "disk",
        0x01 => "tape",
        TYPE_CDROM => "cd-rom",
        0x07 => "optical",
        0x08 => "changer",
        0x0C => "raid",
        0x0D => "enclosure",
        _ => "device",
    }
}

/// The body of VPD page `page` in `b`, checked: page code and page length within `b`.
pub fn vpd(b: &[u8], page: u8) -> Result<&[u8], SrpError> {
    need("VPD page", b, 4)?;
    if b[1] != page {
        return Err(SrpError::Opcode {
            what: "VPD page",
            want: page.into(),
            got: b[1].into(),
        });
    }
    let len = usize::from(be16(b, 2));
    need("VPD page body", b, 4 + len)?;
    Ok(&b[4..4 + len])
}

/// The unit serial number (page 0x80), trimmed.
pub fn serial(b: &[u8]) -> Result<String, SrpError> {
    vpd(b, crate::cdb::VPD_SERIAL).map(text)
}

/// One designator of the device identification page (0x83).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Designator {
    /// 1 binary, 2 ASCII, 3 UTF-8.
    pub code_set: u8,
    /// 0 vendor, 1 T10 vendor id, 2 EUI-64, 3 NAA, ...
    pub kind: u8,
    /// 0 the logical unit, 1 the target port, 2 the target device (SPC-4 7.8.6.1): only a
    /// logical unit's designator names the same disk on every path.
    pub association: u8,
    pub id: Vec<u8>,
}

/// Designator kinds that name a logical unit uniquely (SPC-4 table 462): EUI-64, NAA, SCSI
/// name string.
pub const UNIQUE_KINDS: [u8; 3] = [2, 3, 8];

/// The logical unit's unique designator (EUI-64, NAA or SCSI name string, associated with the
/// logical unit), as hex, or `None` when the page names none.
pub fn unique_id(ds: &[Designator]) -> Option<String> {
    let d = UNIQUE_KINDS
        .iter()
        .find_map(|k| ds.iter().find(|d| d.kind == *k && d.association == 0))?;
    if d.id.is_empty() {
        return None;
    }
    let mut s = String::new();
    for b in &d.id {
        s.push_str(&alloc::format!("{b:02x}"));
    }
    Some(alloc::format!(
        "{}:{s}",
        match d.kind {
            2 => "eui",
            3 => "naa",
            _ => "name",
        }
    ))
}

/// The designators of page 0x83, each header and length checked against the page.
pub fn designators(b: &[u8]) -> Result<Vec<Designator>, SrpError> {
    let mut body = vpd(b, crate::cdb::VPD_DEVICE_ID)?;
    let mut out = Vec::new();
    while !body.is_empty() {
        need("designator header", body, 4)?;
        let len = usize::from(body[3]);
        need("designator", body, 4 + len)?;
        out.push(Designator {
            code_set: body[0] & 0x0F,
            kind: body[1] & 0x0F,
            association: (body[1] >> 4) & 0x03,
            id: body[4..4 + len].to_vec(),
        });
        body = &body[4 + len..];
    }
    Ok(out)
}

/// The REPORT LUNS list: each entry 8 bytes, to be used verbatim as an SRP LUN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LunList {
    pub luns: Vec<[u8; 8]>,
    /// Entries the target has that did not fit the buffer.
    pub missing: usize,
}

/// Reads a REPORT LUNS answer of which `b` was transferred: the list length must be a
/// multiple of 8; entries beyond `b` are counted as missing, not read.
pub fn report_luns(b: &[u8]) -> Result<LunList, SrpError> {
    need("REPORT LUNS header", b, 8)?;
    let len = be32(b, 0) as usize;
    if !len.is_multiple_of(8) {
        return Err(SrpError::Inconsistent {
            what: "REPORT LUNS list length not a multiple of 8",
            value: len as u64,
        });
    }
    let have = ((b.len() - 8) / 8).min(len / 8);
    let luns = (0..have)
        .map(|i| {
            let mut l = [0u8; 8];
            l.copy_from_slice(&b[8 + i * 8..16 + i * 8]);
            l
        })
        .collect();
    Ok(LunList {
        luns,
        missing: len / 8 - have,
    })
}

/// A LUN as `channel:target:lun` where its addressing method says so (SAM-5 4.7; QEMU uses
/// peripheral addressing for target 0 and logical unit addressing otherwise), else its hex.
pub fn lun_name(l: &[u8; 8]) -> String {
    use core::fmt::Write;
    let mut s = String::new();
    let rest_zero = l[2..].iter().all(|&b| b == 0);
    let _ = match l[0] >> 6 {
        0 if rest_zero && l[0] == 0 => write!(s, "0:0:{}", l[1]),
        0 if rest_zero => write!(s, "{}:0:{}", l[0] & 0x3F, l[1]),
        1 if rest_zero => write!(s, "0:0:{}", be16(l, 0) & 0x3FFF),
        2 if rest_zero => write!(s, "{}:{}:{}", l[1] >> 5, l[0] & 0x3F, l[1] & 0x1F),
        _ => write!(s, "{:016x}", be64(l, 0)),
    };
    s
}

/// Capacity from READ CAPACITY.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capacity {
    /// Blocks on the medium (last LBA + 1).
    pub blocks: u64,
    pub block_len: u32,
}

/// READ CAPACITY(10) data; `None` when the last LBA is 0xFFFFFFFF (ask READ CAPACITY(16)).
pub fn capacity_10(b: &[u8]) -> Result<Option<Capacity>, SrpError> {
    need("READ CAPACITY(10) data", b, 8)?;
    let last = be32(b, 0);
    if last == u32::MAX {
        return Ok(None);
    }
    capacity(u64::from(last), be32(b, 4)).map(Some)
}

/// READ CAPACITY(16) data (its first 12 bytes are all vioboot reads).
pub fn capacity_16(b: &[u8]) -> Result<Capacity, SrpError> {
    need("READ CAPACITY(16) data", b, 12)?;
    capacity(be64(b, 0), be32(b, 8))
}

fn capacity(last: u64, block_len: u32) -> Result<Capacity, SrpError> {
    if block_len == 0 || !block_len.is_power_of_two() {
        return Err(SrpError::Inconsistent {
            what: "block length not a power of two",
            value: block_len.into(),
        });
    }
    let blocks = last.checked_add(1).ok_or(SrpError::Inconsistent {
        what: "last LBA overflows",
        value: last,
    })?;
    Ok(Capacity { blocks, block_len })
}

/// The WP bit of a MODE SENSE(6) header: the medium is write-protected.
pub fn write_protected(b: &[u8]) -> Result<bool, SrpError> {
    need("MODE SENSE(6) header", b, 4)?;
    if usize::from(b[0]) + 1 < 4 {
        return Err(SrpError::Inconsistent {
            what: "MODE SENSE(6) data length shorter than its header",
            value: b[0].into(),
        });
    }
    Ok(b[2] & 0x80 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inquiry_data() -> [u8; 36] {
        let mut b = [b' '; 36];
        b[..8].copy_from_slice(&[0, 0, 5, 2, 31, 0, 0, 0x10]);
        b[8..12].copy_from_slice(b"QEMU");
        b[16..29].copy_from_slice(b"QEMU HARDDISK");
        b[32..36].copy_from_slice(b"2.5+");
        b
    }

    #[test]
    fn inquiry() {
        let i = Inquiry::parse(&inquiry_data()).unwrap();
        assert_eq!(
            (i.vendor.as_str(), i.product.as_str(), i.revision.as_str()),
            ("QEMU", "QEMU HARDDISK", "2.5+")
        );
        assert!(i.present() && i.device_type == TYPE_DISK);
        let mut none = inquiry_data();
        none[0] = 0x7F;
        assert!(!Inquiry::parse(&none).unwrap().present());
        assert!(!Inquiry::parse(&none[..5]).unwrap().present());
        assert!(
            Inquiry::parse(&inquiry_data()[..20]).is_err(),
            "a device's data cut short"
        );
        assert!(Inquiry::parse(&[0; 3]).is_err());
        let mut bad = inquiry_data();
        bad[4] = 10;
        assert!(matches!(
            Inquiry::parse(&bad),
            Err(SrpError::Inconsistent { .. })
        ));
        assert_eq!(type_name(5), "cd-rom");
    }

    #[test]
    fn vpd_pages() {
        let page = [0, 0x80, 0, 6, b'S', b'N', b'1', b' ', b' ', 0];
        assert_eq!(serial(&page).unwrap(), "SN1");
        assert!(serial(&page[..8]).is_err(), "page longer than transferred");
        assert!(matches!(vpd(&page, 0x83), Err(SrpError::Opcode { .. })));
        let ids = [0, 0x83, 0, 12, 1, 3, 0, 8, 0x60, 1, 2, 3, 4, 5, 6, 7];
        let d = designators(&ids).unwrap();
        assert_eq!((d.len(), d[0].kind, d[0].id.len()), (1, 3, 8));
        assert_eq!(unique_id(&d).as_deref(), Some("naa:6001020304050607"));
        // A target port's designator names a path, not the disk.
        let port = [0, 0x83, 0, 12, 1, 0x13, 0, 8, 0x60, 1, 2, 3, 4, 5, 6, 7];
        let p = designators(&port).unwrap();
        assert_eq!((p[0].association, unique_id(&p)), (1, None));
        // A vendor-specific one names nothing unique.
        let vendor = [0, 0x83, 0, 6, 2, 0, 0, 2, b'a', b'b'];
        assert_eq!(unique_id(&designators(&vendor).unwrap()), None);
        let mut bad = ids;
        bad[7] = 9;
        assert!(designators(&bad).is_err(), "designator beyond the page");
        let mut tail = ids;
        tail[3] = 14;
        assert!(
            designators(&[&tail[..], &[0, 0]].concat()).is_err(),
            "a partial header"
        );
    }

    #[test]
    fn lun_lists() {
        let mut b = [0u8; 8 + 24];
        b[3] = 24;
        b[8 + 8..8 + 10].copy_from_slice(&[0, 1]);
        b[8 + 16..8 + 18].copy_from_slice(&[0x81, 0x22]);
        let l = report_luns(&b).unwrap();
        assert_eq!((l.luns.len(), l.missing), (3, 0));
        assert_eq!(lun_name(&l.luns[0]), "0:0:0");
        assert_eq!(lun_name(&l.luns[1]), "0:0:1");
        assert_eq!(lun_name(&l.luns[2]), "1:1:2");
        assert_eq!(lun_name(&[0xC1, 0, 0, 0, 0, 0, 0, 1]), "c100000000000001");
        // The target has more than was transferred: count, do not read.
        let l = report_luns(&b[..16]).unwrap();
        assert_eq!((l.luns.len(), l.missing), (1, 2));
        b[3] = 20;
        assert!(report_luns(&b).is_err());
        assert!(report_luns(&b[..7]).is_err());
        b[0..4].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(report_luns(&b).is_err());
        b[0..4].copy_from_slice(&0xFFFF_FFF8u32.to_be_bytes());
        assert_eq!(report_luns(&b).unwrap().luns.len(), 3);
    }

    #[test]
    fn capacities() {
        let c = capacity_10(&[0, 0, 0x3F, 0xFF, 0, 0, 2, 0])
            .unwrap()
            .unwrap();
        assert_eq!((c.blocks, c.block_len), (0x4000, 512));
        assert_eq!(
            capacity_10(&[0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 2, 0]).unwrap(),
            None
        );
        assert!(
            capacity_10(&[0, 0, 0, 1, 0, 0, 0, 0]).is_err(),
            "block length 0"
        );
        assert!(
            capacity_10(&[0, 0, 0, 1, 0, 0, 3, 0]).is_err(),
            "block length 768"
        );
        assert!(capacity_10(&[0; 7]).is_err());
        let mut b16 = [0u8; 32];
        b16[..8].copy_from_slice(&(3u64 << 30).to_be_bytes());
        b16[8..12].copy_from_slice(&4096u32.to_be_bytes());
        assert_eq!(capacity_16(&b16).unwrap().blocks, (3 << 30) + 1);
        b16[..8].fill(0xFF);
        assert!(capacity_16(&b16).is_err(), "last LBA overflows");
        assert!(capacity_16(&b16[..11]).is_err());
    }

    #[test]
    fn mode_sense_header() {
        assert_eq!(write_protected(&[3, 0, 0x80, 0]), Ok(true));
        assert_eq!(write_protected(&[3, 0, 0x00, 0]), Ok(false));
        assert!(write_protected(&[3, 0, 0]).is_err());
        assert!(write_protected(&[1, 0, 0x80, 0]).is_err());
    }
}
