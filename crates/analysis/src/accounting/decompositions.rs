//! MemTotal decomposed three ways, and the unaccounted rest: the "black hole".
//!
//! Every decomposition is MemFree + user-visible memory (seen one way) + kernel memory + hugetlb
//! pools + X. Kernel memory is the same in all three and counted once ([`super::kernel`]):
//! Slab, vmalloc'd pages (stacks inside them with CONFIG_VMAP_STACK), PageTables, free pages
//! on the per-CPU lists, and where the kernel prints them SecPageTables, Percpu, Zswap,
//! Unaccepted and a deflate-on-oom balloon; and where the host has them, zram's zsmalloc pages
//! and system-heap DMA-bufs (outside every meminfo field). X is what nothing in /proc accounts for: pages
//! taken straight from the buddy allocator with alloc_pages() by drivers (GPU and network
//! buffers, a balloon whose features are unknown), pages in per-CPU LRU batches.
//!
//! X is not computed (`None`) when a term it needs is missing from the sample or fails its
//! sanity bound (every part at most MemTotal): a confident figure from a broken file is worse
//! than none.

use memwarden_model::host::HostSample;
use serde::Serialize;

use super::kernel::{self, KernelTerms};
use super::terms::{Part, Term};
use memwarden_model::units::{format_bytes, MIB};

/// MemTotal = Σ parts + unaccounted.
#[derive(Debug, Clone, Serialize)]
pub struct Decomposition {
    pub name: &'static str,
    pub formula: &'static str,
    pub memtotal_bytes: u64,
    pub parts: Vec<Part>,
    /// MemTotal − Σ parts: the black hole as this decomposition sees it (negative when the parts
    /// double count). `None` when it cannot be computed (`not_computed` says why).
    pub unaccounted_bytes: Option<i128>,
    /// Why X is not computed: terms missing from the sample, or refused by their sanity bound.
    pub not_computed: Option<String>,
    /// What this formula counts twice or misses, evaluated on this sample (empty when nothing
    /// applies).
    pub caveats: Vec<String>,
    /// Named consumers inside X, each at most its figure (not subtracted: part of it may be in
    /// a meminfo field). Empty when the host has none.
    pub within_x: Vec<Part>,
}

/// The named meminfo fields as parts; the missing ones are added to `missing`.
fn meminfo_parts(s: &HostSample, keys: &[&str], missing: &mut Vec<String>) -> Vec<Part> {
    keys.iter()
        .filter_map(|k| match s.meminfo.get(k) {
            Some(bytes) => Some(Part {
                label: (*k).to_string(),
                bytes,
                source: format!("meminfo {k}"),
            }),
            None => {
                missing.push((*k).to_string());
                None
            }
        })
        .collect()
}

fn finish(
    name: &'static str,
    formula: &'static str,
    s: &HostSample,
    mut parts: Vec<Part>,
    mut caveats: Vec<String>,
    missing: Vec<String>,
) -> Decomposition {
    let KernelTerms {
        parts: kparts,
        caveats: kcaveats,
        refused,
        blocks_x,
        within_x,
        ..
    } = kernel::terms(s);
    parts.extend(kparts);
    caveats.extend(kcaveats);
    caveats.extend(refused);
    let memtotal = s.meminfo.get_or_zero("MemTotal");
    // The kernel terms are held to MemTotal in `kernel`; the meminfo, PSS and swap-cache parts
    // are held to it here: one part larger than all of memory is a broken file, and X from it
    // a confident wrong figure (Active: 18014398509481983 kB made the black hole −16 EiB).
    let over: Vec<String> = parts
        .iter()
        .filter(|p| p.bytes > memtotal)
        .map(|p| format!("{} {}", p.label, format_bytes(p.bytes)))
        .collect();
    let not_computed = if memtotal == 0 {
        Some("MemTotal is missing or 0".to_string())
    } else if !missing.is_empty() {
        Some(format!(
            "{} missing from meminfo (a file cut short?)",
            missing.join(", ")
        ))
    } else if !over.is_empty() {
        Some(format!(
            "{} more than MemTotal {}: fails its sanity bound",
            over.join(", "),
            format_bytes(memtotal)
        ))
    } else {
        blocks_x
    };
    let sum: u128 = parts.iter().map(|p| u128::from(p.bytes)).sum();
    let x = i128::from(memtotal) - i128::try_from(sum).unwrap_or(i128::MAX);
    Decomposition {
        name,
        formula,
        memtotal_bytes: memtotal,
        unaccounted_bytes: not_computed.is_none().then_some(x),
        not_computed,
        parts,
        caveats,
        within_x,
    }
}

