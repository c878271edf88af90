//! Host tests against a config space in memory: QEMU's layout (a bridge with a virtio-blk
//! behind it), firmware's assignments kept, and hostile config spaces.

use crate::bar::{BarError, BarKind, Window, WindowKind};
use crate::cap::{self, CapError};
use crate::config::{self, Bdf};
use crate::enumerate::{scan, PciError, Policy};
use crate::fake::{bdf, Fake, FakeFn};
use crate::virtio::{self, VirtioCapError};
use alloc::format;
use alloc::vec;
use alloc::vec::Vec;

/// QEMU pseries' first host bridge.
fn windows() -> Vec<Window> {
    vec![
        Window {
            kind: WindowKind::Io,
            pci: 0,
            cpu: 0x2000_0000_0000,
            size: 0x10000,
        },
        Window {
            kind: WindowKind::Mem32,
            pci: 0x8000_0000,
            cpu: 0x2000_8000_0000,
            size: 0x8000_0000,
        },
        Window {
            kind: WindowKind::Mem64,
            pci: 0x2100_0000_0000,
            cpu: 0x2100_0000_0000,
            size: 0x100_0000_0000,
        },
    ]
}

/// virtio-pci vendor capability bytes after id and next: len, type, bar, id, pad, offset,
/// length (and the notify multiplier).
fn vcap(cfg_type: u8, bar: u8, offset: u32, length: u32, mult: Option<u32>) -> Vec<u8> {
    let mut b = vec![if mult.is_some() { 20 } else { 16 }, cfg_type, bar, 0, 0, 0];
    b.extend_from_slice(&offset.to_le_bytes());
    b.extend_from_slice(&length.to_le_bytes());
    if let Some(m) = mult {
        b.extend_from_slice(&m.to_le_bytes());
    }
    b
}

/// What QEMU's virtio-blk-pci (modern) looks like: MSI-X BAR1, the virtio structures in the
/// 16 KiB 64-bit BAR4.
fn virtio_blk() -> FakeFn {
    let mut f = FakeFn::new(0x1af4, 0x1042, 0x010000, 0)
        .mem32(1, 0x1000)
        .mem64(4, 0x4000)
        .cap(0x98, 0x11, 0x84, &[0; 10])
        .cap(0x84, 9, 0x70, &vcap(5, 0, 0, 0, None))
        .cap(0x70, 9, 0x60, &vcap(2, 4, 0x3000, 0x1000, Some(4)))
        .cap(0x60, 9, 0x50, &vcap(4, 4, 0x2000, 0x1000, None))
        .cap(0x50, 9, 0x40, &vcap(3, 4, 0x1000, 0x1000, None))
        .cap(0x40, 9, 0, &vcap(1, 4, 0, 0x1000, None));
    f.put(0x2e, 2, 2);
    f
}

fn bridge() -> FakeFn {
    FakeFn::new(0x1b36, 0x0001, 0x060400, 1)
}

fn cmd(fake: &Fake, at: Bdf) -> u16 {
    fake.fns[&at].get(4, 2) as u16
}

#[test]
fn rtas_config_address() {
    let at = bdf(1, 3, 2);
    assert_eq!(at.rtas_config_address(0x10), Some(0x0001_1a10));
    assert_eq!(at.rtas_config_address(0x104), Some(0x1001_1a04));
    assert_eq!(at.rtas_config_address(0x1000), None);
    assert_eq!(format!("{at}"), "01:03.2");
}

