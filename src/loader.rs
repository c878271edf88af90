//! The bootloader: boot entries from a virtio-fs share, kernel and initrd loaded and checked,
//! and the handoff to Linux, through Open Firmware or with a flattened tree.
//!
//! Entries are tried in order from the chosen one; one that fails (missing kernel, wrong
//! SHA-256, not a ppc64le ELF, bad initrd, no `linux` key) is reported and the next is tried.
//! Before the jump every virtio-vio device vioboot touched is reset, its CRQ freed and its TCEs
//! cleared.

use crate::hcall::{self, UnitAddress};
use crate::mem;
use crate::of::Of;
use crate::virtio::fs::VirtioFs;
use crate::{arch, cprint, cprintln, report, time};
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use fuse_client::Fs;
use vioboot_core::bls::{self, Entry};
use vioboot_core::elf;
use vioboot_core::fdt_write::{self, Edit};
use vioboot_core::ranges::Range;
use vioboot_core::sha256::{self, Sha256};

/// How the kernel will be entered.
pub enum Handoff<'a> {
    /// Open Firmware stays alive: memory claimed through it, r5 = its entry.
    Of(Of),
    /// No firmware: a flattened tree (this one, edited) in r3.
    Fdt {
        blob: &'a [u8],
        usable: vioboot_core::ranges::RangeSet,
        reserved: Vec<Range>,
    },
}

/// A kernel and initrd in memory, ready to enter.
pub struct Loaded {
    pub entry: Entry,
    pub kernel: Range,
    pub entry_point: u64,
    pub initrd: Option<Range>,
    pub cmdline: String,
}

/// Memory for what the kernel needs, from OF or from the memory map.
struct Memory<'a> {
    handoff: &'a Handoff<'a>,
    next: u64,
    limit: u64,
}

const ALIGN: u64 = 64 << 10;

impl Memory<'_> {
    /// Memory well above `above`: where a kernel's own early allocations (Linux's prom_init
    /// puts the flattened tree right after the kernel) cannot reach it.
    fn take_high(&mut self, size: u64, above: u64) -> Result<Range, String> {
        let size = size.next_multiple_of(ALIGN).max(ALIGN);
        if let Handoff::Of(of) = self.handoff {
            let mut at = (above + (32 << 20)).next_multiple_of(1 << 20);
            while at + size <= self.limit {
                if let Ok(base) = of.claim_at(at, size) {
                    return Ok(Range {
                        start: base,
                        end: base + size,
                    });
                }
                at += 16 << 20;
            }
            return Err(format!("no room for {size:#x} bytes above {above:#x}"));
        }
        self.next = self.next.max(above);
        self.take(size)
    }

    fn take(&mut self, size: u64) -> Result<Range, String> {
        let size = size.next_multiple_of(ALIGN).max(ALIGN);
        match self.handoff {
            Handoff::Of(of) => {
                let base = of
                    .claim(size, ALIGN)
                    .map_err(|e| format!("claiming {size:#x} bytes: {e}"))?;
                Ok(Range {
                    start: base,
                    end: base + size,
                })
            }
            Handoff::Fdt {
                usable, reserved, ..
            } => {
                // Bump allocation above everything vioboot uses, skipping reservations; the
                // kernel copies itself to 0, so nothing is placed below its size.
                for _ in 0..64 {
                    let r = Range {
                        start: self.next,
                        end: self.next + size,
                    };
                    if r.end > self.limit {
                        break;
                    }
                    if let Some(x) = reserved.iter().find(|x| x.overlaps(&r)) {
                        self.next = x.end.next_multiple_of(ALIGN);
                        continue;
                    }
                    if !usable
                        .ranges()
                        .iter()
                        .any(|u| r.start >= u.start && r.end <= u.end)
                    {
                        break;
                    }
                    self.next = r.end;
                    return Ok(r);
                }
                Err(format!(
                    "no room for {size:#x} bytes below {:#x}",
                    self.limit
                ))
            }
        }
    }
}

