//! The device header: what the server tells the guest at PROBE, written by remote DMA into a
//! device-writable buffer the guest names. Big-endian, except the config bytes, which are the
//! device's virtio config space as the virtio specification lays it out (little-endian fields).
//!
//! ```text
//! offset size  field
//!      0    4  magic 0x56494F56 ("VIOV")
//!      4    2  version (1)
//!      6    2  length of the header in bytes (416)
//!      8    4  virtio device id (2 = block, 26 = filesystem)
//!     12    4  vendor id
//!     16    8  device features
//!     24    2  number of queues (1..=64)
//!     26    2  config length (0..=256)
//!     28    1  device status
//!     29    1  config generation
//!     30    2  reserved (0)
//!     32  128  maximum size of queue i, u16 each (0 = no such queue; else a power of two <= 32768)
//!    160  256  config space (config length bytes valid, rest 0)
//! ```

use core::fmt;

pub const MAGIC: u32 = 0x5649_4F56;
/// Bytes in the header.
pub const LEN: usize = 416;
pub const MAX_QUEUES: usize = 64;
pub const MAX_CONFIG: usize = 256;
/// Largest queue a split virtqueue may have.
pub const MAX_QUEUE_SIZE: u16 = 32768;
const QUEUES_AT: usize = 32;
const CONFIG_AT: usize = 160;

/// A device header, checked.
#[derive(Clone, PartialEq, Eq)]
pub struct Header {
    pub version: u16,
    pub device_id: u32,
    pub vendor_id: u32,
    pub device_features: u64,
    pub num_queues: u16,
    pub queue_max: [u16; MAX_QUEUES],
    pub status: u8,
    pub config_generation: u8,
    pub config_len: u16,
    pub config: [u8; MAX_CONFIG],
}

impl fmt::Debug for Header {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Header")
            .field("device_id", &self.device_id)
            .field(
                "device_features",
                &format_args!("{:#x}", self.device_features),
            )
            .field("num_queues", &self.num_queues)
            .field("queue_max", &&self.queue_max[..self.num_queues as usize])
            .field("config_len", &self.config_len)
            .finish()
    }
}

/// What is wrong with a header; names the field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderError {
    BadMagic(u32),
    BadVersion(u16),
    BadLength(u16),
    BadQueueCount(u16),
    BadConfigLength(u16),
    BadQueueSize { queue: u16, size: u16 },
}

impl fmt::Display for HeaderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HeaderError::BadMagic(m) => write!(f, "header magic {m:#010x} is not {MAGIC:#010x}"),
            HeaderError::BadVersion(v) => write!(f, "header version {v} is not 1"),
            HeaderError::BadLength(l) => write!(f, "header length {l} is not {LEN}"),
            HeaderError::BadQueueCount(n) => write!(f, "{n} queues (allowed 1..={MAX_QUEUES})"),
            HeaderError::BadConfigLength(n) => {
                write!(f, "config length {n} (allowed 0..={MAX_CONFIG})")
            }
            HeaderError::BadQueueSize { queue, size } => {
                write!(
                    f,
                    "queue {queue} maximum size {size} is not a power of two <= {MAX_QUEUE_SIZE}"
                )
            }
        }
    }
}

impl Header {
    /// An empty header for a device of `device_id` (the server fills in the rest).
    pub fn new(device_id: u32) -> Header {
        Header {
            version: crate::VERSION,
            device_id,
            vendor_id: 0,
            device_features: 0,
            num_queues: 0,
            queue_max: [0; MAX_QUEUES],
            status: 0,
            config_generation: 0,
            config_len: 0,
            config: [0; MAX_CONFIG],
        }
    }

    /// The config bytes that are valid.
    pub fn config(&self) -> &[u8] {
        &self.config[..self.config_len as usize]
    }

    pub fn encode(&self) -> [u8; LEN] {
        let mut b = [0u8; LEN];
        b[0..4].copy_from_slice(&MAGIC.to_be_bytes());
        b[4..6].copy_from_slice(&self.version.to_be_bytes());
        b[6..8].copy_from_slice(&(LEN as u16).to_be_bytes());
        b[8..12].copy_from_slice(&self.device_id.to_be_bytes());
        b[12..16].copy_from_slice(&self.vendor_id.to_be_bytes());
        b[16..24].copy_from_slice(&self.device_features.to_be_bytes());
        b[24..26].copy_from_slice(&self.num_queues.to_be_bytes());
        b[26..28].copy_from_slice(&self.config_len.to_be_bytes());
        b[28] = self.status;
        b[29] = self.config_generation;
        for (i, q) in self.queue_max.iter().enumerate() {
            b[QUEUES_AT + 2 * i..QUEUES_AT + 2 * i + 2].copy_from_slice(&q.to_be_bytes());
        }
        b[CONFIG_AT..].copy_from_slice(&self.config);
        b
    }

