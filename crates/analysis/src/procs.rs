//! Per-process memory table (what smem prints): USS, PSS, RSS, swap.

use memwarden_model::host::HostSample;
use serde::Serialize;

/// Sort key for [`table`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortBy {
    Pss,
    Rss,
    Swap,
}

/// One process's row.
#[derive(Debug, Clone, Serialize)]
pub struct ProcRow {
    pub pid: u32,
    pub name: String,
    pub cmdline: String,
    /// Private_Clean + Private_Dirty: freed if the process exits.
    pub uss_bytes: u64,
    pub pss_bytes: u64,
    pub rss_bytes: u64,
    pub swap_bytes: u64,
    pub swap_pss_bytes: u64,
    pub anon_huge_bytes: u64,
}

/// All readable processes, and totals over all of them (not just the rows shown).
#[derive(Debug, Clone, Serialize)]
pub struct ProcTable {
    pub rows: Vec<ProcRow>,
    pub total_processes: usize,
    /// Processes without readable smaps (kernel threads, permission).
    pub unreadable: usize,
    pub total_uss_bytes: u64,
    pub total_pss_bytes: u64,
    pub total_rss_bytes: u64,
    pub total_swap_bytes: u64,
}

/// The top `top` processes by `sort`, ties broken by pid; totals cover every process.
pub fn table(s: &HostSample, sort: SortBy, top: usize) -> ProcTable {
    let mut rows: Vec<ProcRow> = s
        .processes
        .iter()
        .filter_map(|p| {
            let r = p.smaps.as_ref()?;
            Some(ProcRow {
                pid: p.pid,
                name: p.name.clone(),
                cmdline: p.cmdline.clone(),
                uss_bytes: r.private_clean.saturating_add(r.private_dirty),
                pss_bytes: r.pss,
                rss_bytes: r.rss,
                swap_bytes: r.swap,
                swap_pss_bytes: r.swap_pss,
                anon_huge_bytes: r.anon_huge_pages,
            })
        })
        .collect();
    let key = |r: &ProcRow| match sort {
        SortBy::Pss => r.pss_bytes,
        SortBy::Rss => r.rss_bytes,
        SortBy::Swap => r.swap_bytes,
    };
    rows.sort_by(|a, b| key(b).cmp(&key(a)).then(a.pid.cmp(&b.pid)));
    let sum = |f: fn(&ProcRow) -> u64| rows.iter().map(f).fold(0u64, u64::saturating_add);
    let t = ProcTable {
        total_processes: s.processes.len(),
        unreadable: s.processes.len() - rows.len(),
        total_uss_bytes: sum(|r| r.uss_bytes),
        total_pss_bytes: sum(|r| r.pss_bytes),
        total_rss_bytes: sum(|r| r.rss_bytes),
        total_swap_bytes: sum(|r| r.swap_bytes),
        rows: Vec::new(),
    };
    rows.truncate(top);
    ProcTable { rows, ..t }
}
