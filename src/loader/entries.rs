//! The boot entries to offer: Boot Loader Specification Type #1 entries from
//! `/loader/entries/*.conf` and `/loader/loader.conf` on a file system (or under `/boot` on a
//! root file system), or the one kernel `vioboot.boot` names. Paths in an entry are from the
//! root of the file system that holds it, wherever its entries directory is. Entries the
//! specification hides (`efi`, another `architecture`) are left out, and what is unused or
//! unknown (`devicetree`, GRUB's keys, `loader.conf` keys) is noted, never silently dropped.

use crate::dev::FileSystem;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;
use vioboot_core::bls::{self, Entry};

/// Where entries may be, below the root of a file system: a separate /boot partition holds
/// `/loader/entries`, a root file system `/boot/loader/entries`.
pub const ROOTS: [&str; 2] = ["", "/boot"];

/// The first of [`ROOTS`] whose `loader/entries` directory `fs` holds.
pub fn locate(fs: &mut dyn FileSystem) -> Option<&'static str> {
    ROOTS
        .into_iter()
        .find(|r| fs.list_dir(&format!("{r}/loader/entries")).is_ok())
}

/// The entries, in the order to offer them, and what `loader.conf` says.
pub struct Entries {
    pub list: Vec<Entry>,
    /// Index of the default entry in `list`.
    pub default: usize,
    /// `loader.conf`'s timeout (seconds), if any.
    pub timeout: Option<u32>,
    /// What was skipped or could not be read, for the console.
    pub notes: Vec<String>,
}

/// What the command line asks for instead of (or beside) the entries on the file system.
pub struct Wanted<'a> {
    /// `vioboot.boot`: this kernel, no entries.
    pub boot: Option<&'a str>,
    /// `vioboot.initrd`, with `vioboot.boot`.
    pub initrd: Option<&'a str>,
    /// The kernel command line for `vioboot.boot`.
    pub options: &'a str,
    /// `vioboot.default`: overrides `loader.conf`.
    pub default: Option<&'a str>,
    /// Where `loader/` is: one of [`ROOTS`].
    pub root: &'a str,
}