#[test]
fn assigns_behind_a_bridge_as_with_no_firmware() {
    let mut fake = Fake::default();
    fake.fns.insert(bdf(0, 0, 0), bridge());
    fake.fns.insert(
        bdf(0, 1, 0),
        FakeFn::new(0x1234, 0x1111, 0x030000, 0)
            .mem32(0, 0x80)
            .io(1, 0x20),
    );
    fake.fns.insert(bdf(1, 3, 0), virtio_blk());
    let s = scan(&mut fake, 0, &windows(), Policy::Auto);
    assert!(s.problems.is_empty(), "{:?}", s.problems);
    assert!(s.assigned);
    let at: Vec<Bdf> = s.functions.iter().map(|f| f.at).collect();
    assert_eq!(at, [bdf(0, 0, 0), bdf(1, 3, 0), bdf(0, 1, 0)]);
    for f in &s.functions {
        assert_eq!(f.problem, None, "{}", f.at);
    }
    // The bridge got bus 1 (primary 0, secondary 1, subordinate 1).
    assert_eq!(s.functions[0].secondary, Some(1));
    assert_eq!(fake.fns[&bdf(0, 0, 0)].get(0x18, 4) & 0xff_ffff, 0x01_0100);
    let blk = &s.functions[1];
    assert_eq!(blk.subsystem, 2);
    let b4 = blk.bar(4).unwrap();
    assert_eq!(b4.kind, BarKind::Mem64 { prefetchable: true });
    assert_eq!(b4.size, 0x4000);
    let p4 = b4.pci.unwrap();
    assert_eq!(p4 % 0x4000, 0);
    assert_eq!(b4.cpu, Some(p4 - 0x8000_0000 + 0x2000_8000_0000));
    // Programmed into the registers, decoding and bus mastering on.
    let f = &fake.fns[&bdf(1, 3, 0)];
    assert_eq!(
        u64::from(f.get(0x20, 4) & !0xf) | u64::from(f.get(0x24, 4)) << 32,
        p4
    );
    assert_eq!(
        cmd(&fake, bdf(1, 3, 0)),
        config::CMD_MEMORY | config::CMD_BUS_MASTER
    );
    // The bridge's window holds both BARs behind it.
    let w = fake.fns[&bdf(0, 0, 0)].get(0x20, 4);
    let base = u64::from(w & 0xfff0) << 16;
    let limit = u64::from((w >> 16) & 0xfff0) << 16 | 0xf_ffff;
    for b in &blk.bars {
        let p = b.pci.unwrap();
        assert!(
            p >= base && p + b.size - 1 <= limit,
            "{b} outside {base:#x}..{limit:#x}"
        );
    }
    // The device on bus 0 lies outside the bridge's window; its I/O BAR stays unassigned.
    let other = &s.functions[2];
    let p0 = other.bar(0).unwrap().pci.unwrap();
    assert!(p0 + 0x80 <= base || p0 > limit);
    assert_eq!(other.bar(1).unwrap().kind, BarKind::Io);
    assert_eq!(other.bar(1).unwrap().pci, None);
    // The capability list and the virtio layout.
    let l = virtio::layout(&mut fake, blk.at, &blk.caps, &blk.bars).unwrap();
    assert_eq!((l.common.bar, l.common.offset), (4, 0));
    assert_eq!((l.notify.offset, l.notify_multiplier), (0x3000, 4));
    assert_eq!(l.isr.offset, 0x1000);
    assert_eq!(l.device.unwrap().offset, 0x2000);
    assert_eq!(
        virtio::device_id(blk.vendor, blk.device, blk.subsystem),
        Some(2)
    );
}

#[test]
fn keeps_firmware_assignments() {
    let mut fake = Fake::default();
    let mut blk = virtio_blk();
    blk.put(0x14, 4, 0x8000_1000);
    blk.put(0x20, 4, 0x8001_000c);
    fake.fns.insert(bdf(0, 2, 0), blk);
    let s = scan(&mut fake, 0, &windows(), Policy::Auto);
    assert!(!s.assigned);
    let f = &s.functions[0];
    assert_eq!(f.problem, None);
    assert_eq!(f.bar(1).unwrap().cpu, Some(0x2000_8000_1000));
    assert_eq!(f.bar(4).unwrap().pci, Some(0x8001_0000));
    assert_eq!(fake.fns[&bdf(0, 2, 0)].get(0x14, 4), 0x8000_1000);
    assert_eq!(
        cmd(&fake, bdf(0, 2, 0)),
        config::CMD_MEMORY | config::CMD_BUS_MASTER
    );
}

#[test]
fn firmware_address_outside_every_window_is_refused() {
    let mut fake = Fake::default();
    let mut blk = virtio_blk();
    blk.put(0x14, 4, 0x1000);
    fake.fns.insert(bdf(0, 2, 0), blk);
    let s = scan(&mut fake, 0, &windows(), Policy::Keep);
    assert!(matches!(
        s.functions[0].problem,
        Some(PciError::Bar(BarError::OutsideWindow {
            index: 1,
            pci: 0x1000,
            ..
        }))
    ));
    assert_eq!(cmd(&fake, bdf(0, 2, 0)) & config::CMD_MEMORY, 0);
}

#[test]
fn bar_that_does_not_fit_leaves_decoding_off() {
    let mut fake = Fake::default();
    fake.fns.insert(
        bdf(0, 1, 0),
        FakeFn::new(0x1234, 1, 0, 0).mem32(0, 0x10_0000),
    );
    let small = [Window {
        kind: WindowKind::Mem32,
        pci: 0x8000_0000,
        cpu: 0x2000_8000_0000,
        size: 0x1000,
    }];
    let s = scan(&mut fake, 0, &small, Policy::Assign);
    assert_eq!(
        s.functions[0].problem,
        Some(PciError::Bar(BarError::DoesNotFit {
            at: bdf(0, 1, 0),
            index: 0,
            size: 0x10_0000
        }))
    );
    assert_eq!(cmd(&fake, bdf(0, 1, 0)), 0);
    // No window at all: the same.
    let s = scan(&mut fake, 0, &[], Policy::Assign);
    assert!(matches!(
        s.functions[0].problem,
        Some(PciError::Bar(BarError::DoesNotFit { .. }))
    ));
}

