//! `memwarden host` and `procs`: the host's memory, read once and explained.

use std::path::Path;

use anyhow::Result;
use memwarden_analysis::procs;
use memwarden_analysis::view::View;
use memwarden_procfs::HostReader;
use serde::Serialize;

use super::{print, print_json};
use crate::cli::{HostArgs, Lang, ProcSort, ProcsArgs};
use crate::render;

/// The reader for the live host, or for the captured tree under `root`.
pub fn reader(root: Option<&Path>) -> HostReader {
    root.map_or_else(HostReader::live, HostReader::at_root)
}

/// `host --json`: the view in the shape `/api/v1/latest` serves (accounting, KSM, VMs,
/// carried, the sample as read with its sources), and the process table the text shows.
#[derive(Serialize)]
pub struct HostJson<'a> {
    #[serde(flatten)]
    pub view: &'a View,
    pub top_processes: &'a procs::ProcTable,
}

pub fn host(root: Option<&Path>, lang: Lang, a: &HostArgs) -> Result<()> {
    if lang != Lang::En && !a.json {
        anyhow::bail!(
            "the host report is in English only: --lang zh works with `memwarden explain` \
             (or use --json)"
        );
    }
    // Through the collector, as every sampling command: the same reader, deadline and sources.
    let view = View::of(super::sample::collect(root, None)?);
    let s = &view.sample().host;
    let top = procs::table(s, procs::SortBy::Pss, a.top);
    if a.json {
        return print_json(&HostJson {
            view: &view,
            top_processes: &top,
        });
    }
    print(&render::host::render(s, &view.accounting, &top))
}

pub fn procs(root: Option<&Path>, a: &ProcsArgs) -> Result<()> {
    // Through the collector, with PSS; the table needs no meminfo, so a broken one does not
    // stop it (the sample says so in `degraded`).
    let cfg = memwarden_collector::Config {
        require_meminfo: false,
        ..memwarden_collector::Config::default()
    };
    let sample = memwarden_collector::Collector::new(cfg, reader(root))?.collect()?;
    let s = &sample.host;
    let sort = match a.sort {
        ProcSort::Pss => procs::SortBy::Pss,
        ProcSort::Rss => procs::SortBy::Rss,
        ProcSort::Swap => procs::SortBy::Swap,
    };
    let t = procs::table(s, sort, a.top);
    if a.json {
        return print_json(&t);
    }
    let tbl = render::procs::process_table(&t, true);
    print(&format!("{tbl}\n{}", render::host::process_errors(s)))
}
