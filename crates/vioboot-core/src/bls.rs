//! Boot Loader Specification Type #1 entries (`/loader/entries/*.conf`) and `loader.conf`,
//! as GRUB's blscfg and petitboot read them on POWER distributions.
//!
//! An entry is `key value` lines: `title`, `version`, `machine-id`, `sort-key`, `linux`,
//! `initrd` (several allowed), `options` (several allowed, joined with spaces), `devicetree`,
//! `architecture`; `#` starts a comment. vioboot adds `sha256` (hex digest of the `linux`
//! file) and `initrd-sha256` (of the first initrd): when present they must match before
//! vioboot jumps. Unknown keys are kept and reported, not fatal (the specification allows
//! additions).

use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::cmp::Ordering;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Entry {
    /// File name without `.conf`: the entry's id.
    pub id: String,
    pub title: Option<String>,
    pub version: Option<String>,
    pub machine_id: Option<String>,
    pub sort_key: Option<String>,
    pub linux: Option<String>,
    pub initrd: Vec<String>,
    pub options: String,
    pub devicetree: Option<String>,
    pub architecture: Option<String>,
    pub sha256: Option<[u8; 32]>,
    pub initrd_sha256: Option<[u8; 32]>,
    /// Keys this parser does not know, and lines it could not read.
    pub ignored: Vec<String>,
}

impl Entry {
    /// The title to show: `title`, else the id.
    pub fn display_title(&self) -> &str {
        self.title.as_deref().unwrap_or(&self.id)
    }
}

/// Parses one entry file named `file_name` (e.g. `6.1.0-ppc64le.conf`).
pub fn parse_entry(file_name: &str, text: &str) -> Entry {
    let mut e = Entry {
        id: file_name
            .strip_suffix(".conf")
            .unwrap_or(file_name)
            .to_string(),
        ..Entry::default()
    };
    for line in text.lines() {
        let l = line.trim();
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        let (k, v) = match l.split_once(char::is_whitespace) {
            Some((k, v)) => (k, v.trim()),
            None => (l, ""),
        };
        let v_owned = v.to_string();
        match k {
            "title" => e.title = Some(v_owned),
            "version" => e.version = Some(v_owned),
            "machine-id" => e.machine_id = Some(v_owned),
            "sort-key" => e.sort_key = Some(v_owned),
            "linux" => e.linux = Some(v_owned),
            "initrd" => e.initrd.extend(v.split_whitespace().map(String::from)),
            "options" => {
                if !e.options.is_empty() {
                    e.options.push(' ');
                }
                e.options.push_str(v);
            }
            "devicetree" => e.devicetree = Some(v_owned),
            "architecture" => e.architecture = Some(v_owned),
            "sha256" => match crate::sha256::parse_hex(v) {
                Some(d) => e.sha256 = Some(d),
                None => e
                    .ignored
                    .push(alloc::format!("sha256 `{v}` is not 64 hex digits")),
            },
            "initrd-sha256" => match crate::sha256::parse_hex(v) {
                Some(d) => e.initrd_sha256 = Some(d),
                None => e
                    .ignored
                    .push(alloc::format!("initrd-sha256 `{v}` is not 64 hex digits")),
            },
            other => e.ignored.push(alloc::format!("unknown key `{other}`")),
        }
    }
    e
}

/// Compares version strings the way the specification asks (like `rpmvercmp`): runs of
/// digits compare as numbers, runs of letters as text, `~` sorts before anything.
pub fn vercmp(a: &str, b: &str) -> Ordering {
    let (mut a, mut b) = (a.as_bytes(), b.as_bytes());
    loop {
        let skip = |s: &mut &[u8]| {
            while let Some((&c, rest)) = s.split_first() {
                if c.is_ascii_alphanumeric() || c == b'~' {
                    break;
                }
                *s = rest;
            }
        };
        skip(&mut a);
        skip(&mut b);
        match (a.first(), b.first()) {
            (Some(b'~'), Some(b'~')) => {
                a = &a[1..];
                b = &b[1..];
                continue;
            }
            (Some(b'~'), _) => return Ordering::Less,
            (_, Some(b'~')) => return Ordering::Greater,
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            _ => {}
        }
        let digits = a[0].is_ascii_digit();
        let take = |s: &[u8]| {
            s.iter()
                .take_while(|c| {
                    if digits {
                        c.is_ascii_digit()
                    } else {
                        c.is_ascii_alphabetic()
                    }
                })
                .count()
        };
        let (na, nb) = (take(a), take(b));
        if nb == 0 {
            // Different kinds: numbers are newer than letters.
            return if digits {
                Ordering::Greater
            } else {
                Ordering::Less
            };
        }
        let (sa, sb) = (&a[..na], &b[..nb]);
        let ord = if digits {
            let ta = trim_zeros(sa);
            let tb = trim_zeros(sb);
            ta.len().cmp(&tb.len()).then(ta.cmp(tb))
        } else {
            sa.cmp(sb)
        };
        if ord != Ordering::Equal {
            return ord;
        }
        a = &a[na..];
        b = &b[nb..];
    }
}

