//! virtio-vio messages: CRQ command/response entries with format byte [`FORMAT`].
//!
//! ```text
//! byte  0     0x80 (command/response)
//! byte  1     0x56 'V' (virtio-vio)
//! byte  2     opcode; a response has the request's opcode | 0x80
//! byte  3     request: length for READ_CONFIG/WRITE_CONFIG, else 0; response: status
//! bytes 4-5   tag (big-endian): chosen by the guest, echoed in the response
//! bytes 6-7   arg16 (big-endian): queue index, config offset or version
//! bytes 8-15  arg64 (big-endian), or up to 8 raw config bytes
//! ```
//!
//! Everything larger (the device header, queue addresses) travels through the guest's TCE window
//! by remote DMA, and an entry names its IOBA.

use core::fmt;
use papr::crq::{ENTRY_LEN, VALID_CMD_RESP};

/// Byte 1 of every virtio-vio message.
pub const FORMAT: u8 = 0x56;
/// Added to a request's opcode in its response.
pub const RESPONSE: u8 = 0x80;
/// Most config bytes one READ_CONFIG/WRITE_CONFIG carries.
pub const CONFIG_CHUNK: usize = 8;

/// What a message asks or tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Opcode {
    /// Guest: arg16 = highest protocol version it speaks, arg64 = IOBA of a device-writable
    /// buffer of [`crate::header::LEN`] bytes. The server writes the device header there, then
    /// responds with arg16 = the version both will speak.
    Probe = 0x01,
    /// Guest: arg64 = the features the driver accepts (a subset of the device's).
    SetFeatures = 0x02,
    /// Guest: arg64 = the new device status byte; 0 resets the device and all its queues.
    SetStatus = 0x03,
    /// Guest: response arg64 = the device status byte.
    GetStatus = 0x04,
    /// Guest: arg16 = offset, byte 3 = length (1..=8); response bytes 8.. = config bytes.
    ReadConfig = 0x05,
    /// Guest: arg16 = offset, byte 3 = length (1..=8), bytes 8.. = the bytes to write.
    WriteConfig = 0x06,
    /// Guest: arg16 = queue, arg64 = IOBA of a device-readable queue setup block.
    QueueSetup = 0x07,
    /// Guest: arg16 = queue; the server forgets the queue.
    QueueReset = 0x08,
    /// Guest: arg16 = queue has new available buffers. No response: the server answers with
    /// [`Opcode::Used`] once it has processed every available buffer it found.
    Notify = 0x09,
    /// Server: arg16 = queue, arg64 = the used ring's index after processing. Sent once for
    /// every NOTIFY (also when it found nothing to do), and whenever the used ring advances.
    Used = 0x40,
    /// Server: the device configuration changed; arg64 = the new config generation.
    ConfigChanged = 0x41,
}

impl Opcode {
    pub fn from_u8(v: u8) -> Option<Opcode> {
        Some(match v {
            0x01 => Opcode::Probe,
            0x02 => Opcode::SetFeatures,
            0x03 => Opcode::SetStatus,
            0x04 => Opcode::GetStatus,
            0x05 => Opcode::ReadConfig,
            0x06 => Opcode::WriteConfig,
            0x07 => Opcode::QueueSetup,
            0x08 => Opcode::QueueReset,
            0x09 => Opcode::Notify,
            0x40 => Opcode::Used,
            0x41 => Opcode::ConfigChanged,
            _ => return None,
        })
    }

    /// Whether the guest waits for a response to this request.
    pub fn has_response(self) -> bool {
        !matches!(self, Opcode::Notify | Opcode::Used | Opcode::ConfigChanged)
    }

    pub fn name(self) -> &'static str {
        match self {
            Opcode::Probe => "PROBE",
            Opcode::SetFeatures => "SET_FEATURES",
            Opcode::SetStatus => "SET_STATUS",
            Opcode::GetStatus => "GET_STATUS",
            Opcode::ReadConfig => "READ_CONFIG",
            Opcode::WriteConfig => "WRITE_CONFIG",
            Opcode::QueueSetup => "QUEUE_SETUP",
            Opcode::QueueReset => "QUEUE_RESET",
            Opcode::Notify => "NOTIFY",
            Opcode::Used => "USED",
            Opcode::ConfigChanged => "CONFIG_CHANGED",
        }
    }
}

/// A response's status (byte 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Status {
    Ok = 0,
    /// The server does not know the opcode.
    BadOpcode = 1,
    /// An argument is out of range (queue index, size, offset, length, features not offered).
    BadArgument = 2,
    /// A remote DMA through the guest's window failed (unmapped or wrong permission).
    DmaFailed = 3,
    /// Not allowed in the device's state (e.g. QUEUE_SETUP after DRIVER_OK, or before PROBE).
    BadState = 4,
    /// No protocol version in common.
    BadVersion = 5,
    /// The backend failed.
    DeviceError = 6,
}

impl Status {
    pub fn from_u8(v: u8) -> Option<Status> {
        Some(match v {
            0 => Status::Ok,
            1 => Status::BadOpcode,
            2 => Status::BadArgument,
            3 => Status::DmaFailed,
            4 => Status::BadState,
            5 => Status::BadVersion,
            6 => Status::DeviceError,
            _ => return None,
        })
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Status::Ok => "ok",
            Status::BadOpcode => "unknown opcode",
            Status::BadArgument => "bad argument",
            Status::DmaFailed => "remote DMA failed",
            Status::BadState => "not allowed in this device state",
            Status::BadVersion => "no common protocol version",
            Status::DeviceError => "device error",
        })
    }
}

