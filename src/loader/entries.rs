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

/// The entries of one file system, in directory order, and what `loader.conf` says; [`merge`]
/// orders them and picks the default.
pub struct Entries {
    pub list: Vec<Entry>,
    /// `loader.conf`'s timeout (seconds), if any.
    pub timeout: Option<u32>,
    /// `loader.conf`'s `default` (a glob on entry ids), if any.
    pub conf_default: Option<String>,
    /// What `loader/entries.srel` says when it names another format than `type1`: the
    /// entries there are then not offered.
    pub other_format: Option<String>,
    /// What was skipped or could not be read, for the console.
    pub notes: Vec<String>,
}

/// What `loader/entries.srel` says of the entries next to it. The specification: a file
/// holding `type1` marks entries that follow it; any other content marks entries of another
/// format ("non-standard semantics"); no file, no assumption (vioboot reads them as Type #1).
/// Returns the other format's name (at most 64 characters, printable) or `None`.
fn other_format(fs: &mut dyn FileSystem, root: &str) -> Option<String> {
    let bytes = fs.read_file(&format!("{root}/loader/entries.srel")).ok()?;
    let text = String::from_utf8_lossy(&bytes);
    let first = text.lines().next().unwrap_or("").trim();
    if first == "type1" {
        return None;
    }
    let shown: String = first
        .chars()
        .take(64)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    Some(shown)
}

/// Entries of one boot menu read from several file systems: the EFI system partition and
/// the extended boot loader partition (XBOOTLDR) of one disk, which the specification reads
/// as one set. Sorted as one list; `from[k]` is the index (in the `parts` given to [`merge`])
/// of the file system entry `k` lives on, whose root its paths start from.
pub struct Merged {
    pub list: Vec<Entry>,
    pub from: Vec<usize>,
    pub default: usize,
    pub timeout: Option<u32>,
}

/// Merges what [`read`] found on each file system of one menu (one, or the ESP and XBOOTLDR
/// partitions of a disk) into one list, sorted as the specification sorts. `loader.conf`'s keys come from the first part that sets them (the
/// ESP's, as systemd-boot reads its `loader.conf` there), `default` overrides them all.
pub fn merge(parts: Vec<Entries>, default: Option<&str>) -> Merged {
    let conf_default = parts.iter().find_map(|p| p.conf_default.clone());
    let timeout = parts.iter().find_map(|p| p.timeout);
    let mut all: Vec<(Entry, usize)> = parts
        .into_iter()
        .enumerate()
        .flat_map(|(i, p)| p.list.into_iter().map(move |e| (e, i)))
        .collect();
    all.sort_by(|x, y| bls::compare(&x.0, &y.0));
    let (list, from): (Vec<Entry>, Vec<usize>) = all.into_iter().unzip();
    let default = bls::default_index(&list, default.or(conf_default.as_deref())).unwrap_or(0);
    Merged {
        list,
        from,
        default,
        timeout,
    }
}

