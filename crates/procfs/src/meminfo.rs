//! /proc/meminfo and /sys/devices/system/node/nodeN/meminfo: every line, in order, known or not.
//!
//! Hand-written rather than the `procfs` crate's: that one drops keys it does not know
//! (`Balloon`, `Unaccepted`, anything newer) and its parser has panicked on non-UTF-8 input.

use memwarden_model::host::{Meminfo, MeminfoEntry, MeminfoUnit, NodeMeminfo};
use memwarden_model::units::KIB;

use crate::error::{Error, Result};
use crate::text::{numbered_lines, parse_u64, split_key};

const PATH: &str = "/proc/meminfo";
const NODE_PATH: &str = "/sys/devices/system/node/nodeN/meminfo";
const EXPECTED: &str = "\"Key: value [kB]\"";

/// Parses /proc/meminfo. `kB` lines become bytes (an overflow is an error naming the line),
/// unit-less lines (`HugePages_Total`...) are counts. Blank lines are skipped.
pub fn parse(text: &str) -> Result<Meminfo> {
    let mut entries = Vec::new();
    for (n, line) in numbered_lines(text) {
        entries.push(parse_line(PATH, n, line)?);
    }
    Ok(Meminfo { entries })
}

/// Parses a NUMA node's meminfo: each line starts with `Node N `, stripped; every line must
/// name the same node.
pub fn parse_node(text: &str) -> Result<NodeMeminfo> {
    let mut node = None;
    let mut entries = Vec::new();
    for (n, line) in numbered_lines(text) {
        let bad = || Error::parse(NODE_PATH, n, "\"Node N Key: value [kB]\"", line);
        let rest = line.strip_prefix("Node ").ok_or_else(bad)?;
        let (num, rest) = rest.split_once(' ').ok_or_else(bad)?;
        let num: u32 = parse_u64(num)
            .and_then(|v| u32::try_from(v).ok())
            .ok_or_else(bad)?;
        if *node.get_or_insert(num) != num {
            return Err(Error::parse(
                NODE_PATH,
                n,
                format!(
                    "the same node number on every line (node {})",
                    node.unwrap_or(0)
                ),
                line,
            ));
        }
        entries.push(parse_line(NODE_PATH, n, rest)?);
    }
    Ok(NodeMeminfo {
        node: node.unwrap_or(0),
        meminfo: Meminfo { entries },
    })
}

fn parse_line(path: &str, n: usize, line: &str) -> Result<MeminfoEntry> {
    let bad = || Error::parse(path, n, EXPECTED, line);
    let (key, value) = split_key(line.trim_start()).ok_or_else(bad)?;
    let (num, unit) = match value.split_once(char::is_whitespace) {
        Some((num, unit)) if unit.trim() == "kB" => (num, MeminfoUnit::Bytes),
        Some(_) => return Err(bad()),
        None => (value, MeminfoUnit::Count),
    };
    let raw = parse_u64(num).ok_or_else(bad)?;
    let value = match unit {
        MeminfoUnit::Count => raw,
        MeminfoUnit::Bytes => raw.checked_mul(KIB).ok_or_else(|| {
            Error::parse(
                path,
                n,
                format!("a {key} value small enough to count in bytes (64 bits)"),
                line,
            )
        })?,
    };
    Ok(MeminfoEntry {
        key: key.to_string(),
        value,
        unit,
    })
}

