//! The human form of `memwarden host`.

use std::fmt::Write;

use memwarden_analysis::accounting::{HostAccounting, Verdict};
use memwarden_analysis::procs::ProcTable;
use memwarden_model::host::HostSample;
use memwarden_model::units::{format_bytes, format_signed_bytes};

use super::{percent, table};

/// Renders the whole host report as text.
pub fn render(s: &HostSample, acc: &HostAccounting, procs: &ProcTable) -> String {
    let mut out = String::new();
    let total = s.meminfo.get_or_zero("MemTotal");
    let _ = writeln!(
        out,
        "Host memory: MemTotal {}, MemFree {}, MemAvailable {}  (kernel {})",
        format_bytes(total),
        format_bytes(s.meminfo.get_or_zero("MemFree")),
        s.meminfo
            .get("MemAvailable")
            .map_or("-".into(), format_bytes),
        s.kernel_release.as_deref().unwrap_or("unknown"),
    );
    match acc.black_hole_bytes {
        Some(x) => {
            let _ = writeln!(
                out,
                "Black hole (memory no counter in /proc accounts for): {} ({} of MemTotal)",
                format_signed_bytes(x),
                percent(x, total)
            );
        }
        None => {
            let why = acc
                .decompositions
                .first()
                .and_then(|d| d.not_computed.as_deref())
                .unwrap_or("no decomposition");
            let _ = writeln!(out, "Black hole: not computed ({why})");
        }
    }
    for w in &s.warnings {
        let _ = writeln!(out, "WARNING: {w}");
    }
    for r in &acc.kernel_rules {
        let _ = writeln!(out, "  counted: {r}");
    }
    out.push('\n');

    out.push_str(&decompositions(acc, total));
    out.push_str(&identities(acc));
    if let Some(psi) = &s.psi {
        let _ = writeln!(
            out,
            "Pressure (PSI, % of time stalled on memory, avg10/60/300): some {:.2}/{:.2}/{:.2}{}\n",
            psi.some.avg10,
            psi.some.avg60,
            psi.some.avg300,
            psi.full.map_or(String::new(), |f| format!(
                ", full {:.2}/{:.2}/{:.2}",
                f.avg10, f.avg60, f.avg300
            ))
        );
    }
    out.push_str(&kernel_features(s));
    if let Some(m) = &acc.modules {
        let _ = writeln!(
            out,
            "Modules: {} loaded, lsmod total {}, vmalloc footprint {} (whole pages + a guard \
             page each), backing pages {}; vmallocinfo's module callers hold {}\n",
            m.count,
            format_bytes(m.lsmod_bytes),
            format_bytes(m.footprint_bytes),
            format_bytes(m.backing_bytes),
            m.vmalloc_module_bytes.map_or("-".into(), format_bytes)
        );
    }
    out.push_str(&top_processes(procs));
    let unknown: Vec<&str> = s
        .meminfo
        .entries
        .iter()
        .filter(|e| !is_known(&e.key))
        .map(|e| e.key.as_str())
        .collect();
    if !unknown.is_empty() {
        let _ = writeln!(
            out,
            "Fields this memwarden does not know (kept in --json, not explained): {}\n",
            unknown.join(", ")
        );
    }
    out.push_str(&process_errors(s));
    for d in &s.degraded {
        let _ = writeln!(out, "note: {d}");
    }
    out
}

/// Every process that could not be read (or only in part), and why; then how many exited.
pub fn process_errors(s: &HostSample) -> String {
    let mut out = String::new();
    let dropped = s.process_errors.iter().filter(|e| e.dropped).count();
    let partial = s.process_errors.len() - dropped;
    if dropped + partial > 0 {
        let _ = writeln!(
            out,
            "Processes not read: {dropped} left out, {partial} read in part:"
        );
        for e in &s.process_errors {
            let what = if e.dropped { "left out" } else { "in part" };
            let _ = writeln!(out, "  pid {} ({what}): {}", e.pid, e.why);
        }
    }
    if s.processes_exited > 0 {
        let _ = writeln!(
            out,
            "{} processes exited while being read (not counted)",
            s.processes_exited
        );
    }
    out
}