/// Swap-cache pages that are not also AnonPages (unmapped), estimated from the anon LRU
/// identity: Active(anon) + Inactive(anon) − AnonPages − Shmem, within 0..=SwapCached. Mapped
/// swap-cache pages are in both SwapCached and AnonPages: counting all of SwapCached beside
/// AnonPages counted them twice (the page-cache table of a swapping guest added up to 119%).
fn unmapped_swapcache(s: &HostSample) -> u64 {
    let mi = |k: &str| s.meminfo.get_or_zero(k);
    mi("Active(anon)")
        .saturating_add(mi("Inactive(anon)"))
        .saturating_sub(mi("AnonPages").saturating_add(mi("Shmem")))
        .min(mi("SwapCached"))
}

/// SwapCached as a part without its mapped pages, with a caveat saying what was taken out.
fn swapcache_part(s: &HostSample, missing: &mut Vec<String>, c: &mut Vec<String>) -> Option<Part> {
    let Some(swapcached) = s.meminfo.get("SwapCached") else {
        missing.push("SwapCached".into());
        return None;
    };
    let unmapped = unmapped_swapcache(s);
    if swapcached > 0 {
        c.push(format!(
            "SwapCached is {}: its pages that are also mapped are in AnonPages (or PSS) too, so \
             only the {} not mapped (anon LRU − AnonPages − Shmem, at most SwapCached) is \
             counted here; mlocked swap-cache pages sit on Unevictable and may still count twice",
            format_bytes(swapcached),
            format_bytes(unmapped)
        ));
    }
    Some(Part {
        label: "SwapCached, unmapped".into(),
        bytes: unmapped,
        source: "meminfo SwapCached − its mapped pages (estimated from the anon LRU)".into(),
    })
}

/// The LRU-batch caveat, for what it is: a few pages per CPU, not the bulk of X.
fn lru_batch_caveat() -> String {
    "pages in per-CPU LRU batches (at most 15 per CPU and batch) are on no LRU list yet and \
     land in X"
        .to_string()
}

/// By LRU: MemFree + Active + Inactive + Unevictable + kernel + X.
pub fn by_lru(s: &HostSample) -> Decomposition {
    let mut missing = Vec::new();
    let parts = meminfo_parts(
        s,
        &["MemFree", "Active", "Inactive", "Unevictable"],
        &mut missing,
    );
    finish(
        "by LRU",
        "MemFree + Active + Inactive + Unevictable + kernel + hugetlb + X",
        s,
        parts,
        vec![lru_batch_caveat()],
        missing,
    )
}

/// By page cache: MemFree + Buffers + Cached + unmapped SwapCached + AnonPages + kernel + X.
pub fn by_page_cache(s: &HostSample) -> Decomposition {
    let mut missing = Vec::new();
    let mut c = Vec::new();
    let mut parts = meminfo_parts(s, &["MemFree", "Buffers", "Cached"], &mut missing);
    parts.extend(swapcache_part(s, &mut missing, &mut c));
    parts.extend(meminfo_parts(s, &["AnonPages"], &mut missing));
    finish(
        "by page cache",
        "MemFree + Buffers + Cached + SwapCached (unmapped) + AnonPages + kernel + hugetlb + X",
        s,
        parts,
        c,
        missing,
    )
}