#[test]
fn capability_loop_and_bad_pointers() {
    let mut fake = Fake::default();
    let at = bdf(0, 1, 0);
    fake.fns.insert(
        at,
        FakeFn::new(1, 1, 0, 0)
            .cap(0x40, 9, 0x50, &[])
            .cap(0x50, 5, 0x40, &[]),
    );
    assert_eq!(
        cap::walk(&mut fake, at),
        Err(CapError::Loop {
            at,
            from: 0x50,
            to: 0x40
        })
    );
    // Pointing to itself.
    fake.fns
        .insert(at, FakeFn::new(1, 1, 0, 0).cap(0x40, 9, 0x40, &[]));
    assert!(matches!(
        cap::walk(&mut fake, at),
        Err(CapError::Loop { .. })
    ));
    // Into the header.
    fake.fns
        .insert(at, FakeFn::new(1, 1, 0, 0).cap(0x40, 9, 0x10, &[]));
    assert_eq!(
        cap::walk(&mut fake, at),
        Err(CapError::OutOfBounds {
            at,
            from: 0x40,
            to: 0x10
        })
    );
    // Head into the header; and the last dword of config space is fine.
    let mut f = FakeFn::new(1, 1, 0, 0).cap(0xfc, 9, 0, &[]);
    f.cfg[0x34] = 0x3c;
    fake.fns.insert(at, f);
    assert!(matches!(
        cap::walk(&mut fake, at),
        Err(CapError::OutOfBounds { from: 0x34, .. })
    ));
    fake.fns
        .insert(at, FakeFn::new(1, 1, 0, 0).cap(0xfc, 9, 0, &[]));
    assert_eq!(cap::walk(&mut fake, at).unwrap().len(), 1);
    // A list the status register disowns is not read.
    let mut f = FakeFn::new(1, 1, 0, 0).cap(0x40, 9, 0x40, &[]);
    f.cfg[6] = 0;
    fake.fns.insert(at, f);
    assert_eq!(cap::walk(&mut fake, at), Ok(vec![]));
    // A full scan records the loop on the function and goes on.
    fake.fns.insert(
        at,
        FakeFn::new(1, 1, 0, 0)
            .mem32(0, 0x1000)
            .cap(0x40, 9, 0x40, &[]),
    );
    fake.fns.insert(bdf(0, 2, 0), virtio_blk());
    let s = scan(&mut fake, 0, &windows(), Policy::Assign);
    assert!(matches!(s.functions[0].problem, Some(PciError::Cap(_))));
    assert_eq!(s.functions[1].problem, None);
}

#[test]
fn bridge_loops_are_refused() {
    let mut fake = Fake::default();
    let mut b = bridge();
    b.put(0x18, 4, 0x01_0100);
    fake.fns.insert(bdf(0, 0, 0), b);
    // A bridge on bus 1 naming bus 1 again, and one naming bus 0.
    let mut b1 = bridge();
    b1.put(0x18, 4, 0x01_0101);
    fake.fns.insert(bdf(1, 1, 0), b1);
    let mut b2 = bridge();
    b2.put(0x18, 4, 0x00_0001);
    b2.cfg[0x19] = 0;
    b2.cfg[0x19] = 0x00;
    fake.fns.insert(bdf(1, 2, 0), b2);
    let mut b3 = bridge();
    b3.put(0x18, 4, 0x00_0001);
    fake.fns.insert(bdf(1, 3, 0), b3);
    let s = scan(&mut fake, 0, &windows(), Policy::Assign);
    assert_eq!(
        s.functions[1].problem,
        Some(PciError::BusLoop {
            bridge: bdf(1, 1, 0),
            secondary: 1
        })
    );
    // b2 names no bus, so it gets the next free one (2), and b3 names bus 0.
    assert_eq!(s.functions[2].secondary, Some(2));
    assert!(s.functions.len() <= 5, "{:?}", s.functions);
}

