//! A hostile virtio-fs server: every FUSE reply comes from the fuzzer, for a mount, lookups
//! with symlinks, reads and directory listings. The client must name what is wrong, never
//! panic, never hang, never read past the reply it was given.
#![no_main]

use fuse_client::{Call, Fs, Queue, Transport};
use libfuzzer_sys::fuzz_target;

/// Plays the server from the fuzz input: for each request, a mode byte says whether the reply
/// is well framed (right `unique`, length from the input) or raw bytes, and how much of the
/// buffer the device says it used.
struct Hostile<'a> {
    data: &'a [u8],
    replies: usize,
}

impl Hostile<'_> {
    fn take(&mut self, n: usize) -> &[u8] {
        let n = n.min(self.data.len());
        let (a, b) = self.data.split_at(n);
        self.data = b;
        a
    }

    fn byte(&mut self) -> Option<u8> {
        self.take(1).first().copied()
    }
}

impl Transport for Hostile<'_> {
    type Error = &'static str;

    fn submit(&mut self, _queue: Queue, batch: &mut [Call]) -> Result<(), &'static str> {
        for c in batch {
            // Bounded like a real session: the input ends, the server goes quiet.
            self.replies += 1;
            let Some(mode) = self.byte() else {
                return Err("server gone");
            };
            if self.replies > 256 {
                return Err("server gone");
            }
            let room = c.reply.len();
            let len = usize::from(self.byte().unwrap_or(0)) * 16 + usize::from(mode & 15);
            let body = self.take(len).to_vec();
            if mode & 0x80 == 0 && room >= 16 {
                // A framed reply: out header {len, error, unique} then the body.
                let unique = c
                    .request
                    .get(8..16)
                    .map_or([0; 8], |u| u.try_into().unwrap());
                let total = (16 + body.len()).min(room);
                let error: i32 = if mode & 0x40 != 0 {
                    -(i32::from(mode & 0x3f))
                } else {
                    0
                };
                c.reply[..4].copy_from_slice(&(total as u32).to_le_bytes());
                c.reply[4..8].copy_from_slice(&error.to_le_bytes());
                c.reply[8..16].copy_from_slice(&unique);
                let n = (total - 16).min(body.len());
                c.reply[16..16 + n].copy_from_slice(&body[..n]);
                c.used = if mode & 0x20 != 0 { room + 1 } else { total };
            } else {
                let n = body.len().min(room);
                c.reply[..n].copy_from_slice(&body[..n]);
                c.used = n;
            }
        }
        Ok(())
    }
}

fuzz_target!(|data: &[u8]| {
    let mut fs = Fs::new(Hostile { data, replies: 0 });
    if fs.mount().is_err() {
        return;
    }
    let _ = fs.stat("/loader/entries/a.conf");
    let _ = fs.list_dir("/loader/entries");
    // Bounded reads: a hostile size must not make each run allocate megabytes of replies.
    let _ = fs.read_stream("/boot/vmlinux", Some((0, 1 << 16)), &mut |_| {});
    let _ = fs.read_range("/initrd.img", 4096, 8192);
    let _ = fs.statfs();
    let _ = fs.unmount();
});
