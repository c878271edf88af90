//! The share's check list, `/vioboot-checks.txt`: what vioboot verifies on a virtio-fs share.
//!
//! ```text
//! # comment
//! file <sha256> <size> <path>     the file (symlinks followed) has this size and digest
//! enoent <path>                   the path does not exist
//! eloop <path>                    resolving the path meets a symlink loop
//! dir <count> <path>              the directory lists exactly <count> entries
//! bench-file <path>               benchmark: read this file (MB/s)
//! bench-dir <path>                benchmark: read every file of this directory (files/s)
//! ```

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

/// One line of the list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check<'a> {
    File {
        sha256: [u8; 32],
        size: u64,
        path: &'a str,
    },
    Enoent {
        path: &'a str,
    },
    Eloop {
        path: &'a str,
    },
    Dir {
        count: usize,
        path: &'a str,
    },
    BenchFile {
        path: &'a str,
    },
    BenchDir {
        path: &'a str,
    },
}

/// A line that cannot be understood.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadLine {
    pub line: usize,
    pub text: String,
}

impl fmt::Display for BadLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "vioboot-checks.txt line {}: cannot read `{}`",
            self.line, self.text
        )
    }
}

/// Parses the list; every line is understood or reported.
pub fn parse(text: &str) -> (Vec<Check<'_>>, Vec<BadLine>) {
    let mut out = Vec::new();
    let mut bad = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let l = line.trim();
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        let w: Vec<&str> = l.split_whitespace().collect();
        let abs = |p: &&str| p.starts_with('/');
        let c = match w.as_slice() {
            ["file", sha, size, path] if abs(path) => crate::sha256::parse_hex(sha)
                .zip(size.parse().ok())
                .map(|(sha256, size)| Check::File { sha256, size, path }),
            ["enoent", path] if abs(path) => Some(Check::Enoent { path }),
            ["eloop", path] if abs(path) => Some(Check::Eloop { path }),
            ["dir", count, path] if abs(path) => {
                count.parse().ok().map(|count| Check::Dir { count, path })
            }
            ["bench-file", path] if abs(path) => Some(Check::BenchFile { path }),
            ["bench-dir", path] if abs(path) => Some(Check::BenchDir { path }),
            _ => None,
        };
        match c {
            Some(c) => out.push(c),
            None => bad.push(BadLine {
                line: n + 1,
                text: l.into(),
            }),
        }
    }
    (out, bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_reports() {
        let sha = crate::sha256::hex(&crate::sha256::digest(b"x"));
        let text = alloc::format!("# c\nfile {sha} 1 /a\nenoent /nope\ndir 3 /d\nbench-dir /s\nfile zz 1 /a\ndir x /d\nenoent rel\n");
        let (c, bad) = parse(&text);
        assert_eq!(c.len(), 4);
        assert_eq!(
            c[2],
            Check::Dir {
                count: 3,
                path: "/d"
            }
        );
        assert_eq!(bad.iter().map(|b| b.line).collect::<Vec<_>>(), [6, 7, 8]);
    }
}