/// By PSS: MemFree + Σ process PSS + unmapped page cache + SwapCached + kernel + X.
/// `None` when no process could be read (PSS needs them).
pub fn by_pss(s: &HostSample) -> Option<Decomposition> {
    let pss = Term::ProcsPss.value(s)?;
    let mi = |k: &str| s.meminfo.get_or_zero(k);
    let mut missing = Vec::new();
    for k in ["Cached", "Buffers", "Mapped"] {
        if !s.meminfo.contains(k) {
            missing.push(k.to_string());
        }
    }
    let unmapped_cache = mi("Cached")
        .saturating_add(mi("Buffers"))
        .saturating_sub(mi("Mapped"));
    let mut c = Vec::new();
    let mut parts = meminfo_parts(s, &["MemFree"], &mut missing);
    parts.push(Part {
        label: "Σ process Pss".into(),
        bytes: pss,
        source: "smaps_rollup Pss of every readable process".into(),
    });
    parts.push(Part {
        label: "unmapped page cache".into(),
        bytes: unmapped_cache,
        source: "meminfo Cached + Buffers − Mapped".into(),
    });
    parts.extend(swapcache_part(s, &mut missing, &mut c));
    let unreadable = s.processes.iter().filter(|p| p.smaps.is_none()).count();
    if unreadable > 0 {
        c.push(format!(
            "{unreadable} processes had no readable smaps (kernel threads have none; others may be \
             permission or namespace limits): their user memory lands in X"
        ));
    }
    let hugetlb_mapped: u64 = s
        .processes
        .iter()
        .filter_map(|p| p.smaps.as_ref())
        .map(|r| r.shared_hugetlb.saturating_add(r.private_hugetlb))
        .fold(0u64, u64::saturating_add);
    if hugetlb_mapped > 0 {
        c.push(format!(
            "processes map {} of hugetlb pages: not in PSS, counted once in hugetlb pools",
            format_bytes(hugetlb_mapped)
        ));
    }
    c.push(format!(
        "processes are read one after another, so PSS drifts while memory moves (tolerate ~{})",
        format_bytes((mi("MemTotal") / 100).max(16 * MIB))
    ));
    let dropped = s.process_errors.iter().filter(|e| e.dropped).count();
    if dropped > 0 {
        c.push(format!(
            "{dropped} processes could not be read at all: their PSS lands in X"
        ));
    }
    Some(finish(
        "by PSS",
        "MemFree + ΣPss + (Cached + Buffers − Mapped) + SwapCached (unmapped) + kernel + hugetlb + X",
        s,
        parts,
        c,
        missing,
    ))
}

/// All three, in report order.
pub fn all(s: &HostSample) -> Vec<Decomposition> {
    let mut v = vec![by_lru(s), by_page_cache(s)];
    v.extend(by_pss(s));
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    const MEMINFO: &str = "MemTotal:         480268 kB
MemFree:          449948 kB
MemAvailable:     443584 kB
Buffers:               0 kB
Cached:             2752 kB
SwapCached:            0 kB
Active:             2720 kB
Inactive:            948 kB
Unevictable:           0 kB
AnonPages:           916 kB
Mapped:             1712 kB
Slab:              15356 kB
PageTables:           64 kB
";

    fn sample(meminfo: &str) -> HostSample {
        HostSample {
            meminfo: memwarden_procfs::parse_meminfo(meminfo).expect("parses"),
            ..HostSample::default()
        }
    }

    /// Regression (the e2e_host_tree fuzz target's bound on X, on a hand-mutated fixture):
    /// `Active: 18014398509481983 kB` (2^64 bytes − 1 KiB) made X = MemTotal − Σ parts =
    /// −16 EiB, shown as the black hole.
    #[test]
    fn black_hole_minus_16_eib_from_an_active_above_memtotal() {
        let good = by_lru(&sample(MEMINFO));
        assert!(good.unaccounted_bytes.is_some(), "{:?}", good.not_computed);
        let broken = MEMINFO.replace(
            "Active:             2720 kB",
            "Active: 18014398509481983 kB",
        );
        let d = by_lru(&sample(&broken));
        assert_eq!(d.unaccounted_bytes, None);
        let why = d.not_computed.expect("why");
        assert!(
            why.contains("Active") && why.contains("sanity bound"),
            "{why}"
        );
        // The other ways too: a part above MemTotal (Cached here) stops X.
        let broken = MEMINFO.replace("Cached:             2752 kB", "Cached: 999999999999 kB");
        assert_eq!(by_page_cache(&sample(&broken)).unaccounted_bytes, None);
    }
}