/// Prints `meminfo` the way the kernel does (`Key:` padded, value in kB or a bare count).
/// Byte values that are not whole KiB are rounded down. `parse(&render(m)) == m` for kernel data.
pub fn render(meminfo: &Meminfo) -> String {
    let mut out = String::new();
    for e in &meminfo.entries {
        let key = format!("{}:", e.key);
        match e.unit {
            MeminfoUnit::Bytes => out.push_str(&format!("{key:<15} {:>8} kB\n", e.value / KIB)),
            MeminfoUnit::Count => out.push_str(&format!("{key:<15} {:>8}\n", e.value)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Copied from this machine's live /proc/meminfo (kernel 6.18.44, a Firecracker guest).
    const LIVE: &str = "\
MemTotal:       24683656 kB
MemFree:        23909804 kB
Active(anon):       1540 kB
VmallocTotal:   34359738367 kB
Balloon:               0 kB
HugePages_Total:       0
HugePages_Free:        0
Hugepagesize:       2048 kB
DirectMap1G:    25165824 kB
";

    #[test]
    fn keeps_every_line_in_order_with_units() {
        let m = parse(LIVE).expect("live meminfo parses");
        let keys: Vec<_> = m.entries.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "MemTotal",
                "MemFree",
                "Active(anon)",
                "VmallocTotal",
                "Balloon",
                "HugePages_Total",
                "HugePages_Free",
                "Hugepagesize",
                "DirectMap1G"
            ]
        );
        assert_eq!(m.get("MemTotal"), Some(24683656 * 1024));
        assert_eq!(m.get("VmallocTotal"), Some(34359738367 * 1024));
        assert_eq!(m.entries[5].unit, MeminfoUnit::Count);
        assert_eq!(m.entries[7].unit, MeminfoUnit::Bytes);
        assert_eq!(m.get("Hugepagesize"), Some(2 * 1024 * 1024));
    }

    #[test]
    fn unknown_keys_are_kept() {
        let m = parse("Unaccepted:     1024 kB\nSomethingNew:   7\n").expect("parses");
        assert_eq!(m.get("Unaccepted"), Some(1024 * 1024));
        assert_eq!(m.get("SomethingNew"), Some(7));
    }

    #[test]
    fn malformed_line_names_line_and_text() {
        let e = parse("MemTotal: 1 kB\nMemFree: 2 kB\nMemFree 12\n").expect_err("bad line");
        assert_eq!(
            e.to_string(),
            r#"/proc/meminfo line 3: expected "Key: value [kB]", got "MemFree 12""#
        );
        assert!(parse("MemTotal: 1 MB\n").is_err());
        assert!(parse("MemTotal: -1 kB\n").is_err());
        assert!(parse("MemTotal: kB\n").is_err());
        assert!(parse(": 1 kB\n").is_err());
    }

    #[test]
    fn kb_overflow_is_an_error_naming_the_line() {
        let e =
            parse("MemTotal: 1 kB\nVmallocTotal: 18014398509481984 kB\n").expect_err("overflow");
        let s = e.to_string();
        assert!(s.starts_with("/proc/meminfo line 2: "), "{s}");
        assert!(s.contains("VmallocTotal"), "{s}");
        // One below the limit still fits.
        assert!(parse("VmallocTotal: 18014398509481983 kB\n").is_ok());
    }

    /// Copied from this machine's /sys/devices/system/node/node0/meminfo (kernel 6.18).
    #[test]
    fn node_meminfo_strips_the_prefix() {
        let text = "\
Node 0 MemTotal:        4548384 kB
Node 0 MemFree:         3172316 kB
Node 0 MemUsed:         1376068 kB
Node 0 HugePages_Total:     0
";
        let n = parse_node(text).expect("node meminfo parses");
        assert_eq!(n.node, 0);
        assert_eq!(n.meminfo.entries.len(), 4);
        assert_eq!(n.meminfo.get("MemUsed"), Some(1376068 * 1024));
        assert_eq!(n.meminfo.get("HugePages_Total"), Some(0));
        assert!(parse_node("Node 0 MemTotal: 1 kB\nNode 1 MemFree: 1 kB\n").is_err());
        assert!(parse_node("MemTotal: 1 kB\n").is_err());
    }

    #[test]
    fn render_roundtrips_live_text() {
        let m = parse(LIVE).expect("parses");
        assert_eq!(parse(&render(&m)).expect("rendered parses"), m);
    }
}
