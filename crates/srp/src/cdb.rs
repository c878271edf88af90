//! The SCSI commands vioboot sends, as CDBs (SPC-4, SBC-3). [`read`] and [`write`] pick the
//! 10-byte form while the LBA and length fit it and the 16-byte form beyond (past 2 TiB of
//! 512-byte blocks).

pub const TEST_UNIT_READY: u8 = 0x00;
pub const INQUIRY: u8 = 0x12;
pub const MODE_SENSE_6: u8 = 0x1A;
pub const READ_CAPACITY_10: u8 = 0x25;
pub const READ_10: u8 = 0x28;
pub const WRITE_10: u8 = 0x2A;
pub const SYNCHRONIZE_CACHE_10: u8 = 0x35;
pub const READ_16: u8 = 0x88;
pub const WRITE_16: u8 = 0x8A;
/// SERVICE ACTION IN(16); service action 0x10 is READ CAPACITY(16).
pub const SERVICE_ACTION_IN_16: u8 = 0x9E;
pub const SA_READ_CAPACITY_16: u8 = 0x10;
pub const REPORT_LUNS: u8 = 0xA0;
/// VPD page: supported pages.
pub const VPD_SUPPORTED: u8 = 0x00;
/// VPD page: unit serial number.
pub const VPD_SERIAL: u8 = 0x80;
/// VPD page: device identification.
pub const VPD_DEVICE_ID: u8 = 0x83;
/// Bytes of READ CAPACITY(16) data vioboot asks for.
pub const READ_CAPACITY_16_LEN: u32 = 32;

/// A CDB of up to 16 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cdb {
    bytes: [u8; 16],
    len: u8,
}

impl Cdb {
    fn new(len: u8) -> Cdb {
        Cdb {
            bytes: [0; 16],
            len,
        }
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }

    pub fn opcode(&self) -> u8 {
        self.bytes[0]
    }

    fn with(mut self, at: usize, b: &[u8]) -> Cdb {
        self.bytes[at..at + b.len()].copy_from_slice(b);
        self
    }
}

pub fn test_unit_ready() -> Cdb {
    Cdb::new(6)
}

/// Standard INQUIRY data (`page` None) or a VPD page, at most `alloc` bytes.
pub fn inquiry(page: Option<u8>, alloc: u16) -> Cdb {
    let (evpd, code) = match page {
        Some(p) => (1, p),
        None => (0, 0),
    };
    Cdb::new(6)
        .with(0, &[INQUIRY, evpd, code])
        .with(3, &alloc.to_be_bytes())
}

/// REPORT LUNS, select report 0 (every logical unit), at most `alloc` bytes.
pub fn report_luns(alloc: u32) -> Cdb {
    Cdb::new(12)
        .with(0, &[REPORT_LUNS])
        .with(6, &alloc.to_be_bytes())
}

pub fn read_capacity_10() -> Cdb {
    Cdb::new(10).with(0, &[READ_CAPACITY_10])
}

pub fn read_capacity_16() -> Cdb {
    Cdb::new(16)
        .with(0, &[SERVICE_ACTION_IN_16, SA_READ_CAPACITY_16])
        .with(10, &READ_CAPACITY_16_LEN.to_be_bytes())
}

/// MODE SENSE(6) of all pages, no block descriptors: the header's WP bit says read-only.
pub fn mode_sense_6(alloc: u8) -> Cdb {
    Cdb::new(6).with(0, &[MODE_SENSE_6, 0x08, 0x3F, 0, alloc])
}

/// SYNCHRONIZE CACHE(10) of the whole medium.
pub fn synchronize_cache_10() -> Cdb {
    Cdb::new(10).with(0, &[SYNCHRONIZE_CACHE_10])
}

/// Whether `lba`/`blocks` need the 16-byte forms.
pub fn needs_16(lba: u64, blocks: u32) -> bool {
    blocks > u32::from(u16::MAX) || lba.saturating_add(u64::from(blocks)) > 1 << 32
}

fn rw(op10: u8, op16: u8, lba: u64, blocks: u32) -> Cdb {
    if needs_16(lba, blocks) {
        Cdb::new(16)
            .with(0, &[op16])
            .with(2, &lba.to_be_bytes())
            .with(10, &blocks.to_be_bytes())
    } else {
        Cdb::new(10)
            .with(0, &[op10])
            .with(2, &(lba as u32).to_be_bytes())
            .with(7, &(blocks as u16).to_be_bytes())
    }
}

/// READ(10), or READ(16) when the range needs it.
pub fn read(lba: u64, blocks: u32) -> Cdb {
    rw(READ_10, READ_16, lba, blocks)
}

/// WRITE(10), or WRITE(16) when the range needs it.
pub fn write(lba: u64, blocks: u32) -> Cdb {
    rw(WRITE_10, WRITE_16, lba, blocks)
}

/// The command's name, for errors.
pub fn name(opcode: u8) -> &'static str {
    match opcode {
        TEST_UNIT_READY => "TEST UNIT READY",
        INQUIRY => "INQUIRY",
        MODE_SENSE_6 => "MODE SENSE(6)",
        READ_CAPACITY_10 => "READ CAPACITY(10)",
        READ_10 => "READ(10)",
        WRITE_10 => "WRITE(10)",
        SYNCHRONIZE_CACHE_10 => "SYNCHRONIZE CACHE(10)",
        READ_16 => "READ(16)",
        WRITE_16 => "WRITE(16)",
        SERVICE_ACTION_IN_16 => "READ CAPACITY(16)",
        REPORT_LUNS => "REPORT LUNS",
        _ => "command",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts() {
        assert_eq!(test_unit_ready().as_bytes(), &[0; 6]);
        assert_eq!(inquiry(None, 96).as_bytes(), &[0x12, 0, 0, 0, 96, 0]);
        assert_eq!(
            inquiry(Some(0x80), 255).as_bytes(),
            &[0x12, 1, 0x80, 0, 255, 0]
        );
        assert_eq!(
            report_luns(4096).as_bytes(),
            &[0xA0, 0, 0, 0, 0, 0, 0, 0, 0x10, 0, 0, 0]
        );
        assert_eq!(
            read_capacity_10().as_bytes(),
            &[0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0]
        );
        let rc16 = read_capacity_16();
        assert_eq!(&rc16.as_bytes()[..2], &[0x9E, 0x10]);
        assert_eq!(rc16.as_bytes()[13], 32);
        assert_eq!(mode_sense_6(192).as_bytes(), &[0x1A, 0x08, 0x3F, 0, 192, 0]);
        assert_eq!(synchronize_cache_10().as_bytes()[0], 0x35);
        assert_eq!(name(0x9E), "READ CAPACITY(16)");
    }

    #[test]
    fn read_write_pick_10_or_16() {
        assert_eq!(
            read(0x0102_0304, 8).as_bytes(),
            &[0x28, 0, 1, 2, 3, 4, 0, 0, 8, 0]
        );
        assert_eq!(write(5, 1).as_bytes()[0], 0x2A);
        // The last block below 2^32 still fits READ(10).
        assert_eq!(read((1 << 32) - 1, 1).as_bytes().len(), 10);
        let r = read(1 << 32, 1);
        assert_eq!(r.as_bytes().len(), 16);
        assert_eq!(&r.as_bytes()[..10], &[0x88, 0, 0, 0, 0, 1, 0, 0, 0, 0]);
        assert_eq!(&r.as_bytes()[10..14], &[0, 0, 0, 1]);
        assert_eq!(write(0, 0x1_0000).as_bytes()[0], 0x8A, "length beyond u16");
    }
}