/// What the command line asks for instead of (or beside) the entries on the file system.
pub struct Wanted<'a> {
    /// `vioboot.boot`: this kernel, no entries.
    pub boot: Option<&'a str>,
    /// `vioboot.initrd`, with `vioboot.boot`.
    pub initrd: Option<&'a str>,
    /// The kernel command line for `vioboot.boot`.
    pub options: &'a str,
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
            timeout: Some(0),
            conf_default: None,
            other_format: None,
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
    let other = other_format(fs, want.root);
    if let Some(f) = &other {
        notes.push(format!(
            "{}/loader/entries.srel says \"{f}\", not \"type1\": the entries in {entries_dir} follow another specification and are not offered",
            want.root
        ));
    }
    let listing = match &other {
        Some(_) => Ok(Vec::new()),
        None => fs.list_dir(&entries_dir),
    };
    match listing {
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
    Entries {
        list,
        timeout: conf.timeout,
        conf_default: conf.default,
        other_format: other,
        notes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dev::memfs::MemFs;

    fn wanted<'a>() -> Wanted<'a> {
        Wanted {
            boot: None,
            initrd: None,
            options: "",
            root: "",
        }
    }

    /// The menu one file system gives (as `boot` makes it), and what reading it noted.
    fn menu_of(fs: &mut MemFs, want: &Wanted, default: Option<&str>) -> (Merged, Vec<String>) {
        let e = read(fs, want);
        let notes = e.notes.clone();
        (merge(vec![e], default), notes)
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
        let (e, notes) = menu_of(&mut fs, &wanted(), None);
        // No sort-key: by file name, newest version first; README is no entry.
        assert_eq!(ids(&e), ["linux-6.10", "linux-6.1"]);
        assert_eq!(e.list[e.default].id, "linux-6.1", "loader.conf's default");
        assert_eq!(e.timeout, Some(7));
        assert!(
            notes
                .iter()
                .any(|n| n.contains("linux-6.10.conf") && n.contains("frobnicate")),
            "{notes:?}"
        );
        let (e, _) = menu_of(&mut fs, &wanted(), Some("linux-6.10*"));
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
        let (e, notes) = menu_of(&mut fs, &wanted(), None);
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
                notes.iter().any(|n| n.contains(file) && n.contains(why)),
                "{file}: {why}: {notes:?}"
            );
        }
    }

    fn ids(e: &Merged) -> Vec<&str> {
        e.list.iter().map(|e| e.id.as_str()).collect()
    }

    #[test]
    fn no_entries_directory_is_a_note_not_a_failure() {
        let mut fs = MemFs::new(&[("/vmlinux", b"x")]);
        let e = read(&mut fs, &wanted());
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
                ..wanted()
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

    #[test]
    fn entries_srel_other_than_type1_keeps_the_entries_out_by_name() {
        let entry: &[u8] = b"title T\nlinux /v\n";
        for (srel, offered) in [
            (None, true),
            (Some(&b"type1\n"[..]), true),
            (Some(&b"type1"[..]), true),
            (Some(&b"grub-bls\n"[..]), false),
            (Some(&b"\x01\x02"[..]), false),
            (Some(&b""[..]), false),
        ] {
            let mut files: Vec<(&str, &[u8])> = vec![("/loader/entries/t.conf", entry)];
            if let Some(s) = srel {
                files.push(("/loader/entries.srel", s));
            }
            let mut fs = MemFs::new(&files);
            let e = read(&mut fs, &wanted());
            assert_eq!(e.list.len(), usize::from(offered), "{srel:?}");
            assert_eq!(e.other_format.is_none(), offered, "{srel:?}");
            if !offered {
                assert!(
                    e.notes
                        .iter()
                        .any(|n| n.contains("entries.srel says") && n.contains("not offered")),
                    "{:?}",
                    e.notes
                );
            }
        }
        let mut fs = MemFs::new(&[
            ("/loader/entries/t.conf", entry),
            ("/loader/entries.srel", b"grub-bls\n"),
        ]);
        assert_eq!(
            read(&mut fs, &wanted()).other_format.as_deref(),
            Some("grub-bls")
        );
    }

    #[test]
    fn esp_and_xbootldr_merge_into_one_sorted_menu() {
        let mut esp = MemFs::new(&[
            ("/loader/loader.conf", b"default esp-*\n"),
            (
                "/loader/entries/esp-a.conf",
                b"title ESP\nsort-key b\nlinux /v\n",
            ),
        ]);
        let mut boot = MemFs::new(&[
            ("/loader/loader.conf", b"default boot-*\ntimeout 5\n"),
            (
                "/loader/entries/boot-6.1.conf",
                b"title Boot\nsort-key a\nversion 6.1\nlinux /v\n",
            ),
            (
                "/loader/entries/boot-6.10.conf",
                b"title Boot\nsort-key a\nversion 6.10\nlinux /v\n",
            ),
        ]);
        let parts = vec![read(&mut esp, &wanted()), read(&mut boot, &wanted())];
        let m = merge(parts, None);
        assert_eq!(
            ids(&m),
            ["boot-6.10", "boot-6.1", "esp-a"],
            "one order over both"
        );
        assert_eq!(m.from, [1, 1, 0], "each entry knows its file system");
        assert_eq!(
            m.list[m.default].id, "esp-a",
            "the first loader.conf's default"
        );
        assert_eq!(
            m.timeout,
            Some(5),
            "a key the first does not set comes from the next"
        );
        let parts = vec![read(&mut esp, &wanted()), read(&mut boot, &wanted())];
        let m = merge(parts, Some("boot-6.1"));
        assert_eq!(
            m.list[m.default].id, "boot-6.1",
            "vioboot.default overrides"
        );
        // One part alone: its own order and its own loader.conf's default.
        let (m, _) = menu_of(&mut boot, &wanted(), None);
        assert_eq!(ids(&m), ["boot-6.10", "boot-6.1"]);
        assert_eq!(m.from, [0, 0]);
        assert_eq!(m.list[m.default].id, "boot-6.10");
    }
}
