//! /proc/PID/smaps_rollup (since Linux 4.14), and the same totals summed from /proc/PID/smaps
//! for older kernels.
//!
//! Both files are mapping headers (`start-end perms offset dev inode [path]`, one per mapping in
//! smaps, one `[rollup]` pseudo-mapping in smaps_rollup) followed by `Key: N kB` lines. Every
//! `kB` line is kept in [`SmapsRollup::fields`]; unit-less lines (`THPeligible`,
//! `ProtectionKey`, `VmFlags`) are per-mapping properties and are skipped.

use memwarden_model::host::SmapsRollup;

use crate::error::{Error, Result};
use crate::text::{kb_value, numbered_lines, split_key};

const ROLLUP_PATH: &str = "/proc/PID/smaps_rollup";
const SMAPS_PATH: &str = "/proc/PID/smaps";
const EXPECTED: &str = "a mapping header or \"Key: N kB\"";

/// Per-mapping page sizes: summing them over mappings means nothing, so the smaps fallback
/// leaves them out.
const NOT_SUMMED: &[&str] = &["KernelPageSize", "MMUPageSize"];

/// Parses /proc/PID/smaps_rollup. An empty file (kernel thread) gives all zeros and no fields.
pub fn parse(text: &str) -> Result<SmapsRollup> {
    let mut r = sum(ROLLUP_PATH, text, &[])?;
    r.from_smaps = false;
    Ok(r)
}

/// Sums /proc/PID/smaps into the shape of smaps_rollup (`from_smaps = true`).
pub fn parse_smaps(text: &str) -> Result<SmapsRollup> {
    let mut r = sum(SMAPS_PATH, text, NOT_SUMMED)?;
    r.from_smaps = true;
    Ok(r)
}

fn sum(path: &str, text: &str, skip: &[&str]) -> Result<SmapsRollup> {
    let mut fields: Vec<(String, u64)> = Vec::new();
    for (n, line) in numbered_lines(text) {
        if is_header(line) {
            continue;
        }
        let (key, value) = split_key(line).ok_or_else(|| Error::parse(path, n, EXPECTED, line))?;
        let bytes = match kb_value(value) {
            Ok(Some(bytes)) => bytes,
            Ok(None) if value.ends_with("kB") => {
                return Err(Error::parse(path, n, "\"Key: N kB\"", line))
            }
            Ok(None) => continue,
            Err(()) => {
                return Err(Error::parse(
                    path,
                    n,
                    format!("a {key} value small enough to count in bytes (64 bits)"),
                    line,
                ))
            }
        };
        if skip.contains(&key) {
            continue;
        }
        match fields.iter_mut().find(|(k, _)| k == key) {
            Some((_, total)) => *total = total.saturating_add(bytes),
            None => fields.push((key.to_string(), bytes)),
        }
    }
    Ok(lift(fields))
}

/// `55d...-7ff... ---p 00000000 00:00 0   [rollup]`: first word is `hex-hex`.
fn is_header(line: &str) -> bool {
    let first = line.split_whitespace().next().unwrap_or("");
    match first.split_once('-') {
        Some((a, b)) => {
            !a.is_empty()
                && !b.is_empty()
                && a.bytes().all(|c| c.is_ascii_hexdigit())
                && b.bytes().all(|c| c.is_ascii_hexdigit())
        }
        None => false,
    }
}

