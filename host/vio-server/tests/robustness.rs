//! Random guest input: entries, messages, rings and descriptors. The server must neither panic
//! nor hang, and must keep answering.

mod common;

use common::*;
use papr::tce::{TCE_READ, TCE_WRITE};
use vio_server::{Faults, Stats};
use virtio_vio::msg::{Opcode, Status};

/// xorshift64*: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Resets the device and sets queue 0 up again, its rings resuming at `start`; whether it worked.
fn rebuild(r: &mut Rig, start: u16) -> bool {
    r.guest.take_crq();
    r.deliver(papr::crq::Entry::init(false));
    r.guest.take_crq();
    r.guest.write(USED + 2, &start.to_le_bytes());
    r.guest.write(AVAIL + 2, &start.to_le_bytes());
    r.vq = GuestVq::new(256);
    r.vq.avail_idx = start;
    let f = r.probe().device_features;
    let setup = r.vq.setup(0);
    [
        r.status_of(Opcode::SetStatus, 0, ACK | DRIVER),
        r.status_of(Opcode::SetFeatures, 0, f),
        r.status_of(Opcode::SetStatus, 0, ACK | DRIVER | FEATURES_OK),
        r.queue_setup(setup),
        r.status_of(Opcode::SetStatus, 0, ACK | DRIVER | FEATURES_OK | DRIVER_OK),
    ]
    .iter()
    .all(|s| *s == Status::Ok)
}

#[test]
fn random_guest_input_never_breaks_the_server() {
    for seed in 1..=4u64 {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ seed);
        let faults = match seed {
            3 => Faults::parse("bad-used-id,bad-used-len,touch-unmapped,unknown-opcode").unwrap(),
            _ => Faults::default(),
        };
        let mut r = Rig::new(64, seed == 2, faults);
        r.connect();
        // Rings and a buffer area the device may read and write.
        r.guest.map(DESC, 0x3000, TCE_READ | TCE_WRITE);
        r.guest.map(BUFFERS, 0x10000, TCE_READ | TCE_WRITE);
        for _ in 0..150 {
            let start = rng.next() as u16;
            assert!(
                rebuild(&mut r, start),
                "seed {seed}: bring-up after random input failed"
            );
            for _ in 0..40 {
                match rng.below(100) {
                    0..=2 => {
                        // Any 16 bytes, mostly virtio-vio messages.
                        let mut e = [0u8; 16];
                        e.iter_mut().for_each(|b| *b = rng.next() as u8);
                        if rng.below(4) != 0 {
                            e[0] = papr::crq::VALID_CMD_RESP;
                            e[1] = virtio_vio::msg::FORMAT;
                            e[2] = rng.below(12) as u8;
                        }
                        r.deliver(e);
                    }
                    3..=42 => {
                        // A random descriptor, mostly a plausible one in the buffer area.
                        let i = rng.below(264) as u16;
                        let addr = match rng.below(10) {
                            0 => rng.next(),
                            1 => DESC + rng.below(0x3000),
                            _ => BUFFERS + rng.below(0x10000),
                        };
                        let len = if rng.below(10) == 0 {
                            rng.next() as u32
                        } else {
                            rng.below(1100) as u32
                        };
                        let flags = [0, 1, 2, 3, 3, 1, 4, 7][rng.below(8) as usize];
                        let next = if rng.below(10) == 0 {
                            rng.next() as u16
                        } else {
                            rng.below(256) as u16
                        };
                        r.vq.put_desc(&mut r.guest, i, addr, len, flags, next);
                    }
                    43..=70 => {
                        let head = if rng.below(10) == 0 {
                            rng.next() as u16
                        } else {
                            rng.below(256) as u16
                        };
                        r.vq.push_avail(&mut r.guest, head);
                    }
                    71..=80 => {
                        // A request header into the buffer area.
                        let at = BUFFERS + rng.below(0x10000 - 16);
                        let kind = [T_IN, T_OUT, T_FLUSH, T_GET_ID, 99][rng.below(5) as usize];
                        r.guest.write(at, &[kind.to_le_bytes(), [0; 4]].concat());
                        r.guest.write(at + 8, &rng.below(80).to_le_bytes());
                    }
                    81..=82 => {
                        let idx = rng.next() as u16;
                        r.guest.write(AVAIL + 2, &idx.to_le_bytes());
                        r.vq.avail_idx = idx;
                    }
                    _ => {
                        r.notify(0);
                    }
                }
                r.guest.take_crq();
            }
        }
        let taken = Stats::get(&r.stats.requests);
        let refused = Stats::get(&r.stats.bad_chains);
        eprintln!("seed {seed}: {taken} chains taken, {refused} refused");
        assert!(
            taken > 500 && refused > 50 && refused < taken,
            "seed {seed}: input too tame"
        );
        // Still serving.
        assert!(rebuild(&mut r, 7));
        let res = r.blk(T_GET_ID, 0, &[], &[20]);
        assert_eq!(res.status, S_OK, "seed {seed}");
    }
}
