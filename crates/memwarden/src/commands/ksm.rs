//! `memwarden ksm`: KSM's savings (global and per VM), ksmd's CPU, its settings, and with
//! `--tune` the tuner's plan (written with `--apply`).

use memwarden_model::clock::now_unix_ms;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::{bail, Context, Result};
use memwarden_analysis::ksm::{self, KsmReport, KsmVm, KsmdCpuUse};
use memwarden_collector::Collector;
use memwarden_control::ksm::{apply, KnobResult, Outcome};
use memwarden_model::host::HostSample;
use memwarden_model::units::{format_bytes, format_signed_bytes};
use memwarden_model::Sample;
use memwarden_policy::ksm::{ksm_plan, KsmHistory, KsmPlan};
use memwarden_procfs::HostReader;
use serde::Serialize;

use super::host::reader;

use super::{print, print_json};
use crate::cli::KsmArgs;

#[derive(Serialize)]
struct KsmJson<'a> {
    report: &'a KsmReport,
    sysfs: &'a Option<memwarden_model::host::KsmSysfs>,
    uksm: &'a Option<memwarden_model::host::UksmSysfs>,
    vms: &'a [KsmVm],
    ksmd: Option<KsmdCpuUse>,
    plan: Option<&'a KsmPlan>,
    applied: Option<&'a [KnobResult]>,
    notes: &'a [String],
}

pub fn ksm(root: Option<&Path>, a: &KsmArgs) -> Result<()> {
    let r = reader(root);
    let mut notes = Vec::new();
    let sample = collect(root, a, &mut notes)?;
    let read_ms = sample.taken_at_unix_ms;
    let ksmd = ksmd_use(root, &r, &sample.host, read_ms, a.cpu_window, &mut notes);
    let report = ksm::report(&sample.host);
    let vms = ksm::vms(&sample);
    let plan = if a.tune {
        let (cfg, _) = memwarden_daemon::config::Config::load(a.config.as_deref())?;
        notes.push(format!(
            "the cost rule judges ksmd's CPU against what KSM saves over at least {} s and one \
             full scan: a one-look plan has no such window (memwarden serve with [ksm] tune = \
             true keeps one)",
            cfg.ksm.cost_window_s
        ));
        Some(ksm_plan(&sample, &KsmHistory::default(), &cfg.ksm))
    } else {
        None
    };
    let applied = match (&plan, a.apply) {
        (Some(p), true) => Some(apply(p, &r.sys_root().join("kernel/mm/ksm"))),
        _ => None,
    };
    if a.json {
        print_json(&KsmJson {
            report: &report,
            sysfs: &sample.host.ksm,
            uksm: &sample.host.uksm,
            vms: &vms,
            ksmd,
            plan: plan.as_ref(),
            applied: applied.as_deref(),
            notes: &notes,
        })?;
    } else {
        let mut out = render_report(&report, &sample.host, &vms, ksmd.as_ref());
        if let Some(p) = &plan {
            out.push_str(&render_plan(p, applied.as_deref()));
        }
        for n in report.notes.iter().chain(&notes) {
            let _ = writeln!(out, "note: {n}");
        }
        print(&out)?;
    }
    let refused = applied.iter().flatten().filter(|r| !r.ok()).count();
    if refused > 0 {
        bail!("{refused} KSM setting(s) not taken (see above); the others were written");
    }
    Ok(())
}

/// One sample through the collector: the host without PSS (the plan needs meminfo; the
/// report alone does not, so a broken meminfo does not stop it) and, live and unless
/// `--no-vms`, the VMs with their QEMU processes. A VM source that cannot be set up is a note,
/// not an error: the host is still reported.
fn collect(root: Option<&Path>, a: &KsmArgs, notes: &mut Vec<String>) -> Result<Sample> {
    let host_only = memwarden_collector::Config {
        full: false,
        require_meminfo: a.tune,
        ..memwarden_collector::Config::default()
    };
    let with_vms = (root.is_none() && !a.no_vms)
        .then(|| super::settings::vms(&a.hv, a.config.as_deref(), false))
        .and_then(|v| match v {
            Ok(v) => Some(memwarden_collector::Config {
                require_meminfo: a.tune,
                ..v.collector(true, false)
            }),
            Err(e) => {
                notes.push(format!("VMs not read: {e:#} (--no-vms to skip)"));
                None
            }
        });
    let collector = match with_vms.map(|cfg| Collector::new(cfg, reader(root))) {
        Some(Ok(c)) => c,
        Some(Err(e)) => {
            notes.push(format!(
                "VMs not read: {:#} (--no-vms to skip)",
                anyhow::Error::from(e)
            ));
            Collector::new(host_only, reader(root))?
        }
        None => Collector::new(host_only, reader(root))?,
    };
    let mut collector = collector;
    let sample = collector.collect().context("reading host memory")?;
    notes.extend(sample.degraded.iter().cloned());
    Ok(sample)
}

