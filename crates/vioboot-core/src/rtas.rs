//! The RTAS argument block: `{token, nargs, nret, args..., rets...}` as big-endian u32 words.

/// Most inputs plus outputs one call may carry (PAPR allows 16 words in all after the header).
pub const MAX_WORDS: usize = 16;

/// Size in bytes of the block for the largest call.
pub const BLOCK_BYTES: usize = 4 * (3 + MAX_WORDS);

/// Why an RTAS argument block could not be built or read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PackError {
    TooManyWords { nargs: usize, nret: usize },
}

/// Writes the call block for `token` with `args`, leaving `nret` zeroed return words.
/// Returns the number of bytes used.
pub fn pack(
    token: u32,
    args: &[u32],
    nret: usize,
    block: &mut [u8; BLOCK_BYTES],
) -> Result<usize, PackError> {
    if args.len() + nret > MAX_WORDS {
        return Err(PackError::TooManyWords {
            nargs: args.len(),
            nret,
        });
    }
    block.fill(0);
    let header = [token, args.len() as u32, nret as u32];
    for (i, w) in header.iter().chain(args).enumerate() {
        block[4 * i..4 * i + 4].copy_from_slice(&w.to_be_bytes());
    }
    Ok(4 * (3 + args.len() + nret))
}

/// Reads return word `i` of a block packed by [`pack`] (word 0 is the RTAS status).
pub fn ret(block: &[u8; BLOCK_BYTES], i: usize) -> u32 {
    let nargs = u32::from_be_bytes([block[4], block[5], block[6], block[7]]) as usize;
    let at = 4 * (3 + nargs + i);
    match block.get(at..at + 4) {
        Some(b) => u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
        None => u32::MAX,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packs_power_off() {
        let mut b = [0xAA; BLOCK_BYTES];
        let n = pack(0x2003, &[u32::MAX, u32::MAX], 1, &mut b).unwrap();
        assert_eq!(n, 24);
        assert_eq!(
            &b[..24],
            &[
                0, 0, 0x20, 0x03, 0, 0, 0, 2, 0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                0xff, 0, 0, 0, 0
            ]
        );
        assert!(b[24..].iter().all(|&x| x == 0));
    }

    #[test]
    fn reads_returns_after_args() {
        let mut b = [0; BLOCK_BYTES];
        pack(7, &[1], 2, &mut b).unwrap();
        b[16..20].copy_from_slice(&(-3i32).to_be_bytes());
        b[20..24].copy_from_slice(&42u32.to_be_bytes());
        assert_eq!(ret(&b, 0) as i32, -3);
        assert_eq!(ret(&b, 1), 42);
    }

    #[test]
    fn refuses_oversized_calls() {
        let mut b = [0; BLOCK_BYTES];
        assert_eq!(
            pack(1, &[0; 15], 2, &mut b),
            Err(PackError::TooManyWords { nargs: 15, nret: 2 })
        );
    }
}
