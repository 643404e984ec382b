//! `memwarden balance`: the balloon controller's plan for now, or `--reclaim SIZE`.
//!
//! One sample (host: status for every process, no PSS; VMs: the hypervisor's bulk read), the
//! `[balloon]` section of the configuration, and, when the daemon's history is readable, the
//! last few minutes of it (guests' fault and swap-in rates, hysteresis). A dry run unless
//! `--apply`, which applies one cycle through the same actuator the daemon uses.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{bail, Context, Result};
use memwarden_collector::Collector;
use memwarden_control::balloon::{Cycle, CycleReport, Outcome, DEFAULT_KEEP};
use memwarden_model::units::{format_bytes, format_signed_bytes, parse_size, MIB};
use memwarden_model::Sample;
use memwarden_policy::{reclaim, Direction, History, Plan, ReclaimPlan, View};
use memwarden_procfs::HostReader;
use memwarden_store::Store;
use serde::Serialize;

use super::{print, print_json};
use crate::cli::BalanceArgs;
use crate::render::table;

pub fn balance(a: &BalanceArgs) -> Result<()> {
    let vms = super::settings::vms(&a.hv, a.config.as_deref(), false)?;
    let policy = vms.config.balloon.clone();
    let mut collector = Collector::new(vms.collector(true, false), HostReader::live())?;
    let mut sample = collector.collect()?;
    if let Some(why) = sample.degraded.first() {
        bail!("{why}");
    }
    if !a.vms.is_empty() {
        if let Some(missing) = a
            .vms
            .iter()
            .find(|n| !sample.vms.iter().any(|v| &v.name == *n))
        {
            bail!("--vm {missing}: no such running VM");
        }
        sample.vms.retain(|v| a.vms.contains(&v.name));
    }
    let view = View::of(sample);
    let sample = view.sample();
    if let Some(size) = &a.reclaim {
        let want = parse_size(size, MIB).with_context(|| format!("--reclaim {size}"))?;
        let r = reclaim(&view, &policy, want);
        return if a.json {
            print_json(&r)
        } else {
            print(&reclaim_text(&r))
        };
    }
    let (history, history_note) = recent_history(&a.db, sample);
    let mut cycle = Cycle::with_history(Box::new(policy), history);
    // The daemon's controller state (hysteresis, beliefs, harm), so that a one-off cycle
    // decides as the daemon would.
    if let Some(st) = Store::open_read_only(&a.db)
        .ok()
        .and_then(|s| memwarden_daemon::restore_balloon_state(&s, sample.taken_at_unix_ms))
    {
        cycle.restore_state(st);
    }
    let report = cycle.step(
        &view,
        if a.apply {
            Some(
                collector
                    .hypervisor()
                    .context("no hypervisor to apply the plan through")?,
            )
        } else {
            None
        },
    );
    if a.json {
        return print_json(&BalanceJson {
            history: &history_note,
            report: &report,
        });
    }
    print(&plan_text(&report, &history_note))?;
    let not_done = report.applied.iter().filter(|x| !x.done()).count();
    if not_done > 0 {
        bail!(
            "{not_done} of {} balloon change(s) not applied (refused, or the VM is gone)",
            report.applied.len()
        );
    }
    Ok(())
}

#[derive(Serialize)]
struct BalanceJson<'a> {
    /// Where the rates and hysteresis came from, or why there are none.
    history: &'a str,
    #[serde(flatten)]
    report: &'a CycleReport,
}

