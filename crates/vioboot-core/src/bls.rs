//! Boot Loader Specification Type #1 entries (`/loader/entries/*.conf`) and `loader.conf`, as
//! the UAPI Group's Boot Loader Specification and Version Format Specification write them.
//!
//! An entry is `key value` lines (the key is the first word; one or more spaces or tabs, then
//! the value); lines starting with `#` are comments. Keys: `title`, `version`, `machine-id`,
//! `sort-key`, `linux`, `initrd` (several: all used, in order), `efi`, `options` (several:
//! joined with spaces, in order), `devicetree`, `devicetree-overlay` (several paths, in
//! order), `architecture`. vioboot adds `sha256` (hex digest of the `linux` file) and
//! `initrd-sha256` (of the first initrd): when present they must match before vioboot jumps.
//! Unknown keys are kept and reported, never fatal (the specification allows additions).
//! Entries are ordered as the specification's "Sorting" section says, versions compared as the
//! Version Format Specification says, and entries a loader must hide (`efi` on a system without
//! EFI, another `architecture`, neither `linux` nor `efi`) carry the reason they are hidden.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::cmp::Ordering;

/// The names an entry's `architecture` may give for this machine (compared without regard to
/// case). The EFI vocabulary the specification points to names no POWER architecture, so
/// vioboot accepts the names Linux distributions use for little-endian 64-bit POWER.
pub const THIS_ARCHITECTURE: [&str; 3] = ["ppc64le", "ppc64el", "powerpc64le"];

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Entry {
    /// File name without `.conf`: the entry's id.
    pub id: String,
    pub title: Option<String>,
    pub version: Option<String>,
    pub machine_id: Option<String>,
    pub sort_key: Option<String>,
    pub linux: Option<String>,
    /// Every `initrd` path, in the order listed (each line may hold several).
    pub initrd: Vec<String>,
    /// Every `options` line, joined with spaces in the order listed.
    pub options: String,
    pub efi: Option<String>,
    pub devicetree: Option<String>,
    /// Every `devicetree-overlay` path, in order.
    pub devicetree_overlay: Vec<String>,
    pub architecture: Option<String>,
    pub sha256: Option<[u8; 32]>,
    pub initrd_sha256: Option<[u8; 32]>,
    /// Keys this parser does not know, repeated single keys, and values it could not read.
    pub ignored: Vec<String>,
}

impl Entry {
    /// The title to show: `title`, else the id.
    pub fn display_title(&self) -> &str {
        self.title.as_deref().unwrap_or(&self.id)
    }

    /// Why a boot loader on this machine must not offer the entry, if it must not.
    pub fn hidden(&self) -> Option<String> {
        if let Some(efi) = &self.efi {
            return Some(format!(
                "efi {efi}: an EFI program, and this is no EFI system (the specification hides such entries)"
            ));
        }
        if let Some(a) = &self.architecture {
            if !THIS_ARCHITECTURE.iter().any(|t| t.eq_ignore_ascii_case(a)) {
                return Some(format!(
                    "architecture {a}: not this machine's ({})",
                    THIS_ARCHITECTURE[0]
                ));
            }
        }
        // An entry with neither `linux` nor `efi` is invalid, but stays in the list: loading
        // it fails by name (a failing report line), as any broken entry does.
        None
    }

    /// What in the entry vioboot leaves unused on pseries, for the menu and the console.
    pub fn unused(&self) -> Vec<String> {
        let mut v = Vec::new();
        if let Some(d) = &self.devicetree {
            v.push(format!(
                "devicetree {d} ignored: on pseries the device tree comes from the platform"
            ));
        }
        if !self.devicetree_overlay.is_empty() {
            v.push(format!(
                "devicetree-overlay {} ignored: on pseries the device tree comes from the platform",
                self.devicetree_overlay.join(" ")
            ));
        }
        v
    }

    /// Boot counting from the file name (`+LEFT` or `+LEFT-DONE` at its end): (left, done).
    pub fn boot_counter(&self) -> Option<(u64, u64)> {
        let (_, tail) = self.id.rsplit_once('+')?;
        let (left, done) = match tail.split_once('-') {
            Some((l, d)) => (l, Some(d)),
            None => (tail, None),
        };
        let num = |s: &str| {
            (!s.is_empty() && s.bytes().all(|c| c.is_ascii_digit()))
                .then(|| s.parse::<u64>().ok())
                .flatten()
        };
        Some((num(left)?, done.map_or(Some(0), num)?))
    }

