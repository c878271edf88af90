//! The guest's `open(2)` flags, translated to the host's.
//!
//! FUSE carries open flags as the client's kernel ABI spells them (in OPEN, OPENDIR, CREATE,
//! READ and WRITE), and the guest is a ppc64 Linux-ABI client, while `PassthroughFs` hands the
//! flags to the host's `open(2)` and `fcntl(F_SETFL)` as they come. Most flags have the same
//! value on every Linux architecture (`include/uapi/asm-generic/fcntl.h`), but powerpc defines
//! four of its own (`arch/powerpc/include/uapi/asm/fcntl.h`):
//!
//! | flag          | ppc64 (guest) | asm-generic (x86_64, aarch64, ...) |
//! |---------------|--------------:|-----------------------------------:|
//! | `O_DIRECTORY` |     `0o40000` |                         `0o200000` |
//! | `O_NOFOLLOW`  |    `0o100000` |                         `0o400000` |
//! | `O_LARGEFILE` |    `0o200000` |  `0o100000` (glibc: 0 on 64-bit)   |
//! | `O_DIRECT`    |    `0o400000` |                          `0o40000` |
//!
//! So ppc64's `O_DIRECTORY` is x86's `O_DIRECT`, its `O_LARGEFILE` (which a 64-bit Linux
//! client sets on every open) is x86's `O_DIRECTORY`, and so on. [`to_host`] maps every guest
//! bit it knows to the host's value (taken from `libc`, so on a ppc64 host the map is the
//! identity) and refuses a bit it does not know rather than pass it through.

use std::fmt;

/// One guest open flag and its value on the host.
#[derive(Debug, Clone, Copy)]
struct Flag {
    name: &'static str,
    /// The value in the guest's ABI (ppc64 Linux).
    guest: u32,
    /// The host's value; 0 for a flag the host drops.
    host: u32,
}

const fn flag(name: &'static str, guest: u32, host: libc::c_int) -> Flag {
    Flag {
        name,
        guest,
        host: host as u32,
    }
}

/// Every open flag a ppc64 Linux client may send, one bit each. The access mode (`O_RDONLY` 0,
/// `O_WRONLY` 1, `O_RDWR` 2) is two bits with the same values everywhere.
const TABLE: [Flag; 20] = [
    // asm-generic values, the same on ppc64 and the host.
    flag("O_WRONLY", 0o1, libc::O_WRONLY),
    flag("O_RDWR", 0o2, libc::O_RDWR),
    flag("O_CREAT", 0o100, libc::O_CREAT),
    flag("O_EXCL", 0o200, libc::O_EXCL),
    flag("O_NOCTTY", 0o400, libc::O_NOCTTY),
    flag("O_TRUNC", 0o1000, libc::O_TRUNC),
    flag("O_APPEND", 0o2000, libc::O_APPEND),
    flag("O_NONBLOCK", 0o4000, libc::O_NONBLOCK),
    flag("O_DSYNC", 0o10000, libc::O_DSYNC),
    flag("FASYNC", 0o20000, libc::O_ASYNC),
    // powerpc's own values (arch/powerpc/include/uapi/asm/fcntl.h).
    flag("O_DIRECTORY", 0o40000, libc::O_DIRECTORY),
    flag("O_NOFOLLOW", 0o100000, libc::O_NOFOLLOW),
    // A 64-bit host opens every file large; libc says 0 there (x86_64), the bit elsewhere.
    flag("O_LARGEFILE", 0o200000, libc::O_LARGEFILE),
    flag("O_DIRECT", 0o400000, libc::O_DIRECT),
    // asm-generic again.
    flag("O_NOATIME", 0o1000000, libc::O_NOATIME),
    flag("O_CLOEXEC", 0o2000000, libc::O_CLOEXEC),
    // O_SYNC is __O_SYNC | O_DSYNC.
    flag("__O_SYNC", 0o4000000, libc::O_SYNC & !libc::O_DSYNC),
    flag("O_PATH", 0o10000000, libc::O_PATH),
    // O_TMPFILE is __O_TMPFILE | O_DIRECTORY.
    flag(
        "__O_TMPFILE",
        0o20000000,
        libc::O_TMPFILE & !libc::O_DIRECTORY,
    ),
    // Kernel-internal (include/linux/fs.h): Linux keeps it in the f_flags of a file opened for
    // execve, and its FUSE client sends f_flags. It means nothing to the host: dropped.
    flag("__FMODE_EXEC", 0o40, 0),
];