/// ksmd's CPU: since boot from the sample, and its share over `window` from a second reading.
fn ksmd_use(
    root: Option<&Path>,
    r: &HostReader,
    host: &HostSample,
    read_ms: u64,
    window: std::time::Duration,
    notes: &mut Vec<String>,
) -> Option<KsmdCpuUse> {
    let first = host.ksmd?;
    if root.is_some() || window.is_zero() {
        notes.push(
            "ksmd's CPU share needs two readings: run with --cpu-window (live) or read \
             memwarden_host_ksmd_cpu_seconds_total's rate from `memwarden serve`"
                .into(),
        );
        return Some(ksm::ksmd_cpu(&first, read_ms, None));
    }
    std::thread::sleep(window);
    match r.read_ksmd(Some(first.pid)) {
        Ok(Some(now)) => Some(ksm::ksmd_cpu(&now, now_unix_ms(), Some((&first, read_ms)))),
        Ok(None) => Some(ksm::ksmd_cpu(&first, read_ms, None)),
        Err(e) => {
            notes.push(format!("ksmd's second reading: {}", e.with_cause()));
            Some(ksm::ksmd_cpu(&first, read_ms, None))
        }
    }
}

fn render_report(
    r: &KsmReport,
    host: &HostSample,
    vms: &[KsmVm],
    ksmd: Option<&KsmdCpuUse>,
) -> String {
    let mut out = String::new();
    let opt = |v: Option<u64>| v.map_or("-".to_string(), format_bytes);
    let signed = |b: i64| format_signed_bytes(i128::from(b));
    if r.available {
        let run = match r.run {
            Some(0) => "0 (stopped)",
            Some(1) => "1 (running)",
            Some(2) => "2 (unmerging)",
            _ => "unknown",
        };
        let _ = writeln!(out, "KSM run: {run}");
        let _ = writeln!(
            out,
            "  saved (pages_sharing):        {}",
            opt(r.saved_bytes)
        );
        let _ = writeln!(
            out,
            "  kept copies (pages_shared):   {}",
            opt(r.shared_bytes)
        );
        if let Some(p) = r.general_profit_bytes {
            let _ = writeln!(out, "  general_profit:               {}", signed(p));
        }
        if let Some(x) = r.sharing_ratio {
            let _ = writeln!(
                out,
                "  sharing ratio:                {x:.2} sites per kept page"
            );
        }
        if let Some(x) = r.unshared_ratio {
            let _ = writeln!(
                out,
                "  unshared/sharing:             {x:.2} (high = scanning finds little)"
            );
        }
    }
    if let Some(k) = ksmd {
        let share = k
            .cpu_share
            .map_or("share: needs two readings".to_string(), |s| {
                format!("{:.2} % of a CPU over {:.1} s", s * 100.0, k.window_s)
            });
        let _ = writeln!(
            out,
            "  ksmd CPU (pid {}):             {:.2} s since boot; {share}",
            k.pid, k.cpu_seconds_total
        );
    }
    let _ = writeln!(
        out,
        "  Σ per-process merged pages:   {}",
        opt(r.processes_merging_bytes)
    );
    for p in r.processes.iter().take(20) {
        let _ = writeln!(
            out,
            "    pid {:>7} {:<16} {:>10} merged{}",
            p.pid,
            p.name,
            format_bytes(p.merging_bytes),
            p.profit_bytes
                .map_or(String::new(), |b| format!(", profit {}", signed(b)))
        );
    }
    if !vms.is_empty() {
        let _ = writeln!(out, "Per VM (its QEMU process's ksm_merging_pages):");
        for v in vms {
            let _ = writeln!(
                out,
                "  {:<24} pid {:>7} {:>10} merged, profit {}",
                v.domain,
                v.qemu_pid.map_or("-".into(), |p| p.to_string()),
                opt(v.merging_bytes),
                v.profit_bytes.map_or("-".into(), signed)
            );
        }
    }
    if let Some(k) = &host.ksm {
        out.push_str("Settings and counters (/sys/kernel/mm/ksm):\n");
        for (name, value) in &k.files {
            let _ = writeln!(out, "  {name:<36} {value}");
        }
    }
    if let Some(u) = &host.uksm {
        out.push_str("UKSM (/sys/kernel/mm/uksm):\n");
        for (name, value) in &u.files {
            let _ = writeln!(out, "  {name:<36} {value}");
        }
    }
    out
}

fn render_plan(p: &KsmPlan, applied: Option<&[KnobResult]>) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "Tuner plan: {:?} — {}", p.run, p.reason);
    if let Some(c) = &p.cost {
        let _ = writeln!(
            out,
            "  cost rule: {} — {}",
            if c.pass { "pass" } else { "fail" },
            c.why
        );
    }
    for s in &p.settings {
        let now = s.current.as_deref().unwrap_or("?");
        let change = if s.changes() {
            format!("{now} -> {}", s.value)
        } else {
            format!("{} (unchanged)", s.value)
        };
        let _ = writeln!(out, "  {:<26} {change:<24} {}", s.knob.file(), s.reason);
    }
    match applied {
        None if p.changes().next().is_some() => {
            out.push_str("  (dry run: --apply writes the changed settings)\n");
        }
        None => {}
        Some(results) => {
            for r in results {
                let what = match &r.outcome {
                    Outcome::Written => "written".to_string(),
                    Outcome::Unchanged => continue,
                    Outcome::ReadBack(v) => format!("written, reads back {v}"),
                    Outcome::Refused(e) => format!("refused: {e}"),
                };
                let _ = writeln!(out, "  {} = {}: {what}", r.knob.file(), r.wanted);
            }
        }
    }
    out
}