/// One virtio-vio message, decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Message {
    pub opcode: Opcode,
    pub response: bool,
    /// Byte 3: status of a response, length of a config request.
    pub byte3: u8,
    pub tag: u16,
    pub arg16: u16,
    /// Bytes 8..15 as a big-endian number.
    pub arg64: u64,
}

/// Why 16 bytes are not a virtio-vio message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeError {
    /// Byte 0 is not 0x80.
    NotCommand(u8),
    /// Byte 1 is another protocol's format.
    Format(u8),
    /// Byte 2 is no opcode of ours.
    Opcode(u8),
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::NotCommand(b) => write!(f, "byte 0 is {b:#04x}, not a command/response"),
            DecodeError::Format(b) => {
                write!(f, "format {b:#04x} is not virtio-vio ({FORMAT:#04x})")
            }
            DecodeError::Opcode(b) => write!(f, "unknown opcode {b:#04x}"),
        }
    }
}

impl Message {
    /// A request (or a server notice such as USED) with byte 3 = 0.
    pub fn request(opcode: Opcode, tag: u16, arg16: u16, arg64: u64) -> Message {
        Message {
            opcode,
            response: false,
            byte3: 0,
            tag,
            arg16,
            arg64,
        }
    }

    /// The response to `req` with `status`.
    pub fn response_to(req: &Message, status: Status, arg16: u16, arg64: u64) -> Message {
        Message {
            opcode: req.opcode,
            response: true,
            byte3: status as u8,
            tag: req.tag,
            arg16,
            arg64,
        }
    }

    /// A config request: `len` bytes at `offset`; `data` (for writes) in bytes 8.. .
    pub fn config(
        opcode: Opcode,
        tag: u16,
        offset: u16,
        len: u8,
        data: [u8; CONFIG_CHUNK],
    ) -> Message {
        Message {
            opcode,
            response: false,
            byte3: len,
            tag,
            arg16: offset,
            arg64: u64::from_be_bytes(data),
        }
    }

    /// The status byte of a response (`None` if it is not one we know).
    pub fn status(&self) -> Option<Status> {
        Status::from_u8(self.byte3)
    }

    /// Bytes 8..15 as raw bytes (config data).
    pub fn data(&self) -> [u8; CONFIG_CHUNK] {
        self.arg64.to_be_bytes()
    }

    pub fn encode(&self) -> [u8; ENTRY_LEN] {
        let mut b = [0u8; ENTRY_LEN];
        b[0] = VALID_CMD_RESP;
        b[1] = FORMAT;
        b[2] = self.opcode as u8 | if self.response { RESPONSE } else { 0 };
        b[3] = self.byte3;
        b[4..6].copy_from_slice(&self.tag.to_be_bytes());
        b[6..8].copy_from_slice(&self.arg16.to_be_bytes());
        b[8..].copy_from_slice(&self.arg64.to_be_bytes());
        b
    }

    pub fn decode(b: &[u8; ENTRY_LEN]) -> Result<Message, DecodeError> {
        if b[0] != VALID_CMD_RESP {
            return Err(DecodeError::NotCommand(b[0]));
        }
        if b[1] != FORMAT {
            return Err(DecodeError::Format(b[1]));
        }
        let opcode = Opcode::from_u8(b[2] & !RESPONSE).ok_or(DecodeError::Opcode(b[2]))?;
        Ok(Message {
            opcode,
            response: b[2] & RESPONSE != 0,
            byte3: b[3],
            tag: crate::be16(b, 4),
            arg16: crate::be16(b, 6),
            arg64: crate::be64(b, 8),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_layout_is_byte_exact() {
        let m = Message::request(Opcode::Probe, 0x1234, 1, 0x0000_0000_0010_0000);
        assert_eq!(
            m.encode(),
            [0x80, 0x56, 0x01, 0x00, 0x12, 0x34, 0x00, 0x01, 0, 0, 0, 0, 0, 0x10, 0, 0]
        );
        assert_eq!(Message::decode(&m.encode()), Ok(m));
    }

    #[test]
    fn responses_carry_opcode_bit_status_and_tag() {
        let req = Message::request(Opcode::GetStatus, 7, 0, 0);
        let r = Message::response_to(&req, Status::Ok, 0, 0x0f);
        let b = r.encode();
        assert_eq!(b[2], 0x84);
        assert_eq!(b[3], 0);
        let d = Message::decode(&b).unwrap();
        assert!(d.response && d.tag == 7 && d.arg64 == 0x0f && d.status() == Some(Status::Ok));
    }

    #[test]
    fn config_bytes_travel_raw() {
        let m = Message::config(
            Opcode::WriteConfig,
            1,
            0x14,
            2,
            [0xaa, 0xbb, 0, 0, 0, 0, 0, 0],
        );
        let b = m.encode();
        assert_eq!((b[3], &b[8..10]), (2, &[0xaa, 0xbb][..]));
        assert_eq!(Message::decode(&b).unwrap().data()[..2], [0xaa, 0xbb]);
    }

    #[test]
    fn rejects_foreign_and_unknown_entries() {
        let mut b = Message::request(Opcode::Notify, 0, 0, 0).encode();
        b[1] = 0x01;
        assert_eq!(Message::decode(&b), Err(DecodeError::Format(0x01)));
        b[1] = FORMAT;
        b[2] = 0x33;
        assert_eq!(Message::decode(&b), Err(DecodeError::Opcode(0x33)));
        b[0] = 0xC0;
        assert_eq!(Message::decode(&b), Err(DecodeError::NotCommand(0xC0)));
        assert_eq!(Status::from_u8(99), None);
    }
}