    /// Decodes and checks every field a driver will rely on.
    pub fn decode(b: &[u8; LEN]) -> Result<Header, HeaderError> {
        let magic = crate::be32(b, 0);
        if magic != MAGIC {
            return Err(HeaderError::BadMagic(magic));
        }
        let version = crate::be16(b, 4);
        if version != crate::VERSION {
            return Err(HeaderError::BadVersion(version));
        }
        let length = crate::be16(b, 6);
        if length as usize != LEN {
            return Err(HeaderError::BadLength(length));
        }
        let num_queues = crate::be16(b, 24);
        if num_queues == 0 || num_queues as usize > MAX_QUEUES {
            return Err(HeaderError::BadQueueCount(num_queues));
        }
        let config_len = crate::be16(b, 26);
        if config_len as usize > MAX_CONFIG {
            return Err(HeaderError::BadConfigLength(config_len));
        }
        let mut queue_max = [0u16; MAX_QUEUES];
        for (i, q) in queue_max.iter_mut().enumerate().take(num_queues as usize) {
            let size = crate::be16(b, QUEUES_AT + 2 * i);
            if size != 0 && (!size.is_power_of_two() || size > MAX_QUEUE_SIZE) {
                return Err(HeaderError::BadQueueSize {
                    queue: i as u16,
                    size,
                });
            }
            *q = size;
        }
        let mut config = [0u8; MAX_CONFIG];
        config[..config_len as usize]
            .copy_from_slice(&b[CONFIG_AT..CONFIG_AT + config_len as usize]);
        Ok(Header {
            version,
            device_id: crate::be32(b, 8),
            vendor_id: crate::be32(b, 12),
            device_features: crate::be64(b, 16),
            num_queues,
            queue_max,
            status: b[28],
            config_generation: b[29],
            config_len,
            config,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blk() -> Header {
        let mut h = Header::new(crate::device_id::BLOCK);
        h.device_features = 1 << 32 | 1 << 5;
        h.num_queues = 1;
        h.queue_max[0] = 256;
        h.config_len = 8;
        h.config[..8].copy_from_slice(&0x2_0000u64.to_le_bytes());
        h
    }

    #[test]
    fn round_trips_with_the_documented_offsets() {
        let b = blk().encode();
        assert_eq!(&b[0..4], b"VIOV");
        assert_eq!(&b[6..8], &[0x01, 0xa0]);
        assert_eq!(&b[8..12], &[0, 0, 0, 2]);
        assert_eq!(&b[32..34], &[0x01, 0x00]);
        assert_eq!(&b[160..168], &0x2_0000u64.to_le_bytes());
        assert_eq!(Header::decode(&b), Ok(blk()));
        assert_eq!(Header::decode(&b).unwrap().config().len(), 8);
    }

    #[test]
    fn refuses_impossible_sizes() {
        let mut b = blk().encode();
        b[24..26].copy_from_slice(&65u16.to_be_bytes());
        assert_eq!(Header::decode(&b), Err(HeaderError::BadQueueCount(65)));
        let mut b = blk().encode();
        b[26..28].copy_from_slice(&300u16.to_be_bytes());
        assert_eq!(Header::decode(&b), Err(HeaderError::BadConfigLength(300)));
        let mut b = blk().encode();
        b[32..34].copy_from_slice(&100u16.to_be_bytes());
        assert_eq!(
            Header::decode(&b),
            Err(HeaderError::BadQueueSize {
                queue: 0,
                size: 100
            })
        );
        let mut b = blk().encode();
        b[0] = 0;
        assert!(matches!(Header::decode(&b), Err(HeaderError::BadMagic(_))));
        let mut b = blk().encode();
        b[7] = 0;
        assert!(matches!(Header::decode(&b), Err(HeaderError::BadLength(_))));
    }
}
