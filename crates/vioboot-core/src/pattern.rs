//! The test pattern of virtio-vio block disks: what the test harness writes into a disk image
//! and vioboot verifies, sector by sector. A disk carries the pattern when sector 0 starts with
//! [`MAGIC`]; only such a disk is ever written by vioboot's checks.

/// First bytes of sector 0 of a pattern disk.
pub const MAGIC: &[u8; 16] = b"VIOBOOT-PATTERN\n";
pub const SECTOR: usize = 512;

/// Fills `buf` (one sector) with the pattern of sector `lba` under `seed` (0 for the image the
/// harness writes; a fresh seed for vioboot's own write tests).
pub fn fill(seed: u64, lba: u64, buf: &mut [u8]) {
    let mut x = seed ^ lba.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03;
    for chunk in buf.chunks_mut(8) {
        // xorshift64*: cheap, and every sector differs from every other.
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        let v = x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes();
        chunk.copy_from_slice(&v[..chunk.len()]);
    }
    if lba == 0 && seed == 0 && buf.len() >= MAGIC.len() {
        buf[..MAGIC.len()].copy_from_slice(MAGIC);
    }
}

/// Whether `buf` holds the pattern of sector `lba`; on a mismatch, the first differing offset.
pub fn check(seed: u64, lba: u64, buf: &[u8]) -> Result<(), usize> {
    let mut want = [0u8; SECTOR];
    fill(seed, lba, &mut want[..buf.len().min(SECTOR)]);
    match buf.iter().zip(want.iter()).position(|(a, b)| a != b) {
        Some(at) => Err(at),
        None => Ok(()),
    }
}

/// Fills `buf` (whole sectors) with the pattern of the sectors from `first`.
pub fn fill_run(seed: u64, first: u64, buf: &mut [u8]) {
    for (i, s) in buf.chunks_mut(SECTOR).enumerate() {
        fill(seed, first + i as u64, s);
    }
}

/// Checks `buf` (whole sectors from `first`); on a mismatch, the sector and byte offset.
pub fn check_run(seed: u64, first: u64, buf: &[u8]) -> Result<(), (u64, usize)> {
    match buf
        .chunks(SECTOR)
        .enumerate()
        .find_map(|(i, s)| check(seed, first + i as u64, s).err().map(|o| (i, o)))
    {
        Some((i, o)) => Err((first + i as u64, o)),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sectors_differ_and_check_finds_damage() {
        let (mut a, mut b) = ([0u8; SECTOR], [0u8; SECTOR]);
        fill(0, 0, &mut a);
        fill(0, 1, &mut b);
        assert_eq!(&a[..16], MAGIC);
        assert_ne!(a[16..], b[16..]);
        assert_eq!(check(0, 1, &b), Ok(()));
        b[100] ^= 1;
        assert_eq!(check(0, 1, &b), Err(100));
        fill(7, 1, &mut a);
        assert!(check(0, 1, &a).is_err(), "the seed changes the pattern");
    }

    #[test]
    fn runs_name_the_first_bad_sector() {
        let mut run = [0u8; 4 * SECTOR];
        fill_run(3, 10, &mut run);
        assert_eq!(check_run(3, 10, &run), Ok(()));
        run[2 * SECTOR + 5] ^= 0xff;
        assert_eq!(check_run(3, 10, &run), Err((12, 5)));
    }
}
