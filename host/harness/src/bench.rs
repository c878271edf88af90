//! The benchmark's pieces that `cargo xtask bench` shares with nobody but are worth testing: the
//! Linux peer's initramfs (Debian's virtio modules in dependency order and a script that times
//! `dd` runs), the parsing of `# bench blk` lines (vioboot's and the peer's share one format),
//! QEMU trace counting by time window, and medians with their spread.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Prefix of the block benchmark's result lines, vioboot's and the Linux peer's:
/// `# bench blk <phase> requests=N bytes=B us=T [hcalls=H] [<KIND>=n ...]`.
pub const BLK_PREFIX: &str = "# bench blk ";

/// One timed phase of the block benchmark.
#[derive(Debug, Clone, PartialEq)]
pub struct BlkPhase {
    pub name: String,
    /// Requests the device saw (vioboot: calls made; Linux: completed I/Os from
    /// `/sys/block/vda/stat`, after the block layer's merging and splitting).
    pub requests: u64,
    pub bytes: u64,
    pub us: u64,
    /// Further `key=value` counts on the line (vioboot: `hcalls` and one per hcall kind).
    pub counts: BTreeMap<String, u64>,
}

impl BlkPhase {
    /// MB/s (MiB per second, as the README has always given them).
    pub fn mbps(&self) -> f64 {
        self.bytes as f64 / (1 << 20) as f64 / (self.us.max(1) as f64 / 1e6)
    }

    /// Requests per second.
    pub fn iops(&self) -> f64 {
        self.requests as f64 / (self.us.max(1) as f64 / 1e6)
    }

    /// `counts[key]` per request (0 when absent).
    pub fn per_request(&self, key: &str) -> f64 {
        self.counts.get(key).copied().unwrap_or(0) as f64 / self.requests.max(1) as f64
    }
}

/// Every `# bench blk` line of `output`, in order. Lines that do not parse (a truncated
/// console, a missing field) are left out, never guessed.
pub fn parse_blk(output: &str) -> Vec<BlkPhase> {
    output
        .lines()
        .filter_map(|l| {
            let rest = &l[l.find(BLK_PREFIX)? + BLK_PREFIX.len()..];
            let mut words = rest.split_whitespace();
            let name = words.next()?.to_string();
            let mut counts = BTreeMap::new();
            for w in words {
                let (k, v) = w.split_once('=')?;
                counts.insert(k.to_string(), v.parse::<u64>().ok()?);
            }
            let requests = counts.remove("requests")?;
            let bytes = counts.remove("bytes")?;
            let us = counts.remove("us")?;
            Some(BlkPhase {
                name,
                requests,
                bytes,
                us,
                counts,
            })
        })
        .collect()
}

/// Counts QEMU trace events (log backend with `-msg timestamp=on`: `pid@sec.usec:event args`)
/// by name, for events stamped within `from..=to` (seconds since the epoch). Lines without a
/// timestamp are left out.
pub fn count_trace(log: &str, from: f64, to: f64) -> BTreeMap<String, u64> {
    let mut n = BTreeMap::new();
    for l in log.lines() {
        let Some((stamp, rest)) = l.split_once(':') else {
            continue;
        };
        let Some(t) = stamp
            .split_once('@')
            .and_then(|(_, t)| t.parse::<f64>().ok())
        else {
            continue;
        };
        if t < from || t > to {
            continue;
        }
        let event = rest.split_whitespace().next().unwrap_or("");
        *n.entry(event.to_string()).or_insert(0) += 1;
    }
    n
}

/// Median (the mean of the middle two for an even count), minimum and maximum; `None` when
/// `v` holds no number.
pub fn median_spread(v: &[f64]) -> Option<(f64, f64, f64)> {
    let mut s: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    if s.is_empty() {
        return None;
    }
    s.sort_by(f64::total_cmp);
    let m = s.len() / 2;
    let median = if s.len() % 2 == 1 {
        s[m]
    } else {
        (s[m - 1] + s[m]) / 2.0
    };
    Some((median, s[0], s[s.len() - 1]))
}