/// Reads the entries from `fs` (or makes the one `vioboot.boot` asks for).
pub fn read(fs: &mut dyn FileSystem, want: &Wanted) -> Entries {
    let mut notes = Vec::new();
    if let Some(path) = want.boot {
        let e = Entry {
            id: "vioboot.boot".into(),
            title: Some(format!("{path} (vioboot.boot)")),
            linux: Some(path.into()),
            initrd: want.initrd.map(|i| vec![i.to_string()]).unwrap_or_default(),
            options: want.options.into(),
            ..Entry::default()
        };
        return Entries {
            list: vec![e],
            default: 0,
            timeout: Some(0),
            notes,
        };
    }
    let entries_dir = format!("{}/loader/entries", want.root);
    let conf_path = format!("{}/loader/loader.conf", want.root);
    let conf = fs
        .read_file(&conf_path)
        .map(|b| bls::parse_loader_conf(&String::from_utf8_lossy(&b)))
        .unwrap_or_default();
    notes.extend(conf.ignored.iter().map(|i| format!("{conf_path}: {i}")));
    let mut list = Vec::new();
    match fs.list_dir(&entries_dir) {
        Ok(names) => {
            for n in names.iter().filter(|n| n.name.ends_with(".conf")) {
                let path = format!("{entries_dir}/{}", n.name);
                match fs.read_file(&path) {
                    Ok(b) => {
                        let e = bls::parse_entry(&n.name, &String::from_utf8_lossy(&b));
                        notes.extend(e.ignored.iter().map(|i| format!("{path}: {i}")));
                        if let Some(why) = e.hidden() {
                            notes.push(format!("{path}: not offered: {why}"));
                            continue;
                        }
                        notes.extend(e.unused().iter().map(|u| format!("{path}: {u}")));
                        list.push(e);
                    }
                    Err(e) => notes.push(format!("{e}")),
                }
            }
        }
        Err(e) => notes.push(format!("{e}")),
    }
    bls::sort(&mut list);
    let default = bls::default_index(&list, want.default.or(conf.default.as_deref())).unwrap_or(0);
    Entries {
        list,
        default,
        timeout: conf.timeout,
        notes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dev::memfs::MemFs;

    fn wanted<'a>(default: Option<&'a str>) -> Wanted<'a> {
        Wanted {
            boot: None,
            initrd: None,
            options: "",
            default,
            root: "",
        }
    }

    fn share() -> MemFs {
        MemFs::new(&[
            (
                "/loader/loader.conf",
                b"# comment\ndefault linux-6.1.conf\ntimeout 7\n",
            ),
            (
                "/loader/entries/linux-6.1.conf",
                b"title Old\nversion 6.1.0\nlinux /vmlinux-6.1\n",
            ),
            (
                "/loader/entries/linux-6.10.conf",
                b"title New\nversion 6.10.0\nlinux /vmlinux-6.10\nfrobnicate yes\n",
            ),
            ("/loader/entries/README", b"not an entry"),
        ])
    }

    #[test]
    fn reads_orders_and_picks_the_default() {
        let mut fs = share();
        let e = read(&mut fs, &wanted(None));
        let ids: Vec<&str> = e.list.iter().map(|e| e.id.as_str()).collect();
        // No sort-key: by file name, newest version first; README is no entry.
        assert_eq!(ids, ["linux-6.10", "linux-6.1"]);
        assert_eq!(e.list[e.default].id, "linux-6.1", "loader.conf's default");
        assert_eq!(e.timeout, Some(7));
        assert!(
            e.notes
                .iter()
                .any(|n| n.contains("linux-6.10.conf") && n.contains("frobnicate")),
            "{:?}",
            e.notes
        );
        let e = read(&mut fs, &wanted(Some("linux-6.10*")));
        assert_eq!(
            e.list[e.default].id, "linux-6.10",
            "vioboot.default overrides"
        );
    }

    #[test]
    fn hidden_entries_are_left_out_with_the_reason_and_unused_keys_noted() {
        let mut fs = MemFs::new(&[
            (
                "/loader/loader.conf",
                b"default fedora-*\ntimeout menu-hidden\nbeep on\n",
            ),
            (
                "/loader/entries/fedora-6.9.conf",
                b"title Fedora\nversion 6.9.1\nsort-key fedora\nlinux /v69\ninitrd /a\ninitrd /b\n",
            ),
            (
                "/loader/entries/fedora-6.10.conf",
                b"title Fedora\nversion 6.10.2\nsort-key fedora\nlinux /v610\ndevicetree /x.dtb\n",
            ),
            (
                "/loader/entries/aarch64.conf",
                b"title Other\narchitecture aa64\nlinux /v\n",
            ),
            (
                "/loader/entries/shim.conf",
                b"title Shim\nefi /EFI/shim.efi\n",
            ),
            ("/loader/entries/empty.conf", b"title Nothing\n"),
        ]);
        let e = read(&mut fs, &wanted(None));
        // Without linux or efi an entry stays, to fail by name when loaded.
        assert_eq!(
            ids(&e),
            ["fedora-6.10", "fedora-6.9", "empty"],
            "sort-key first, newest version first"
        );
        assert_eq!(e.list[e.default].id, "fedora-6.10");
        assert_eq!(e.timeout, Some(0));
        assert_eq!(e.list[1].initrd, ["/a", "/b"]);
        for (file, why) in [
            ("aarch64.conf", "architecture aa64"),
            ("shim.conf", "no EFI system"),
            ("fedora-6.10.conf", "devicetree /x.dtb ignored"),
            ("loader.conf", "`beep` not used"),
        ] {
            assert!(
                e.notes.iter().any(|n| n.contains(file) && n.contains(why)),
                "{file}: {why}: {:?}",
                e.notes
            );
        }
    }

    fn ids(e: &Entries) -> Vec<&str> {
        e.list.iter().map(|e| e.id.as_str()).collect()
    }

    #[test]
    fn no_entries_directory_is_a_note_not_a_failure() {
        let mut fs = MemFs::new(&[("/vmlinux", b"x")]);
        let e = read(&mut fs, &wanted(None));
        assert!(e.list.is_empty());
        assert!(
            e.notes.iter().any(|n| n.contains("ENOENT")),
            "{:?}",
            e.notes
        );
    }

    #[test]
    fn vioboot_boot_makes_the_one_entry() {
        let mut fs = share();
        let e = read(
            &mut fs,
            &Wanted {
                boot: Some("/vmlinux"),
                initrd: Some("/initrd"),
                options: "console=hvc0",
                default: None,
                root: "",
            },
        );
        assert_eq!(e.list.len(), 1);
        assert_eq!(e.list[0].linux.as_deref(), Some("/vmlinux"));
        assert_eq!(e.list[0].initrd, ["/initrd"]);
        assert_eq!(e.list[0].options, "console=hvc0");
        assert_eq!(e.timeout, Some(0));
    }

    #[test]
    fn a_root_file_system_holds_them_under_boot() {
        let mut fs = MemFs::new(&[
            ("/boot/loader/loader.conf", b"timeout 3\n"),
            (
                "/boot/loader/entries/debian.conf",
                b"title Debian\nlinux /boot/vmlinux\n",
            ),
            ("/boot/vmlinux", b"x"),
        ]);
        assert_eq!(locate(&mut fs), Some("/boot"));
        let e = read(
            &mut fs,
            &Wanted {
                root: "/boot",
                ..wanted(None)
            },
        );
        assert_eq!(e.list.len(), 1);
        assert_eq!(
            e.list[0].linux.as_deref(),
            Some("/boot/vmlinux"),
            "paths stay from the file system's root"
        );
        assert_eq!(e.timeout, Some(3));
        assert_eq!(locate(&mut share()), Some(""));
        assert_eq!(locate(&mut MemFs::new(&[("/vmlinux", b"x")])), None);
    }
}
