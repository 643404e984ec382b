//! The host's view of a QEMU process: a minimal reader of /proc/PID/{status,smaps_rollup,
//! ksm_stat,ksm_merging_pages}, enough for RSS, PSS, swap, hugetlb and KSM.
//!
//! Interim: `memwarden-procfs` owns /proc parsing; this switches to its `read_process` once that
//! lands. Missing files (old kernels) leave fields `None`; a vanished process is an error the
//! caller turns into "skipped".

use std::path::Path;

use memwarden_model::host::{ProcKsm, ProcStatus, ProcessMem, SmapsRollup};

use crate::Error;

/// Reads one process under `proc_root` (normally `/proc`).
pub fn read_process(proc_root: &Path, pid: u32) -> Result<ProcessMem, Error> {
    let dir = proc_root.join(pid.to_string());
    let read = |name: &str| std::fs::read_to_string(dir.join(name));
    let status_text = read("status").map_err(|source| Error::Io {
        path: dir.join("status"),
        source,
    })?;
    let mut status = ProcStatus::default();
    let mut uid = None;
    for line in status_text.lines() {
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        let v = v.trim();
        let kb = || kb_value(v);
        match k {
            "Name" => status.name = v.to_string(),
            "Uid" => uid = v.split_whitespace().next().and_then(|u| u.parse().ok()),
            "VmRSS" => status.vm_rss = kb(),
            "RssAnon" => status.rss_anon = kb(),
            "RssFile" => status.rss_file = kb(),
            "RssShmem" => status.rss_shmem = kb(),
            "VmSwap" => status.vm_swap = kb(),
            "VmPTE" => status.vm_pte = kb(),
            "HugetlbPages" => status.hugetlb_pages = kb(),
            _ => {}
        }
    }
    let smaps = read("smaps_rollup").ok().map(|t| parse_rollup(&t));
    let merging = read("ksm_merging_pages")
        .ok()
        .and_then(|t| t.trim().parse().ok());
    let ksm_stat = read("ksm_stat").ok();
    let ksm = (merging.is_some() || ksm_stat.is_some()).then(|| {
        let fields: Vec<(String, String)> = ksm_stat
            .as_deref()
            .unwrap_or("")
            .lines()
            .filter_map(|l| l.split_once(' '))
            .map(|(k, v)| (k.to_string(), v.trim().to_string()))
            .collect();
        let get = |n: &str| fields.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
        ProcKsm {
            merging_pages: merging.or_else(|| get("ksm_merging_pages")?.parse().ok()),
            rmap_items: get("ksm_rmap_items").and_then(|v| v.parse().ok()),
            process_profit: get("ksm_process_profit").and_then(|v| v.parse().ok()),
            zero_pages: get("ksm_zero_pages").and_then(|v| v.parse().ok()),
            fields,
        }
    });
    let cmdline = read("cmdline")
        .map(|c| c.trim_end_matches('\0').replace('\0', " "))
        .unwrap_or_default();
    Ok(ProcessMem {
        pid,
        name: status.name.clone(),
        cmdline,
        uid,
        status,
        smaps,
        ksm,
    })
}

fn kb_value(v: &str) -> Option<u64> {
    v.strip_suffix("kB")?
        .trim()
        .parse::<u64>()
        .ok()?
        .checked_mul(1024)
}

fn parse_rollup(text: &str) -> SmapsRollup {
    let mut r = SmapsRollup::default();
    for line in text.lines() {
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        let Some(b) = kb_value(v.trim()) else {
            continue;
        };
        match k {
            "Rss" => r.rss = b,
            "Pss" => r.pss = b,
            "Pss_Anon" => r.pss_anon = Some(b),
            "Pss_File" => r.pss_file = Some(b),
            "Pss_Shmem" => r.pss_shmem = Some(b),
            "Shared_Clean" => r.shared_clean = b,
            "Shared_Dirty" => r.shared_dirty = b,
            "Private_Clean" => r.private_clean = b,
            "Private_Dirty" => r.private_dirty = b,
            "Anonymous" => r.anonymous = b,
            "AnonHugePages" => r.anon_huge_pages = b,
            "ShmemPmdMapped" => r.shmem_pmd_mapped = b,
            "FilePmdMapped" => r.file_pmd_mapped = b,
            "Shared_Hugetlb" => r.shared_hugetlb = b,
            "Private_Hugetlb" => r.private_hugetlb = b,
            "Swap" => r.swap = b,
            "SwapPss" => r.swap_pss = b,
            "Locked" => r.locked = b,
            _ => {}
        }
        r.fields.push((k.to_string(), b));
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let me = std::process::id();
        let p = read_process(Path::new("/proc"), me).expect("own /proc entry");
        assert_eq!(p.pid, me);
        let rss = p.status.vm_rss.expect("VmRSS");
        assert!(rss > 0);
        let s = p.smaps.expect("smaps_rollup");
        assert!(s.pss > 0 && s.pss <= s.rss + 4096, "{s:?}");
    }

    #[test]
    fn gone_process_is_an_error() {
        assert!(read_process(Path::new("/proc"), u32::MAX - 1).is_err());
    }
}