/// The value of `depends=` in a kernel module's `.modinfo`: the modules it needs.
pub fn module_depends(ko: &[u8]) -> Vec<String> {
    const KEY: &[u8] = b"\0depends=";
    let Some(at) = ko.windows(KEY.len()).position(|w| w == KEY) else {
        return Vec::new();
    };
    let rest = &ko[at + KEY.len()..];
    let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
    String::from_utf8_lossy(&rest[..end])
        .split(',')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// `wanted` and everything they depend on, each after its dependencies (the order `insmod`
/// needs). `depends` gives a module's direct dependencies; a name it does not know is an error,
/// as is a cycle.
pub fn load_order(
    wanted: &[&str],
    depends: &dyn Fn(&str) -> Option<Vec<String>>,
) -> Result<Vec<String>, String> {
    fn visit(
        m: &str,
        depends: &dyn Fn(&str) -> Option<Vec<String>>,
        on_path: &mut Vec<String>,
        out: &mut Vec<String>,
    ) -> Result<(), String> {
        if out.iter().any(|o| o == m) {
            return Ok(());
        }
        if on_path.iter().any(|o| o == m) {
            return Err(format!("module dependency cycle through {m}"));
        }
        let deps = depends(m).ok_or_else(|| format!("module {m} not found"))?;
        on_path.push(m.to_string());
        for d in deps {
            visit(&d, depends, on_path, out)?;
        }
        on_path.pop();
        out.push(m.to_string());
        Ok(())
    }
    let mut out = Vec::new();
    for m in wanted {
        visit(m, depends, &mut Vec::new(), &mut out)?;
    }
    Ok(out)
}

/// The kernel's release (`6.1.0-50-powerpc64le`) and module tree for an unpacked Debian kernel
/// package's `boot/vmlinux-<release>`.
pub fn module_tree(vmlinux: &Path) -> Option<(String, PathBuf)> {
    let release = vmlinux
        .file_name()?
        .to_str()?
        .strip_prefix("vmlinux-")?
        .to_string();
    let tree = vmlinux
        .parent()?
        .parent()?
        .join("lib/modules")
        .join(&release)
        .join("kernel");
    Some((release, tree))
}

/// Reads the modules `wanted` needs from `tree` (`lib/modules/<release>/kernel`), in load
/// order, as `(name, bytes)`. Compressed modules (`.ko.xz`, `.ko.zst`) are refused by name:
/// busybox's insmod takes plain ELF.
pub fn modules_in_order(tree: &Path, wanted: &[&str]) -> Result<Vec<(String, Vec<u8>)>, String> {
    let mut found = BTreeMap::new();
    let mut stack = vec![tree.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries = std::fs::read_dir(&d).map_err(|e| format!("{}: {e}", d.display()))?;
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            for (ext, plain) in [(".ko", true), (".ko.xz", false), (".ko.zst", false)] {
                if let Some(stem) = name.strip_suffix(ext) {
                    found.insert(stem.replace('-', "_"), (p.clone(), plain));
                }
            }
        }
    }
    let read = |m: &str| -> Result<Vec<u8>, String> {
        let (p, plain) = found
            .get(m)
            .ok_or_else(|| format!("module {m} not found"))?;
        if !plain {
            return Err(format!("{}: compressed module", p.display()));
        }
        std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()))
    };
    let order = load_order(wanted, &|m| read(m).ok().map(|b| module_depends(&b)))?;
    order
        .into_iter()
        .map(|m| read(&m).map(|b| (m, b)))
        .collect()
}

