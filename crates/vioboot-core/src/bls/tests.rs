//! Each rule of the Boot Loader Specification Type #1 and the Version Format Specification,
//! one test at a time.

use super::*;
use alloc::vec;

fn ids(v: &[Entry]) -> Vec<&str> {
    v.iter().map(|e| e.id.as_str()).collect()
}

#[test]
fn parses_every_key_and_tolerates_unknown_ones() {
    let e = parse_entry(
        "fedora-6.10.conf",
        "# Fedora\n\
         title  Fedora Linux 40\n\
         version\t6.10.3-200.fc40.ppc64le\n\
         machine-id 4098b3f648d74c13b1f04ccfba7798e8\n\
         sort-key fedora\n\
         linux /vmlinuz-6.10.3\n\
         initrd /initrd-a.img /initrd-b.img\n\
         initrd /initrd-c.img\n\
         options root=/dev/vda2\n\
         options  quiet   \n\
         options\n\
         architecture PPC64LE\n\
         devicetree /dtb/board.dtb\n\
         devicetree-overlay /o/a.dtbo /o/b.dtbo\n\
         devicetree-overlay /o/c.dtbo\n\
         grub_users $grub_users\n\
         sha256 zz\n",
    );
    assert_eq!(e.id, "fedora-6.10");
    assert_eq!(e.title.as_deref(), Some("Fedora Linux 40"));
    assert_eq!(e.version.as_deref(), Some("6.10.3-200.fc40.ppc64le"));
    assert_eq!(
        e.machine_id.as_deref(),
        Some("4098b3f648d74c13b1f04ccfba7798e8")
    );
    assert_eq!(e.sort_key.as_deref(), Some("fedora"));
    assert_eq!(e.linux.as_deref(), Some("/vmlinuz-6.10.3"));
    assert_eq!(
        e.initrd,
        ["/initrd-a.img", "/initrd-b.img", "/initrd-c.img"]
    );
    assert_eq!(e.options, "root=/dev/vda2 quiet", "options joined in order");
    assert_eq!(e.devicetree.as_deref(), Some("/dtb/board.dtb"));
    assert_eq!(
        e.devicetree_overlay,
        ["/o/a.dtbo", "/o/b.dtbo", "/o/c.dtbo"]
    );
    assert_eq!(e.hidden(), None, "architecture compares without case");
    assert_eq!(e.ignored.len(), 2, "{:?}", e.ignored);
    assert!(e.ignored[0].contains("grub_users"));
    let unused = e.unused();
    assert_eq!(unused.len(), 2);
    assert!(unused.iter().all(|u| u.contains("comes from the platform")));
}

#[test]
fn a_key_given_twice_keeps_the_last_and_says_so() {
    let e = parse_entry("a.conf", "linux /old\nlinux /new\n");
    assert_eq!(e.linux.as_deref(), Some("/new"));
    assert!(e.ignored[0].contains("linux given again"));
}

#[test]
fn entries_a_loader_must_hide_carry_the_reason() {
    let efi = parse_entry("a.conf", "efi /EFI/fedora/shimx64.efi\nlinux /v\n");
    assert!(efi.hidden().unwrap().contains("no EFI system"));
    let other = parse_entry("b.conf", "architecture aa64\nlinux /v\n");
    assert!(other.hidden().unwrap().contains("aa64"));
    let x64 = parse_entry("b.conf", "architecture x64\nlinux /v\n");
    assert!(x64.hidden().is_some());
    for name in ["ppc64le", "ppc64el", "powerpc64le", "PPC64LE"] {
        let e = parse_entry("c.conf", &format!("architecture {name}\nlinux /v\n"));
        assert_eq!(e.hidden(), None, "{name}");
    }
    // Neither linux nor efi: invalid, but left for the loader to fail by name.
    let none = parse_entry("d.conf", "title Nothing\n");
    assert_eq!(none.hidden(), None);
}

