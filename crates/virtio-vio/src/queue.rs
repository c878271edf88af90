//! The queue setup block: where a split virtqueue's three parts are, as IOBAs in the guest's
//! TCE window. The guest maps it device-readable and sends QUEUE_SETUP with its IOBA.
//!
//! ```text
//! offset size  field (big-endian)
//!      0    2  queue index
//!      2    2  queue size (a power of two, <= the header's maximum for the queue)
//!      4    4  flags (0)
//!      8    8  IOBA of the descriptor table (16-byte aligned, 16 * size bytes)
//!     16    8  IOBA of the driver area / available ring (2-byte aligned, 6 + 2 * size bytes)
//!     24    8  IOBA of the device area / used ring (4-byte aligned, 6 + 8 * size bytes)
//! ```
//!
//! On QUEUE_SETUP the device reads the used ring's `idx` and starts consuming the available
//! ring there: for a new ring that is 0; for a ring set up again after the server restarted,
//! every buffer the guest made available and the old server had not yet marked used is
//! processed, so no request is lost.

use core::fmt;

pub const LEN: usize = 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueSetup {
    pub queue: u16,
    pub size: u16,
    pub desc: u64,
    pub driver: u64,
    pub device: u64,
}

/// What is wrong with a queue setup block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueError {
    /// The block names another queue than the message.
    WrongQueue {
        block: u16,
        message: u16,
    },
    BadSize(u16),
    Misaligned {
        part: &'static str,
        ioba: u64,
    },
}

impl fmt::Display for QueueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QueueError::WrongQueue { block, message } => {
                write!(
                    f,
                    "setup block is for queue {block}, message for queue {message}"
                )
            }
            QueueError::BadSize(s) => write!(f, "queue size {s} is not a power of two <= 32768"),
            QueueError::Misaligned { part, ioba } => {
                write!(f, "{part} at IOBA {ioba:#x} is misaligned")
            }
        }
    }
}

impl QueueSetup {
    /// Bytes of the descriptor table, available ring and used ring for `size` entries.
    pub fn part_sizes(size: u16) -> (u64, u64, u64) {
        let n = u64::from(size);
        (16 * n, 6 + 2 * n, 6 + 8 * n)
    }

    pub fn encode(&self) -> [u8; LEN] {
        let mut b = [0u8; LEN];
        b[0..2].copy_from_slice(&self.queue.to_be_bytes());
        b[2..4].copy_from_slice(&self.size.to_be_bytes());
        b[8..16].copy_from_slice(&self.desc.to_be_bytes());
        b[16..24].copy_from_slice(&self.driver.to_be_bytes());
        b[24..32].copy_from_slice(&self.device.to_be_bytes());
        b
    }

    /// Decodes and checks the block for the queue the message named.
    pub fn decode(b: &[u8; LEN], queue: u16) -> Result<QueueSetup, QueueError> {
        let q = QueueSetup {
            queue: crate::be16(b, 0),
            size: crate::be16(b, 2),
            desc: crate::be64(b, 8),
            driver: crate::be64(b, 16),
            device: crate::be64(b, 24),
        };
        if q.queue != queue {
            return Err(QueueError::WrongQueue {
                block: q.queue,
                message: queue,
            });
        }
        if !q.size.is_power_of_two() || q.size > crate::header::MAX_QUEUE_SIZE {
            return Err(QueueError::BadSize(q.size));
        }
        for (part, ioba, align) in [
            ("descriptor table", q.desc, 16),
            ("available ring", q.driver, 2),
            ("used ring", q.device, 4),
        ] {
            if ioba % align != 0 {
                return Err(QueueError::Misaligned { part, ioba });
            }
        }
        Ok(q)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_checks() {
        let q = QueueSetup {
            queue: 0,
            size: 128,
            desc: 0x1000,
            driver: 0x1800,
            device: 0x2000,
        };
        assert_eq!(QueueSetup::decode(&q.encode(), 0), Ok(q));
        assert_eq!(
            QueueSetup::decode(&q.encode(), 1),
            Err(QueueError::WrongQueue {
                block: 0,
                message: 1
            })
        );
        let bad = QueueSetup { size: 100, ..q };
        assert_eq!(
            QueueSetup::decode(&bad.encode(), 0),
            Err(QueueError::BadSize(100))
        );
        let bad = QueueSetup {
            device: 0x2002,
            ..q
        };
        assert!(matches!(
            QueueSetup::decode(&bad.encode(), 0),
            Err(QueueError::Misaligned {
                part: "used ring",
                ..
            })
        ));
        assert_eq!(QueueSetup::part_sizes(256), (4096, 518, 2054));
    }
}
