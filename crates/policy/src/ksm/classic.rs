//! The classic rules of ksmtuned and oVirt MOM, from their published descriptions:
//!
//! - KSM is needed when memory committed to VMs plus a threshold (a share of MemTotal, at least
//!   a constant) exceeds MemTotal, or when free memory falls below that threshold;
//! - while needed, pages_to_scan grows by a boost per interval when free memory is below the
//!   threshold and shrinks by a decay otherwise, within [min, max];
//! - sleep_millisecs is a baseline for a 16 GiB host scaled by 16 GiB ÷ MemTotal, with a floor:
//!   a larger host has more to scan per full pass, so it sleeps less.
//!
//! Two deliberate differences: "free" is MemAvailable (both tools predate it and add MemFree,
//! Buffers and Cached, which counts unreclaimable shmem as free); "committed" is each running
//! VM's configured maximum memory (ksmtuned sums the QEMU processes' virtual size, which is that
//! plus QEMU's own mappings), or the QEMU processes' RSS when no hypervisor was read.

use memwarden_model::units::{format_bytes, GIB};
use memwarden_model::vm::VmState;
use memwarden_model::Sample;
use serde::Serialize;

use super::KsmConfig;

/// Whether the host needs KSM, with the figures.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Need {
    pub wanted: bool,
    /// Free memory is below the threshold: scan harder.
    pub low_free: bool,
    pub why: String,
    pub total_bytes: u64,
    pub free_bytes: u64,
    pub threshold_bytes: u64,
    pub committed_bytes: u64,
    /// `vm max memory` or `qemu rss`.
    pub committed_from: &'static str,
}

/// The classic rule on this sample; `None` when MemTotal is unknown.
pub fn need(sample: &Sample, cfg: &KsmConfig) -> Option<Need> {
    let m = &sample.host.meminfo;
    let total = m.get("MemTotal").filter(|t| *t > 0)?;
    let free = m.get("MemAvailable").unwrap_or_else(|| {
        m.get_or_zero("MemFree") + m.get_or_zero("Buffers") + m.get_or_zero("Cached")
    });
    let threshold = ((total as f64 * cfg.threshold_share) as u64).max(cfg.threshold_min_bytes);
    let (committed, committed_from) = committed(sample);
    let overcommitted = committed.saturating_add(threshold) > total;
    let low_free = free < threshold;
    let why = format!(
        "free (MemAvailable) {} {} threshold {}; committed to VMs {} + threshold {} MemTotal {}",
        format_bytes(free),
        if low_free { "<" } else { "≥" },
        format_bytes(threshold),
        format_bytes(committed),
        if overcommitted { ">" } else { "≤" },
        format_bytes(total)
    );
    Some(Need {
        wanted: overcommitted || low_free,
        low_free,
        why,
        total_bytes: total,
        free_bytes: free,
        threshold_bytes: threshold,
        committed_bytes: committed,
        committed_from,
    })
}

/// Σ running VMs' maximum memory; without VMs, Σ RSS of QEMU processes (as ksmtuned finds them).
fn committed(sample: &Sample) -> (u64, &'static str) {
    if !sample.vms.is_empty() {
        let sum = sample
            .vms
            .iter()
            .filter(|v| v.state == VmState::Running)
            .filter_map(|v| {
                v.max_memory_bytes
                    .or_else(|| v.host.as_ref().and_then(|h| h.status.vm_rss))
            })
            .fold(0u64, u64::saturating_add);
        return (sum, "vm max memory");
    }
    let sum = sample
        .host
        .processes
        .iter()
        .filter(|p| p.name.starts_with("qemu") || p.name == "kvm")
        .filter_map(|p| p.status.vm_rss)
        .fold(0u64, u64::saturating_add);
    (sum, "qemu rss")
}

/// The next pages_to_scan from the current one: boost or decay, scaled down when ksmd's
/// measured CPU exceeds the cap, always within [pages_min, pages_max].
pub fn pages_to_scan(
    current: u64,
    low_free: bool,
    cpu_percent: Option<f64>,
    cfg: &KsmConfig,
) -> (u64, String) {
    let (mut next, mut why) = if low_free {
        (
            current.saturating_add(cfg.pages_boost),
            format!(
                "free memory below the threshold: boost by {}",
                cfg.pages_boost
            ),
        )
    } else {
        (
            current.saturating_sub(cfg.pages_decay),
            format!(
                "free memory above the threshold: decay by {}",
                cfg.pages_decay
            ),
        )
    };
    if let Some(cpu) = cpu_percent.filter(|c| *c > cfg.max_cpu_percent && *c > 0.0) {
        // Scanning cost is about proportional to pages scanned per wake-up.
        next = (current as f64 * cfg.max_cpu_percent / cpu) as u64;
        why = format!(
            "ksmd used {cpu:.1} % of a CPU, above the cap of {:.1} %: scaled down",
            cfg.max_cpu_percent
        );
    }
    let bounded = next.clamp(cfg.pages_min, cfg.pages_max);
    if bounded != next {
        why.push_str(&format!(
            ", held within [{}, {}]",
            cfg.pages_min, cfg.pages_max
        ));
    }
    (bounded, why)
}

/// sleep_millisecs for a host of `total_bytes`.
pub fn sleep_ms(total_bytes: u64, cfg: &KsmConfig) -> (u64, String) {
    let scaled =
        u128::from(cfg.sleep_ms_per_16gib) * u128::from(16 * GIB) / u128::from(total_bytes.max(1));
    let scaled = u64::try_from(scaled).unwrap_or(u64::MAX);
    let ms = scaled.max(cfg.sleep_min_ms);
    (
        ms,
        format!(
            "{} ms per 16 GiB scaled to MemTotal {} (at least {} ms)",
            cfg.sleep_ms_per_16gib,
            format_bytes(total_bytes),
            cfg.sleep_min_ms
        ),
    )
}