fn decompositions(acc: &HostAccounting, total: u64) -> String {
    let mut out = String::from("MemTotal, three ways:\n");
    for d in &acc.decompositions {
        let mut t = table(&["", d.name, "of MemTotal", "source"], &[1, 2]);
        for p in &d.parts {
            if p.bytes == 0 {
                continue;
            }
            t.add_row(vec![
                format!("  {}", p.label),
                format_bytes(p.bytes),
                percent(i128::from(p.bytes), total),
                p.source.clone(),
            ]);
        }
        t.add_row(vec![
            "  unaccounted (X)".to_string(),
            d.unaccounted_bytes
                .map_or_else(|| "not computed".to_string(), format_signed_bytes),
            d.unaccounted_bytes
                .map_or("-".into(), |x| percent(x, total)),
            d.formula.to_string(),
        ]);
        for p in &d.within_x {
            t.add_row(vec![
                format!("   in X, at most: {}", p.label),
                format_bytes(p.bytes),
                percent(i128::from(p.bytes), total),
                p.source.clone(),
            ]);
        }
        let _ = writeln!(out, "{t}");
        if let Some(why) = &d.not_computed {
            let _ = writeln!(out, "    X not computed: {why}");
        }
        for c in &d.caveats {
            let _ = writeln!(out, "    caveat: {c}");
        }
        out.push('\n');
    }
    out
}

fn identities(acc: &HostAccounting) -> String {
    let mut t = table(
        &["identity", "left", "right", "residual", "verdict"],
        &[1, 2, 3],
    );
    let mut notes = String::new();
    for r in &acc.identities {
        let verdict = match r.verdict {
            Verdict::Holds => format!("holds (≤ {})", format_bytes(r.tolerance_bytes)),
            Verdict::Explained => format!(
                "explained (|residual| ≤ tolerance {} + named causes {})",
                format_bytes(r.tolerance_bytes),
                format_bytes(r.explainable_bytes)
            ),
            Verdict::Broken => "BROKEN".to_string(),
            Verdict::NotApplicable => "n/a".to_string(),
        };
        t.add_row(vec![
            r.name.to_string(),
            r.left_bytes.map_or("-".into(), format_bytes),
            r.right_bytes.map_or("-".into(), format_bytes),
            r.residual_bytes.map_or("-".into(), format_signed_bytes),
            verdict,
        ]);
        if matches!(
            r.verdict,
            Verdict::Explained | Verdict::Broken | Verdict::NotApplicable
        ) {
            let _ = writeln!(notes, "  {}: {} = {}; {}", r.name, r.left, r.right, r.note);
        }
    }
    format!("Kernel identities:\n{t}\n{notes}\n")
}

/// vmalloc's top callers, hugetlb pools, THP mode, KSM, NUMA: one line each where present.
fn kernel_features(s: &HostSample) -> String {
    let mut out = String::new();
    if let Some(v) = &s.vmalloc {
        let callers: Vec<String> = v
            .top_callers
            .iter()
            .take(5)
            .map(|c| format!("{} {}", c.caller, format_bytes(c.bytes)))
            .collect();
        let _ = writeln!(
            out,
            "vmallocinfo: {} in {} areas (ioremap {} and vmap {} are address space, not RAM); top: {}",
            format_bytes(v.vmalloc_pages_bytes),
            v.vmalloc_records,
            format_bytes(v.ioremap_bytes),
            format_bytes(v.vmap_bytes),
            callers.join(", ")
        );
    }
    for p in s
        .hugepages
        .iter()
        .filter(|p| p.node.is_none() && p.nr_hugepages > 0)
    {
        let _ = writeln!(
            out,
            "hugetlb pool: {} × {} pages = {}, {} free, {} reserved, {} surplus",
            p.nr_hugepages,
            format_bytes(p.page_size_bytes),
            format_bytes(p.nr_hugepages.saturating_mul(p.page_size_bytes)),
            p.free_hugepages,
            p.resv_hugepages,
            p.surplus_hugepages
        );
    }
    if let Some(t) = &s.thp {
        let _ = writeln!(
            out,
            "THP: enabled={} defrag={}; AnonHugePages {}",
            t.enabled.as_deref().unwrap_or("?"),
            t.defrag.as_deref().unwrap_or("?"),
            s.meminfo
                .get("AnonHugePages")
                .map_or("-".into(), format_bytes)
        );
    }
    if let Some(k) = &s.ksm {
        let _ = writeln!(
            out,
            "KSM: run={} pages_sharing={} (≈ {} saved per ksmd's last scan; see memwarden ksm)",
            k.run.map_or("?".into(), |r| r.to_string()),
            k.pages_sharing.map_or("?".into(), |p| p.to_string()),
            k.pages_sharing
                .and_then(|p| memwarden_model::units::pages_to_bytes_at(p, s.page_size()))
                .map_or("-".into(), format_bytes)
        );
    }
    out.push_str(&consumers(s));
    if s.numa_nodes.len() > 1 {
        let free: Vec<String> = s
            .numa_nodes
            .iter()
            .map(|n| {
                format!(
                    "node{} free {}",
                    n.node,
                    n.meminfo.get("MemFree").map_or("-".into(), format_bytes)
                )
            })
            .collect();
        let _ = writeln!(out, "NUMA: {}", free.join(", "));
    }
    if !out.is_empty() {
        out.push('\n');
    }
    out
}