/// Guest flag bits [`to_host`] does not know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnknownFlags {
    /// The guest's flags as sent.
    pub flags: u32,
    /// The bits of them no ppc64 open flag has.
    pub unknown: u32,
}

impl fmt::Display for UnknownFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "open flags {:#o}: bits {:#o} are no ppc64 open flag",
            self.flags, self.unknown
        )
    }
}

/// The host's value of the guest's (ppc64) open `flags`.
pub fn to_host(flags: u32) -> Result<u32, UnknownFlags> {
    let mut host = 0;
    let mut left = flags;
    for f in TABLE.iter().filter(|f| flags & f.guest != 0) {
        host |= f.host;
        left &= !f.guest;
    }
    if left == 0 {
        Ok(host)
    } else {
        Err(UnknownFlags {
            flags,
            unknown: left,
        })
    }
}

/// The names of the guest flags set in `flags`, for logs ("O_RDONLY" if none).
pub fn names(flags: u32) -> String {
    let set: Vec<&str> = (TABLE.iter())
        .filter(|f| flags & f.guest != 0)
        .map(|f| f.name)
        .collect();
    if set.is_empty() {
        "O_RDONLY".into()
    } else {
        set.join("|")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_has_one_distinct_bit_per_flag() {
        let mut all = 0u32;
        for f in TABLE {
            assert!(f.guest.is_power_of_two(), "{}", f.name);
            assert_eq!(all & f.guest, 0, "{} overlaps", f.name);
            all |= f.guest;
        }
    }

    #[test]
    fn powerpc_flags_become_the_hosts() {
        let host = |v: libc::c_int| v as u32;
        assert_eq!(to_host(0o40000), Ok(host(libc::O_DIRECTORY)));
        assert_eq!(to_host(0o100000), Ok(host(libc::O_NOFOLLOW)));
        assert_eq!(to_host(0o200000), Ok(host(libc::O_LARGEFILE)));
        assert_eq!(to_host(0o400000), Ok(host(libc::O_DIRECT)));
        // What a 64-bit ppc64 Linux client sends for opendir(): O_RDONLY|O_LARGEFILE|O_DIRECTORY
        // (plus O_NONBLOCK|O_CLOEXEC from glibc).
        assert_eq!(
            to_host(0o40000 | 0o200000 | 0o4000 | 0o2000000),
            Ok(host(
                libc::O_DIRECTORY | libc::O_LARGEFILE | libc::O_NONBLOCK | libc::O_CLOEXEC
            ))
        );
        assert_eq!(
            to_host(0o20040000 | 0o2),
            Ok(host(libc::O_TMPFILE | libc::O_RDWR))
        );
        assert_eq!(
            to_host(0o4010000),
            Ok(host(libc::O_SYNC)),
            "O_SYNC = __O_SYNC|O_DSYNC"
        );
        assert_eq!(to_host(0o40), Ok(0), "__FMODE_EXEC dropped");
        assert_eq!(to_host(0), Ok(host(libc::O_RDONLY)));
    }

    #[cfg(target_arch = "x86_64")] // the values the translation exists for
    #[test]
    fn on_x86_64_the_powerpc_bits_move() {
        assert_eq!(to_host(0o40000), Ok(0o200000), "O_DIRECTORY");
        assert_eq!(to_host(0o100000), Ok(0o400000), "O_NOFOLLOW");
        assert_eq!(to_host(0o200000), Ok(0), "O_LARGEFILE: implied on x86_64");
        assert_eq!(to_host(0o400000), Ok(0o40000), "O_DIRECT");
        // x86's O_DIRECTORY value from the guest is ppc64's O_LARGEFILE: never a directory.
        assert_eq!(to_host(0o200000).map(|h| h & 0o200000), Ok(0));
    }

    #[test]
    fn unknown_bits_are_refused() {
        let e = to_host(0o100000000 | 0o2).unwrap_err();
        assert_eq!(
            e,
            UnknownFlags {
                flags: 0o100000002,
                unknown: 0o100000000
            }
        );
        assert_eq!(to_host(1 << 31).unwrap_err().unknown, 1 << 31);
        assert!(to_host(0o10).is_err(), "bit 3 is no open flag");
        assert_eq!(names(0o40000 | 0o200000), "O_DIRECTORY|O_LARGEFILE");
        assert_eq!(names(0), "O_RDONLY");
    }
}