fn trim_zeros(s: &[u8]) -> &[u8] {
    let n = s.iter().take_while(|&&c| c == b'0').count();
    &s[n..]
}

/// Orders entries as the specification says: those with `sort-key` first, by sort-key, then
/// machine-id, then version (newest first); the rest by id, newest version first.
pub fn sort(entries: &mut [Entry]) {
    entries.sort_by(|x, y| match (&x.sort_key, &y.sort_key) {
        (Some(a), Some(b)) => a
            .cmp(b)
            .then_with(|| x.machine_id.cmp(&y.machine_id))
            .then_with(|| {
                vercmp(
                    y.version.as_deref().unwrap_or(""),
                    x.version.as_deref().unwrap_or(""),
                )
            }),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => vercmp(&y.id, &x.id),
    });
}

/// `loader.conf`: the default entry (a glob on ids) and the menu timeout.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoaderConf {
    pub default: Option<String>,
    pub timeout: Option<u32>,
}

pub fn parse_loader_conf(text: &str) -> LoaderConf {
    let mut c = LoaderConf::default();
    for l in text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let (k, v) = l
            .split_once(char::is_whitespace)
            .map_or((l, ""), |(k, v)| (k, v.trim()));
        match k {
            "default" => c.default = Some(v.trim_end_matches(".conf").to_string()),
            "timeout" => c.timeout = v.parse().ok(),
            _ => {}
        }
    }
    c
}

/// Whether `id` matches `pattern` (`*` any run, `?` one character).
pub fn glob(pattern: &str, id: &str) -> bool {
    fn m(p: &[u8], s: &[u8]) -> bool {
        match (p.first(), s.first()) {
            (None, None) => true,
            (Some(b'*'), _) => m(&p[1..], s) || (!s.is_empty() && m(p, &s[1..])),
            (Some(b'?'), Some(_)) => m(&p[1..], &s[1..]),
            (Some(a), Some(b)) if a == b => m(&p[1..], &s[1..]),
            _ => false,
        }
    }
    m(pattern.as_bytes(), id.as_bytes())
}

/// The index of the default entry: the first (in order) matching `default`, else the first.
pub fn default_index(entries: &[Entry], default: Option<&str>) -> Option<usize> {
    if entries.is_empty() {
        return None;
    }
    Some(
        default
            .and_then(|d| entries.iter().position(|e| glob(d, &e.id)))
            .unwrap_or(0),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_an_entry() {
        let e = parse_entry(
            "debian-6.1.conf",
            "# Debian\ntitle Debian GNU/Linux\nversion 6.1.0-50\nlinux /vmlinux-6.1.0\ninitrd /initrd.img\noptions root=/dev/vda\noptions quiet\nfoo bar\nsha256 zz\n",
        );
        assert_eq!(e.id, "debian-6.1");
        assert_eq!(e.linux.as_deref(), Some("/vmlinux-6.1.0"));
        assert_eq!(e.initrd, ["/initrd.img"]);
        assert_eq!(e.options, "root=/dev/vda quiet");
        assert_eq!(e.ignored.len(), 2);
    }

    #[test]
    fn versions_compare_like_rpm() {
        assert_eq!(vercmp("6.1.0-50", "6.1.0-9"), Ordering::Greater);
        assert_eq!(vercmp("6.10", "6.9"), Ordering::Greater);
        assert_eq!(vercmp("1.0~rc1", "1.0"), Ordering::Less);
        assert_eq!(vercmp("1.0a", "1.0"), Ordering::Greater);
        assert_eq!(vercmp("007", "7"), Ordering::Equal);
    }

    #[test]
    fn sorts_and_picks_the_default() {
        let mut v = alloc::vec![
            parse_entry("linux-5.10.conf", "linux /a"),
            parse_entry("linux-6.1.conf", "linux /b"),
            parse_entry("z.conf", "sort-key b\nversion 1"),
            parse_entry("y.conf", "sort-key a\nversion 1"),
            parse_entry("x.conf", "sort-key b\nversion 2"),
        ];
        sort(&mut v);
        let ids: Vec<&str> = v.iter().map(|e| e.id.as_str()).collect();
        assert_eq!(ids, ["y", "x", "z", "linux-6.1", "linux-5.10"]);
        let c = parse_loader_conf("default linux-5*\ntimeout 3\n");
        assert_eq!(c.timeout, Some(3));
        assert_eq!(default_index(&v, c.default.as_deref()), Some(4));
        assert_eq!(default_index(&v, Some("nothing")), Some(0));
        assert!(glob("*.1?", "linux-6.10") && !glob("a*b", "ac"));
    }
}
