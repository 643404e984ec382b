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

/// Keys every kernel since 4.20 prints, in its order, whatever its configuration (on x86-64;
/// `Mlocked` needs CONFIG_MMU). A file that has the first but not the rest was cut short.
pub const ALWAYS_PRINTED: &[&str] = &[
    "MemTotal",
    "MemFree",
    "MemAvailable",
    "Buffers",
    "Cached",
    "SwapCached",
    "Active",
    "Inactive",
    "Active(anon)",
    "Inactive(anon)",
    "Active(file)",
    "Inactive(file)",
    "Unevictable",
    "Mlocked",
    "SwapTotal",
    "SwapFree",
    "Dirty",
    "Writeback",
    "AnonPages",
    "Mapped",
    "Shmem",
    "KReclaimable",
    "Slab",
    "SReclaimable",
    "SUnreclaim",
    "KernelStack",
    "PageTables",
    "NFS_Unstable",
    "Bounce",
    "WritebackTmp",
    "CommitLimit",
    "Committed_AS",
    "VmallocTotal",
    "VmallocUsed",
    "VmallocChunk",
];

/// Keys without which nothing about the host can be said: their absence is an error.
pub const REQUIRED: &[&str] = &["MemTotal", "MemFree"];

/// Parses /proc/meminfo. `kB` lines become bytes (an overflow is an error naming the line),
/// unit-less lines (`HugePages_Total`...) are counts. Blank lines are skipped. A key printed
/// twice is an error (the kernel never does; which value would be right?).
pub fn parse(text: &str) -> Result<Meminfo> {
    let mut entries: Vec<MeminfoEntry> = Vec::new();
    for (n, line) in numbered_lines(text) {
        let e = parse_line(PATH, n, line)?;
        if entries.iter().any(|x| x.key == e.key) {
            return Err(Error::parse(
                PATH,
                n,
                format!("each key once ({} is printed twice)", e.key),
                line,
            ));
        }
        entries.push(e);
    }
    Ok(Meminfo { entries })
}

/// Checks a parsed /proc/meminfo for what a kernel always prints: an error when a
/// [`REQUIRED`] key is missing or MemTotal is 0, else the warnings (empty when the file is
/// whole): keys of [`ALWAYS_PRINTED`] that are missing, i.e. a file cut short.
pub fn check(m: &Meminfo) -> Result<Vec<String>> {
    let missing_required: Vec<&str> = REQUIRED
        .iter()
        .copied()
        .filter(|k| !m.contains(k))
        .collect();
    if !missing_required.is_empty() {
        let got = format!("{} lines", m.entries.len());
        return Err(Error::parse(
            PATH,
            m.entries.len().max(1),
            format!(
                "the keys every kernel prints ({} missing)",
                missing_required.join(", ")
            ),
            &got,
        ));
    }
    if m.get("MemTotal") == Some(0) {
        return Err(Error::parse(
            PATH,
            1,
            "a MemTotal above 0",
            "MemTotal: 0 kB",
        ));
    }
    let missing: Vec<&str> = ALWAYS_PRINTED
        .iter()
        .copied()
        .filter(|k| !m.contains(k))
        .collect();
    let mut warnings = Vec::new();
    if !missing.is_empty() {
        let last = m.entries.last().map_or("", |e| e.key.as_str());
        let shown: Vec<&str> = missing.iter().copied().take(8).collect();
        warnings.push(format!(
            "/proc/meminfo looks cut short: {} keys every kernel prints are missing ({}{};              last line {last}); figures that need them are not computed",
            missing.len(),
            shown.join(", "),
            if missing.len() > shown.len() { ", ..." } else { "" },
        ));
    }
    Ok(warnings)
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

    /// Regression: the JSON carried both values and the arithmetic silently used the first.
    #[test]
    fn a_duplicated_key_is_an_error() {
        let e = parse("MemTotal: 1 kB\nMemFree: 2 kB\nMemFree: 3 kB\n").expect_err("duplicate");
        let s = e.to_string();
        assert!(
            s.contains("line 3") && s.contains("MemFree is printed twice"),
            "{s}"
        );
    }

    /// Regression: an empty meminfo, one without MemTotal, or one cut after `SwapCached`
    /// gave exit 0 with "MemTotal 0 B" or a black hole of most of RAM.
    #[test]
    fn missing_and_cut_short_files() {
        let empty = check(&parse("").expect("parses")).expect_err("empty");
        assert!(
            empty.to_string().contains("MemTotal, MemFree missing"),
            "{empty}"
        );
        let no_total = check(&parse("MemFree: 1 kB\n").expect("parses")).expect_err("no total");
        assert!(
            no_total.to_string().contains("MemTotal missing"),
            "{no_total}"
        );
        assert!(check(&parse("MemTotal: 0 kB\nMemFree: 0 kB\n").expect("parses")).is_err());
        let cut = "MemTotal: 9 kB\nMemFree: 1 kB\nMemAvailable: 1 kB\nBuffers: 0 kB\n\
                   Cached: 1 kB\nSwapCached: 10 kB\n";
        let w = check(&parse(cut).expect("parses")).expect("required keys present");
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            w[0].contains("29 keys") && w[0].contains("last line SwapCached"),
            "{w:?}"
        );
        let whole: String = ALWAYS_PRINTED
            .iter()
            .map(|k| format!("{k}: 1 kB\n"))
            .collect();
        assert_eq!(
            check(&parse(&whole).expect("parses")).expect("ok"),
            Vec::<String>::new()
        );
    }

    #[test]
    fn render_roundtrips_live_text() {
        let m = parse(LIVE).expect("parses");
        assert_eq!(parse(&render(&m)).expect("rendered parses"), m);
    }
}