/// zram devices, sockets, DMA-bufs and the ZFS ARC as read, one line each where present.
fn consumers(s: &HostSample) -> String {
    let mut out = String::new();
    for z in s.zram.iter().flatten() {
        if z.mem_used_total_bytes == 0 && z.orig_data_bytes == 0 {
            let _ = writeln!(
                out,
                "zram {}: empty (not set up, or nothing stored)",
                z.device
            );
            continue;
        }
        let _ = writeln!(
            out,
            "zram {}: {} stored as {} compressed in {} of zsmalloc pages (peak {}, limit {}), \
             {} same-filled pages",
            z.device,
            format_bytes(z.orig_data_bytes),
            format_bytes(z.compr_data_bytes),
            format_bytes(z.mem_used_total_bytes),
            format_bytes(z.mem_used_max_bytes),
            if z.mem_limit_bytes == 0 {
                "none".to_string()
            } else {
                format_bytes(z.mem_limit_bytes)
            },
            z.same_pages
        );
    }
    if let Some(st) = &s.sockstat {
        let n = |p: &str, k: &str| st.get(p, k).map_or("-".into(), |v| v.to_string());
        let _ = writeln!(
            out,
            "sockets: {} used, TCP {} in use ({} allocated), UDP {}; buffers charged: {}",
            n("sockets", "used"),
            n("TCP", "inuse"),
            n("TCP", "alloc"),
            n("UDP", "inuse"),
            memwarden_analysis::accounting::consumers::socket_buffer_bytes(s).map_or(
                "-".into(),
                |(b, parts)| format!("{} ({parts})", format_bytes(b))
            )
        );
    }
    if let Some(d) = &s.dmabuf {
        let by: Vec<String> = d
            .exporters
            .iter()
            .take(5)
            .map(|e| format!("{} {} in {}", e.exporter, format_bytes(e.bytes), e.buffers))
            .collect();
        let _ = writeln!(
            out,
            "DMA-buf: {} in {} buffers{}{}",
            format_bytes(d.total_bytes()),
            d.buffers(),
            if d.truncated {
                " (first buffers only)"
            } else {
                ""
            },
            if by.is_empty() {
                String::new()
            } else {
                format!("; by exporter: {}", by.join(", "))
            }
        );
    }
    if let Some(z) = &s.zfs {
        let b = |v: Option<u64>| v.map_or("-".into(), format_bytes);
        let _ = writeln!(
            out,
            "ZFS ARC: {} (target c {}, c_min {}, c_max {}; data {}, metadata {}){}",
            b(z.arc("size")),
            b(z.arc("c")),
            b(z.arc("c_min")),
            b(z.arc("c_max")),
            b(z.arc("data_size")),
            b(z.arc("metadata_size")),
            match &z.abdstats {
                Some(_) => format!(
                    "; ABDs: scatter {} + chunk waste {} (page allocator), linear {} (kmem caches)",
                    b(z.abd("scatter_data_size")),
                    b(z.abd("scatter_chunk_waste")),
                    b(z.abd("linear_data_size"))
                ),
                None => "; no abdstats".into(),
            }
        );
    }
    out
}

fn top_processes(p: &ProcTable) -> String {
    let t = super::procs::process_table(p, false);
    format!(
        "Top processes by PSS ({} processes, Σ PSS {}, {} without readable smaps):\n{t}\n\n",
        p.total_processes,
        format_bytes(p.total_pss_bytes),
        p.unreadable
    )
}

fn is_known(key: &str) -> bool {
    memwarden_analysis::glossary::lookup(memwarden_analysis::glossary::Kind::Meminfo, key).is_some()
}
