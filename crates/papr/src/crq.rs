//! PAPR CRQ entries: 16 bytes, big-endian, written by the partner bytes 8..15 first, then 0..7.
//!
//! Byte 0 says what the entry is: 0x80 a command or response (byte 1 its format), 0xC0 the
//! initialization handshake, 0xFF a transport event from the hypervisor. A consumer sees an
//! entry when byte 0 has [`VALID_BIT`] set, reads it after a barrier, then clears byte 0.
//! The format is PAPR's (PowerVM's), shared by every CRQ-based adapter kind (virtio-vio here;
//! v-scsi and the vTPM use the same entries).

/// Size of one entry.
pub const ENTRY_LEN: usize = 16;
/// The bit of byte 0 that every entry has: a slot whose byte 0 lacks it is empty.
pub const VALID_BIT: u8 = 0x80;
/// Byte 0 of a command or response.
pub const VALID_CMD_RESP: u8 = 0x80;
/// Byte 0 of an initialization entry.
pub const VALID_INIT: u8 = 0xC0;
/// Byte 0 of a transport event.
pub const VALID_TRANSPORT: u8 = 0xFF;
/// Byte 1 of an INIT entry.
pub const INIT: u8 = 0x01;
/// Byte 1 of an INIT COMPLETE entry.
pub const INIT_COMPLETE: u8 = 0x02;
/// Byte 1 of a transport event: the partner partition failed.
pub const PARTNER_FAILED: u8 = 0x01;
/// Byte 1 of a transport event: the partner deregistered its CRQ.
pub const PARTNER_DEREGISTERED: u8 = 0x02;
/// Byte 1 of a transport event: this partition migrated.
pub const MIGRATED: u8 = 0x06;

/// Whether a slot whose byte 0 is `byte0` holds an entry (the consumer's test, and the
/// hypervisor's before it fills a slot or accepts an H_SEND_CRQ).
pub const fn is_valid(byte0: u8) -> bool {
    byte0 & VALID_BIT != 0
}

/// A transport event (byte 0 = 0xFF), posted by the hypervisor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportEvent {
    /// 0x01: the partner partition (the VIO server) failed.
    PartnerFailed,
    /// 0x02: the partner deregistered its CRQ.
    PartnerDeregistered,
    /// 0x06: this partition migrated: re-enable the CRQ and INIT again.
    Migrated,
    /// Any other code.
    Other(u8),
}

/// One CRQ entry, classified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entry {
    /// The partner asks to initialize (answer INIT COMPLETE).
    Init,
    /// The partner completed initialization.
    InitComplete,
    /// A command or response; byte 1 is its format.
    Message([u8; ENTRY_LEN]),
    /// A transport event from the hypervisor.
    Transport(TransportEvent),
    /// An entry no one should send: byte 0 or an init code this protocol does not have.
    Invalid([u8; ENTRY_LEN]),
}

impl Entry {
    /// Classifies the 16 bytes of a slot whose valid bit was seen.
    pub fn parse(b: [u8; ENTRY_LEN]) -> Entry {
        match (b[0], b[1]) {
            (VALID_INIT, INIT) => Entry::Init,
            (VALID_INIT, INIT_COMPLETE) => Entry::InitComplete,
            (VALID_CMD_RESP, _) => Entry::Message(b),
            (VALID_TRANSPORT, PARTNER_FAILED) => Entry::Transport(TransportEvent::PartnerFailed),
            (VALID_TRANSPORT, PARTNER_DEREGISTERED) => {
                Entry::Transport(TransportEvent::PartnerDeregistered)
            }
            (VALID_TRANSPORT, MIGRATED) => Entry::Transport(TransportEvent::Migrated),
            (VALID_TRANSPORT, c) => Entry::Transport(TransportEvent::Other(c)),
            _ => Entry::Invalid(b),
        }
    }

    /// The 16 bytes of an INIT or INIT COMPLETE entry.
    pub fn init(complete: bool) -> [u8; ENTRY_LEN] {
        let mut b = [0u8; ENTRY_LEN];
        b[0] = VALID_INIT;
        b[1] = if complete { INIT_COMPLETE } else { INIT };
        b
    }

    /// A transport event entry, as the hypervisor (or QEMU's device model) posts it.
    pub fn transport(code: u8) -> [u8; ENTRY_LEN] {
        let mut b = [0u8; ENTRY_LEN];
        b[0] = VALID_TRANSPORT;
        b[1] = code;
        b
    }
}

/// The two 64-bit words of H_SEND_CRQ (r5, r6) for an entry.
pub fn to_words(b: &[u8; ENTRY_LEN]) -> (u64, u64) {
    let (mut w0, mut w1) = ([0u8; 8], [0u8; 8]);
    w0.copy_from_slice(&b[..8]);
    w1.copy_from_slice(&b[8..]);
    (u64::from_be_bytes(w0), u64::from_be_bytes(w1))
}

/// The entry that H_SEND_CRQ(word0, word1) delivers.
pub fn from_words(w0: u64, w1: u64) -> [u8; ENTRY_LEN] {
    let mut b = [0u8; ENTRY_LEN];
    b[..8].copy_from_slice(&w0.to_be_bytes());
    b[8..].copy_from_slice(&w1.to_be_bytes());
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_entries() {
        assert_eq!(Entry::parse(Entry::init(false)), Entry::Init);
        assert_eq!(Entry::parse(Entry::init(true)), Entry::InitComplete);
        assert_eq!(
            Entry::parse(Entry::transport(1)),
            Entry::Transport(TransportEvent::PartnerFailed)
        );
        assert_eq!(
            Entry::parse(Entry::transport(6)),
            Entry::Transport(TransportEvent::Migrated)
        );
        assert_eq!(
            Entry::parse(Entry::transport(9)),
            Entry::Transport(TransportEvent::Other(9))
        );
        let mut odd = Entry::init(false);
        odd[1] = 7;
        assert_eq!(Entry::parse(odd), Entry::Invalid(odd));
        assert!(matches!(Entry::parse([0x12; 16]), Entry::Invalid(_)));
    }

    #[test]
    fn words_round_trip_big_endian() {
        let (w0, w1) = to_words(&Entry::init(false));
        assert_eq!((w0, w1), (0xC001_0000_0000_0000, 0));
        assert_eq!(from_words(w0, 0x0123_4567_89ab_cdef)[8], 0x01);
        let e = from_words(0x8011_2233_4455_6677, 0x8899_aabb_ccdd_eeff);
        assert_eq!(to_words(&e), (0x8011_2233_4455_6677, 0x8899_aabb_ccdd_eeff));
    }

    #[test]
    fn every_kind_of_entry_is_valid_and_an_empty_slot_is_not() {
        for b0 in [VALID_CMD_RESP, VALID_INIT, VALID_TRANSPORT] {
            assert!(is_valid(b0));
        }
        assert!(!is_valid(0) && !is_valid(0x7F));
    }
}