    /// "Bad" as boot counting says: no tries left.
    pub fn is_bad(&self) -> bool {
        self.boot_counter().is_some_and(|(left, _)| left == 0)
    }
}

/// An entry's path (`linux`, `initrd`) as an absolute path from the root of the file system
/// that holds the entry: the specification makes the leading `/` optional and asks for no `.`,
/// `..` or `//`; vioboot resolves `.` and `//`, and `..` inside the file system. `None` when
/// `..` would climb above the root: the path points outside the file system.
pub fn resolve(path: &str) -> Option<String> {
    let mut parts: Vec<&str> = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            c => parts.push(c),
        }
    }
    let mut out = String::with_capacity(path.len() + 1);
    for c in &parts {
        out.push('/');
        out.push_str(c);
    }
    if out.is_empty() {
        out.push('/');
    }
    Some(out)
}

/// Sets a key that should appear once; a second one wins and is noted.
fn set_once(slot: &mut Option<String>, key: &str, v: &str, ignored: &mut Vec<String>) {
    if slot.is_some() {
        ignored.push(format!("{key} given again: the last one is used"));
    }
    *slot = Some(v.to_string());
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
        let (k, v) = match l.split_once([' ', '\t']) {
            Some((k, v)) => (k, v.trim()),
            None => (l, ""),
        };
        let ig = &mut e.ignored;
        match k {
            "title" => set_once(&mut e.title, k, v, ig),
            "version" => set_once(&mut e.version, k, v, ig),
            "machine-id" => set_once(&mut e.machine_id, k, v, ig),
            "sort-key" => set_once(&mut e.sort_key, k, v, ig),
            "linux" => set_once(&mut e.linux, k, v, ig),
            "efi" => set_once(&mut e.efi, k, v, ig),
            "devicetree" => set_once(&mut e.devicetree, k, v, ig),
            "architecture" => set_once(&mut e.architecture, k, v, ig),
            "initrd" => e.initrd.extend(v.split_whitespace().map(String::from)),
            "devicetree-overlay" => e
                .devicetree_overlay
                .extend(v.split_whitespace().map(String::from)),
            "options" => {
                if !v.is_empty() {
                    if !e.options.is_empty() {
                        e.options.push(' ');
                    }
                    e.options.push_str(v);
                }
            }
            "sha256" => match crate::sha256::parse_hex(v) {
                Some(d) => e.sha256 = Some(d),
                None => ig.push(format!("sha256 `{v}` is not 64 hex digits")),
            },
            "initrd-sha256" => match crate::sha256::parse_hex(v) {
                Some(d) => e.initrd_sha256 = Some(d),
                None => ig.push(format!("initrd-sha256 `{v}` is not 64 hex digits")),
            },
            other => ig.push(format!("unknown key `{other}`")),
        }
    }
    e
}

