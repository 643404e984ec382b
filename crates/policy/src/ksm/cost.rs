//! The cost rule: KSM keeps running only while what it saves pays for ksmd's CPU.
//!
//! Judged over a window that starts when ksmd began running (see [`KsmHistory`]) and lasts at
//! least `cost_window_s` and one completed full scan (before that, a scan has not yet seen all
//! mergeable memory and its savings would be judged too early):
//!
//! - *saved* is `general_profit` (Linux 6.1+: pages saved minus KSM's rmap metadata), else
//!   `pages_sharing` × page size; saved ≤ 0 fails: KSM costs memory, whatever the CPU;
//! - *CPU* is ksmd's CPU time over wall time across the window, percent of one CPU; under 0.1 %
//!   it is not worth judging and passes;
//! - otherwise saved ÷ CPU percent must reach `min_saved_bytes_per_cpu_percent`.
//!
//! A failed verdict stops KSM (run = 0: merged pages stay merged, only scanning stops) and
//! keeps it stopped for `retry_after_s`. Before any window, KSM is started on the classic rules
//! alone: there is no way to know what it will save on this host without letting it scan.

use memwarden_model::units::format_bytes;
use memwarden_model::Sample;
use serde::Serialize;

use super::{KsmConfig, KsmHistory, KsmObservation};

/// Below this share of one CPU, percent, ksmd's cost is noise (a few ticks).
const NEGLIGIBLE_CPU_PERCENT: f64 = 0.1;

/// ksmd's CPU over the current window.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct WindowCpu {
    pub window_s: f64,
    /// ksmd's CPU time over wall time, percent of one CPU.
    pub cpu_percent: f64,
    /// full_scans completed in the window.
    pub full_scans: u64,
}

/// ksmd's CPU since the window began; `None` without a window, a ksmd reading, or elapsed time.
pub fn window_cpu(sample: &Sample, history: &KsmHistory) -> Option<WindowCpu> {
    let w = history.window_start?;
    let now = KsmObservation::of(sample);
    if w.ksmd_pid != now.ksmd_pid {
        return None;
    }
    let window_ms = now.at_ms.checked_sub(w.at_ms).filter(|ms| *ms > 0)?;
    let cpu_ms = now.ksmd_cpu_ms?.checked_sub(w.ksmd_cpu_ms?)?;
    Some(WindowCpu {
        window_s: window_ms as f64 / 1000.0,
        cpu_percent: cpu_ms as f64 * 100.0 / window_ms as f64,
        full_scans: now
            .full_scans
            .zip(w.full_scans)
            .map_or(0, |(n, b)| n.saturating_sub(b)),
    })
}

/// The cost rule's verdict with its figures.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CostVerdict {
    pub pass: bool,
    /// Plain words, with the figures.
    pub why: String,
    pub cpu: WindowCpu,
    /// What KSM saves now, bytes (may be negative).
    pub saved_bytes: i64,
    /// `general_profit` or `pages_sharing`.
    pub saved_from: &'static str,
    /// saved ÷ CPU percent; `None` when the CPU is negligible.
    pub saved_bytes_per_cpu_percent: Option<f64>,
}

/// Judges a running KSM; `None` while the window is too short or no full scan has completed.
pub fn judge(sample: &Sample, history: &KsmHistory, cfg: &KsmConfig) -> Option<CostVerdict> {
    let k = sample.host.ksm.as_ref()?;
    let cpu = window_cpu(sample, history)?;
    if cpu.window_s < cfg.cost_window_s as f64 || cpu.full_scans == 0 {
        return None;
    }
    let page = sample.host.page_size();
    let (saved_bytes, saved_from) = match (k.general_profit, k.pages_sharing) {
        (Some(p), _) => (p, "general_profit"),
        (None, Some(s)) => (
            i64::try_from(s.saturating_mul(page)).unwrap_or(i64::MAX),
            "pages_sharing",
        ),
        (None, None) => return None,
    };
    let over = format!(
        "over {:.0} s and {} full scan(s), ksmd used {:.2} % of a CPU and KSM saves {} ({saved_from})",
        cpu.window_s,
        cpu.full_scans,
        cpu.cpu_percent,
        signed(saved_bytes)
    );
    let verdict = |pass: bool, why: String, per: Option<f64>| CostVerdict {
        pass,
        why,
        cpu,
        saved_bytes,
        saved_from,
        saved_bytes_per_cpu_percent: per,
    };
    if saved_bytes <= 0 {
        return Some(verdict(
            false,
            format!("{over}: its metadata costs more memory than merging saves"),
            None,
        ));
    }
    if cpu.cpu_percent < NEGLIGIBLE_CPU_PERCENT {
        return Some(verdict(
            true,
            format!("{over}: ksmd's CPU is negligible"),
            None,
        ));
    }
    let per = saved_bytes as f64 / cpu.cpu_percent;
    let floor = cfg.min_saved_bytes_per_cpu_percent;
    let pass = per >= floor as f64;
    Some(verdict(
        pass,
        format!(
            "{over}: {} saved per 1 % of a CPU, {} the floor of {}",
            format_bytes(per as u64),
            if pass { "at or above" } else { "below" },
            format_bytes(floor)
        ),
        Some(per),
    ))
}

fn signed(bytes: i64) -> String {
    memwarden_model::units::format_signed_bytes(i128::from(bytes))
}
