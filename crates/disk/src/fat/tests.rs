//! FAT images made by Debian's dosfstools (`mkfs.vfat`) and mtools (`mmd`, `mcopy`) from files
//! written here, sound and then damaged: loops, broken chains, out-of-range clusters, a
//! directory naming its parent, impossible boot sectors.

extern crate std;

use super::*;
use alloc::format;
use alloc::string::ToString;
use alloc::vec;
use std::process::Command;

/// An image in memory; reads past its end fail.
struct Mem(Vec<u8>);

#[derive(Debug, PartialEq, Eq)]
struct Past;

impl fmt::Display for Past {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("read past the image")
    }
}

impl ReadAt for Mem {
    type Error = Past;
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), Past> {
        let s = usize::try_from(offset).map_err(|_| Past)?;
        let src = self.0.get(s..s + buf.len()).ok_or(Past)?;
        buf.copy_from_slice(src);
        Ok(())
    }
}

fn run(cmd: &mut Command) {
    let out = cmd
        .env("MTOOLS_SKIP_CHECK", "1")
        .output()
        .expect("dosfstools and mtools (`cargo xtask test` installs them)");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        std::string::String::from_utf8_lossy(&out.stderr)
    );
}

fn big() -> Vec<u8> {
    (0..1_500_000u32).map(|i| (i % 251) as u8).collect()
}

