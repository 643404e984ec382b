//! The planner's observations from a Prometheus server's history of memwarden's metrics: one
//! `query_range` per figure over the window, joined per host (`instance`), instant and VM
//! (`domain`). A thin adapter: the same pure planner runs on what it returns.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use memwarden_analysis::overcommit::{ksm_saved, Observation, VmObservation};
use serde::Deserialize;

/// Each figure and its PromQL (names from `memwarden_metrics::table`).
const HOST_FIGURES: [(Host, &str); 4] = [
    (
        Host::MemTotal,
        r#"memwarden_host_meminfo_bytes{field="MemTotal"}"#,
    ),
    (
        Host::MemAvailable,
        r#"memwarden_host_meminfo_bytes{field="MemAvailable"}"#,
    ),
    (Host::KsmShared, "memwarden_host_ksm_pages_shared"),
    (Host::KsmSharing, "memwarden_host_ksm_pages_sharing"),
];
const VM_FIGURES: [(Vm, &str); 5] = [
    (Vm::Max, "memwarden_vm_max_memory_bytes"),
    (Vm::Used, "memwarden_vm_guest_used_bytes"),
    (Vm::Legacy, "memwarden_vm_guest_used_legacy_bytes"),
    (Vm::Rss, "memwarden_vm_qemu_rss_bytes"),
    (Vm::KsmMerged, "memwarden_vm_qemu_ksm_merged_bytes"),
];

#[derive(Debug, Clone, Copy)]
enum Host {
    MemTotal,
    MemAvailable,
    KsmShared,
    KsmSharing,
}

#[derive(Debug, Clone, Copy)]
enum Vm {
    Max,
    Used,
    Legacy,
    Rss,
    KsmMerged,
}

/// The window asked of Prometheus: `[start, end]` every `step`, Unix ms.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    pub start_ms: u64,
    pub end_ms: u64,
    pub step: Duration,
}

/// Every host's observations in `w`, by `instance`, each oldest first. Instants where a host
/// has no MemTotal are left out (the host was not scraped then).
pub fn observations(base: &str, w: Window) -> Result<Vec<(String, Vec<Observation>)>> {
    let agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(120)))
        .http_status_as_error(false)
        .build()
        .new_agent();
    let mut hosts: BTreeMap<String, BTreeMap<u64, Observation>> = BTreeMap::new();
    let mut available: BTreeMap<(String, u64), u64> = BTreeMap::new();
    // (pages_shared, pages_sharing) per host and instant: only their proportion is used.
    let mut ksm: BTreeMap<(String, u64), (u64, u64)> = BTreeMap::new();
    // Each VM's QEMU's merged bytes, made KSM saved once its host's counters are joined.
    let mut merged: BTreeMap<(String, u64, String), u64> = BTreeMap::new();
    let mut vm_values: BTreeMap<(String, u64, String), VmObservation> = BTreeMap::new();
    for (fig, q) in HOST_FIGURES {
        for s in query_range(&agent, base, q, w)? {
            let host = s.label("instance");
            for (ms, v) in s.points()? {
                match fig {
                    Host::MemAvailable => {
                        available.insert((host.clone(), ms), bytes(v));
                        continue;
                    }
                    Host::KsmShared => {
                        ksm.entry((host.clone(), ms)).or_default().0 = bytes(v);
                        continue;
                    }
                    Host::KsmSharing => {
                        ksm.entry((host.clone(), ms)).or_default().1 = bytes(v);
                        continue;
                    }
                    Host::MemTotal => {}
                }
                let o = hosts
                    .entry(host.clone())
                    .or_default()
                    .entry(ms)
                    .or_default();
                o.at_unix_ms = ms;
                o.mem_total_bytes = bytes(v);
            }
        }
    }
    for (fig, q) in VM_FIGURES {
        for s in query_range(&agent, base, q, w)? {
            let (host, domain) = (s.label("instance"), s.label("domain"));
            for (ms, v) in s.points()? {
                let key = (host.clone(), ms, domain.clone());
                if let Vm::KsmMerged = fig {
                    merged.insert(key, bytes(v));
                    continue;
                }
                let o = vm_values.entry(key).or_insert_with(|| VmObservation {
                    name: domain.clone(),
                    ..VmObservation::default()
                });
                let v = Some(bytes(v));
                match fig {
                    Vm::Max => o.max_memory_bytes = v,
                    Vm::Used => o.guest_used_bytes = v,
                    Vm::Legacy => o.guest_used_legacy_bytes = v,
                    Vm::Rss => o.qemu_rss_bytes = v,
                    Vm::KsmMerged => {}
                }
            }
        }
    }
    for ((host, ms, domain), mut v) in vm_values {
        if let Some(m) = merged.get(&(host.clone(), ms, domain)) {
            let (shared, sharing) = ksm.get(&(host.clone(), ms)).copied().unwrap_or((0, 0));
            v.ksm_saved_bytes = Some(ksm_saved(*m, shared, sharing));
        }
        if let Some(o) = hosts.get_mut(&host).and_then(|h| h.get_mut(&ms)) {
            o.vms.push(v);
        }
    }
    Ok(hosts
        .into_iter()
        .map(|(host, at)| {
            let obs = at
                .into_values()
                .filter(|o| o.mem_total_bytes > 0)
                .map(|mut o| {
                    // As `observe`: without MemAvailable, nothing is counted as used.
                    let avail = available.get(&(host.clone(), o.at_unix_ms));
                    let avail = avail.copied().unwrap_or(o.mem_total_bytes);
                    o.host_used_bytes = o.mem_total_bytes.saturating_sub(avail);
                    o
                })
                .collect();
            (host, obs)
        })
        .collect())
}