#[test]
fn refused_config_access_is_named() {
    let mut fake = Fake::default();
    fake.fns.insert(bdf(0, 2, 0), virtio_blk());
    fake.fns.insert(bdf(0, 3, 0), virtio_blk());
    fake.refuse = Some((bdf(0, 2, 0), 0x20));
    let s = scan(&mut fake, 0, &windows(), Policy::Assign);
    let e = s.functions[0].problem.clone().unwrap();
    assert_eq!(
        format!("{e}"),
        "config read of 00:02.0 register 0x20: refused"
    );
    assert_eq!(s.functions[1].problem, None);
    // An unreadable vendor id is a bus problem, not a function.
    fake.refuse = Some((bdf(0, 5, 0), 0));
    let s = scan(&mut fake, 0, &windows(), Policy::Assign);
    assert_eq!(s.functions.len(), 2);
    assert_eq!(s.problems.len(), 1);
}

#[test]
fn malformed_bars() {
    let mut fake = Fake::default();
    // Memory type 1 (reserved).
    let mut f = FakeFn::new(1, 1, 0, 0).mem32(0, 0x1000);
    f.flags[0] = 0b010;
    fake.fns.insert(bdf(0, 1, 0), f);
    // A 64-bit BAR in the last register.
    let mut f = FakeFn::new(1, 2, 0, 0).mem32(5, 0x1000);
    f.flags[5] = 0b100;
    fake.fns.insert(bdf(0, 2, 0), f);
    // Writable bits with a hole: no power of two.
    let mut f = FakeFn::new(1, 3, 0, 0);
    f.mask[0] = 0xfff0_f000;
    fake.fns.insert(bdf(0, 3, 0), f);
    let s = scan(&mut fake, 0, &windows(), Policy::Assign);
    for f in &s.functions {
        assert!(
            matches!(f.problem, Some(PciError::Bar(BarError::Malformed { .. }))),
            "{}: {:?}",
            f.at,
            f.problem
        );
    }
}

#[test]
fn hostile_virtio_capabilities() {
    let at = bdf(0, 1, 0);
    let base = || {
        FakeFn::new(0x1af4, 0x1042, 0, 0)
            .mem64(4, 0x4000)
            .cap(0x40, 9, 0x50, &vcap(1, 4, 0, 0x1000, None))
            .cap(0x50, 9, 0x60, &vcap(3, 4, 0x1000, 0x1000, None))
    };
    let run = |f: FakeFn| {
        let mut fake = Fake::default();
        fake.fns.insert(at, f);
        let s = scan(&mut fake, 0, &windows(), Policy::Assign);
        let f = &s.functions[0];
        virtio::layout(&mut fake, at, &f.caps, &f.bars)
    };
    // No notify capability.
    assert_eq!(
        run(base()),
        Err(VirtioCapError::Missing { at, cfg_type: 2 })
    );
    // Notify past the end of its BAR (and an offset near u32::MAX: no overflow).
    let r = run(base().cap(0x60, 9, 0, &vcap(2, 4, 0x3800, 0x1000, Some(4))));
    assert!(matches!(
        r,
        Err(VirtioCapError::OutsideBar { cap: 0x60, .. })
    ));
    let r = run(base().cap(0x60, 9, 0, &vcap(2, 4, u32::MAX, u32::MAX, Some(4))));
    assert!(matches!(r, Err(VirtioCapError::OutsideBar { .. })));
    // A BAR that is not implemented.
    let r = run(base().cap(0x60, 9, 0, &vcap(2, 2, 0, 0x10, Some(4))));
    assert_eq!(
        r,
        Err(VirtioCapError::NoSuchBar {
            at,
            cap: 0x60,
            bar: 2
        })
    );
    // Too short for a notify capability, and one running past config space.
    let mut short = vcap(2, 4, 0, 0x10, Some(4));
    short[0] = 16;
    let r = run(base().cap(0x60, 9, 0, &short));
    assert_eq!(
        r,
        Err(VirtioCapError::Short {
            at,
            cap: 0x60,
            len: 16
        })
    );
    // A device configuration past the end of its BAR, with everything else in place.
    let r = run(base()
        .cap(0x60, 9, 0x70, &vcap(2, 4, 0x3000, 0x1000, Some(4)))
        .cap(0x70, 9, 0, &vcap(4, 4, 0x3f00, 0x200, None)));
    assert_eq!(
        r,
        Err(VirtioCapError::OutsideBar {
            at,
            cap: 0x70,
            bar: 4,
            offset: 0x3f00,
            length: 0x200,
            bar_size: 0x4000
        })
    );
    let mut f = base().cap(0x60, 9, 0xf0, &vcap(2, 4, 0, 0x10, Some(4)));
    f = f.cap(0xf0, 9, 0, &vcap(4, 4, 0, 0x10, None)[..12]);
    f.cfg[0xf2] = 20;
    let r = run(f);
    assert!(matches!(r, Err(VirtioCapError::Short { cap: 0xf0, .. })));
}
