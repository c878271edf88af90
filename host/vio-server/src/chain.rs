//! Checks one descriptor chain in the mirror before anything follows it.
//!
//! `virtio-queue`'s `DescriptorChain` is safe to iterate over any table, but it ends a chain
//! silently where it cannot go on (a `next` out of range, a loop cut by its TTL) and follows
//! indirect tables the server has not fetched into the mirror. The server needs to know which
//! buffers to fetch and flush before the device runs, and must refuse a malformed chain rather
//! than serve part of it. So this walk reads the same descriptors (`virtio-queue`'s
//! `Descriptor`, from the mirror) and refuses: a head or `next` out of range, a chain longer
//! than the queue (a loop), an indirect descriptor (VIRTIO_F_INDIRECT_DESC is not offered), a
//! driver-readable descriptor after a device-writable one, more than 2^32 bytes, a buffer
//! outside the window. A chain it accepts is iterated by `DescriptorChain` exactly as walked.

use crate::mirror::Mirror;
use std::fmt;
use virtio_bindings::bindings::virtio_ring::{
    VRING_DESC_F_INDIRECT, VRING_DESC_F_NEXT, VRING_DESC_F_WRITE,
};
use virtio_queue::desc::split::Descriptor;
use vm_memory::{Bytes, GuestAddress};

/// Bytes of one split descriptor.
const DESC_LEN: u64 = 16;

/// One buffer of a checked chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Buffer {
    pub addr: u64,
    pub len: u32,
    /// Device-writable (VIRTQ_DESC_F_WRITE); else driver-readable.
    pub writable: bool,
}

/// Why a chain is refused; `index` is a descriptor index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChainError {
    HeadOutOfRange {
        head: u16,
        size: u16,
    },
    NextOutOfRange {
        index: u16,
        next: u16,
        size: u16,
    },
    /// More descriptors than the queue has: the chain loops.
    Loop {
        head: u16,
        size: u16,
    },
    Indirect {
        index: u16,
    },
    ReadableAfterWritable {
        index: u16,
    },
    OutsideWindow {
        index: u16,
        addr: u64,
        len: u32,
    },
    TooManyBytes {
        head: u16,
    },
    /// The descriptor table itself is not in the mirror (cannot happen after QUEUE_SETUP).
    TableUnreadable {
        index: u16,
    },
    /// A device-writable buffer overlaps the descriptor table or available ring: the server
    /// would change the chain under its own feet.
    OverlapsRing {
        index: u16,
        addr: u64,
        len: u32,
    },
}

impl fmt::Display for ChainError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChainError::HeadOutOfRange { head, size } => {
                write!(f, "head {head} >= queue size {size}")
            }
            ChainError::NextOutOfRange { index, next, size } => {
                write!(f, "descriptor {index}: next {next} >= queue size {size}")
            }
            ChainError::Loop { head, size } => write!(
                f,
                "chain at {head} is longer than {size} descriptors (a loop)"
            ),
            ChainError::Indirect { index } => {
                write!(f, "descriptor {index} is indirect (not negotiated)")
            }
            ChainError::ReadableAfterWritable { index } => {
                write!(
                    f,
                    "descriptor {index} is driver-readable after a device-writable one"
                )
            }
            ChainError::OutsideWindow { index, addr, len } => {
                write!(
                    f,
                    "descriptor {index}: buffer {addr:#x}+{len:#x} is outside the window"
                )
            }
            ChainError::TooManyBytes { head } => write!(f, "chain at {head} holds more than 4 GiB"),
            ChainError::TableUnreadable { index } => {
                write!(f, "descriptor {index} is outside the mirror")
            }
            ChainError::OverlapsRing { index, addr, len } => write!(
                f,
                "descriptor {index}: device-writable buffer {addr:#x}+{len:#x} overlaps the rings"
            ),
        }
    }
}

/// The buffers of the chain at `head` in the descriptor table at `desc_table` of a queue of
/// `size` descriptors, as the mirror holds it. No device-writable buffer may overlap `rings`,
/// ranges `(ioba, len)` (the descriptor table and the available ring).
pub fn walk(
    mirror: &Mirror,
    desc_table: u64,
    size: u16,
    head: u16,
    rings: &[(u64, u64)],
) -> Result<Vec<Buffer>, ChainError> {
    if head >= size {
        return Err(ChainError::HeadOutOfRange { head, size });
    }
    let mut out = Vec::new();
    let mut index = head;
    let mut total: u64 = 0;
    let mut seen_writable = false;
    loop {
        if out.len() >= usize::from(size) {
            return Err(ChainError::Loop { head, size });
        }
        let at = GuestAddress(desc_table + DESC_LEN * u64::from(index));
        let d: Descriptor = mirror
            .memory()
            .read_obj(at)
            .map_err(|_| ChainError::TableUnreadable { index })?;
        let flags = d.flags();
        if flags & VRING_DESC_F_INDIRECT as u16 != 0 {
            return Err(ChainError::Indirect { index });
        }
        let writable = flags & VRING_DESC_F_WRITE as u16 != 0;
        if seen_writable && !writable {
            return Err(ChainError::ReadableAfterWritable { index });
        }
        seen_writable |= writable;
        let addr = d.addr().0;
        if !mirror.contains(addr, u64::from(d.len())) {
            return Err(ChainError::OutsideWindow {
                index,
                addr,
                len: d.len(),
            });
        }
        let end = addr + u64::from(d.len());
        if writable && d.len() > 0 && rings.iter().any(|&(r, n)| addr < r + n && r < end) {
            return Err(ChainError::OverlapsRing {
                index,
                addr,
                len: d.len(),
            });
        }
        total += u64::from(d.len());
        if total > u64::from(u32::MAX) {
            return Err(ChainError::TooManyBytes { head });
        }
        out.push(Buffer {
            addr,
            len: d.len(),
            writable,
        });
        if flags & VRING_DESC_F_NEXT as u16 == 0 {
            return Ok(out);
        }
        let next = d.next();
        if next >= size {
            return Err(ChainError::NextOutOfRange { index, next, size });
        }
        index = next;
    }
}

/// The pieces `(ioba, len)` of the first `len` bytes of the chain's device-writable space.
pub fn writable_prefix(buffers: &[Buffer], len: u64) -> Vec<(u64, u64)> {
    let mut left = len;
    let mut out = Vec::new();
    for b in buffers.iter().filter(|b| b.writable) {
        if left == 0 {
            break;
        }
        let n = left.min(u64::from(b.len));
        if n > 0 {
            out.push((b.addr, n));
        }
        left -= n;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_spans_writable_buffers_only() {
        let bufs = [
            Buffer {
                addr: 0x1000,
                len: 16,
                writable: false,
            },
            Buffer {
                addr: 0x2000,
                len: 512,
                writable: true,
            },
            Buffer {
                addr: 0x3000,
                len: 1,
                writable: true,
            },
        ];
        assert_eq!(
            writable_prefix(&bufs, 513),
            vec![(0x2000, 512), (0x3000, 1)]
        );
        assert_eq!(writable_prefix(&bufs, 100), vec![(0x2000, 100)]);
        assert_eq!(
            writable_prefix(&bufs, 9999),
            vec![(0x2000, 512), (0x3000, 1)]
        );
        assert!(writable_prefix(&bufs, 0).is_empty());
    }
}
