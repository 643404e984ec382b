//! KSM: what merging saves, from the global sysfs counters and from each process's own count.
//!
//! The global counters in /sys/kernel/mm/ksm are only recomputed by ksmd while it runs; with
//! `run = 0` they keep their last value (even after the merged processes exit). The per-process
//! `ksm_merging_pages` (Linux 5.19+) is always current, so it is the figure memwarden trusts.

use memwarden_model::host::HostSample;
use memwarden_model::units::{pages_to_bytes, PAGE_SIZE};
use serde::Serialize;

/// One process that has pages merged by KSM.
#[derive(Debug, Clone, Serialize)]
pub struct KsmProcess {
    pub pid: u32,
    pub name: String,
    pub merging_bytes: u64,
    /// ksm_stat's ksm_process_profit (Linux 6.1+), may be negative.
    pub profit_bytes: Option<i64>,
}

/// KSM as the operator wants to see it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct KsmReport {
    /// `None` when /sys/kernel/mm/ksm is absent (kernel without CONFIG_KSM).
    pub available: bool,
    pub run: Option<u64>,
    /// pages_sharing × page size: memory saved by merging, per ksmd's last count.
    pub saved_bytes: Option<u64>,
    /// pages_shared × page size: the single copies kept.
    pub shared_bytes: Option<u64>,
    /// general_profit (Linux 6.1+): saved minus KSM's own metadata cost.
    pub general_profit_bytes: Option<i64>,
    /// pages_sharing / pages_shared: how many sites each kept page serves (higher is better).
    pub sharing_ratio: Option<f64>,
    /// pages_unshared / pages_sharing: scanning effort that found nothing to merge (high = wasted).
    pub unshared_ratio: Option<f64>,
    /// Σ ksm_merging_pages over every process, in bytes: always current.
    pub processes_merging_bytes: Option<u64>,
    pub processes: Vec<KsmProcess>,
    /// Plain-words notes: stale counters, ksmd off, ...
    pub notes: Vec<String>,
}

fn ratio(a: Option<u64>, b: Option<u64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b > 0 => Some(a as f64 / b as f64),
        _ => None,
    }
}

/// Builds the KSM report from a sample.
pub fn report(s: &HostSample) -> KsmReport {
    let mut r = KsmReport::default();
    let mut procs: Vec<KsmProcess> = s
        .processes
        .iter()
        .filter_map(|p| {
            let k = p.ksm.as_ref()?;
            let pages = k.merging_pages?;
            (pages > 0).then(|| KsmProcess {
                pid: p.pid,
                name: p.name.clone(),
                merging_bytes: pages.saturating_mul(PAGE_SIZE),
                profit_bytes: k.process_profit,
            })
        })
        .collect();
    procs.sort_by(|a, b| {
        b.merging_bytes
            .cmp(&a.merging_bytes)
            .then(a.pid.cmp(&b.pid))
    });
    let any_proc_counter = s
        .processes
        .iter()
        .any(|p| p.ksm.as_ref().is_some_and(|k| k.merging_pages.is_some()));
    r.processes_merging_bytes =
        any_proc_counter.then(|| procs.iter().map(|p| p.merging_bytes).sum());
    r.processes = procs;

    let Some(k) = &s.ksm else {
        r.notes.push(
            "KSM is not available: /sys/kernel/mm/ksm is absent (kernel built without CONFIG_KSM)"
                .into(),
        );
        return r;
    };
    r.available = true;
    r.run = k.run;
    r.saved_bytes = k.pages_sharing.and_then(pages_to_bytes);
    r.shared_bytes = k.pages_shared.and_then(pages_to_bytes);
    r.general_profit_bytes = k.general_profit;
    r.sharing_ratio = ratio(k.pages_sharing, k.pages_shared);
    r.unshared_ratio = ratio(k.pages_unshared, k.pages_sharing);
    match k.run {
        Some(0) => r.notes.push(
            "ksmd is stopped (run=0): pages_shared/pages_sharing are its last count and may be \
             stale; per-process ksm_merging_pages is current"
                .into(),
        ),
        Some(2) => r
            .notes
            .push("run=2: ksmd is unmerging every merged page".into()),
        _ => {}
    }
    if let (Some(global), Some(per_proc)) = (
        k.pages_sharing
            .zip(k.pages_shared)
            .map(|(a, b)| a.saturating_add(b).saturating_mul(PAGE_SIZE)),
        r.processes_merging_bytes,
    ) {
        if k.run == Some(1)
            && global.abs_diff(per_proc) > (global / 10).saturating_add(64 * PAGE_SIZE)
        {
            r.notes.push(format!(
                "global shared+sharing ({} pages) and Σ per-process merging ({} pages) disagree by \
                 more than 10%: ksmd has not finished a scan since memory changed",
                global / PAGE_SIZE,
                per_proc / PAGE_SIZE
            ));
        }
    }
    r
}
