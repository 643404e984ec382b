//! `plan`: the RAM allocation ratio this host (or, from Prometheus, each host and the fleet)
//! could carry, from recorded history. The formula is `memwarden_analysis::overcommit`'s.

mod prometheus;

use std::fmt::Write as _;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use memwarden_analysis::overcommit::{self, Observation, Plan, PlanConfig, StoredSample};
use memwarden_model::units::{format_bytes, format_duration};
use memwarden_store::Store;
use serde::Serialize;

use memwarden_model::clock::now_unix_ms;

use super::daemon::iso;
use super::{print, print_json};
use crate::cli::{DbArgs, PlanArgs};

/// Without `--since`: a week, enough for weekly cycles to show and still quick to read.
const DEFAULT_SINCE: Duration = Duration::from_secs(7 * 86_400);

/// One plan with what it was computed from.
#[derive(Debug, Serialize)]
struct Answer {
    /// The history file, or `instance` for a Prometheus host, or `fleet`.
    source: String,
    /// How far apart the samples were (median), ms: the resolution the answer came from.
    spacing_ms: Option<u64>,
    plan: Plan,
}

pub fn plan(a: &PlanArgs) -> Result<()> {
    if !(a.percentile > 0.0 && a.percentile < 100.0) {
        bail!(
            "--percentile {} is not a risk: give one above 0 and below 100 (99 = p99)",
            a.percentile
        );
    }
    let cfg = PlanConfig {
        percentile: a.percentile,
        min_span_ms: ms(a.min_span),
    };
    let answers = match &a.prometheus {
        Some(url) => from_prometheus(url, a, &cfg)?,
        None => {
            let obs = read_store(&a.db)?;
            vec![answer(a.db.db.display().to_string(), &obs, &cfg)]
        }
    };
    if a.json {
        return print_json(&answers);
    }
    let mut out = String::new();
    for (i, ans) in answers.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        render(&mut out, ans);
    }
    print(&out)
}

/// The window's observations from the store, decoded as [`StoredSample`]s (the planner's part
/// of each sample only: a week reads in a fraction of the time whole samples take).
fn read_store(db: &DbArgs) -> Result<Vec<Observation>> {
    let since = db.since.unwrap_or(DEFAULT_SINCE);
    let from = now_unix_ms().saturating_sub(ms(since));
    let store = Store::open_read_only(&db.db)
        .with_context(|| format!("opening the history {}", db.db.display()))?;
    let samples = store
        .range_as(from, u64::MAX, |s: &StoredSample| s.taken_at_unix_ms)
        .with_context(|| format!("reading the history {}", db.db.display()))?;
    Ok(samples.into_iter().map(StoredSample::observe).collect())
}

fn from_prometheus(url: &str, a: &PlanArgs, cfg: &PlanConfig) -> Result<Vec<Answer>> {
    let since = a.db.since.unwrap_or(DEFAULT_SINCE);
    let end_ms = now_unix_ms();
    // Prometheus refuses more than 11,000 points per series: stay under 10,000.
    let step = a
        .step
        .unwrap_or_else(|| (since / 10_000).max(Duration::from_secs(10)));
    let w = prometheus::Window {
        start_ms: end_ms.saturating_sub(ms(since)),
        end_ms,
        step,
    };
    let hosts = prometheus::observations(url, w)?;
    let mut out: Vec<Answer> = hosts
        .iter()
        .map(|(host, obs)| answer(host.clone(), obs, cfg))
        .collect();
    // Overall, even for one host: a caller reads the fleet's answer in one place.
    out.push(answer("fleet".into(), &overcommit::merge(&hosts), cfg));
    Ok(out)
}

