//! The two byte streams of one request's chain, as the mirror holds them: the driver-readable
//! buffers (the FUSE request) and the device-writable ones (space for the reply).
//!
//! `fuse-backend-rs` reads and writes them through its own `Reader`/`Writer`; this is for the
//! few places that must look at, or change, bytes around it: the request header before the
//! FUSE server sees it (flag translation), and the reply after it (faults).

use crate::mirror::MirrorMemory;
use virtio_queue::DescriptorChain;
use vm_memory::{Bytes, GuestAddress};

/// One run of bytes in the mirror.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Segment {
    addr: u64,
    len: u64,
}

/// A chain's readable and writable buffers, each a stream starting at offset 0.
#[derive(Debug, Clone, Default)]
pub struct Streams {
    readable: Vec<Segment>,
    writable: Vec<Segment>,
}

/// Which of the two streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The driver-readable buffers: the request.
    Request,
    /// The device-writable buffers: the reply.
    Reply,
}

impl Streams {
    /// The buffers of `chain` (already checked by `chain::walk`: direct, in order, inside the
    /// window).
    pub fn of(chain: &DescriptorChain<&MirrorMemory>) -> Streams {
        let mut s = Streams::default();
        for d in chain.clone() {
            let seg = Segment {
                addr: d.addr().0,
                len: u64::from(d.len()),
            };
            if d.is_write_only() {
                s.writable.push(seg);
            } else {
                s.readable.push(seg);
            }
        }
        s
    }

    fn side(&self, side: Side) -> &[Segment] {
        match side {
            Side::Request => &self.readable,
            Side::Reply => &self.writable,
        }
    }

    /// Bytes in one stream.
    pub fn len(&self, side: Side) -> u64 {
        self.side(side).iter().map(|s| s.len).sum()
    }

    /// The pieces `(addr, len)` of `[offset, offset+len)` of a stream, or `None` if it runs past
    /// the end.
    fn pieces(&self, side: Side, offset: u64, len: u64) -> Option<Vec<(u64, usize)>> {
        let mut out = Vec::new();
        let (mut skip, mut left) = (offset, len);
        for s in self.side(side) {
            if left == 0 {
                break;
            }
            if skip >= s.len {
                skip -= s.len;
                continue;
            }
            let n = (s.len - skip).min(left);
            out.push((s.addr + skip, n as usize));
            skip = 0;
            left -= n;
        }
        (left == 0).then_some(out)
    }

    /// Reads `buf.len()` bytes at `offset` of a stream; false if they are not all there.
    pub fn read(&self, mem: &MirrorMemory, side: Side, offset: u64, buf: &mut [u8]) -> bool {
        let Some(pieces) = self.pieces(side, offset, buf.len() as u64) else {
            return false;
        };
        let mut at = 0;
        for (addr, n) in pieces {
            if mem
                .read_slice(&mut buf[at..at + n], GuestAddress(addr))
                .is_err()
            {
                return false;
            }
            at += n;
        }
        true
    }

    /// The first `len` bytes of a stream (fewer if it is shorter).
    pub fn read_vec(&self, mem: &MirrorMemory, side: Side, len: u64) -> Vec<u8> {
        let mut buf = vec![0u8; len.min(self.len(side)) as usize];
        if self.read(mem, side, 0, &mut buf) {
            buf
        } else {
            Vec::new()
        }
    }

    /// Writes `data` at `offset` of a stream, in the mirror only; false if it does not fit.
    pub fn write(&self, mem: &MirrorMemory, side: Side, offset: u64, data: &[u8]) -> bool {
        let Some(pieces) = self.pieces(side, offset, data.len() as u64) else {
            return false;
        };
        let mut at = 0;
        for (addr, n) in pieces {
            if mem
                .write_slice(&data[at..at + n], GuestAddress(addr))
                .is_err()
            {
                return false;
            }
            at += n;
        }
        true
    }

    /// A little-endian u32 at `offset` of a stream.
    pub fn read_u32(&self, mem: &MirrorMemory, side: Side, offset: u64) -> Option<u32> {
        let mut b = [0u8; 4];
        self.read(mem, side, offset, &mut b)
            .then(|| u32::from_le_bytes(b))
    }

    /// Writes a little-endian u32 at `offset` of a stream.
    pub fn write_u32(&self, mem: &MirrorMemory, side: Side, offset: u64, v: u32) -> bool {
        self.write(mem, side, offset, &v.to_le_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_cross_segments() {
        let s = Streams {
            readable: vec![
                Segment {
                    addr: 0x1000,
                    len: 40,
                },
                Segment {
                    addr: 0x2000,
                    len: 8,
                },
            ],
            writable: vec![],
        };
        assert_eq!(s.len(Side::Request), 48);
        assert_eq!(
            s.pieces(Side::Request, 36, 8),
            Some(vec![(0x1024, 4), (0x2000, 4)])
        );
        assert_eq!(s.pieces(Side::Request, 40, 8), Some(vec![(0x2000, 8)]));
        assert_eq!(s.pieces(Side::Request, 44, 8), None);
        assert_eq!(s.pieces(Side::Request, 0, 0), Some(vec![]));
        assert_eq!(s.pieces(Side::Reply, 0, 1), None);
    }
}