fn lift(fields: Vec<(String, u64)>) -> SmapsRollup {
    let get = |k: &str| fields.iter().find(|(f, _)| f == k).map(|(_, v)| *v);
    let or0 = |k: &str| get(k).unwrap_or(0);
    SmapsRollup {
        rss: or0("Rss"),
        pss: or0("Pss"),
        pss_anon: get("Pss_Anon"),
        pss_file: get("Pss_File"),
        pss_shmem: get("Pss_Shmem"),
        shared_clean: or0("Shared_Clean"),
        shared_dirty: or0("Shared_Dirty"),
        private_clean: or0("Private_Clean"),
        private_dirty: or0("Private_Dirty"),
        anonymous: or0("Anonymous"),
        anon_huge_pages: or0("AnonHugePages"),
        shmem_pmd_mapped: or0("ShmemPmdMapped"),
        file_pmd_mapped: or0("FilePmdMapped"),
        shared_hugetlb: or0("Shared_Hugetlb"),
        private_hugetlb: or0("Private_Hugetlb"),
        swap: or0("Swap"),
        swap_pss: or0("SwapPss"),
        locked: or0("Locked"),
        from_smaps: false,
        fields,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Copied from this machine's live /proc/self/smaps_rollup (kernel 6.18).
    const ROLLUP: &str = "\
557d394ac000-7fff9ea86000 ---p 00000000 00:00 0                          [rollup]
Rss:                1704 kB
Pss:                 261 kB
Pss_Dirty:           112 kB
Pss_Anon:            112 kB
Pss_File:            149 kB
Pss_Shmem:             0 kB
Shared_Clean:       1552 kB
Shared_Dirty:          0 kB
Private_Clean:        40 kB
Private_Dirty:       112 kB
Referenced:         1704 kB
Anonymous:           112 kB
KSM:                   0 kB
LazyFree:              0 kB
AnonHugePages:         0 kB
ShmemPmdMapped:        0 kB
FilePmdMapped:         0 kB
Shared_Hugetlb:        0 kB
Private_Hugetlb:       0 kB
Swap:                  0 kB
SwapPss:               0 kB
Locked:                0 kB
";

    #[test]
    fn rollup_keeps_every_field_and_lifts_known_ones() {
        let r = parse(ROLLUP).expect("parses");
        assert_eq!(r.fields.len(), 22);
        assert_eq!(r.rss, 1704 * 1024);
        assert_eq!(r.pss, 261 * 1024);
        assert_eq!(r.pss_anon, Some(112 * 1024));
        assert_eq!(r.shared_clean, 1552 * 1024);
        assert!(r.fields.contains(&("KSM".to_string(), 0)));
        assert!(r.fields.contains(&("Pss_Dirty".to_string(), 112 * 1024)));
        assert!(!r.from_smaps);
    }

    /// Two mappings copied from this machine's /proc/self/smaps (kernel 6.18), trimmed.
    const SMAPS: &str = "\
5563145bd000-5563145bf000 r--p 00000000 fe:00 247282                     /usr/bin/head
Size:                  8 kB
KernelPageSize:        4 kB
MMUPageSize:           4 kB
Rss:                   8 kB
Pss:                   8 kB
Private_Clean:         8 kB
THPeligible:           0
ProtectionKey:         0
VmFlags: rd mr mw me 
5563145bf000-5563145c5000 r-xp 00002000 fe:00 247282                     /usr/bin/head
Size:                 24 kB
KernelPageSize:        4 kB
MMUPageSize:           4 kB
Rss:                  24 kB
Pss:                  12 kB
Private_Clean:        24 kB
THPeligible:           0
VmFlags: rd ex mr mw me 
";

    #[test]
    fn smaps_fallback_sums_mappings() {
        let r = parse_smaps(SMAPS).expect("parses");
        assert!(r.from_smaps);
        assert_eq!(r.rss, 32 * 1024);
        assert_eq!(r.pss, 20 * 1024);
        assert_eq!(r.private_clean, 32 * 1024);
        assert_eq!(r.pss_anon, None);
        let keys: Vec<_> = r.fields.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["Size", "Rss", "Pss", "Private_Clean"]);
    }

    #[test]
    fn kernel_thread_is_empty_and_garbage_fails() {
        assert_eq!(parse("").expect("empty parses").fields, vec![]);
        assert!(parse("Rss 12 kB\n").is_err());
        assert!(parse("Rss: x kB\n").is_err());
        assert!(parse("Rss: 18446744073709551615 kB\n").is_err());
    }
}