/// The entries to try, in order, and the index of the default.
pub fn entries(
    fs: &mut Fs<VirtioFs>,
    boot: Option<&str>,
    initrd: Option<&str>,
    options: &str,
    default: Option<&str>,
) -> (Vec<Entry>, usize, Option<u32>, Vec<String>) {
    let mut notes = Vec::new();
    if let Some(path) = boot {
        let e = Entry {
            id: "vioboot.boot".into(),
            title: Some(format!("{path} (vioboot.boot)")),
            linux: Some(path.into()),
            initrd: initrd
                .map(|i| alloc::vec![i.to_string()])
                .unwrap_or_default(),
            options: options.into(),
            ..Entry::default()
        };
        return (alloc::vec![e], 0, Some(0), notes);
    }
    let conf = fs
        .read_file("/loader/loader.conf", &mut |_| {})
        .map(|b| bls::parse_loader_conf(&String::from_utf8_lossy(&b)))
        .unwrap_or_default();
    let mut list = Vec::new();
    match fs.list_dir("/loader/entries") {
        Ok(names) => {
            for n in names.iter().filter(|n| n.name.ends_with(".conf")) {
                let path = format!("/loader/entries/{}", n.name);
                match fs.read_file(&path, &mut |_| {}) {
                    Ok(b) => {
                        let e = bls::parse_entry(&n.name, &String::from_utf8_lossy(&b));
                        for i in &e.ignored {
                            notes.push(format!("{path}: {i}"));
                        }
                        list.push(e);
                    }
                    Err(e) => notes.push(format!("{e}")),
                }
            }
        }
        Err(e) => notes.push(format!("{e}")),
    }
    bls::sort(&mut list);
    let default = bls::default_index(&list, default.or(conf.default.as_deref())).unwrap_or(0);
    (list, default, conf.timeout, notes)
}

/// Shows the menu and waits up to `timeout` seconds on the vty: a number picks an entry,
/// Enter boots it (or the default), `e` edits the chosen entry's options line. Returns the
/// index to boot and, if edited, the new options.
pub fn menu(
    list: &[Entry],
    default: usize,
    timeout: u32,
    vty: Option<UnitAddress>,
) -> (usize, Option<String>) {
    cprintln!("# ---- boot menu ----");
    for (i, e) in list.iter().enumerate() {
        cprintln!(
            "# {} {:>2}) {} [{}]",
            if i == default { '*' } else { ' ' },
            i + 1,
            e.display_title(),
            e.id
        );
    }
    let Some(vty) = vty.filter(|_| timeout > 0) else {
        return (default, None);
    };
    cprintln!("# number + Enter: boot that entry; e: edit its options; Enter: boot");
    cprint!(
        "# boot which entry? (default {} in {timeout} s) ",
        default + 1
    );
    let mut end = time::now_us() + u64::from(timeout) * 1_000_000;
    let mut typed = 0usize;
    let pick = |typed: usize| {
        if typed >= 1 && typed <= list.len() {
            typed - 1
        } else {
            default
        }
    };
    while time::now_us() < end {
        let mut buf = [0u8; 16];
        let n = hcall::get_term_char(vty, &mut buf).unwrap_or(0);
        for &c in &buf[..n] {
            match c {
                b'0'..=b'9' => {
                    typed = typed
                        .saturating_mul(10)
                        .saturating_add(usize::from(c - b'0'));
                    cprint!("{}", c as char);
                    end = u64::MAX;
                }
                b'e' => {
                    let i = pick(typed);
                    cprintln!();
                    return (i, Some(edit_line(vty, &list[i].options)));
                }
                b'\r' | b'\n' => {
                    cprintln!();
                    return (pick(typed), None);
                }
                _ => {}
            }
        }
        time::delay_us(10_000);
    }
    cprintln!();
    (default, None)
}

/// Reads a line on the vty starting from `current` (Backspace deletes, Enter ends).
fn edit_line(vty: UnitAddress, current: &str) -> String {
    let mut line = String::from(current);
    cprint!("# options: {line}");
    loop {
        let mut buf = [0u8; 16];
        let n = hcall::get_term_char(vty, &mut buf).unwrap_or(0);
        for &c in &buf[..n] {
            match c {
                b'\r' | b'\n' => {
                    cprintln!();
                    return line;
                }
                0x08 | 0x7f => {
                    if line.pop().is_some() {
                        cprint!("\x08 \x08");
                    }
                }
                0x20..=0x7e if line.len() < 1024 => {
                    line.push(c as char);
                    cprint!("{}", c as char);
                }
                _ => {}
            }
        }
        time::delay_us(10_000);
    }
}