/// Compares version strings as the UAPI Version Format Specification says, and where its text
/// and its examples disagree, as `systemd-analyze compare-versions` (the implementation it
/// names) does: characters other than ASCII letters, digits and `-.~^` are skipped; `~` sorts
/// lower than anything, even the end (`1.0~rc1` < `1.0`, the specification's "always sorts
/// lower"; its numbered steps read literally would check the end first); then the longer string
/// is newer; `-`, `^` and `.` sort lower than other characters (checked in that order; `^` is
/// newer than the end, so `123^post1` > `123`, the specification's "always sorts higher"); a digit run is newer than
/// none and runs compare as numbers (leading zeros skipped); letter runs compare letter by
/// letter (`A` before `a`), the longer newer. An empty string is older than any other.
pub fn vercmp(a: &str, b: &str) -> Ordering {
    fn valid(c: u8) -> bool {
        c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'~' | b'^')
    }
    fn skip(s: &mut &[u8]) {
        while let Some((&c, rest)) = s.split_first() {
            if valid(c) {
                break;
            }
            *s = rest;
        }
    }
    fn ended(a: &[u8], b: &[u8]) -> Option<Ordering> {
        match (a.is_empty(), b.is_empty()) {
            (true, true) => Some(Ordering::Equal),
            (true, false) => Some(Ordering::Less),
            (false, true) => Some(Ordering::Greater),
            (false, false) => None,
        }
    }
    /// A special character `c`: the one starting with it sorts lower; both do: skip it.
    fn special(a: &mut &[u8], b: &mut &[u8], c: u8) -> Option<Ordering> {
        match (a.first() == Some(&c), b.first() == Some(&c)) {
            (true, true) => {
                *a = &a[1..];
                *b = &b[1..];
                None
            }
            (true, false) => Some(Ordering::Less),
            (false, true) => Some(Ordering::Greater),
            (false, false) => None,
        }
    }
    fn run(s: &[u8], f: fn(&u8) -> bool) -> usize {
        s.iter().take_while(|c| f(c)).count()
    }
    let (mut a, mut b) = (a.as_bytes(), b.as_bytes());
    if let Some(o) = ended(a, b) {
        return o;
    }
    loop {
        // Skip what is not part of a version.
        skip(&mut a);
        skip(&mut b);
        // `~` sorts lower than anything, the end included.
        if let Some(o) = special(&mut a, &mut b, b'~') {
            return o;
        }
        // The end: the longer is newer.
        if let Some(o) = ended(a, b) {
            return o;
        }
        // Then, against any other character, `-` sorts lower, then `^`, then `.` (`^` is newer
        // than the end only: `123^post1` > `123`, but < `123.1`).
        if let Some(o) = special(&mut a, &mut b, b'-') {
            return o;
        }
        if let Some(o) = special(&mut a, &mut b, b'^') {
            return o;
        }
        if let Some(o) = special(&mut a, &mut b, b'.') {
            return o;
        }
        // After a skipped separator the next step starts over (the strings may now differ in
        // what comes first).
        let (da, db) = (
            a.first().is_some_and(u8::is_ascii_digit),
            b.first().is_some_and(u8::is_ascii_digit),
        );
        if da || db {
            // Numbers: a digit run is newer than none, then by value.
            let (na, nb) = (run(a, u8::is_ascii_digit), run(b, u8::is_ascii_digit));
            let (ta, tb) = (trim_zeros(&a[..na]), trim_zeros(&b[..nb]));
            let o = (na > 0)
                .cmp(&(nb > 0))
                .then(ta.len().cmp(&tb.len()))
                .then(ta.cmp(tb));
            if o != Ordering::Equal {
                return o;
            }
            a = &a[na..];
            b = &b[nb..];
            continue;
        }
        let (la, lb) = (
            run(a, u8::is_ascii_alphabetic),
            run(b, u8::is_ascii_alphabetic),
        );
        if la == 0 && lb == 0 {
            // A special character came up after the skipped one: go round again.
            continue;
        }
        // Letters, one by one; the longer run is newer.
        let o = a[..la].cmp(&b[..lb]);
        if o != Ordering::Equal {
            return o;
        }
        a = &a[la..];
        b = &b[lb..];
    }
}

fn trim_zeros(s: &[u8]) -> &[u8] {
    let n = s.iter().take_while(|&&c| c == b'0').count();
    &s[n..]
}

/// The specification's "alphanumerical order": `strcmp`, an unspecified or empty string lower.
fn alnum(a: Option<&str>, b: Option<&str>) -> Ordering {
    let a = a.filter(|s| !s.is_empty());
    let b = b.filter(|s| !s.is_empty());
    match (a, b) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Less,
        (Some(_), None) => Ordering::Greater,
        (Some(x), Some(y)) => x.as_bytes().cmp(y.as_bytes()),
    }
}

/// Orders entries as the specification's "Sorting" section says: "bad" entries (boot counting,
/// no tries left) last; entries with `sort-key` before those without; two with `sort-key` by
/// sort-key, then machine-id (both increasing), then version (decreasing); and at the end, by
/// file name without `.conf` (decreasing version order).
pub fn sort(entries: &mut [Entry]) {
    entries.sort_by(compare);
}

/// The order of [`sort`]: `Less` when `x` comes first in the menu.
pub fn compare(x: &Entry, y: &Entry) -> Ordering {
    x.is_bad()
        .cmp(&y.is_bad())
        .then_with(|| match (&x.sort_key, &y.sort_key) {
            (Some(a), Some(b)) => a
                .as_bytes()
                .cmp(b.as_bytes())
                .then_with(|| alnum(x.machine_id.as_deref(), y.machine_id.as_deref()))
                .then_with(|| {
                    vercmp(
                        y.version.as_deref().unwrap_or(""),
                        x.version.as_deref().unwrap_or(""),
                    )
                }),
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (None, None) => Ordering::Equal,
        })
        .then_with(|| vercmp(&y.id, &x.id))
}

/// What the menu shows for each entry: its title, and where two entries share a title, the
/// version (or the id) after it, as the specification asks.
pub fn menu_titles(entries: &[Entry]) -> Vec<String> {
    entries
        .iter()
        .map(|e| {
            let t = e.display_title();
            let shared = entries
                .iter()
                .filter(|o| o.display_title() == t)
                .nth(1)
                .is_some();
            if !shared {
                return t.to_string();
            }
            match &e.version {
                Some(v) => format!("{t} ({v})"),
                None => format!("{t} ({})", e.id),
            }
        })
        .collect()
}