#[test]
fn versions_compare_as_the_version_format_specification_says() {
    use Ordering::*;
    // The specification's own examples.
    for (a, b, o) in [
        ("11", "11", Equal),
        ("systemd-123", "systemd-123", Equal),
        ("bar-123", "foo-123", Less),
        ("123a", "123", Greater),
        ("123.a", "123", Greater),
        ("123.a", "123.b", Less),
        ("123a", "123.a", Greater),
        ("11α", "11β", Equal),
        ("A", "a", Less),
        ("", "0", Less),
        ("0.", "0", Greater),
        ("0.0", "0", Greater),
        ("", "~", Less),
        ("1_", "1", Equal),
        ("_1", "1", Equal),
        ("1_", "1.2", Less),
        ("1_2_3", "1.3.3", Greater),
        ("1+", "1", Equal),
        ("+1", "1", Equal),
        ("1+", "1.2", Less),
        ("1+2+3", "1.3.3", Greater),
    ] {
        assert_eq!(vercmp(a, b), o, "{a:?} vs {b:?}");
        assert_eq!(vercmp(b, a), o.reverse(), "{b:?} vs {a:?}");
    }
    // `~` lower than anything, the end included; `-` and `.` lower, `^` higher; numbers
    // without leading zeros; a number newer than letters.
    assert_eq!(vercmp("1.0~rc1", "1.0"), Less);
    assert_eq!(vercmp("1~rc1", "1~rc2"), Less);
    assert_eq!(vercmp("1-1", "1.1"), Less);
    assert_eq!(vercmp("1^git1", "1"), Greater);
    assert_eq!(vercmp("1^git1", "1.1"), Less);
    assert_eq!(vercmp("007", "7"), Equal);
    assert_eq!(vercmp("6.10.3-200.fc40", "6.9.12-200.fc40"), Greater);
    assert_eq!(vercmp("6.1.0-50", "6.1.0-9"), Greater);
    assert_eq!(vercmp("a", "1"), Less);
    assert_eq!(vercmp("abc", "ab"), Greater);
    assert_eq!(vercmp("1.0~rc1", "1.0~rc1"), Equal);
    assert_eq!(vercmp("123~rc1-1", "123"), Less);
    assert_eq!(vercmp("123", "123-a"), Less);
    // The ordering systemd's implementation documents, oldest first.
    let order = [
        "122.1",
        "123~rc1-1",
        "123",
        "123-a",
        "123-a.1",
        "123-1",
        "123-1.1",
        "123^post1",
        "123.a-1",
        "123.1-1",
        "123a-1",
        "124-1",
    ];
    for w in order.windows(2) {
        assert_eq!(vercmp(w[0], w[1]), Less, "{} < {}", w[0], w[1]);
    }
    // The specification lists `0` < `~`, which its "`~` always sorts lower" contradicts:
    // vioboot (as systemd) sorts `~` lower.
    assert_eq!(vercmp("~", "0"), Less);
}

#[test]
fn sorts_as_the_specification_says() {
    let mut v = vec![
        parse_entry("linux-5.10.conf", "linux /a"),
        parse_entry("linux-6.1.conf", "linux /b"),
        parse_entry("z.conf", "sort-key b\nversion 1\nlinux /z"),
        parse_entry("y.conf", "sort-key a\nversion 1\nlinux /y"),
        parse_entry("x.conf", "sort-key b\nversion 2\nlinux /x"),
        // Same sort-key: machine-id increasing (an empty one lower), then version decreasing.
        parse_entry("m2.conf", "sort-key c\nmachine-id bb\nversion 1\nlinux /m"),
        parse_entry("m1.conf", "sort-key c\nmachine-id aa\nversion 1\nlinux /m"),
        parse_entry("m0.conf", "sort-key c\nversion 9\nlinux /m"),
        // All equal: the file name, decreasing version order.
        parse_entry("same-1.conf", "sort-key d\nlinux /s"),
        parse_entry("same-2.conf", "sort-key d\nlinux /s"),
        // Boot counting: no tries left is "bad", last; tries left is not.
        parse_entry("bad+0-3.conf", "sort-key a\nlinux /bad"),
        parse_entry("trying+2-1.conf", "sort-key 0\nlinux /t"),
    ];
    sort(&mut v);
    assert_eq!(
        ids(&v),
        [
            "trying+2-1",
            "y",
            "x",
            "z",
            "m0",
            "m1",
            "m2",
            "same-2",
            "same-1",
            "linux-6.1",
            "linux-5.10",
            "bad+0-3"
        ]
    );
    assert_eq!(v[0].boot_counter(), Some((2, 1)));
    assert!(v[11].is_bad());
    assert_eq!(parse_entry("p+1.conf", "").boot_counter(), Some((1, 0)));
    assert_eq!(parse_entry("c++.conf", "").boot_counter(), None);
}