/// A `kib` KiB FAT`bits` image with `sector`-byte sectors holding a boot-entries tree.
fn image(bits: u32, sector: u32, kib: u32) -> Vec<u8> {
    static N: core::sync::atomic::AtomicUsize = core::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, core::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("vioboot-fat-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let src = dir.join("src");
    std::fs::create_dir_all(src.join("loader/entries")).unwrap();
    std::fs::create_dir_all(src.join("EFI/BOOT")).unwrap();
    std::fs::write(
        src.join("loader/entries/fedora-6.10.3-200.fc40.ppc64le.conf"),
        "title Fedora\nversion 6.10.3\nlinux /vmlinuz-6.10.3\n",
    )
    .unwrap();
    std::fs::write(src.join("loader/loader.conf"), "timeout 3\n").unwrap();
    std::fs::write(src.join("vmlinuz-6.10.3"), big()).unwrap();
    std::fs::write(src.join("EFI/BOOT/BOOTAA64.EFI"), b"MZ").unwrap();
    std::fs::write(src.join("empty"), b"").unwrap();
    // A name with characters outside ASCII (stored as UTF-16 in its long-name entries).
    std::fs::write(src.join("Grüße ünd mehr.txt"), b"hallo").unwrap();
    let img = dir.join("fat.img");
    let mut mkfs = Command::new("mkfs.vfat");
    mkfs.args([
        "-C",
        "-F",
        &bits.to_string(),
        "-S",
        &sector.to_string(),
        "-n",
        "ESP",
    ]);
    if sector == 4096 {
        // One sector a cluster, or mkfs.vfat finds too few clusters for FAT16.
        mkfs.args(["-s", "1"]);
    }
    run(mkfs.arg(&img).arg(kib.to_string()));
    let mut mcopy = Command::new("mcopy");
    mcopy.arg("-i").arg(&img).arg("-s");
    for e in std::fs::read_dir(&src).unwrap() {
        mcopy.arg(e.unwrap().path());
    }
    run(mcopy.arg("::/"));
    let bytes = std::fs::read(&img).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    bytes
}

fn open(bytes: &[u8]) -> Fat {
    Fat::open(&mut Mem(bytes.to_vec()), bytes.len() as u64).expect("a FAT volume")
}

fn read(bytes: &[u8], path: &str) -> Result<Vec<u8>, FatError<Past>> {
    let mut m = Mem(bytes.to_vec());
    let fat = Fat::open(&mut m, bytes.len() as u64)?;
    let node = fat.lookup(&mut m, path)?;
    read_node(&fat, &mut m, &node)
}

fn names(bytes: &[u8], path: &str) -> Vec<String> {
    let mut m = Mem(bytes.to_vec());
    let fat = open(bytes);
    let node = fat.lookup(&mut m, path).unwrap();
    let mut v: Vec<String> = fat
        .list(&mut m, &node)
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect();
    v.sort();
    v
}

/// Byte offset of the directory entry whose 8.3 name is `short` in directory `dir`.
fn dirent_offset(bytes: &[u8], dir: &str, short: &[u8; 11]) -> usize {
    let fat = open(bytes);
    let mut m = Mem(bytes.to_vec());
    let node = fat.lookup(&mut m, dir).unwrap();
    for (off, len) in fat.extents(&mut m, &node).unwrap() {
        for at in (off..off + len).step_by(DIRENT) {
            let at = at as usize;
            if &bytes[at..at + 11] == short {
                return at;
            }
        }
    }
    panic!("no {short:?} in {dir}");
}

/// Writes `value` as cluster `c`'s entry in every FAT copy.
fn set_fat(bytes: &mut [u8], c: u32, value: u32) {
    let fat = open(bytes);
    let nfats = u64::from(bytes[16]);
    for i in 0..nfats {
        let base = (fat.fat_start + i * fat.fat_bytes) as usize;
        match fat.kind {
            FatType::Fat12 => {
                let o = base + (c + c / 2) as usize;
                let old = u16::from_le_bytes([bytes[o], bytes[o + 1]]);
                let v = (value & 0xfff) as u16;
                let new = if c & 1 == 1 {
                    (old & 0x000f) | v << 4
                } else {
                    (old & 0xf000) | v
                };
                bytes[o..o + 2].copy_from_slice(&new.to_le_bytes());
            }
            FatType::Fat16 => {
                let o = base + 2 * c as usize;
                bytes[o..o + 2].copy_from_slice(&(value as u16).to_le_bytes());
            }
            FatType::Fat32 => {
                let o = base + 4 * c as usize;
                bytes[o..o + 4].copy_from_slice(&value.to_le_bytes());
            }
        }
    }
}

#[test]
fn reads_fat12_16_32_at_512_and_4096_byte_sectors() {
    for (bits, sector, kib, kind) in [
        (12, 512, 4096, FatType::Fat12),
        (16, 512, 16384, FatType::Fat16),
        (32, 512, 40960, FatType::Fat32),
        (12, 4096, 8192, FatType::Fat12),
        (16, 4096, 32768, FatType::Fat16),
    ] {
        let bytes = image(bits, sector, kib);
        let fat = open(&bytes);
        assert_eq!(
            (fat.kind, fat.bytes_per_sector),
            (kind, sector),
            "FAT{bits}/{sector}"
        );
        assert_eq!(fat.label, "ESP");
        assert_eq!(
            read(&bytes, "/vmlinuz-6.10.3").unwrap(),
            big(),
            "FAT{bits}/{sector}"
        );
        assert_eq!(
            read(
                &bytes,
                "/loader/entries/fedora-6.10.3-200.fc40.ppc64le.conf"
            )
            .unwrap(),
            b"title Fedora\nversion 6.10.3\nlinux /vmlinuz-6.10.3\n"
        );
        // Names match without regard to case, by long or 8.3 name.
        assert_eq!(read(&bytes, "/LOADER/Loader.Conf").unwrap(), b"timeout 3\n");
        assert_eq!(read(&bytes, "/efi/boot/bootaa64.efi").unwrap(), b"MZ");
        assert_eq!(read(&bytes, "/empty").unwrap(), b"");
        assert_eq!(read(&bytes, "/Grüße ünd mehr.txt").unwrap(), b"hallo");
        assert_eq!(names(&bytes, "/loader"), ["entries", "loader.conf"]);
        assert_eq!(
            names(&bytes, "/"),
            [
                "EFI",
                "Grüße ünd mehr.txt",
                "empty",
                "loader",
                "vmlinuz-6.10.3"
            ]
        );
        assert_eq!(read(&bytes, "/missing"), Err(FatError::NotFound));
        assert_eq!(read(&bytes, "/loader"), Err(FatError::IsADirectory));
        assert_eq!(read(&bytes, "/empty/x"), Err(FatError::NotADirectory));
        assert_eq!(read(&bytes, "relative"), Err(FatError::BadPath));
        assert_eq!(read(&bytes, "/loader/../empty"), Err(FatError::BadPath));
    }
}

#[test]
fn a_looping_or_broken_chain_is_named() {
    for (bits, kib) in [(12, 4096), (16, 16384), (32, 40960)] {
        let clean = image(bits, 512, kib);
        let mut m = Mem(clean.clone());
        let fat = open(&clean);
        let node = fat.lookup(&mut m, "/vmlinuz-6.10.3").unwrap();
        let c = node.cluster;
        let mut b = clean.clone();
        set_fat(&mut b, c + 3, c);
        assert_eq!(
            read(&b, "/vmlinuz-6.10.3"),
            Err(FatError::ChainLoop { start: c }),
            "FAT{bits}"
        );
        let mut b = clean.clone();
        set_fat(&mut b, c + 1, 0);
        assert_eq!(
            read(&b, "/vmlinuz-6.10.3"),
            Err(FatError::BrokenChain {
                cluster: c + 1,
                entry: 0
            })
        );
        let mut b = clean.clone();
        let past = fat.clusters + 2;
        set_fat(&mut b, c, past);
        assert_eq!(
            read(&b, "/vmlinuz-6.10.3"),
            Err(FatError::ClusterOutOfRange {
                cluster: c,
                next: past
            })
        );
        let mut b = clean.clone();
        set_fat(&mut b, c + 1, 0x0fff_ffff);
        assert_eq!(
            read(&b, "/vmlinuz-6.10.3"),
            Err(FatError::ChainTooShort {
                size: 1_500_000,
                clusters: 2
            })
        );
        // A directory whose chain loops on itself.
        let mut b = clean.clone();
        let d = fat.lookup(&mut m, "/loader").unwrap();
        set_fat(&mut b, d.cluster, d.cluster);
        let e = read(&b, "/loader/loader.conf").unwrap_err();
        assert!(
            matches!(
                e,
                FatError::ChainLoop { .. } | FatError::DirectoryTooLarge { .. }
            ),
            "{e:?}"
        );
    }
}

#[test]
fn a_directory_naming_its_ancestor_is_a_loop() {
    let clean = image(16, 512, 16384);
    let fat = open(&clean);
    let mut m = Mem(clean.clone());
    let loader = fat.lookup(&mut m, "/loader").unwrap();
    let mut b = clean.clone();
    // /loader/entries now points back at /loader.
    let at = dirent_offset(&b, "/loader", b"ENTRIES    ");
    b[at + 26..at + 28].copy_from_slice(&(loader.cluster as u16).to_le_bytes());
    let e = read(&b, "/loader/entries/entries/entries/x").unwrap_err();
    assert_eq!(
        e,
        FatError::DirectoryLoop {
            name: "entries".into(),
            cluster: loader.cluster
        }
    );
    assert!(format!("{e}").contains("directory loop"), "{e}");
}

#[test]
fn impossible_boot_sectors_are_refused_by_name() {
    let clean = image(32, 512, 40960);
    let size = clean.len() as u64;
    let bad = |f: &dyn Fn(&mut [u8])| {
        let mut b = clean.clone();
        f(&mut b);
        match Fat::open(&mut Mem(b), size) {
            Err(FatError::BadBootSector(w)) => w,
            other => panic!("{other:?}"),
        }
    };
    assert!(bad(&|b| b[510] = 0).contains("55 AA"));
    assert!(bad(&|b| b[11..13].copy_from_slice(&700u16.to_le_bytes())).contains("bytes per sector"));
    assert!(bad(&|b| b[13] = 3).contains("power of two"));
    assert!(bad(&|b| b[14..16].copy_from_slice(&[0, 0])).contains("reserved"));
    assert!(bad(&|b| b[16] = 0).contains("no FAT"));
    assert!(bad(&|b| b[32..36].copy_from_slice(&u32::MAX.to_le_bytes()))
        .contains("larger than its partition"));
    assert!(bad(&|b| b[36..40].copy_from_slice(&1u32.to_le_bytes())).contains("too small"));
    assert!(bad(&|b| b[44..48].copy_from_slice(&1u32.to_le_bytes())).contains("root directory"));
    assert!(bad(&|b| b[40] = 0x85).contains("active FAT"));
    // A partition smaller than the volume says.
    assert!(matches!(
        Fat::open(&mut Mem(clean.clone()), size / 2),
        Err(FatError::BadBootSector(_))
    ));
    assert!(matches!(
        Fat::open(&mut Mem(vec![0; 100]), 100),
        Err(FatError::BadBootSector(_))
    ));
}

#[test]
fn long_names_with_a_wrong_checksum_fall_back_to_the_short_name() {
    let clean = image(16, 512, 16384);
    let mut b = clean.clone();
    let at = dirent_offset(&b, "/", b"LOADER     ");
    // The long-name entry just before the 8.3 entry carries the checksum at byte 13.
    b[at - DIRENT + 13] ^= 0xff;
    assert_eq!(
        names(&b, "/")
            .iter()
            .filter(|n| *n == "LOADER" || *n == "loader")
            .count(),
        1
    );
    assert_eq!(read(&b, "/loader/loader.conf").unwrap(), b"timeout 3\n");
}