/// The Linux peer's block phases: `(name, dd arguments, bytes)` over the same 32 MiB area from
/// 1 MiB into the disk that vioboot's benchmark uses. Each runs GNU `dd` (one process issuing one
/// request at a time; `iflag/oflag=direct` is O_DIRECT with aligned buffers), which times its own
/// copy. busybox's `dd` cannot: when O_DIRECT refuses its unaligned buffer it silently reads
/// through the page cache, and it prints no time.
pub const LINUX_PHASES: [(&str, &str, u64); 6] = [
    (
        "read-buffered-1m",
        "if=/dev/vda of=/dev/null bs=1M skip=1 count=32",
        32 << 20,
    ),
    (
        "write-256k",
        "if=/dev/zero of=/dev/vda oflag=direct bs=256K seek=4 count=128",
        32 << 20,
    ),
    (
        "read-256k",
        "if=/dev/vda of=/dev/null iflag=direct bs=256K skip=4 count=128",
        32 << 20,
    ),
    (
        "write-1m",
        "if=/dev/zero of=/dev/vda oflag=direct bs=1M seek=1 count=32",
        32 << 20,
    ),
    (
        "read-1m",
        "if=/dev/vda of=/dev/null iflag=direct bs=1M skip=1 count=32",
        32 << 20,
    ),
    (
        "read-4k",
        "if=/dev/vda of=/dev/null iflag=direct bs=4K skip=256 count=2000",
        2000 * 4096,
    ),
];

/// Printed by the peer's /init between phases: the host stamps each on arrival and counts trace
/// events between a phase's `begin` and `end`.
pub const PEER_MARK: &str = "VIOBOOT-PEER";

/// Where the peer's initramfs holds GNU `dd` and the loader and C library it needs.
pub const PEER_DD: &str = "bin/dd";
pub const PEER_LIBS: &str = "lib64";

