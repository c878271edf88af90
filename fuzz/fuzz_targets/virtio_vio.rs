//! What a VIO server puts into the guest: CRQ entries (and the virtio-vio messages in them),
//! the device header it writes at PROBE, and (for the server's side) queue setup blocks.
#![no_main]

use libfuzzer_sys::fuzz_target;
use papr::crq::{self, Entry, ENTRY_LEN};
use virtio_vio::{header, msg, queue};

fuzz_target!(|data: &[u8]| {
    for chunk in data.chunks(ENTRY_LEN) {
        let mut e = [0u8; ENTRY_LEN];
        e[..chunk.len()].copy_from_slice(chunk);
        if let Entry::Message(m) = Entry::parse(e) {
            if let Ok(m) = msg::Message::decode(&m) {
                let _ = m.status();
                let _ = m.opcode.name();
                let _ = m.data();
                assert_eq!(msg::Message::decode(&m.encode()).ok(), Some(m));
            }
        }
        let (w0, w1) = crq::to_words(&e);
        assert_eq!(crq::from_words(w0, w1), e);
    }
    if let Some(h) = data.first_chunk::<{ header::LEN }>() {
        if let Ok(h) = header::Header::decode(h) {
            assert!(h.num_queues as usize <= header::MAX_QUEUES);
        }
    }
    if let Some(q) = data.first_chunk::<{ queue::LEN }>() {
        let _ = queue::QueueSetup::decode(q, data.len() as u16);
    }
});