/// Prometheus values are floats; memwarden's byte figures are integers well below 2^53.
fn bytes(v: f64) -> u64 {
    if v.is_finite() && v > 0.0 {
        v.round() as u64
    } else {
        0
    }
}

#[derive(Debug, Deserialize)]
struct Reply {
    status: String,
    #[serde(default)]
    error: Option<String>,
    #[serde(default, rename = "errorType")]
    error_type: Option<String>,
    #[serde(default)]
    data: Option<Data>,
}

#[derive(Debug, Deserialize)]
struct Data {
    #[serde(rename = "resultType")]
    result_type: String,
    result: Vec<Series>,
}

#[derive(Debug, Deserialize)]
struct Series {
    metric: BTreeMap<String, String>,
    /// `[unix seconds, "value"]` pairs.
    values: Vec<(f64, String)>,
}

impl Series {
    fn label(&self, name: &str) -> String {
        self.metric.get(name).cloned().unwrap_or_default()
    }

    fn points(&self) -> Result<Vec<(u64, f64)>> {
        self.values
            .iter()
            .map(|(t, v)| {
                let v: f64 = v
                    .parse()
                    .with_context(|| format!("value {v:?} of {:?}", self.metric))?;
                Ok(((t * 1000.0).round() as u64, v))
            })
            .collect()
    }
}

/// `GET /api/v1/query_range`, the matrix it returns; errors name the query and what
/// Prometheus said.
fn query_range(agent: &ureq::Agent, base: &str, q: &str, w: Window) -> Result<Vec<Series>> {
    let url = format!("{}/api/v1/query_range", base.trim_end_matches('/'));
    let secs = |ms: u64| format!("{:.3}", ms as f64 / 1000.0);
    let mut resp = agent
        .get(&url)
        .query("query", q)
        .query("start", secs(w.start_ms))
        .query("end", secs(w.end_ms))
        .query("step", format!("{:.3}", w.step.as_secs_f64()))
        .call()
        .with_context(|| format!("asking {url} for {q}"))?;
    let status = resp.status();
    let body = resp
        .body_mut()
        .with_config()
        .limit(1 << 30)
        .read_to_string()
        .with_context(|| format!("reading {url}'s answer for {q}"))?;
    let reply: Reply = serde_json::from_str(&body).with_context(|| {
        let head: String = body.chars().take(200).collect();
        format!("{url} answered {status} for {q}, not Prometheus's API JSON: {head:?}")
    })?;
    if reply.status != "success" {
        bail!(
            "Prometheus refused {q} ({status}, {}): {}",
            reply.error_type.unwrap_or_default(),
            reply.error.unwrap_or_default()
        );
    }
    let data = reply
        .data
        .with_context(|| format!("{url} answered {q} without data"))?;
    if data.result_type != "matrix" {
        bail!(
            "{url} answered {q} with a {}, not a matrix",
            data.result_type
        );
    }
    Ok(data.result)
}