fn answer(source: String, obs: &[Observation], cfg: &PlanConfig) -> Answer {
    let mut gaps: Vec<u64> = obs
        .windows(2)
        .map(|w| w[1].at_unix_ms.saturating_sub(w[0].at_unix_ms))
        .collect();
    gaps.sort_unstable();
    Answer {
        source,
        spacing_ms: gaps.get(gaps.len() / 2).copied(),
        plan: overcommit::plan(obs, cfg),
    }
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn render(out: &mut String, a: &Answer) {
    let p = &a.plan;
    let pc = format!("p{}", p.percentile);
    let window = match (p.from_unix_ms, p.until_unix_ms) {
        (Some(f), Some(u)) => format!("{} to {}", iso(f), iso(u)),
        _ => "nothing recorded".into(),
    };
    let spacing = a.spacing_ms.map_or(String::new(), |s| {
        format!(", one every {}", format_duration(Duration::from_millis(s)))
    });
    let _ = writeln!(out, "{}: {window}", a.source);
    let _ = writeln!(
        out,
        "  {} samples{spacing}; {} with VM statistics",
        p.samples, p.samples_counted
    );
    let b = |v: Option<u64>| v.map_or("-".into(), format_bytes);
    let row = |out: &mut String, k: &str, v: String| {
        let _ = writeln!(out, "  {k:<46} {v}");
    };
    row(out, "MemTotal", b(p.mem_total_bytes));
    row(
        out,
        &format!("host's own use, {pc} (QEMU excluded)"),
        b(p.host_own_bytes),
    );
    row(
        out,
        "usable by guests (MemTotal − own use)",
        b(p.usable_bytes),
    );
    let committed = p
        .committed_ratio
        .map_or(String::new(), |r| format!("  (committed ratio {r:.2})"));
    row(
        out,
        "promised now (Σ max memory, every VM)",
        format!("{}{committed}", b(p.promised_now_bytes)),
    );
    if let Some(m) = &p.at_percentile {
        let _ = writeln!(
            out,
            "  at the {pc} of demand/promised ({}, {} VM{} counted):",
            iso(m.at_unix_ms),
            m.vms,
            if m.vms == 1 { "" } else { "s" }
        );
        for (k, v) in [
            ("  promised (Σ max memory)", m.promised_bytes),
            (
                "  guest used (Σ MemTotal − MemAvailable)",
                m.guest_used_bytes,
            ),
            ("  QEMU RSS", m.qemu_rss_bytes),
            (
                "  QEMU overhead (RSS − guest-resident)",
                m.qemu_overhead_bytes,
            ),
            ("  KSM saved", m.ksm_saved_bytes),
        ] {
            row(out, k, format_bytes(v));
        }
        row(
            out,
            "  demand (used + overhead − KSM)",
            format!(
                "{}  ({:.3} of promised)",
                format_bytes(m.demand_bytes),
                m.fraction
            ),
        );
    }
    for v in p.vms.iter().filter(|v| v.counted < v.samples) {
        let _ = writeln!(
            out,
            "  {}: left out of {} of its {} samples (no balloon statistics, max memory or QEMU RSS)",
            v.name,
            v.samples - v.counted,
            v.samples
        );
    }
    for n in &p.notes {
        let _ = writeln!(out, "  {n}");
    }
    match p.ratio {
        Some(r) => {
            let reserved = p.host_own_bytes.map_or(String::new(), |h| {
                format!(" with reserved_host_memory_mb = {}", h.div_ceil(1 << 20))
            });
            let _ = writeln!(
                out,
                "  ram_allocation_ratio ≤ {r:.2}{reserved}  (risk: {pc}, time-weighted, of {} samples over {})",
                p.samples_counted,
                span(p)
            );
            if p.committed_ratio.is_some_and(|c| c > r) {
                let _ = writeln!(out, "  the host is already committed beyond that ratio");
            }
        }
        None => {
            let _ = writeln!(out, "  no ratio: see above");
        }
    }
}

fn span(p: &Plan) -> String {
    let ms = p.until_unix_ms.unwrap_or(0) - p.from_unix_ms.unwrap_or(0);
    format_duration(Duration::from_secs(ms / 1000))
}
