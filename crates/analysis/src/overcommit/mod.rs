//! The overcommit planner: from recorded history, the RAM allocation ratio (OpenStack Nova's
//! `ram_allocation_ratio`) this host could carry at a stated risk. Pure: observations in, a plan
//! out.
//!
//! # The formula
//!
//! Nova schedules while Σ flavor RAM ≤ (MemTotal − `reserved_host_memory_mb`) × ratio. So, per
//! sample *t*, over the VMs that reported balloon statistics (the others are left out of that
//! sample, and named):
//!
//! * **promised** P(t) = Σ max memory;
//! * **QEMU overhead** of a VM = QEMU RSS − the guest-resident part, where the guest-resident
//!   part is what the guest has touched and still holds, MemTotal − MemFree in the guest, capped
//!   at the RSS. It is QEMU's own memory plus guest pages freed but never given back;
//! * **demand** D(t) = Σ guest used (MemTotal − MemAvailable in the guest) + Σ QEMU overhead −
//!   Σ what KSM saves on each VM's QEMU (from its own ksm_merging_pages: [`ksm_saved`]);
//! * **fraction** f(t) = D(t) / P(t): host memory needed per byte promised.
//!
//! The answer is **ratio = 1 / pXX(f)**: filled to that ratio, guests that behave like these
//! would have needed all of MemTotal − host's own use at the XX-th percentile of the window
//! (and more in the remaining (100−XX)% of it). Percentiles are time-weighted (see
//! [`percentile`]) and taken of f(t), so VMs that came and went are judged by what each sample
//! promised. The host's own use is reported beside it as what `reserved_host_memory_mb` should
//! cover: pXX of (MemTotal − MemAvailable) − Σ (QEMU RSS − KSM saved) of every VM.
//!
//! No ratio is given when the window holds fewer than [`percentile::min_samples`] samples with
//! statistics, spans less than `min_span_ms`, or no VM reported statistics: the plan says which.

mod observe;
pub mod percentile;

use serde::{Deserialize, Serialize};

pub use observe::{ksm_saved, observe, Observation, StoredHost, StoredSample, VmObservation};

/// What the planner needs to be told.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PlanConfig {
    /// The risk: the percentile of the demand fraction the ratio must carry (99 = p99).
    pub percentile: f64,
    /// The shortest history planned from, ms (default one day: at least one daily cycle).
    pub min_span_ms: u64,
}

impl Default for PlanConfig {
    fn default() -> Self {
        PlanConfig {
            percentile: 99.0,
            min_span_ms: 86_400_000,
        }
    }
}

/// The sample at the percentile, with the figures its fraction came from. Bytes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Moment {
    pub at_unix_ms: u64,
    /// VMs counted in this sample (with statistics).
    pub vms: usize,
    pub promised_bytes: u64,
    pub guest_used_bytes: u64,
    pub qemu_rss_bytes: u64,
    pub qemu_overhead_bytes: u64,
    /// What KSM saves on the counted VMs, as subtracted.
    pub ksm_saved_bytes: u64,
    pub demand_bytes: u64,
    /// demand / promised.
    pub fraction: f64,
}

/// Why there is no ratio.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Shortfall {
    /// Nothing recorded in the window.
    NoSamples,
    /// Samples, but no VM in any of them.
    NoVms,
    /// VMs, but none reported balloon statistics (and max memory and QEMU RSS).
    NoVmStats,
    /// Too few samples with statistics, or too short a span.
    NotEnoughHistory,
}

/// One VM over the window.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmCoverage {
    pub name: String,
    /// Samples the VM was in.
    pub samples: usize,
    /// Of which it was counted (statistics, max memory and QEMU RSS all present).
    pub counted: usize,
    /// Its last known max memory.
    pub max_memory_bytes: Option<u64>,
}

