//! Host series: meminfo (every line), the accounting (identities, decompositions, black hole),
//! KSM, PSI and hugetlb pools, all read from the sample's [`View`] (derived once per sample).

use memwarden_analysis::accounting::{HostAccounting, Verdict};
use memwarden_analysis::ksm::KsmReport;
use memwarden_analysis::view::View;
use memwarden_model::host::{HostSample, MeminfoUnit, PsiLine};

use crate::writer::Series;

pub(crate) fn write(s: &mut Series, view: &View) {
    let h = &view.sample().host;
    for e in &h.meminfo.entries {
        let name = match e.unit {
            MeminfoUnit::Bytes => "memwarden_host_meminfo_bytes",
            MeminfoUnit::Count => "memwarden_host_meminfo",
        };
        s.add(name, &[&e.key], e.value);
    }
    if let Some(k) = &h.kernel_release {
        s.add("memwarden_host_info", &[k], 1u64);
    }
    accounting_series(s, &view.accounting);
    consumer_series(s, h);
    ksm_series(s, h, &view.ksm);
    if let Some(p) = &h.psi {
        psi_series(s, "some", &p.some);
        if let Some(full) = &p.full {
            psi_series(s, "full", full);
        }
    }
    for pool in h.hugepages.iter().filter(|p| p.node.is_none()) {
        // The kernel's own spelling of the size, as in /sys/kernel/mm/hugepages/hugepages-2048kB.
        let size = format!("{}kB", pool.page_size_bytes / 1024);
        let l = [size.as_str()];
        s.add("memwarden_host_hugepages_pool_pages", &l, pool.nr_hugepages);
        s.add(
            "memwarden_host_hugepages_free_pages",
            &l,
            pool.free_hugepages,
        );
        s.add(
            "memwarden_host_hugepages_reserved_pages",
            &l,
            pool.resv_hugepages,
        );
        s.add(
            "memwarden_host_hugepages_surplus_pages",
            &l,
            pool.surplus_hugepages,
        );
        s.add_opt(
            "memwarden_host_hugepages_pool_bytes",
            &l,
            pool.nr_hugepages.checked_mul(pool.page_size_bytes),
        );
    }
}

/// A stable label for an identity or decomposition name ("by page cache" → `page_cache`,
/// "mapped ≈ PSS" → `mapped_pss`): PromQL matchers should not need spaces or symbols.
pub(crate) fn slug(name: &str) -> String {
    let name = name.strip_prefix("by ").unwrap_or(name);
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.is_empty() && !out.ends_with('_') {
            out.push('_');
        }
    }
    while out.ends_with('_') {
        out.pop();
    }
    out
}

fn verdict(v: Verdict) -> &'static str {
    match v {
        Verdict::Holds => "holds",
        Verdict::Explained => "explained",
        Verdict::Broken => "broken",
        Verdict::NotApplicable => "not_applicable",
    }
}

fn accounting_series(s: &mut Series, a: &HostAccounting) {
    for id in &a.identities {
        let name = slug(id.name);
        s.add_opt(
            "memwarden_host_identity_residual_bytes",
            &[&name],
            id.residual_bytes,
        );
        if id.verdict != Verdict::NotApplicable {
            s.add(
                "memwarden_host_identity_tolerance_bytes",
                &[&name],
                id.tolerance_bytes,
            );
        }
        s.add(
            "memwarden_host_identity_verdict",
            &[&name, verdict(id.verdict)],
            1u64,
        );
    }
    s.add_opt("memwarden_host_black_hole_bytes", &[], a.black_hole_bytes);
    for d in &a.decompositions {
        let name = slug(d.name);
        for p in &d.parts {
            s.add(
                "memwarden_host_decomposition_bytes",
                &[&name, &p.label],
                p.bytes,
            );
        }
        s.add_opt(
            "memwarden_host_decomposition_unaccounted_bytes",
            &[&name],
            d.unaccounted_bytes,
        );
    }
}

