//! /proc/PID/status: the process name, its real uid, and the memory lines.

use memwarden_model::host::ProcStatus;

use crate::error::{Error, Result};
use crate::text::{kb_value, numbered_lines, parse_u64, split_key};

const PATH: &str = "/proc/PID/status";

/// What status says that memwarden uses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ParsedStatus {
    pub status: ProcStatus,
    /// Real uid (first number of `Uid:`).
    pub uid: Option<u32>,
}

/// Parses /proc/PID/status. Lines memwarden does not use are checked for shape only.
pub fn parse(text: &str) -> Result<ParsedStatus> {
    let mut out = ParsedStatus::default();
    for (n, line) in numbered_lines(text) {
        let bad = |expected: &str| Error::parse(PATH, n, expected, line);
        if let Some(name) = line.strip_prefix("Name:") {
            // Kept as printed (the kernel escapes `\n` and `\\` in names).
            out.status.name = name.strip_prefix('\t').unwrap_or(name).to_string();
            continue;
        }
        let (key, value) = split_key(line).ok_or_else(|| bad("\"Key:\tvalue\""))?;
        let slot = match key {
            "Uid" => {
                let real = value.split_whitespace().next().and_then(parse_u64);
                out.uid = Some(
                    real.and_then(|u| u32::try_from(u).ok())
                        .ok_or_else(|| bad("\"Uid:\treal effective saved fs\""))?,
                );
                continue;
            }
            "VmRSS" => &mut out.status.vm_rss,
            "RssAnon" => &mut out.status.rss_anon,
            "RssFile" => &mut out.status.rss_file,
            "RssShmem" => &mut out.status.rss_shmem,
            "VmSwap" => &mut out.status.vm_swap,
            "VmPTE" => &mut out.status.vm_pte,
            "HugetlbPages" => &mut out.status.hugetlb_pages,
            _ => continue,
        };
        *slot = Some(
            kb_value(value)
                .ok()
                .flatten()
                .ok_or_else(|| bad(&format!("\"{key}:\tN kB\" (fitting 64 bits as bytes)")))?,
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Copied from this machine's live /proc/self/status (kernel 6.18), trimmed.
    const LIVE: &str = "\
Name:\tcat
Umask:\t0022
State:\tR (running)
Uid:\t0\t0\t0\t0
Gid:\t0\t0\t0\t0
Groups:\t 
VmRSS:\t    1696 kB
RssAnon:\t     112 kB
RssFile:\t    1584 kB
RssShmem:\t       0 kB
VmPTE:\t      52 kB
VmSwap:\t       0 kB
HugetlbPages:\t       0 kB
Speculation_Store_Bypass:\tthread vulnerable
";

    #[test]
    fn lifts_name_uid_and_memory() {
        let s = parse(LIVE).expect("parses");
        assert_eq!(s.status.name, "cat");
        assert_eq!(s.uid, Some(0));
        assert_eq!(s.status.vm_rss, Some(1696 * 1024));
        assert_eq!(s.status.rss_file, Some(1584 * 1024));
        assert_eq!(s.status.vm_pte, Some(52 * 1024));
        assert_eq!(s.status.vm_swap, Some(0));
    }

    #[test]
    fn kernel_thread_has_no_memory_lines() {
        let s = parse("Name:\tkthreadd\nUid:\t0\t0\t0\t0\nKthread:\t1\n").expect("parses");
        assert_eq!(s.status.name, "kthreadd");
        assert_eq!(s.status.vm_rss, None);
    }

    #[test]
    fn names_with_spaces_and_bad_lines() {
        let s = parse("Name:\tkworker/0:1 evt\n").expect("parses");
        assert_eq!(s.status.name, "kworker/0:1 evt");
        assert!(parse("VmRSS:\t12\n").is_err());
        assert!(parse("Uid:\tx\n").is_err());
        assert!(parse("no colon here\n").is_err());
    }
}
