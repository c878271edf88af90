//! File digests in every algorithm a TPM's active banks use: SHA-256 by vioboot's own
//! (`vioboot_core::sha256`), SHA-1, SHA-384 and SHA-512 by RustCrypto's `sha1` and `sha2`.
//! Computed while a file streams in, so a measured file is read once.

use alloc::vec::Vec;
use sha1::Digest as _;
use tpm::cmd::Digest;
use tpm::{ALG_SHA1, ALG_SHA256, ALG_SHA384, ALG_SHA512};
use vioboot_core::sha256::Sha256;

/// The TPM algorithms vioboot hashes.
pub const ALGORITHMS: [u16; 4] = [ALG_SHA1, ALG_SHA256, ALG_SHA384, ALG_SHA512];

/// One running hash.
enum One {
    Sha1(sha1::Sha1),
    Sha256(Sha256),
    Sha384(sha2::Sha384),
    Sha512(sha2::Sha512),
}

/// Hashes of one stream in several algorithms at once.
pub struct Hashes(Vec<(u16, One)>);

impl Hashes {
    /// Hashes in each of `algs` that vioboot has (others are left out).
    pub fn new(algs: &[u16]) -> Hashes {
        Hashes(
            algs.iter()
                .filter_map(|&a| {
                    let h = match a {
                        ALG_SHA1 => One::Sha1(sha1::Sha1::new()),
                        ALG_SHA256 => One::Sha256(Sha256::new()),
                        ALG_SHA384 => One::Sha384(sha2::Sha384::new()),
                        ALG_SHA512 => One::Sha512(sha2::Sha512::new()),
                        _ => return None,
                    };
                    Some((a, h))
                })
                .collect(),
        )
    }

    pub fn update(&mut self, bytes: &[u8]) {
        for (_, h) in &mut self.0 {
            match h {
                One::Sha1(h) => h.update(bytes),
                One::Sha256(h) => h.update(bytes),
                One::Sha384(h) => h.update(bytes),
                One::Sha512(h) => h.update(bytes),
            }
        }
    }

    /// The digests, in the order the algorithms were given.
    pub fn finish(self) -> Vec<Digest> {
        self.0
            .into_iter()
            .map(|(alg, h)| Digest {
                alg,
                bytes: match h {
                    One::Sha1(h) => h.finalize().to_vec(),
                    One::Sha256(h) => h.finish().to_vec(),
                    One::Sha384(h) => h.finalize().to_vec(),
                    One::Sha512(h) => h.finalize().to_vec(),
                },
            })
            .collect()
    }
}

/// `bytes` hashed in each of `algs`.
pub fn digests(algs: &[u16], bytes: &[u8]) -> Vec<Digest> {
    let mut h = Hashes::new(algs);
    h.update(bytes);
    h.finish()
}

/// What extending a PCR of bank `alg` holding `old` with `digest` makes of it:
/// H(old || digest). `None` for an algorithm vioboot does not hash.
pub fn extended(alg: u16, old: &[u8], digest: &[u8]) -> Option<Vec<u8>> {
    let mut h = Hashes::new(&[alg]);
    h.update(old);
    h.update(digest);
    h.finish().pop().map(|d| d.bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(b: &[u8]) -> alloc::string::String {
        b.iter().map(|x| alloc::format!("{x:02x}")).collect()
    }

    #[test]
    fn the_fips_180_examples() {
        let d = digests(&ALGORITHMS, b"abc");
        assert_eq!(d.len(), 4);
        assert_eq!(hex(&d[0].bytes), "a9993e364706816aba3e25717850c26c9cd0d89d");
        assert_eq!(
            hex(&d[1].bytes),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            hex(&d[2].bytes),
            "cb00753f45a35e8bb5a03d699ac65007272c32ab0eded1631a8b605a43ff5bed8086072ba1e7cc2358baeca134c825a7"
        );
        assert_eq!(
            hex(&d[3].bytes),
            "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f"
        );
        // In pieces, as a file streams in.
        let mut h = Hashes::new(&[ALG_SHA384]);
        h.update(b"a");
        h.update(b"bc");
        assert_eq!(h.finish()[0].bytes, d[2].bytes);
        // Unknown algorithms are left out.
        assert!(digests(&[tpm::ALG_SM3_256], b"abc").is_empty());
        assert_eq!(
            extended(ALG_SHA1, &[0; 20], &d[0].bytes).map(|v| v.len()),
            Some(20)
        );
    }
}
