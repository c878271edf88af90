//! Packing console bytes into the registers of H_PUT_TERM_CHAR and out of H_GET_TERM_CHAR.
//!
//! PAPR passes up to 16 bytes in two registers, big-endian: byte 0 in the top byte of the first.

/// Most bytes one H_PUT_TERM_CHAR carries.
pub const MAX_CHUNK: usize = 16;

/// Packs up to 16 bytes into the two argument registers. Panics on more than 16 bytes.
pub fn pack(bytes: &[u8]) -> (u64, u64) {
    assert!(
        bytes.len() <= MAX_CHUNK,
        "hvterm chunk of {} bytes",
        bytes.len()
    );
    let mut buf = [0u8; MAX_CHUNK];
    buf[..bytes.len()].copy_from_slice(bytes);
    let (hi, lo) = buf.split_at(8);
    (
        u64::from_be_bytes(hi.try_into().unwrap_or([0; 8])),
        u64::from_be_bytes(lo.try_into().unwrap_or([0; 8])),
    )
}

/// Unpacks `count` bytes (at most 16; more is clamped) returned by H_GET_TERM_CHAR.
pub fn unpack(count: u64, r1: u64, r2: u64, out: &mut [u8; MAX_CHUNK]) -> usize {
    out[..8].copy_from_slice(&r1.to_be_bytes());
    out[8..].copy_from_slice(&r2.to_be_bytes());
    (count as usize).min(MAX_CHUNK)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_byte_goes_to_the_top_of_the_first_register() {
        assert_eq!(pack(b"A"), (0x4100_0000_0000_0000, 0));
        assert_eq!(
            pack(b"0123456789abcdef"),
            (0x3031_3233_3435_3637, 0x3839_6162_6364_6566)
        );
    }

    #[test]
    fn unpack_round_trips_and_clamps() {
        let (a, b) = pack(b"hello, world");
        let mut out = [0; MAX_CHUNK];
        let n = unpack(12, a, b, &mut out);
        assert_eq!(&out[..n], b"hello, world");
        assert_eq!(unpack(99, a, b, &mut out), 16);
    }

    #[test]
    #[should_panic]
    fn more_than_16_bytes_is_a_bug() {
        pack(&[0; 17]);
    }
}