#[test]
fn fedora_style_entries_put_the_newest_kernel_first() {
    let mut v: Vec<Entry> = ["6.8.5-301.fc40", "6.10.3-200.fc40", "6.9.12-200.fc40"]
        .iter()
        .map(|ver| {
            parse_entry(
                &format!("4098b3f648d74c13b1f04ccfba7798e8-{ver}.ppc64le.conf"),
                &format!(
                    "title Fedora Linux 40\nversion {ver}.ppc64le\nmachine-id 4098b3f648d74c13b1f04ccfba7798e8\nsort-key fedora\nlinux /vmlinuz-{ver}\n"
                ),
            )
        })
        .collect();
    sort(&mut v);
    let versions: Vec<&str> = v.iter().map(|e| e.version.as_deref().unwrap()).collect();
    assert_eq!(
        versions,
        [
            "6.10.3-200.fc40.ppc64le",
            "6.9.12-200.fc40.ppc64le",
            "6.8.5-301.fc40.ppc64le"
        ]
    );
    // Two entries with one title: the version tells them apart in the menu.
    assert_eq!(
        menu_titles(&v),
        [
            "Fedora Linux 40 (6.10.3-200.fc40.ppc64le)",
            "Fedora Linux 40 (6.9.12-200.fc40.ppc64le)",
            "Fedora Linux 40 (6.8.5-301.fc40.ppc64le)"
        ]
    );
    assert_eq!(
        menu_titles(&[
            parse_entry("a.conf", "title A"),
            parse_entry("b.conf", "title A")
        ]),
        ["A (a)", "A (b)"]
    );
}

#[test]
fn loader_conf_default_timeout_comments_and_unknown_keys() {
    let c = parse_loader_conf(
        "# a comment\n  default   fedora-*  \ntimeout 5\neditor no\nconsole-mode max\n",
    );
    assert_eq!(c.default.as_deref(), Some("fedora-*"));
    assert_eq!(c.timeout, Some(5));
    assert_eq!(c.ignored.len(), 2, "{:?}", c.ignored);
    assert_eq!(parse_loader_conf("timeout menu-hidden").timeout, Some(0));
    assert_eq!(parse_loader_conf("timeout menu-disabled").timeout, Some(0));
    assert!(parse_loader_conf("timeout menu-force").timeout.unwrap() > 3600);
    let bad = parse_loader_conf("timeout soon\ndefault @saved\n");
    assert_eq!((bad.timeout, bad.default), (None, None));
    assert_eq!(bad.ignored.len(), 2);
    assert_eq!(
        parse_loader_conf("default a.conf").default.as_deref(),
        Some("a")
    );
}

#[test]
fn the_default_glob_picks_the_first_match_in_order() {
    let mut v = vec![
        parse_entry("linux-5.10.conf", "linux /a"),
        parse_entry("linux-6.1.conf", "linux /b"),
    ];
    sort(&mut v);
    assert_eq!(default_index(&v, Some("linux-5*")), Some(1));
    assert_eq!(default_index(&v, Some("linux-*")), Some(0));
    assert_eq!(
        default_index(&v, Some("*.conf")),
        Some(0),
        "the .conf name matches too"
    );
    assert_eq!(default_index(&v, Some("nothing")), Some(0));
    assert_eq!(default_index(&[], Some("x")), None);
}

#[test]
fn globs_match_as_fnmatch() {
    assert!(glob("*.1?", "linux-6.10") && !glob("a*b", "ac"));
    assert!(glob("linux-[56].*", "linux-6.1") && !glob("linux-[!56].*", "linux-6.1"));
    assert!(glob("v[0-9]", "v7") && !glob("v[0-9]", "vx"));
    assert!(glob("a\\*", "a*") && !glob("a\\*", "ab"));
    assert!(glob("[", "[") && glob("*", "") && !glob("?", ""));
    // A hostile pattern ends quickly.
    let p = "*a".repeat(200) + "b";
    let s = "a".repeat(4000);
    assert!(!glob(&p, &s));
}

#[test]
fn paths_resolve_from_the_root_and_never_climb_out() {
    assert_eq!(
        resolve("vmlinuz").as_deref(),
        Some("/vmlinuz"),
        "the / is optional"
    );
    assert_eq!(resolve("/a//b/./c").as_deref(), Some("/a/b/c"));
    assert_eq!(resolve("/a/../b").as_deref(), Some("/b"));
    assert_eq!(resolve("/../vmlinuz"), None);
    assert_eq!(resolve("a/../../etc/passwd"), None);
}
