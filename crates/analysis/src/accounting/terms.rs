//! The quantities identities and decompositions are built from, and how each is read from a sample.

use memwarden_model::host::HostSample;
use serde::Serialize;

/// One named addend of a decomposition, with its value on the sample.
#[derive(Debug, Clone, Serialize)]
pub struct Part {
    pub label: String,
    pub bytes: u64,
    /// Where the figure comes from.
    pub source: String,
}

/// One addend: a meminfo field, or a figure memwarden derives from another source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "name")]
pub enum Term {
    /// A /proc/meminfo field by key (bytes, or a count for `HugePages_*`).
    Meminfo(&'static str),
    /// Sum of `AnonHugePages` over every readable process's smaps_rollup.
    ProcsAnonHugePages,
    /// Sum of `Pss` over every readable process.
    ProcsPss,
    /// Sum of `pages=` over `vmalloc` records of /proc/vmallocinfo (what VmallocUsed counts).
    VmallocAllocPages,
    /// `nr_dirty + nr_writeback + nr_unstable` from /proc/vmstat, in bytes.
    VmstatDirtyTotal,
    /// Every hugetlb pool (all sizes) times its page size: memory reserved for hugetlbfs.
    HugetlbPools,
}

impl Term {
    /// A short label for tables.
    pub fn label(&self) -> String {
        match self {
            Term::Meminfo(k) => (*k).to_string(),
            Term::ProcsAnonHugePages => "Σ process AnonHugePages".into(),
            Term::ProcsPss => "Σ process Pss".into(),
            Term::VmallocAllocPages => "vmallocinfo vmalloc pages".into(),
            Term::VmstatDirtyTotal => "vmstat nr_dirty+nr_writeback+nr_unstable".into(),
            Term::HugetlbPools => "hugetlb pools".into(),
        }
    }

    /// The term's value on this sample; `None` when the source is absent (field not printed by
    /// this kernel, file unreadable, no processes read).
    pub fn value(&self, s: &HostSample) -> Option<u64> {
        match self {
            Term::Meminfo(k) => s.meminfo.get(k),
            Term::ProcsAnonHugePages => sum_procs(s, |r| r.anon_huge_pages),
            Term::ProcsPss => sum_procs(s, |r| r.pss),
            // A carried figure was read at another moment than this meminfo.
            Term::VmallocAllocPages => s
                .vmalloc
                .as_ref()
                .filter(|v| v.carried_from_unix_ms.is_none())
                .map(|v| v.vmalloc_pages_bytes),
            Term::VmstatDirtyTotal => s.vmstat.as_ref().and_then(|v| {
                let pages = v
                    .get("nr_dirty")?
                    .checked_add(v.get("nr_writeback")?)?
                    .checked_add(v.get("nr_unstable").unwrap_or(0))?;
                memwarden_model::units::pages_to_bytes_at(pages, s.page_size())
            }),
            Term::HugetlbPools => hugetlb_bytes(s),
        }
    }
}

fn sum_procs(
    s: &HostSample,
    f: impl Fn(&memwarden_model::host::SmapsRollup) -> u64,
) -> Option<u64> {
    let mut any = false;
    let mut total = 0u64;
    for p in &s.processes {
        if let Some(r) = &p.smaps {
            any = true;
            total = total.saturating_add(f(r));
        }
    }
    any.then_some(total)
}

/// Memory held by hugetlb pools. Prefers the global sysfs pools (every size); falls back to
/// meminfo's `Hugetlb` (since 5.16, all sizes) and then to `HugePages_Total × Hugepagesize`
/// (the default size only).
pub fn hugetlb_bytes(s: &HostSample) -> Option<u64> {
    let global: Vec<_> = s.hugepages.iter().filter(|p| p.node.is_none()).collect();
    if !global.is_empty() {
        return Some(
            global
                .iter()
                .map(|p| p.nr_hugepages.saturating_mul(p.page_size_bytes))
                .fold(0u64, u64::saturating_add),
        );
    }
    if let Some(h) = s.meminfo.get("Hugetlb") {
        return Some(h);
    }
    let total = s.meminfo.get("HugePages_Total")?;
    let size = s.meminfo.get("Hugepagesize")?;
    Some(total.saturating_mul(size))
}

/// Sum of terms; `Err` names the first term this sample lacks.
pub fn sum(terms: &[Term], s: &HostSample) -> Result<u64, Term> {
    terms.iter().try_fold(0u64, |acc, t| {
        t.value(s).map(|v| acc.saturating_add(v)).ok_or(*t)
    })
}
