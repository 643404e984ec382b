//! KSM: per process (/proc/PID/ksm_stat since Linux 6.1, /proc/PID/ksm_merging_pages since
//! 5.19) and system-wide (/sys/kernel/mm/ksm/*, and /sys/kernel/mm/uksm/* on UKSM kernels).
//!
//! Everything the kernel prints is kept as text; the known numbers are lifted into typed fields.

use memwarden_model::host::{KsmSysfs, ProcKsm, UksmSysfs};

use crate::error::{Error, Result};
use crate::text::{numbered_lines, parse_i64, parse_u64, selected_choice};

const STAT_PATH: &str = "/proc/PID/ksm_stat";
const MERGING_PATH: &str = "/proc/PID/ksm_merging_pages";

/// Parses /proc/PID/ksm_stat: `name value` lines (some kernels print `name: value`). Values are
/// kept as text (`ksm_merge_any: no`); the known counters must be numbers.
pub fn parse_stat(text: &str) -> Result<ProcKsm> {
    let mut ksm = ProcKsm::default();
    for (n, line) in numbered_lines(text) {
        let bad = |expected: &str| Error::parse(STAT_PATH, n, expected, line);
        let (name, value) = line
            .trim()
            .split_once(char::is_whitespace)
            .ok_or_else(|| bad("\"name value\""))?;
        let name = name.strip_suffix(':').unwrap_or(name);
        let value = value.trim();
        let count = || parse_u64(value).ok_or_else(|| bad("\"name N\" with N a count"));
        match name {
            "ksm_rmap_items" => ksm.rmap_items = Some(count()?),
            "ksm_zero_pages" => ksm.zero_pages = Some(count()?),
            "ksm_merging_pages" => ksm.merging_pages = Some(count()?),
            "ksm_process_profit" => {
                ksm.process_profit =
                    Some(parse_i64(value).ok_or_else(|| bad("\"ksm_process_profit N\""))?)
            }
            _ => {}
        }
        ksm.fields.push((name.to_string(), value.to_string()));
    }
    Ok(ksm)
}

/// Parses /proc/PID/ksm_merging_pages: one count.
pub fn parse_merging_pages(text: &str) -> Result<u64> {
    parse_u64(text.trim()).ok_or_else(|| Error::parse(MERGING_PATH, 1, "a count", text.trim()))
}

/// Builds [`KsmSysfs`] from every file of /sys/kernel/mm/ksm as `(name, contents)`. All files
/// are kept (trimmed); a known file whose contents are not a number leaves its field `None`.
pub fn ksm_sysfs(files: Vec<(String, String)>) -> KsmSysfs {
    let files = trimmed(files);
    let get = |name: &str| {
        files
            .iter()
            .find(|(f, _)| f == name)
            .map(|(_, v)| v.as_str())
    };
    let num = |name: &str| get(name).and_then(parse_u64);
    KsmSysfs {
        run: num("run"),
        pages_shared: num("pages_shared"),
        pages_sharing: num("pages_sharing"),
        pages_unshared: num("pages_unshared"),
        pages_volatile: num("pages_volatile"),
        pages_to_scan: num("pages_to_scan"),
        sleep_millisecs: num("sleep_millisecs"),
        full_scans: num("full_scans"),
        general_profit: get("general_profit").and_then(parse_i64),
        ksm_zero_pages: num("ksm_zero_pages"),
        use_zero_pages: num("use_zero_pages"),
        advisor_mode: get("advisor_mode").and_then(selected_choice),
        files,
    }
}

/// Builds [`UksmSysfs`] from every file of /sys/kernel/mm/uksm, as [`ksm_sysfs`] does.
pub fn uksm_sysfs(files: Vec<(String, String)>) -> UksmSysfs {
    let files = trimmed(files);
    let num = |name: &str| {
        files
            .iter()
            .find(|(f, _)| f == name)
            .and_then(|(_, v)| parse_u64(v))
    };
    UksmSysfs {
        run: num("run"),
        pages_shared: num("pages_shared"),
        pages_sharing: num("pages_sharing"),
        pages_unshared: num("pages_unshared"),
        pages_scanned: num("pages_scanned"),
        full_scans: num("full_scans"),
        files,
    }
}

fn trimmed(files: Vec<(String, String)>) -> Vec<(String, String)> {
    files
        .into_iter()
        .map(|(name, contents)| (name, contents.trim().to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Copied from this machine's live /proc/self/ksm_stat (kernel 6.18), values varied.
    const STAT: &str = "\
ksm_rmap_items 12
ksm_zero_pages 3
ksm_merging_pages 7
ksm_process_profit -1488
ksm_merge_any: no
ksm_mergeable: yes
";

    #[test]
    fn stat_keeps_all_and_lifts_counters() {
        let k = parse_stat(STAT).expect("parses");
        assert_eq!(k.rmap_items, Some(12));
        assert_eq!(k.zero_pages, Some(3));
        assert_eq!(k.merging_pages, Some(7));
        assert_eq!(k.process_profit, Some(-1488));
        assert_eq!(k.fields.len(), 6);
        assert_eq!(k.fields[4], ("ksm_merge_any".into(), "no".into()));
        assert!(parse_stat("ksm_rmap_items lots\n").is_err());
        assert!(parse_stat("lonely\n").is_err());
    }

    #[test]
    fn merging_pages_is_one_count() {
        assert_eq!(parse_merging_pages("0\n").expect("parses"), 0);
        assert!(parse_merging_pages("").is_err());
    }

    #[test]
    fn sysfs_keeps_every_file() {
        // Copied from this machine's /sys/kernel/mm/ksm (kernel 6.18), a subset.
        let files = [
            ("advisor_mode", "[none] scan-time\n"),
            ("full_scans", "0\n"),
            ("general_profit", "-4096\n"),
            ("max_page_sharing", "256\n"),
            ("run", "0\n"),
            ("sleep_millisecs", "20\n"),
            ("smart_scan", "1\n"),
        ]
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .to_vec();
        let k = ksm_sysfs(files);
        assert_eq!(k.run, Some(0));
        assert_eq!(k.general_profit, Some(-4096));
        assert_eq!(k.advisor_mode.as_deref(), Some("none"));
        assert_eq!(k.sleep_millisecs, Some(20));
        assert_eq!(k.pages_shared, None);
        assert_eq!(k.files.len(), 7);
        assert_eq!(k.files[6], ("smart_scan".into(), "1".into()));
    }
}