/// The Linux peer's shell lines (run by /init after /proc is mounted): mount sysfs and
/// devtmpfs, insmod `modules` (names, files under /mod), wait for /dev/vda, then per phase: drop
/// the page cache, print `VIOBOOT-PEER begin <phase>`, pause 300 ms (so the host stamps the line
/// before the first request), run GNU `dd` and take its own time (`copied, S s`), pause again,
/// print `VIOBOOT-PEER end <phase>` and a `# bench blk` line with the completed I/Os from
/// /sys/block/vda/stat.
pub fn linux_peer_script(modules: &[String]) -> String {
    let mut s = String::from(
        "bb=/bin/busybox\n$bb mount -t sysfs sys /sys\n$bb mount -t devtmpfs dev /dev\n",
    );
    for m in modules {
        s.push_str(&format!(
            "$bb insmod /mod/{m}.ko || echo \"insmod {m} failed\"\n"
        ));
    }
    s.push_str(&format!(
        "n=0; while [ ! -b /dev/vda ] && [ $n -lt 100 ]; do $bb usleep 50000; n=$((n+1)); done\n\
         ios() {{ set -- $($bb cat /sys/block/vda/stat); echo $(($1 + $5)); }}\n\
         phase() {{\n\
         \x20 name=$1; bytes=$2; shift 2\n\
         \x20 $bb sync; echo 3 > /proc/sys/vm/drop_caches\n\
         \x20 echo \"{PEER_MARK} begin $name\"; $bb usleep 300000\n\
         \x20 i0=$(ios)\n\
         \x20 r=$(LD_LIBRARY_PATH=/{PEER_LIBS} /{PEER_DD} \"$@\" 2>&1) || echo \"dd $name failed: $r\"\n\
         \x20 i1=$(ios)\n\
         \x20 us=$(echo \"$r\" | $bb awk '/copied/ {{ for (i = 2; i <= NF; i++) if ($i == \"s,\") printf \"%.0f\\n\", $(i - 1) * 1e6 }}')\n\
         \x20 $bb usleep 300000; echo \"{PEER_MARK} end $name\"\n\
         \x20 echo \"{BLK_PREFIX}$name requests=$((i1 - i0)) bytes=$bytes us=$us\"\n\
         }}\n"
    ));
    for (name, args, bytes) in LINUX_PHASES {
        s.push_str(&format!("phase {name} {bytes} {args}\n"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_blk_lines_and_leaves_out_broken_ones() {
        let out = "noise\n# bench blk read-1m requests=32 bytes=33554432 us=6071 hcalls=288 \
                   H_PUT_TCE=192 H_STUFF_TCE=32\n# bench blk read-4k requests=2000 bytes=8192000\n\
                   [ 1.0] # bench blk write-1m requests=16 bytes=1048576 us=500000\n\
                   # bench blk bad requests=x bytes=1 us=1\n";
        let p = parse_blk(out);
        assert_eq!(p.len(), 2, "{p:?}");
        assert_eq!(p[0].name, "read-1m");
        assert_eq!(p[0].requests, 32);
        assert_eq!(p[0].counts["hcalls"], 288);
        assert_eq!(p[0].per_request("H_PUT_TCE"), 6.0);
        assert_eq!(p[0].per_request("H_SEND_CRQ"), 0.0);
        assert_eq!(p[1].name, "write-1m");
        assert_eq!(p[1].mbps(), 2.0);
        assert_eq!(p[1].iops(), 32.0);
    }

    #[test]
    fn counts_trace_events_in_a_window() {
        let log = "7@100.000100:spapr_iommu_pci_put liobn=0x80000000 ioba=0x1000\n\
                   7@100.500000:spapr_iommu_pci_put liobn=0x80000000\n\
                   7@100.600000:spapr_iommu_pci_stuff liobn=0x80000000\n\
                   spapr_iommu_pci_put without a stamp\n\
                   7@101.000001:spapr_iommu_pci_put liobn=0x80000000\n";
        let n = count_trace(log, 100.2, 101.0);
        assert_eq!(n.get("spapr_iommu_pci_put"), Some(&1));
        assert_eq!(n.get("spapr_iommu_pci_stuff"), Some(&1));
        assert_eq!(n.values().sum::<u64>(), 2);
    }

    #[test]
    fn medians_and_spread() {
        assert_eq!(median_spread(&[3.0, 1.0, 2.0]), Some((2.0, 1.0, 3.0)));
        assert_eq!(median_spread(&[4.0, 1.0, 2.0, 3.0]), Some((2.5, 1.0, 4.0)));
        assert_eq!(median_spread(&[f64::NAN, 5.0]), Some((5.0, 5.0, 5.0)));
        assert_eq!(median_spread(&[]), None);
    }

    #[test]
    fn module_dependencies_in_load_order() {
        let mut ko = b"\x7fELF....\0license=GPL\0depends=virtio_ring,virtio\0intree=Y\0".to_vec();
        assert_eq!(module_depends(&ko), ["virtio_ring", "virtio"]);
        ko = b"\0depends=\0".to_vec();
        assert!(module_depends(&ko).is_empty());
        let deps = |m: &str| -> Option<Vec<String>> {
            let d: &[&str] = match m {
                "virtio" | "virtio_ring" | "modern" => &[],
                "virtio_pci" => &["virtio_ring", "modern", "virtio"],
                "virtio_blk" => &["virtio", "virtio_ring"],
                "loop_a" => &["loop_b"],
                "loop_b" => &["loop_a"],
                _ => return None,
            };
            Some(d.iter().map(|s| s.to_string()).collect())
        };
        assert_eq!(
            load_order(&["virtio_pci", "virtio_blk"], &deps).unwrap(),
            [
                "virtio_ring",
                "modern",
                "virtio",
                "virtio_pci",
                "virtio_blk"
            ]
        );
        assert!(load_order(&["nope"], &deps).unwrap_err().contains("nope"));
        assert!(load_order(&["loop_a"], &deps)
            .unwrap_err()
            .contains("cycle"));
    }
}
