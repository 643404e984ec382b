//! One process's memory, from /proc/PID/{status,smaps_rollup,ksm_stat,ksm_merging_pages}.

use serde::{Deserialize, Serialize};

/// Totals from smaps_rollup (or summed smaps on kernels before 4.14), in bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SmapsRollup {
    pub rss: u64,
    pub pss: u64,
    /// Since Linux 5.8; `None` when the kernel does not split PSS.
    pub pss_anon: Option<u64>,
    pub pss_file: Option<u64>,
    pub pss_shmem: Option<u64>,
    pub shared_clean: u64,
    pub shared_dirty: u64,
    pub private_clean: u64,
    pub private_dirty: u64,
    pub anonymous: u64,
    pub anon_huge_pages: u64,
    pub shmem_pmd_mapped: u64,
    pub file_pmd_mapped: u64,
    pub shared_hugetlb: u64,
    pub private_hugetlb: u64,
    pub swap: u64,
    pub swap_pss: u64,
    pub locked: u64,
    /// Every `Key: N kB` line, all kept, in bytes (including keys not lifted above).
    pub fields: Vec<(String, u64)>,
    /// True when summed from /proc/PID/smaps because smaps_rollup was absent.
    pub from_smaps: bool,
}

/// The memory-relevant lines of /proc/PID/status.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcStatus {
    pub name: String,
    pub vm_rss: Option<u64>,
    pub rss_anon: Option<u64>,
    pub rss_file: Option<u64>,
    pub rss_shmem: Option<u64>,
    pub vm_swap: Option<u64>,
    pub vm_pte: Option<u64>,
    pub hugetlb_pages: Option<u64>,
}

/// /proc/PID/ksm_stat (since Linux 6.1) and ksm_merging_pages (since 5.19).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcKsm {
    /// Pages of this process merged by KSM.
    pub merging_pages: Option<u64>,
    pub rmap_items: Option<u64>,
    /// Bytes saved for this process (may be negative: rmap_items cost).
    pub process_profit: Option<i64>,
    pub zero_pages: Option<u64>,
    /// Every `name value` line of ksm_stat, all kept.
    pub fields: Vec<(String, String)>,
}

/// One process as memwarden sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessMem {
    pub pid: u32,
    /// `comm` from status (`Name:`).
    pub name: String,
    /// /proc/PID/cmdline, NULs as spaces; empty for kernel threads.
    pub cmdline: String,
    pub uid: Option<u32>,
    pub status: ProcStatus,
    /// `None` for kernel threads (empty smaps) and when permission was denied.
    pub smaps: Option<SmapsRollup>,
    pub ksm: Option<ProcKsm>,
}
