//! memwarden's Prometheus exposition: one [`render`] of a sample's [`View`] and the daemon's own
//! health, in the text format 0.0.4 or OpenMetrics 1.0.0, every family declared in [`METRICS`].
//!
//! Nothing is derived here: the view (built once per sample by the daemon's recorder) holds the
//! analyses, so a scrape only writes, and `/metrics` shows what the API and the page show. The
//! daemon owns the counters in [`DaemonHealth`]; they never reset on scrape.

mod host;
mod table;
mod vm;
mod writer;

use std::collections::HashSet;

use memwarden_analysis::view::View;
use memwarden_model::Sample;

pub use table::{lookup, MetricDef, MetricType, METRICS};

/// The exposition format a scraper asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// The Prometheus text format 0.0.4.
    Prometheus,
    /// OpenMetrics 1.0.0.
    OpenMetrics,
}

impl Format {
    /// Chooses by the `Accept` header: OpenMetrics when it is asked for with a quality at least
    /// that of `text/plain` (Prometheus sends it first, q=1), else the text format, which every
    /// scraper reads (no header, `*/*`, `text/plain`).
    pub fn from_accept(accept: Option<&str>) -> Format {
        let (mut om, mut text) = (0.0_f64, 0.0_f64);
        for range in accept.unwrap_or("").split(',') {
            let mut parts = range.split(';').map(str::trim);
            let media = parts.next().unwrap_or("").to_ascii_lowercase();
            let q = parts
                .filter_map(|p| p.strip_prefix("q="))
                .find_map(|v| v.parse::<f64>().ok())
                .unwrap_or(1.0);
            match media.as_str() {
                "application/openmetrics-text" => om = om.max(q),
                "text/plain" | "text/*" | "*/*" => text = text.max(q),
                _ => {}
            }
        }
        if om > 0.0 && om >= text {
            Format::OpenMetrics
        } else {
            Format::Prometheus
        }
    }

    /// The `Content-Type` of a response in this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Prometheus => "text/plain; version=0.0.4; charset=utf-8",
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }
}

/// The daemon's own figures, kept by the daemon across samples (counters never reset).
#[derive(Default, Clone, Debug)]
pub struct DaemonHealth {
    pub samples_total: u64,
    pub sample_errors_total: u64,
    /// When the last sample finished, milliseconds since the Unix epoch; 0 = none yet.
    pub last_sample_unix_ms: u64,
    pub last_sample_duration_seconds: f64,
    /// The daemon's CPU time, user + system.
    pub cpu_seconds_total: f64,
    pub resident_bytes: u64,
    /// What SQLite holds from the allocator (page caches, statements): part of `resident_bytes`.
    pub sqlite_memory_bytes: u64,
    /// VMs listed before and not now by a source that was read (`changes::Change::VmGone`).
    pub vms_gone_total: u64,
    pub store_errors_total: u64,
    /// The history file plus its WAL, bytes (updated after every sample).
    pub store_bytes: u64,
    /// Samples taken but not yet in the store (it refused them: a full disk), kept in memory.
    pub store_backlog_samples: u64,
    /// Samples dropped because the backlog reached its cap: lost from history.
    pub store_backlog_dropped_total: u64,
    /// Whether the last configuration reload (SIGHUP) was accepted; the daemon sets it at start.
    pub config_last_reload_successful: bool,
    /// When the configuration was last loaded (at start, or a SIGHUP accepted), milliseconds
    /// since the Unix epoch; 0 = unknown.
    pub config_last_reload_success_unix_ms: u64,
    /// Whether the balloon controller runs (`[balloon] enabled`), and whether it only plans.
    pub balloon_enabled: bool,
    pub balloon_dry_run: bool,
    /// Balloon targets set: (VM name, direction `grow`/`shrink`, count).
    pub balloon_actions_total: Vec<(String, String, u64)>,
    /// Balloon targets the hypervisor refused: (VM name, count).
    pub balloon_action_errors_total: Vec<(String, u64)>,
    /// Harm seen, by (VM, kind): `memwarden_balloon_guest_harm_total`.
    pub balloon_guest_harm_total: Vec<(String, String, u64)>,
}

