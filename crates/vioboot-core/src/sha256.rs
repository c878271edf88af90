//! SHA-256 (FIPS 180-4), streaming: the share checks compare files with their manifest, and
//! the bootloader compares kernels with their boot entry.

const K: [u32; 64] = [
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
];

/// A running SHA-256.
#[derive(Clone)]
pub struct Sha256 {
    h: [u32; 8],
    block: [u8; 64],
    fill: usize,
    total: u64,
}

impl Default for Sha256 {
    fn default() -> Self {
        Self::new()
    }
}

impl Sha256 {
    pub fn new() -> Sha256 {
        Sha256 {
            h: [
                0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab,
                0x5be0cd19,
            ],
            block: [0; 64],
            fill: 0,
            total: 0,
        }
    }

    /// One 64-byte block into `h`. Written for an emulated CPU (QEMU's TCG), where every
    /// memory access costs a software TLB look-up: the 16 schedule words live in locals, 16
    /// rounds are unrolled so that the eight working variables are renamed instead of moved,
    /// and the schedule is extended in place between the four groups of 16 rounds.
    fn compress(h: &mut [u32; 8], b: &[u8; 64]) {
        macro_rules! word {
            ($i:expr) => {
                u32::from_be_bytes([b[4 * $i], b[4 * $i + 1], b[4 * $i + 2], b[4 * $i + 3]])
            };
        }
        let mut w = [
            word!(0),
            word!(1),
            word!(2),
            word!(3),
            word!(4),
            word!(5),
            word!(6),
            word!(7),
            word!(8),
            word!(9),
            word!(10),
            word!(11),
            word!(12),
            word!(13),
            word!(14),
            word!(15),
        ];
        let [mut a, mut b2, mut c, mut d, mut e, mut f, mut g, mut hh] = *h;
        // Round `i` of the group: `k` is the group's constants.
        macro_rules! round {
            ($a:ident, $b:ident, $c:ident, $d:ident, $e:ident, $f:ident, $g:ident, $h:ident, $k:ident, $i:expr) => {
                let t1 = $h
                    .wrapping_add($e.rotate_right(6) ^ $e.rotate_right(11) ^ $e.rotate_right(25))
                    .wrapping_add($g ^ ($e & ($f ^ $g)))
                    .wrapping_add($k[$i])
                    .wrapping_add(w[$i]);
                let t2 = ($a.rotate_right(2) ^ $a.rotate_right(13) ^ $a.rotate_right(22))
                    .wrapping_add(($a & $b) | ($c & ($a | $b)));
                $d = $d.wrapping_add(t1);
                $h = t1.wrapping_add(t2);
            };
        }
        // w[i] of the next group, from the 16 words before it (w[i] itself is W[t-16]).
        macro_rules! extend {
            ($i:expr) => {
                let x = w[($i + 1) % 16];
                let y = w[($i + 14) % 16];
                w[$i] = w[$i]
                    .wrapping_add(x.rotate_right(7) ^ x.rotate_right(18) ^ (x >> 3))
                    .wrapping_add(w[($i + 9) % 16])
                    .wrapping_add(y.rotate_right(17) ^ y.rotate_right(19) ^ (y >> 10));
            };
        }
        for (group, k) in K.chunks_exact(16).enumerate() {
            round!(a, b2, c, d, e, f, g, hh, k, 0);
            round!(hh, a, b2, c, d, e, f, g, k, 1);
            round!(g, hh, a, b2, c, d, e, f, k, 2);
            round!(f, g, hh, a, b2, c, d, e, k, 3);
            round!(e, f, g, hh, a, b2, c, d, k, 4);
            round!(d, e, f, g, hh, a, b2, c, k, 5);
            round!(c, d, e, f, g, hh, a, b2, k, 6);
            round!(b2, c, d, e, f, g, hh, a, k, 7);
            round!(a, b2, c, d, e, f, g, hh, k, 8);
            round!(hh, a, b2, c, d, e, f, g, k, 9);
            round!(g, hh, a, b2, c, d, e, f, k, 10);
            round!(f, g, hh, a, b2, c, d, e, k, 11);
            round!(e, f, g, hh, a, b2, c, d, k, 12);
            round!(d, e, f, g, hh, a, b2, c, k, 13);
            round!(c, d, e, f, g, hh, a, b2, k, 14);
            round!(b2, c, d, e, f, g, hh, a, k, 15);
            if group < 3 {
                extend!(0);
                extend!(1);
                extend!(2);
                extend!(3);
                extend!(4);
                extend!(5);
                extend!(6);
                extend!(7);
                extend!(8);
                extend!(9);
                extend!(10);
                extend!(11);
                extend!(12);
                extend!(13);
                extend!(14);
                extend!(15);
            }
        }
        for (x, v) in h.iter_mut().zip([a, b2, c, d, e, f, g, hh]) {
            *x = x.wrapping_add(v);
        }
    }

    pub fn update(&mut self, mut data: &[u8]) {
        self.total += data.len() as u64;
        if self.fill > 0 {
            let n = (64 - self.fill).min(data.len());
            self.block[self.fill..self.fill + n].copy_from_slice(&data[..n]);
            self.fill += n;
            data = &data[n..];
            if self.fill < 64 {
                return;
            }
            let b = self.block;
            Self::compress(&mut self.h, &b);
            self.fill = 0;
        }
        let mut chunks = data.chunks_exact(64);
        for c in &mut chunks {
            // Never fails: chunks_exact gives 64 bytes. No copy of the block.
            if let Ok(b) = <&[u8; 64]>::try_from(c) {
                Self::compress(&mut self.h, b);
            }
        }
        let rest = chunks.remainder();
        self.block[..rest.len()].copy_from_slice(rest);
        self.fill = rest.len();
    }

    pub fn finish(mut self) -> [u8; 32] {
        let bits = self.total.wrapping_mul(8);
        self.update(&[0x80]);
        while self.fill != 56 {
            self.update(&[0]);
        }
        self.update(&bits.to_be_bytes());
        let mut out = [0u8; 32];
        for (o, v) in out.chunks_mut(4).zip(self.h) {
            o.copy_from_slice(&v.to_be_bytes());
        }
        out
    }
}

/// SHA-256 of `data`.
pub fn digest(data: &[u8]) -> [u8; 32] {
    let mut s = Sha256::new();
    s.update(data);
    s.finish()
}

/// Lower-case hex of a digest.
pub fn hex(d: &[u8; 32]) -> alloc::string::String {
    use core::fmt::Write;
    let mut s = alloc::string::String::with_capacity(64);
    for b in d {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// Parses 64 hex digits.
pub fn parse_hex(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_vectors() {
        assert_eq!(
            hex(&digest(b"")),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            hex(&digest(b"abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            hex(&digest(
                b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"
            )),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"
        );
        let million = alloc::vec![b'a'; 1_000_000];
        assert_eq!(
            hex(&digest(&million)),
            "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"
        );
    }

    #[test]
    fn streaming_in_odd_pieces_matches() {
        let data: alloc::vec::Vec<u8> = (0..10_000u32).map(|i| (i * 31) as u8).collect();
        let mut s = Sha256::new();
        for c in data.chunks(37) {
            s.update(c);
        }
        assert_eq!(s.finish(), digest(&data));
        assert_eq!(parse_hex(&hex(&digest(b"x"))), Some(digest(b"x")));
        assert_eq!(parse_hex("zz"), None);
    }
}