/// The planner's answer and every figure it came from.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub percentile: f64,
    /// The window: first and last sample.
    pub from_unix_ms: Option<u64>,
    pub until_unix_ms: Option<u64>,
    pub samples: usize,
    /// Samples with at least one VM counted: the ones the percentile is taken over.
    pub samples_counted: usize,
    /// Samples needed for the percentile to be more than the maximum.
    pub min_samples: usize,
    pub min_span_ms: u64,
    pub vms: Vec<VmCoverage>,
    /// The last sample's MemTotal.
    pub mem_total_bytes: Option<u64>,
    /// pXX of the host's own use (QEMU excluded): what `reserved_host_memory_mb` should cover.
    pub host_own_bytes: Option<u64>,
    /// MemTotal − host's own use: what guests can have.
    pub usable_bytes: Option<u64>,
    /// Σ max memory of every VM in the last sample, counted or not.
    pub promised_now_bytes: Option<u64>,
    /// promised now / usable: the ratio the host runs at today.
    pub committed_ratio: Option<f64>,
    /// The sample at the percentile of the demand fraction.
    pub at_percentile: Option<Moment>,
    /// 1 / that fraction; `None` with a [`Shortfall`].
    pub ratio: Option<f64>,
    pub shortfall: Option<Shortfall>,
    /// Plain words: why there is no ratio, what was left out.
    pub notes: Vec<String>,
}

/// The plan for one host (or a fleet merged with [`merge`]) from its observations.
pub fn plan(obs: &[Observation], cfg: &PlanConfig) -> Plan {
    let mut order: Vec<&Observation> = obs.iter().collect();
    order.sort_by_key(|o| o.at_unix_ms);
    let p = cfg.percentile.clamp(0.0, 100.0);
    let mut out = Plan {
        percentile: p,
        from_unix_ms: order.first().map(|o| o.at_unix_ms),
        until_unix_ms: order.last().map(|o| o.at_unix_ms),
        samples: order.len(),
        min_samples: percentile::min_samples(p),
        min_span_ms: cfg.min_span_ms,
        vms: coverage(&order),
        ..Plan::default()
    };
    let Some(last) = order.last() else {
        return out.short(
            Shortfall::NoSamples,
            "nothing recorded in the window".into(),
        );
    };
    out.mem_total_bytes = Some(last.mem_total_bytes);
    out.promised_now_bytes = Some(last.vms.iter().filter_map(|v| v.max_memory_bytes).sum());

    let times: Vec<u64> = order.iter().map(|o| o.at_unix_ms).collect();
    let weights = percentile::weights(&times);
    let own: Vec<f64> = order.iter().map(|o| host_own(o) as f64).collect();
    if let Some(i) = percentile::index(&own, &weights, p) {
        let own = host_own(order[i]);
        out.host_own_bytes = Some(own);
        let usable = last.mem_total_bytes.saturating_sub(own);
        out.usable_bytes = Some(usable);
        out.committed_ratio = out
            .promised_now_bytes
            .filter(|_| usable > 0)
            .map(|pr| pr as f64 / usable as f64);
    }

    let moments: Vec<(Moment, u64)> = order
        .iter()
        .zip(&weights)
        .filter_map(|(o, w)| Some((moment(o)?, *w)))
        .collect();
    out.samples_counted = moments.len();
    if moments.is_empty() {
        return if order.iter().all(|o| o.vms.is_empty()) {
            out.short(Shortfall::NoVms, "no VM ran in the window".into())
        } else {
            out.short(
                Shortfall::NoVmStats,
                "no VM reported balloon statistics (with max memory and QEMU RSS) in the \
                 window: enable the balloon's stats polling (memwarden stats-period)"
                    .into(),
            )
        };
    }
    let span = moments.last().map_or(0, |m| m.0.at_unix_ms) - moments[0].0.at_unix_ms;
    if moments.len() < out.min_samples || span < cfg.min_span_ms {
        let why = format!(
            "not enough history: {} samples with VM statistics over {}; the p{} needs at least \
             {} samples over at least {}",
            moments.len(),
            human_ms(span),
            trim(p),
            out.min_samples,
            human_ms(cfg.min_span_ms)
        );
        return out.short(Shortfall::NotEnoughHistory, why);
    }
    let fractions: Vec<f64> = moments.iter().map(|(m, _)| m.fraction).collect();
    let w: Vec<u64> = moments.iter().map(|(_, w)| *w).collect();
    if let Some(i) = percentile::index(&fractions, &w, p) {
        let m = moments[i].0.clone();
        out.ratio = (m.fraction > 0.0).then(|| 1.0 / m.fraction);
        out.at_percentile = Some(m);
    }
    out
}