/// Loads `e`'s kernel and initrd, checking everything on the way.
pub fn load(
    fs: &mut Fs<VirtioFs>,
    e: &Entry,
    handoff: &Handoff,
    first_free: u64,
    limit: u64,
) -> Result<Loaded, String> {
    let linux = e.linux.as_deref().ok_or("the entry has no `linux` key")?;
    // The ELF and program headers, and the file's size, in one walk of the path.
    let mut head = Vec::new();
    let (size, _) = fs
        .read_stream(linux, Some((0, elf::HEAD_BYTES as u64)), &mut |piece| {
            head.extend_from_slice(piece)
        })
        .map_err(|e| format!("{e}"))?;
    let k = elf::parse(&head, size).map_err(|err| format!("{linux}: {err}"))?;
    let mut memory = Memory {
        handoff,
        next: first_free.max(k.span.next_multiple_of(16 << 20)),
        limit,
    };
    let dest = memory.take(k.span)?;
    // SAFETY: `dest` was claimed from OF or placed clear of everything vioboot and the tree use.
    let image = unsafe { mem::region_mut(dest) };
    image.fill(0);
    let start = time::now_us();
    let mut sha = Sha256::new();
    let mut at = 0u64;
    let mut last_shown = 0u64;
    let total = size;
    fs.read_stream(linux, None, &mut |piece| {
        sha.update(piece);
        let (p0, p1) = (at, at + piece.len() as u64);
        for s in &k.segments {
            let (s0, s1) = (s.offset, s.offset + s.filesz);
            let (a, b) = (p0.max(s0), p1.min(s1));
            if a < b {
                let to = (s.vaddr - k.base + (a - s0)) as usize;
                image[to..to + (b - a) as usize]
                    .copy_from_slice(&piece[(a - p0) as usize..(b - p0) as usize]);
            }
        }
        at = p1;
        if at - last_shown >= 8 << 20 || at == total {
            last_shown = at;
            let us = (time::now_us() - start).max(1);
            cprintln!(
                "# loading {linux}: {} of {} MiB, {:.1} MB/s",
                at >> 20,
                total >> 20,
                at as f64 / us as f64
            );
        }
    })
    .map_err(|e| format!("{e}"))?;
    if at != total {
        return Err(format!("{linux}: read {at} bytes, the file has {total}"));
    }
    let digest = sha.finish();
    if let Some(want) = e.sha256 {
        if digest != want {
            return Err(format!(
                "{linux}: sha256 {} does not match the entry's {}",
                sha256::hex(&digest),
                sha256::hex(&want)
            ));
        }
    }
    let load_us = (time::now_us() - start).max(1);
    let initrd = match e.initrd.first() {
        None => None,
        Some(path) => {
            let a = fs.stat(path).map_err(|e| format!("{e}"))?;
            if a.size == 0 {
                return Err(format!("{path}: the initrd is empty"));
            }
            let r = memory.take_high(a.size, dest.end)?;
            // SAFETY: as for the kernel image.
            let buf = unsafe { mem::region_mut(r) };
            let mut h = Sha256::new();
            let mut n = 0usize;
            fs.read_stream(path, None, &mut |piece| {
                h.update(piece);
                if n + piece.len() <= buf.len() {
                    buf[n..n + piece.len()].copy_from_slice(piece);
                }
                n += piece.len();
            })
            .map_err(|e| format!("{e}"))?;
            if n as u64 != a.size {
                return Err(format!("{path}: read {n} bytes, the file has {}", a.size));
            }
            if let Some(want) = e.initrd_sha256 {
                let got = h.finish();
                if got != want {
                    return Err(format!(
                        "{path}: sha256 {} does not match the entry's {} (truncated or replaced?)",
                        sha256::hex(&got),
                        sha256::hex(&want)
                    ));
                }
            }
            Some(Range {
                start: r.start,
                end: r.start + a.size,
            })
        }
    };
    report::pass(
        "boot load",
        format_args!(
            "{}: {linux} ({} bytes, {:.1} MB/s{}) at {:#x}{}",
            e.display_title(),
            total,
            total as f64 / load_us as f64,
            if e.sha256.is_some() {
                ", sha256 verified"
            } else {
                ""
            },
            dest.start,
            initrd.map_or(String::new(), |r| format!(
                ", initrd {} bytes at {:#x}",
                r.size(),
                r.start
            ))
        ),
    );
    cprintln!(
        "# bench kernel-load-MBps {:.1}",
        total as f64 / load_us as f64
    );
    Ok(Loaded {
        entry: e.clone(),
        kernel: dest,
        entry_point: dest.start + k.entry_offset(),
        initrd,
        cmdline: e.options.clone(),
    })
}