/// The daemon's last few minutes, when its history can be read (and why not otherwise).
fn recent_history(db: &Path, now: &Sample) -> (History, String) {
    const UNKNOWN: &str =
        "guests' fault and swap-in rates unknown, only their usable shares judged";
    if !db.exists() {
        return (
            History::default(),
            format!(
                "none: no {} (memwarden serve records there); {UNKNOWN}",
                db.display()
            ),
        );
    }
    let keep_ms = u64::try_from(DEFAULT_KEEP.as_millis()).unwrap_or(u64::MAX);
    let since = now.taken_at_unix_ms.saturating_sub(keep_ms);
    let read = Store::open_read_only(db).and_then(|s| s.range(since, now.taken_at_unix_ms));
    match read {
        Ok(samples) if !samples.is_empty() => {
            let note = format!(
                "{} sample(s) of the last {} s from {}",
                samples.len(),
                DEFAULT_KEEP.as_secs(),
                db.display()
            );
            (History::from_samples(&samples), note)
        }
        Ok(_) => (
            History::default(),
            format!(
                "none in {} for the last {} s (is memwarden serve recording?); {UNKNOWN}",
                db.display(),
                DEFAULT_KEEP.as_secs()
            ),
        ),
        Err(e) => (History::default(), format!("none ({e}); {UNKNOWN}")),
    }
}

fn host_line(p: &Plan) -> String {
    format!("{}\n", p.host.why)
}

fn plan_text(r: &CycleReport, history: &str) -> String {
    let p = &r.plan;
    let mut out = host_line(p);
    let _ = writeln!(out, "history: {history}");
    if p.actions.is_empty() {
        out.push_str("\nno balloon change.\n");
    } else {
        let mut t = table(
            &["ACTION", "VM", "FROM", "TO", "HOST GAIN", "REASON"],
            &[2, 3, 4],
        );
        for a in &p.actions {
            t.add_row(vec![
                match a.direction {
                    Direction::Grow => "grow",
                    Direction::Shrink => "shrink",
                }
                .to_string(),
                a.vm.clone(),
                format_bytes(a.from_bytes),
                format_bytes(a.target_bytes),
                format_signed_bytes(i128::from(a.expected_host_gain_bytes)),
                a.reason.clone(),
            ]);
        }
        let _ = writeln!(out, "\n{t}");
    }
    if p.unmet_need_bytes > 0 {
        let _ = writeln!(
            out,
            "unmet: {} of host need no guest can safely give",
            format_bytes(p.unmet_need_bytes)
        );
    }
    for m in &p.measured {
        let _ = writeln!(
            out,
            "measured: {}'s shrink of {} gave the host {} (QEMU RSS, {} s later)",
            m.vm,
            format_bytes(m.balloon_bytes),
            format_signed_bytes(i128::from(m.host_gain_bytes)),
            m.after_s
        );
    }
    for s in &p.skipped {
        let _ = writeln!(out, "left alone: {}: {}", s.vm, s.reason);
    }
    if r.dry_run {
        if !p.actions.is_empty() {
            out.push_str("\ndry run: nothing changed (--apply applies it).\n");
        }
    } else {
        for x in &r.applied {
            let _ = match &x.outcome {
                Outcome::Applied => writeln!(
                    out,
                    "applied: {} → {}",
                    x.action.vm,
                    format_bytes(x.action.target_bytes)
                ),
                Outcome::Gone(e) => writeln!(out, "gone: {}: {e}", x.action.vm),
                Outcome::Refused(e) => writeln!(out, "refused: {}: {e}", x.action.vm),
            };
        }
    }
    out
}

fn reclaim_text(r: &ReclaimPlan) -> String {
    let mut out = format!("{}\n", r.summary);
    if !r.parts.is_empty() {
        let mut t = table(
            &["VM", "FROM", "TO", "HOST GAIN", "CYCLES", "WHY"],
            &[1, 2, 3, 4],
        );
        for p in &r.parts {
            t.add_row(vec![
                p.vm.clone(),
                format_bytes(p.from_bytes),
                format_bytes(p.target_bytes),
                format_bytes(p.host_gain_bytes),
                p.cycles.to_string(),
                p.reason.clone(),
            ]);
        }
        let _ = writeln!(out, "\n{t}");
    }
    for s in &r.skipped {
        let _ = writeln!(out, "left out: {}: {}", s.vm, s.reason);
    }
    out
}
