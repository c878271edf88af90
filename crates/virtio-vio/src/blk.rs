//! virtio-blk requests as the driver builds them (virtio 1.2, section 5.2.6): the 16-byte
//! header the device reads first, the request types, the status byte the device writes last,
//! and the feature bits vioboot's driver names. The VIO server reads requests with it.

/// Bytes of a request header: `le32 type`, `le32 reserved`, `le64 sector`.
pub const HEADER_LEN: usize = 16;
/// Bytes a GET_ID answer holds (the serial, NUL-padded when shorter).
pub const ID_BYTES: usize = 20;

/// Request types (`type`).
pub const T_IN: u32 = 0;
pub const T_OUT: u32 = 1;
pub const T_FLUSH: u32 = 4;
pub const T_GET_ID: u32 = 8;

/// Status byte values.
pub const S_OK: u8 = 0;
pub const S_IOERR: u8 = 1;
pub const S_UNSUPP: u8 = 2;

/// Feature bits (virtio 1.2, 5.2.3, and the reserved ones of section 6).
pub const F_RO: u64 = 1 << 5;
pub const F_BLK_SIZE: u64 = 1 << 6;
pub const F_FLUSH: u64 = 1 << 9;
pub const F_RING_INDIRECT_DESC: u64 = 1 << 28;
pub const F_RING_EVENT_IDX: u64 = 1 << 29;
pub const F_VERSION_1: u64 = 1 << 32;

/// Offset of `capacity` (le64, 512-byte sectors) in `struct virtio_blk_config`.
pub const CAPACITY_OFFSET: usize = 0;
/// Offset of `blk_size` (le32) in `struct virtio_blk_config` (after capacity, size_max,
/// seg_max, geometry).
pub const BLK_SIZE_OFFSET: usize = 20;

/// A request header: `kind` (`T_*`) at `sector` (512-byte sectors; 0 where the type has none).
pub fn header(kind: u32, sector: u64) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[..4].copy_from_slice(&kind.to_le_bytes());
    h[8..].copy_from_slice(&sector.to_le_bytes());
    h
}

/// A request header read back: its type and sector.
pub fn parse_header(h: &[u8; HEADER_LEN]) -> (u32, u64) {
    let mut kind = [0u8; 4];
    kind.copy_from_slice(&h[..4]);
    let mut sector = [0u8; 8];
    sector.copy_from_slice(&h[8..]);
    (u32::from_le_bytes(kind), u64::from_le_bytes(sector))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_layout() {
        let h = header(T_OUT, 0x0102_0304_0506_0708);
        assert_eq!(h, [1, 0, 0, 0, 0, 0, 0, 0, 8, 7, 6, 5, 4, 3, 2, 1]);
        assert_eq!(header(T_GET_ID, 0)[..4], [8, 0, 0, 0]);
        assert_eq!(parse_header(&h), (T_OUT, 0x0102_0304_0506_0708));
    }
}
