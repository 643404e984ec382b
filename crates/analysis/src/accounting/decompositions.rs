//! MemTotal decomposed three ways, and the unaccounted rest: the "black hole".
//!
//! Every decomposition is MemFree + user-visible memory (seen one way) + kernel memory + hugetlb
//! pools + X. Kernel memory is the same in all three: Slab, vmalloc'd pages, PageTables,
//! KernelStack, HardwareCorrupted, Bounce, and where the kernel prints them Percpu,
//! SecPageTables, Zswap, Balloon and Unaccepted. X is what nothing in /proc accounts for:
//! pages taken straight from the buddy allocator with alloc_pages() by drivers (balloon drivers,
//! GPU and network buffers), per-CPU page lists, memory reserved at boot after MemTotal was fixed.

use memwarden_model::host::HostSample;
use serde::Serialize;

use super::terms::Term;
use memwarden_model::units::{format_bytes, MIB};

/// One named addend of a decomposition, with its value on the sample.
#[derive(Debug, Clone, Serialize)]
pub struct Part {
    pub label: String,
    pub bytes: u64,
    /// Where the figure comes from.
    pub source: String,
}

/// MemTotal = Σ parts + unaccounted.
#[derive(Debug, Clone, Serialize)]
pub struct Decomposition {
    pub name: &'static str,
    pub formula: &'static str,
    pub memtotal_bytes: u64,
    pub parts: Vec<Part>,
    /// MemTotal − Σ parts: the black hole as this decomposition sees it (negative when the parts
    /// double count).
    pub unaccounted_bytes: i128,
    /// What this formula counts twice or misses, evaluated on this sample (empty when nothing
    /// applies).
    pub caveats: Vec<String>,
}

/// Kernel memory common to the three decompositions. `VmallocUsed` is taken from vmallocinfo's
/// `vmalloc` records when readable (VmallocUsed printed 0 on Linux 4.4–5.2).
fn kernel_parts(s: &HostSample) -> Vec<Part> {
    let mut parts = Vec::new();
    let mut push = |label: &str, bytes: Option<u64>, source: &str| {
        if let Some(bytes) = bytes {
            parts.push(Part {
                label: label.into(),
                bytes,
                source: source.into(),
            });
        }
    };
    let mi = |k: &str| s.meminfo.get(k);
    push(
        "Slab",
        mi("Slab"),
        "meminfo Slab (SReclaimable + SUnreclaim)",
    );
    match Term::VmallocAllocPages.value(s) {
        Some(v) => push("vmalloc", Some(v), "vmallocinfo: pages= of vmalloc records"),
        None => push("vmalloc", mi("VmallocUsed"), "meminfo VmallocUsed"),
    }
    for k in [
        "PageTables",
        "SecPageTables",
        "KernelStack",
        "ShadowCallStack",
        "Percpu",
        "HardwareCorrupted",
        "Bounce",
        "Zswap",
        "Balloon",
        "Unaccepted",
    ] {
        push(k, mi(k), &format!("meminfo {k}"));
    }
    push(
        "hugetlb pools",
        super::terms::hugetlb_bytes(s).filter(|b| *b > 0),
        "hugepages sysfs nr_hugepages × size (all sizes)",
    );
    parts
}

fn meminfo_parts(s: &HostSample, keys: &[&str]) -> Vec<Part> {
    keys.iter()
        .filter_map(|k| {
            s.meminfo.get(k).map(|bytes| Part {
                label: (*k).to_string(),
                bytes,
                source: format!("meminfo {k}"),
            })
        })
        .collect()
}

fn finish(
    name: &'static str,
    formula: &'static str,
    s: &HostSample,
    mut parts: Vec<Part>,
    caveats: Vec<String>,
) -> Decomposition {
    parts.extend(kernel_parts(s));
    let memtotal = s.meminfo.get_or_zero("MemTotal");
    let sum: u128 = parts.iter().map(|p| u128::from(p.bytes)).sum();
    Decomposition {
        name,
        formula,
        memtotal_bytes: memtotal,
        unaccounted_bytes: i128::from(memtotal) - sum as i128,
        parts,
        caveats,
    }
}

/// Common caveats that hit every decomposition.
fn shared_caveats(s: &HostSample) -> Vec<String> {
    let mut c = Vec::new();
    let balloon = s.meminfo.get_or_zero("Balloon");
    if balloon > 0 {
        c.push(format!(
            "Balloon is {}: a virtio-balloon without deflate-on-oom also lowers MemTotal by the \
             pages it holds, so they are subtracted twice and X is understated by up to that",
            format_bytes(balloon)
        ));
    }
    c
}

/// By LRU: MemFree + Active + Inactive + Unevictable + kernel + X.
pub fn by_lru(s: &HostSample) -> Decomposition {
    let parts = meminfo_parts(s, &["MemFree", "Active", "Inactive", "Unevictable"]);
    let mut c = shared_caveats(s);
    c.push(
        "pages held in per-CPU LRU batches are on no list yet and land in X (usually a few MiB)"
            .to_string(),
    );
    finish(
        "by LRU",
        "MemFree + Active + Inactive + Unevictable + kernel + hugetlb + X",
        s,
        parts,
        c,
    )
}

/// By page cache: MemFree + Buffers + Cached + SwapCached + AnonPages + kernel + X.
pub fn by_page_cache(s: &HostSample) -> Decomposition {
    let parts = meminfo_parts(
        s,
        &["MemFree", "Buffers", "Cached", "SwapCached", "AnonPages"],
    );
    let mut c = shared_caveats(s);
    let swapcached = s.meminfo.get_or_zero("SwapCached");
    if swapcached > 0 {
        c.push(format!(
            "SwapCached is {}: swap-cache pages that are also mapped count in both SwapCached and \
             AnonPages, so X is understated by up to that",
            format_bytes(swapcached)
        ));
    }
    finish(
        "by page cache",
        "MemFree + Buffers + Cached + SwapCached + AnonPages + kernel + hugetlb + X",
        s,
        parts,
        c,
    )
}

/// By PSS: MemFree + Σ process PSS + unmapped page cache + SwapCached + kernel + X.
/// `None` when no process could be read (PSS needs them).
pub fn by_pss(s: &HostSample) -> Option<Decomposition> {
    let pss = Term::ProcsPss.value(s)?;
    let mi = |k: &str| s.meminfo.get_or_zero(k);
    let unmapped_cache = (mi("Cached") + mi("Buffers")).saturating_sub(mi("Mapped"));
    let mut parts = meminfo_parts(s, &["MemFree"]);
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
    parts.extend(meminfo_parts(s, &["SwapCached"]));
    let mut c = shared_caveats(s);
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
        .map(|r| r.shared_hugetlb + r.private_hugetlb)
        .sum();
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
    Some(finish(
        "by PSS",
        "MemFree + ΣPss + (Cached + Buffers − Mapped) + SwapCached + kernel + hugetlb + X",
        s,
        parts,
        c,
    ))
}

/// All three, in report order.
pub fn all(s: &HostSample) -> Vec<Decomposition> {
    let mut v = vec![by_lru(s), by_page_cache(s)];
    v.extend(by_pss(s));
    v
}