impl Plan {
    fn short(mut self, why: Shortfall, note: String) -> Plan {
        self.shortfall = Some(why);
        self.notes.push(note);
        self
    }
}

/// The host's own use: everything in use less what the VMs' QEMUs hold (merged pages once).
fn host_own(o: &Observation) -> u64 {
    let qemu: u64 = o
        .vms
        .iter()
        .filter_map(|v| {
            Some(
                v.qemu_rss_bytes?
                    .saturating_sub(v.ksm_saved_bytes.unwrap_or(0)),
            )
        })
        .sum();
    o.host_used_bytes.saturating_sub(qemu)
}

/// A VM's (promised, guest used, QEMU RSS, QEMU overhead, KSM saved) when every input is there.
fn counted(v: &VmObservation) -> Option<(u64, u64, u64, u64, u64)> {
    let max = v.max_memory_bytes.filter(|m| *m > 0)?;
    let used = v.guest_used_bytes?;
    let rss = v.qemu_rss_bytes?;
    let resident = v.guest_used_legacy_bytes.unwrap_or(used).min(rss);
    let saved = v.ksm_saved_bytes.unwrap_or(0);
    Some((max, used, rss, rss - resident, saved))
}

/// The sample's figures over its counted VMs; `None` when none is counted.
fn moment(o: &Observation) -> Option<Moment> {
    let mut m = Moment {
        at_unix_ms: o.at_unix_ms,
        ..Moment::default()
    };
    for (max, used, rss, overhead, saved) in o.vms.iter().filter_map(counted) {
        m.vms += 1;
        m.promised_bytes += max;
        m.guest_used_bytes += used;
        m.qemu_rss_bytes += rss;
        m.qemu_overhead_bytes += overhead;
        m.ksm_saved_bytes += saved;
    }
    if m.vms == 0 {
        return None;
    }
    let gross = m.guest_used_bytes + m.qemu_overhead_bytes;
    m.ksm_saved_bytes = m.ksm_saved_bytes.min(gross);
    m.demand_bytes = gross - m.ksm_saved_bytes;
    m.fraction = m.demand_bytes as f64 / m.promised_bytes as f64;
    Some(m)
}

fn coverage(order: &[&Observation]) -> Vec<VmCoverage> {
    let mut by: std::collections::BTreeMap<&str, VmCoverage> = Default::default();
    for v in order.iter().flat_map(|o| &o.vms) {
        let c = by.entry(&v.name).or_insert_with(|| VmCoverage {
            name: v.name.clone(),
            ..VmCoverage::default()
        });
        c.samples += 1;
        c.counted += usize::from(counted(v).is_some());
        c.max_memory_bytes = v.max_memory_bytes.or(c.max_memory_bytes);
    }
    by.into_values().collect()
}

/// Hosts' observations as one fleet: at each instant any host has, MemTotal, use and KSM are
/// summed over the hosts seen then and their VMs pooled (named `host/vm`).
pub fn merge(hosts: &[(String, Vec<Observation>)]) -> Vec<Observation> {
    let mut at: std::collections::BTreeMap<u64, Observation> = Default::default();
    for (host, obs) in hosts {
        for o in obs {
            let m = at.entry(o.at_unix_ms).or_insert_with(|| Observation {
                at_unix_ms: o.at_unix_ms,
                ..Observation::default()
            });
            m.mem_total_bytes += o.mem_total_bytes;
            m.host_used_bytes += o.host_used_bytes;
            m.vms.extend(o.vms.iter().map(|v| VmObservation {
                name: format!("{host}/{}", v.name),
                ..v.clone()
            }));
        }
    }
    at.into_values().collect()
}

/// `p` without a needless `.0` (99, 99.9).
fn trim(p: f64) -> String {
    format!("{p}")
}

/// Whole seconds, in the largest exact unit: 90 500 ms → `90s`, 86 400 000 ms → `1d`.
fn human_ms(ms: u64) -> String {
    let d = if ms >= 1000 {
        std::time::Duration::from_secs(ms / 1000)
    } else {
        std::time::Duration::from_millis(ms)
    };
    memwarden_model::units::format_duration(d)
}

#[cfg(test)]
mod tests;
