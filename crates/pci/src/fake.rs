//! A config space in memory for the tests: functions with BARs that decode like hardware
//! (address bits writable, type bits not), and a way to make one access fail.

use crate::config::{Bdf, ConfigSpace};
use alloc::collections::BTreeMap;

pub struct FakeFn {
    pub cfg: [u8; 256],
    /// Writable bits of each BAR register (0: unimplemented).
    pub mask: [u32; 6],
    /// Read-only low bits of each BAR register (type, prefetchable).
    pub flags: [u32; 6],
}

impl FakeFn {
    pub fn new(vendor: u16, device: u16, class: u32, header: u8) -> FakeFn {
        let mut f = FakeFn {
            cfg: [0; 256],
            mask: [0; 6],
            flags: [0; 6],
        };
        f.put(0, 2, vendor.into());
        f.put(2, 2, device.into());
        f.put(8, 4, class << 8 | 1);
        f.cfg[0x0e] = header;
        f
    }

    pub fn put(&mut self, reg: usize, size: usize, v: u32) {
        self.cfg[reg..reg + size].copy_from_slice(&v.to_le_bytes()[..size]);
    }

    pub fn get(&self, reg: usize, size: usize) -> u32 {
        let mut b = [0u8; 4];
        b[..size].copy_from_slice(&self.cfg[reg..reg + size]);
        u32::from_le_bytes(b)
    }

    /// A 32-bit memory BAR of `size` bytes.
    pub fn mem32(mut self, i: usize, size: u32) -> Self {
        self.mask[i] = !(size - 1) & !0xf;
        self
    }

    /// A 64-bit prefetchable memory BAR of `size` bytes in registers `i` and `i + 1`.
    pub fn mem64(mut self, i: usize, size: u64) -> Self {
        let m = !(size - 1) & !0xf;
        self.mask[i] = m as u32;
        self.flags[i] = 0b1100;
        self.mask[i + 1] = (m >> 32) as u32;
        self.cfg[0x10 + 4 * i] = 0b1100;
        self
    }

    /// An I/O BAR of `size` bytes.
    pub fn io(mut self, i: usize, size: u32) -> Self {
        self.mask[i] = !(size - 1) & 0xffff & !3;
        self.flags[i] = 1;
        self.cfg[0x10 + 4 * i] = 1;
        self
    }

    /// A capability at `at` with id `id`, pointing to `next`, followed by `body`; the first
    /// one added becomes the list head.
    pub fn cap(mut self, at: u8, id: u8, next: u8, body: &[u8]) -> Self {
        if self.cfg[0x34] == 0 {
            self.cfg[0x34] = at;
        }
        self.cfg[6] |= 0x10;
        let a = usize::from(at);
        self.cfg[a] = id;
        self.cfg[a + 1] = next;
        self.cfg[a + 2..a + 2 + body.len()].copy_from_slice(body);
        self
    }
}

#[derive(Default)]
pub struct Fake {
    pub fns: BTreeMap<Bdf, FakeFn>,
    /// An access that fails.
    pub refuse: Option<(Bdf, u16)>,
}

pub fn bdf(bus: u8, device: u8, function: u8) -> Bdf {
    Bdf {
        bus,
        device,
        function,
    }
}

impl ConfigSpace for Fake {
    type Error = &'static str;

    fn read(&mut self, at: Bdf, reg: u16, size: u8) -> Result<u32, &'static str> {
        if self.refuse == Some((at, reg)) {
            return Err("refused");
        }
        let Some(f) = self.fns.get(&at) else {
            return Ok(u32::MAX >> (32 - 8 * u32::from(size)));
        };
        Ok(f.get(usize::from(reg), usize::from(size)))
    }

    fn write(&mut self, at: Bdf, reg: u16, size: u8, value: u32) -> Result<(), &'static str> {
        if self.refuse == Some((at, reg)) {
            return Err("refused");
        }
        let Some(f) = self.fns.get_mut(&at) else {
            return Ok(());
        };
        let r = usize::from(reg);
        let bars = if f.cfg[0x0e] & 0x7f == 1 { 2 } else { 6 };
        if (0x10..0x10 + 4 * bars).contains(&r) && size == 4 {
            let i = (r - 0x10) / 4;
            f.put(r, 4, (value & f.mask[i]) | f.flags[i]);
        } else {
            f.put(r, usize::from(size), value);
        }
        Ok(())
    }
}
