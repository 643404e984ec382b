//! `memwarden host`, `procs` and `ksm`: the host's memory, read once and explained.

use std::path::Path;

use anyhow::{Context, Result};
use memwarden_analysis::{accounting, ksm, procs};
use memwarden_model::host::HostSample;
use memwarden_model::units::format_bytes;
use memwarden_procfs::{HostReader, ReadOptions};
use serde::Serialize;

use super::{print, print_json};
use crate::cli::{HostArgs, JsonArgs, Lang, ProcSort, ProcsArgs};
use crate::render;

/// The reader for the live host, or for the captured tree under `root`.
pub fn reader(root: Option<&Path>) -> HostReader {
    root.map_or_else(HostReader::live, HostReader::at_root)
}

/// Reads the live host, or the captured tree under `root`.
pub fn read_host(root: Option<&Path>) -> Result<HostSample> {
    reader(root).read_host().context("reading host memory")
}

/// Everything but meminfo: `procs` and `ksm` need processes and KSM files, not meminfo, so a
/// broken meminfo does not stop them.
fn read_without_meminfo(root: Option<&Path>) -> HostSample {
    reader(root).read_host_without_meminfo(ReadOptions::default())
}

#[derive(Serialize)]
struct HostJson<'a> {
    sample: &'a HostSample,
    accounting: &'a accounting::HostAccounting,
    top_processes: &'a procs::ProcTable,
    ksm: &'a ksm::KsmReport,
}

pub fn host(root: Option<&Path>, lang: Lang, a: &HostArgs) -> Result<()> {
    if lang != Lang::En && !a.json {
        anyhow::bail!(
            "the host report is in English only: --lang zh works with `memwarden explain` \
             (or use --json)"
        );
    }
    let s = read_host(root)?;
    let acc = accounting::analyse(&s);
    let top = procs::table(&s, procs::SortBy::Pss, a.top);
    if a.json {
        let k = ksm::report(&s);
        return print_json(&HostJson {
            sample: &s,
            accounting: &acc,
            top_processes: &top,
            ksm: &k,
        });
    }
    print(&render::host::render(&s, &acc, &top))
}

pub fn procs(root: Option<&Path>, a: &ProcsArgs) -> Result<()> {
    let s = read_without_meminfo(root);
    let sort = match a.sort {
        ProcSort::Pss => procs::SortBy::Pss,
        ProcSort::Rss => procs::SortBy::Rss,
        ProcSort::Swap => procs::SortBy::Swap,
    };
    let t = procs::table(&s, sort, a.top);
    if a.json {
        return print_json(&t);
    }
    let tbl = render::procs::process_table(&t, true);
    print(&format!("{tbl}\n{}", render::host::process_errors(&s)))
}

pub fn ksm(root: Option<&Path>, a: &JsonArgs) -> Result<()> {
    let s = read_without_meminfo(root);
    let r = ksm::report(&s);
    if a.json {
        return print_json(&serde_json::json!({ "report": r, "sysfs": s.ksm, "uksm": s.uksm }));
    }
    let mut out = String::new();
    let opt = |v: Option<u64>| v.map_or("-".to_string(), format_bytes);
    if r.available {
        let run = match r.run {
            Some(0) => "0 (stopped)",
            Some(1) => "1 (running)",
            Some(2) => "2 (unmerging)",
            _ => "unknown",
        };
        out.push_str(&format!("KSM run: {run}\n"));
        out.push_str(&format!(
            "  saved (pages_sharing):        {}\n",
            opt(r.saved_bytes)
        ));
        out.push_str(&format!(
            "  kept copies (pages_shared):   {}\n",
            opt(r.shared_bytes)
        ));
        if let Some(p) = r.general_profit_bytes {
            out.push_str(&format!(
                "  general_profit:               {}\n",
                memwarden_model::units::format_signed_bytes(i128::from(p))
            ));
        }
        if let Some(x) = r.sharing_ratio {
            out.push_str(&format!(
                "  sharing ratio:                {x:.2} sites per kept page\n"
            ));
        }
        if let Some(x) = r.unshared_ratio {
            out.push_str(&format!(
                "  unshared/sharing:             {x:.2} (high = scanning finds little)\n"
            ));
        }
    }
    out.push_str(&format!(
        "  Σ per-process merged pages:   {}\n",
        opt(r.processes_merging_bytes)
    ));
    for p in r.processes.iter().take(20) {
        out.push_str(&format!(
            "    pid {:>7} {:<16} {:>10} merged{}\n",
            p.pid,
            p.name,
            format_bytes(p.merging_bytes),
            p.profit_bytes.map_or(String::new(), |b| format!(
                ", profit {}",
                memwarden_model::units::format_signed_bytes(i128::from(b))
            ))
        ));
    }
    if let Some(k) = &s.ksm {
        out.push_str("Settings and counters (/sys/kernel/mm/ksm):\n");
        for (name, value) in &k.files {
            out.push_str(&format!("  {name:<36} {value}\n"));
        }
    }
    if let Some(u) = &s.uksm {
        out.push_str("UKSM (/sys/kernel/mm/uksm):\n");
        for (name, value) in &u.files {
            out.push_str(&format!("  {name:<36} {value}\n"));
        }
    }
    for n in &r.notes {
        out.push_str(&format!("note: {n}\n"));
    }
    print(&out)
}