/// Writes every series of `view` (a sample and what was derived from it) and `health` in
/// `format`.
pub fn render(view: &View, health: &DaemonHealth, format: Format) -> String {
    let mut s = writer::Series::new();
    host::write(&mut s, view);
    // A VM listed twice (two backends reaching one QEMU) would write every series twice and
    // make Prometheus reject the scrape; the first row is the one kept.
    let mut seen = HashSet::new();
    for v in view.vms() {
        if seen.insert((v.vm.name.as_str(), v.vm.uuid.as_deref())) {
            vm::write(&mut s, &v);
        }
    }
    sample_series(&mut s, view.sample());
    health_series(&mut s, health);
    s.write(format)
}

fn sample_series(s: &mut writer::Series, sample: &Sample) {
    if sample.taken_at_unix_ms > 0 {
        s.add(
            "memwarden_sample_timestamp_seconds",
            &[],
            sample.taken_at_unix_ms as f64 / 1e3,
        );
    }
    let notes = [
        ("host", sample.host.degraded.len()),
        ("vms", sample.degraded.len()),
    ];
    for (scope, n) in notes {
        s.add("memwarden_sample_degraded_notes", &[scope], n as u64);
    }
    for src in &sample.sources {
        s.add("memwarden_source_success", &[&src.name], src.ok);
        s.add(
            "memwarden_source_duration_seconds",
            &[&src.name],
            src.duration_ms as f64 / 1e3,
        );
        if let Some(t) = &src.transport {
            s.add("memwarden_source_info", &[&src.name, t], 1u64);
        }
    }
}

fn health_series(s: &mut writer::Series, h: &DaemonHealth) {
    s.add("memwarden_samples_total", &[], h.samples_total);
    s.add("memwarden_sample_errors_total", &[], h.sample_errors_total);
    if h.last_sample_unix_ms > 0 {
        s.add(
            "memwarden_last_sample_timestamp_seconds",
            &[],
            h.last_sample_unix_ms as f64 / 1e3,
        );
        s.add(
            "memwarden_last_sample_duration_seconds",
            &[],
            h.last_sample_duration_seconds,
        );
    }
    s.add("memwarden_vms_gone_total", &[], h.vms_gone_total);
    s.add("memwarden_store_errors_total", &[], h.store_errors_total);
    s.add(
        "memwarden_store_backlog_samples",
        &[],
        h.store_backlog_samples,
    );
    s.add(
        "memwarden_store_backlog_dropped_total",
        &[],
        h.store_backlog_dropped_total,
    );
    s.add("memwarden_store_bytes", &[], h.store_bytes);
    s.add(
        "memwarden_config_last_reload_successful",
        &[],
        h.config_last_reload_successful,
    );
    if h.config_last_reload_success_unix_ms > 0 {
        s.add(
            "memwarden_config_last_reload_success_timestamp_seconds",
            &[],
            h.config_last_reload_success_unix_ms as f64 / 1e3,
        );
    }
    s.add(
        "memwarden_balloon_controller_enabled",
        &[],
        u64::from(h.balloon_enabled),
    );
    s.add(
        "memwarden_balloon_controller_dry_run",
        &[],
        u64::from(h.balloon_enabled && h.balloon_dry_run),
    );
    for (vm, direction, n) in &h.balloon_actions_total {
        s.add("memwarden_balloon_actions_total", &[vm, direction], *n);
    }
    for (vm, n) in &h.balloon_action_errors_total {
        s.add("memwarden_balloon_action_errors_total", &[vm], *n);
    }
    for (vm, kind, n) in &h.balloon_guest_harm_total {
        s.add("memwarden_balloon_guest_harm_total", &[vm, kind], *n);
    }
    s.add("process_cpu_seconds_total", &[], h.cpu_seconds_total);
    s.add("process_resident_memory_bytes", &[], h.resident_bytes);
    s.add("memwarden_sqlite_memory_bytes", &[], h.sqlite_memory_bytes);
}

#[cfg(test)]
mod tests;