/// `loader.conf`: the default entry (a glob on ids) and the menu timeout.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoaderConf {
    pub default: Option<String>,
    /// Seconds; `menu-hidden` and `menu-disabled` are 0.
    pub timeout: Option<u32>,
    /// Keys vioboot does not use and values it could not read.
    pub ignored: Vec<String>,
}

/// Parses `loader.conf` as systemd-boot's loader.conf(5) writes it: `default` (a glob on entry
/// ids; `@saved` and the other `@` names need EFI variables), `timeout` (seconds, or
/// `menu-hidden`/`menu-disabled` for none, `menu-force` to wait). Comments (`#`) and unknown
/// keys are tolerated and noted.
pub fn parse_loader_conf(text: &str) -> LoaderConf {
    let mut c = LoaderConf::default();
    for l in text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let (k, v) = l
            .split_once([' ', '\t'])
            .map_or((l, ""), |(k, v)| (k, v.trim()));
        match k {
            "default" if v.starts_with('@') => c.ignored.push(format!(
                "default {v}: kept in EFI variables, which pseries does not have"
            )),
            "default" => c.default = Some(v.trim_end_matches(".conf").to_string()),
            "timeout" => match v {
                "menu-hidden" | "menu-disabled" => c.timeout = Some(0),
                // Wait for a key: the longest timeout the menu counts.
                "menu-force" => c.timeout = Some(u32::MAX / 1000),
                n => match n.parse() {
                    Ok(s) => c.timeout = Some(s),
                    Err(_) => c
                        .ignored
                        .push(format!("timeout `{n}` is no number of seconds")),
                },
            },
            other => c.ignored.push(format!("key `{other}` not used by vioboot")),
        }
    }
    c
}

/// Whether `id` matches `pattern` as fnmatch(3) would: `*` any run, `?` one character,
/// `[abc]`, `[a-z]` and `[!a]` one of (or none of) a set, `\` quotes the next character.
/// Iterative, so a hostile pattern costs at most len(pattern) × len(id) steps.
pub fn glob(pattern: &str, id: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let s: Vec<char> = id.chars().collect();
    // One pattern item at `i`: Some((matches c, next i)).
    let one = |i: usize, c: char| -> Option<(bool, usize)> {
        match p[i] {
            '?' => Some((true, i + 1)),
            '[' => {
                let mut j = i + 1;
                let neg = matches!(p.get(j), Some('!' | '^'));
                if neg {
                    j += 1;
                }
                let mut hit = false;
                let mut first = true;
                while j < p.len() && (first || p[j] != ']') {
                    first = false;
                    if p.get(j + 1) == Some(&'-') && p.get(j + 2).is_some_and(|&e| e != ']') {
                        hit |= p[j] <= c && c <= p[j + 2];
                        j += 3;
                    } else {
                        hit |= p[j] == c;
                        j += 1;
                    }
                }
                if j >= p.len() {
                    // No closing bracket: a plain '['.
                    return Some((c == '[', i + 1));
                }
                Some((hit != neg, j + 1))
            }
            '\\' if i + 1 < p.len() => Some((p[i + 1] == c, i + 2)),
            lit => Some((lit == c, i + 1)),
        }
    };
    let (mut i, mut k) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while k < s.len() {
        if i < p.len() && p[i] == '*' {
            star = Some((i + 1, k));
            i += 1;
            continue;
        }
        if i < p.len() {
            if let Some((true, next)) = one(i, s[k]) {
                i = next;
                k += 1;
                continue;
            }
        }
        match star {
            Some((si, sk)) => {
                i = si;
                k = sk + 1;
                star = Some((si, sk + 1));
            }
            None => return false,
        }
    }
    p[i..].iter().all(|&c| c == '*')
}

/// The index of the default entry: the first (in order) whose id (with or without `.conf`)
/// matches `default`, else the first.
pub fn default_index(entries: &[Entry], default: Option<&str>) -> Option<usize> {
    if entries.is_empty() {
        return None;
    }
    Some(
        default
            .and_then(|d| {
                entries
                    .iter()
                    .position(|e| glob(d, &e.id) || glob(d, &format!("{}.conf", e.id)))
            })
            .unwrap_or(0),
    )
}

#[cfg(test)]
mod tests;