/// RTAS for a kernel booted without firmware: big-endian code that passes the argument block
/// to QEMU's H_RTAS (`mr r4,r3; lis r3,0; ori r3,r3,0xf000; sc 1; blr`).
const RTAS_BLOB: [u32; 5] = [
    0x7c64_1b78,
    0x3c60_0000,
    0x6063_f000,
    0x4400_0022,
    0x4e80_0020,
];

/// Enters the kernel. Returns only if the handoff could not be prepared.
pub fn enter(l: &Loaded, handoff: &Handoff, first_free: u64, limit: u64) -> Result<(), String> {
    match handoff {
        Handoff::Of(of) => {
            let chosen = of.finddevice(c"/chosen").map_err(|e| format!("{e}"))?;
            let mut args = l.cmdline.clone().into_bytes();
            args.push(0);
            of.setprop(chosen, c"bootargs", &args)
                .map_err(|e| format!("setting /chosen/bootargs: {e}"))?;
            let (r3, r4) = l.initrd.map_or((0, 0), |r| (r.start, r.size()));
            report::pass("boot handoff", format_args!("Open Firmware: entry {:#x}, r3/r4 = initrd {r3:#x}/{r4:#x}, r5 = client interface", l.entry_point));
            finish_report();
            let entry = Of::entry_address();
            // SAFETY: the kernel is loaded and checked at `entry_point`; OF is alive for it.
            unsafe { arch::jump_to_kernel(l.entry_point, r3, r4, entry) }
        }
        Handoff::Fdt { blob, .. } => {
            let mut memory = Memory {
                handoff,
                next: first_free,
                limit,
            };
            let rtas = memory.take(4096)?;
            // SAFETY: placed clear of everything in use, like the kernel.
            let rtas_bytes = unsafe { mem::region_mut(rtas) };
            for (i, w) in RTAS_BLOB.iter().enumerate() {
                rtas_bytes[4 * i..4 * i + 4].copy_from_slice(&w.to_be_bytes());
            }
            let fdt_room = memory.take(blob.len() as u64 + 4096)?;
            let mut edits = alloc::vec![
                Edit {
                    path: "/chosen",
                    name: "bootargs",
                    value: {
                        let mut v = l.cmdline.clone().into_bytes();
                        v.push(0);
                        v
                    }
                },
                Edit {
                    path: "/rtas",
                    name: "linux,rtas-base",
                    value: (rtas.start as u32).to_be_bytes().to_vec()
                },
                Edit {
                    path: "/rtas",
                    name: "linux,rtas-entry",
                    value: (rtas.start as u32).to_be_bytes().to_vec()
                },
                Edit {
                    path: "/rtas",
                    name: "rtas-size",
                    value: (rtas.size() as u32).to_be_bytes().to_vec()
                },
            ];
            let mut reserve =
                alloc::vec![(rtas.start, rtas.size()), (fdt_room.start, fdt_room.size())];
            if let Some(r) = l.initrd {
                edits.push(Edit {
                    path: "/chosen",
                    name: "linux,initrd-start",
                    value: r.start.to_be_bytes().to_vec(),
                });
                edits.push(Edit {
                    path: "/chosen",
                    name: "linux,initrd-end",
                    value: r.end.to_be_bytes().to_vec(),
                });
                reserve.push((r.start, r.size().next_multiple_of(ALIGN)));
            }
            let tree = fdt_write::rewrite(blob, &edits, &reserve)
                .map_err(|e| format!("rewriting the device tree: {e}"))?;
            fdt_write::validate(&tree).map_err(|e| format!("the rewritten device tree: {e}"))?;
            if tree.len() as u64 > fdt_room.size() {
                return Err("the rewritten device tree outgrew its room".into());
            }
            // SAFETY: placed clear of everything in use.
            let dst = unsafe { mem::region_mut(fdt_room) };
            dst[..tree.len()].copy_from_slice(&tree);
            report::pass(
                "boot handoff",
                format_args!("flattened tree ({} bytes) at {:#x}: entry {:#x}, r3 = tree, r4 = kernel {:#x}, r5 = 0; RTAS at {:#x}", tree.len(), fdt_room.start, l.entry_point, l.kernel.start, rtas.start),
            );
            finish_report();
            // SAFETY: kernel, tree, initrd and RTAS are in place and reserved; no firmware.
            unsafe { arch::jump_to_kernel(l.entry_point, fdt_room.start, l.kernel.start, 0) }
        }
    }
}

/// The report's end before the jump: the verdict says what vioboot did; the kernel prints on.
fn finish_report() {
    report::phase("boot");
    report::finish();
    cprintln!("# vioboot: entering the kernel");
}