/// zram devices, socket buffers, DMA-bufs and the ZFS ARC, raw; absent series when the host has
/// none.
fn consumer_series(s: &mut Series, h: &HostSample) {
    for z in h.zram.iter().flatten() {
        let l = [z.device.as_str()];
        s.add(
            "memwarden_host_zram_mem_used_bytes",
            &l,
            z.mem_used_total_bytes,
        );
        s.add("memwarden_host_zram_orig_data_bytes", &l, z.orig_data_bytes);
        s.add(
            "memwarden_host_zram_compr_data_bytes",
            &l,
            z.compr_data_bytes,
        );
    }
    if let Some(st) = &h.sockstat {
        let ps = h.page_size();
        for (proto, key, pages) in [
            ("TCP", "mem", true),
            ("UDP", "mem", true),
            ("FRAG", "memory", false),
            ("FRAG6", "memory", false),
        ] {
            let v = st
                .get(proto, key)
                .map(|v| if pages { v.saturating_mul(ps) } else { v });
            s.add_opt("memwarden_host_socket_buffers_bytes", &[proto], v);
        }
    }
    for e in h.dmabuf.iter().flat_map(|d| &d.exporters) {
        let l = [e.exporter.as_str()];
        s.add("memwarden_host_dmabuf_bytes", &l, e.bytes);
        s.add("memwarden_host_dmabuf_buffers", &l, e.buffers);
    }
    if let Some(z) = &h.zfs {
        for f in ZFS_ARC_FIELDS {
            s.add_opt("memwarden_host_zfs_arc_bytes", &[f], z.arc(f));
        }
        for f in ZFS_ABD_FIELDS {
            s.add_opt("memwarden_host_zfs_abd_bytes", &[f], z.abd(f));
        }
    }
}

/// The arcstats and abdstats entries on /metrics (bytes; the rest are counters of events).
const ZFS_ARC_FIELDS: &[&str] = &[
    "size",
    "c",
    "c_min",
    "c_max",
    "data_size",
    "metadata_size",
    "hdr_size",
    "dbuf_size",
    "dnode_size",
    "bonus_size",
    "abd_chunk_waste_size",
];
const ZFS_ABD_FIELDS: &[&str] = &[
    "scatter_data_size",
    "scatter_chunk_waste",
    "linear_data_size",
    "struct_size",
];

fn ksm_series(s: &mut Series, h: &HostSample, r: &KsmReport) {
    if let Some(k) = &h.ksm {
        s.add_opt("memwarden_host_ksm_run", &[], k.run);
        s.add_opt("memwarden_host_ksm_pages_shared", &[], k.pages_shared);
        s.add_opt("memwarden_host_ksm_pages_sharing", &[], k.pages_sharing);
        s.add_opt("memwarden_host_ksm_pages_unshared", &[], k.pages_unshared);
        s.add_opt("memwarden_host_ksm_pages_volatile", &[], k.pages_volatile);
        s.add_opt("memwarden_host_ksm_full_scans_total", &[], k.full_scans);
    }
    s.add_opt("memwarden_host_ksm_saved_bytes", &[], r.saved_bytes);
    s.add_opt(
        "memwarden_host_ksm_general_profit_bytes",
        &[],
        r.general_profit_bytes,
    );
    s.add_opt(
        "memwarden_host_ksm_processes_merging_bytes",
        &[],
        r.processes_merging_bytes,
    );
    s.add_opt(
        "memwarden_host_ksmd_cpu_seconds_total",
        &[],
        h.ksmd.map(|k| k.total_ms() as f64 / 1000.0),
    );
}

fn psi_series(s: &mut Series, kind: &str, l: &PsiLine) {
    // The kernel prints percentages; Prometheus convention is a 0..1 ratio.
    for (window, pct) in [("10s", l.avg10), ("60s", l.avg60), ("300s", l.avg300)] {
        s.add(
            "memwarden_host_pressure_memory_ratio",
            &[kind, window],
            pct / 100.0,
        );
    }
    s.add(
        "memwarden_host_pressure_memory_seconds_total",
        &[kind],
        l.total_us as f64 / 1e6,
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use memwarden_analysis::accounting::IDENTITIES;
    use std::collections::HashSet;

    #[test]
    fn slugs_are_plain_and_distinct() {
        assert_eq!(slug("by page cache"), "page_cache");
        assert_eq!(slug("by LRU"), "lru");
        assert_eq!(slug("mapped ≈ PSS"), "mapped_pss");
        let slugs: HashSet<String> = IDENTITIES.iter().map(|i| slug(i.name)).collect();
        assert_eq!(
            slugs.len(),
            IDENTITIES.len(),
            "two identities share a label"
        );
        assert!(slugs.iter().all(|s| !s.is_empty()));
    }
}
