//! VM commands: vms, dommemstat, stats-period, setmem.

use std::time::Duration;

use anyhow::{bail, Context, Result};

use memwarden_analysis::view::View;
use memwarden_analysis::vm::VmReport;
use memwarden_collector::{source, unread_vms, Collector, VmSource};
use memwarden_hv::tags::LIBVIRT_TAGS;
use memwarden_hv::{Hypervisor, Scope};
use memwarden_model::units::{format_bytes, parse_size, KIB};
use memwarden_model::vm::BalloonStats;
use memwarden_procfs::HostReader;

use super::settings;
use super::{print, print_json};
use crate::cli::{DommemstatArgs, HvArgs, SetmemArgs, StatsPeriodArgs, VmsArgs};
use crate::render;

/// A hypervisor for one action (dommemstat, setmem, stats-period), opened by the same factory
/// as the collector's. An action is one exchange a person waits for, not one VM among many in
/// a sample: its deadline is at least [`ACTION_DEADLINE_FLOOR`], and libvirt is connected at
/// once so that an unreachable libvirtd is the first thing said.
pub(crate) fn backend(hv: &HvArgs) -> Result<Box<dyn Hypervisor + Send>> {
    let vms = settings::vms(hv, None, false)?;
    let source = vms.source.clone();
    let how = source::Open {
        deadline: vms.deadline.max(ACTION_DEADLINE_FLOOR),
        parallelism: vms.parallelism,
        reader: HostReader::live(),
        connect_now: Some(Duration::from_secs(10)),
    };
    let opened = source::open(&source, &how).with_context(|| match &source {
        VmSource::Libvirt { uri, .. } => format!("connecting to {uri} (is libvirtd running?)"),
        _ => "opening the QMP sockets".to_string(),
    })?;
    opened
        .map(|b| b.hv)
        .with_context(|| format!("{}: give --connect or --qmp", settings::describe(&vms)))
}

/// The least time an action (setmem, dommemstat, stats-period) is given.
const ACTION_DEADLINE_FLOOR: Duration = Duration::from_secs(5);

/// Some VMs could not be read: the table shows them; the exit code (2) says so.
#[derive(Debug)]
pub struct PartialRead {
    pub unread: usize,
    pub total: usize,
}

impl std::fmt::Display for PartialRead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} of {} VMs could not be read (see their rows)",
            self.unread, self.total
        )
    }
}

impl std::error::Error for PartialRead {}

pub fn vms(a: &VmsArgs) -> Result<()> {
    let source = settings::vms(&a.hv, a.config.as_deref(), a.monitor_passthrough)?;
    let mut collector = Collector::new(source.collector(false, a.pss), HostReader::live())?;
    let view = View::of(collector.collect()?);
    let sample = view.sample();
    if let Some(why) = sample.degraded.first() {
        bail!("{why}");
    }
    let vms = &sample.vms;
    if a.json {
        let reports: Vec<VmReport> = view.vms().collect();
        print_json(&reports)?;
    } else if vms.is_empty() {
        let empty = match source.source {
            VmSource::Qmp { .. } => {
                format!("no QMP socket matches {}\n", settings::describe(&source))
            }
            VmSource::None => format!("{}: give --connect or --qmp\n", settings::describe(&source)),
            _ => format!("no running VMs at {}\n", settings::describe(&source)),
        };
        print(&empty)?;
    } else {
        print(&format!("{}\n", vm_table(&view)))?;
    }
    let unread = unread_vms(sample);
    if unread > 0 {
        return Err(PartialRead {
            unread,
            total: vms.len(),
        }
        .into());
    }
    Ok(())
}

fn vm_table(view: &View) -> comfy_table::Table {
    let mut t = render::table(
        &[
            "NAME",
            "STATE",
            "ACTUAL",
            "GUEST USED",
            "CACHE",
            "FREE",
            "USABLE",
            "HOST RSS",
            "HOST IDLE",
            "KVM PT",
            "KSM SHARED",
            "FPR/DOO",
            "AGE",
            "DIAGNOSIS",
        ],
        &[2, 3, 4, 5, 6, 7, 8, 9, 10, 11],
    );
    let b = |v: Option<u64>| v.map(format_bytes).unwrap_or_else(|| "-".into());
    for r in view.vms() {
        let (vm, f) = (r.vm, &r.figures);
        let diag = render::vm::diagnosis(&r);
        let state = render::vm::state(vm);
        t.add_row(vec![
            vm.name.clone(),
            state,
            b(f.actual_bytes),
            b(f.guest_used_bytes.or(f.guest_used_legacy_bytes)),
            b(f.guest_cache_bytes),
            b(f.guest_free_bytes),
            b(f.guest_usable_bytes),
            b(f.host_rss_bytes),
            b(f.host_backed_idle_bytes),
            // KVM's page tables for the guest (its cgroup's sec_pagetables; cgroup v2 only).
            b(vm.cgroup.as_ref().and_then(|c| c.sec_pagetables_bytes)),
            b(f.ksm_merged_bytes),
            render::vm::levers(vm),
            f.stats_age_s
                .map(|s| format!("{s}s"))
                .unwrap_or_else(|| "-".into()),
            diag,
        ]);
    }
    t
}

/// `virsh dommemstat`'s text: one `tag value` line per tag virsh knows, in libvirt's order,
/// then a blank line. `all` appends the tags virsh would not print.
pub fn dommemstat_text(stats: &BalloonStats, all: bool) -> String {
    let mut s = String::new();
    let known = |n: &str| LIBVIRT_TAGS.iter().any(|(k, _)| *k == n);
    for t in stats.tags.iter().filter(|t| known(&t.name)) {
        s.push_str(&format!("{} {}\n", t.name, t.value));
    }
    if all {
        for t in stats.tags.iter().filter(|t| !known(&t.name)) {
            s.push_str(&format!("{} {}\n", t.name, t.value));
        }
    }
    s.push('\n');
    s
}

pub fn dommemstat(a: &DommemstatArgs) -> Result<()> {
    let mut hv = backend(&a.hv)?;
    let stats = hv.memory_stats(&a.domain)?;
    print(&dommemstat_text(&stats, a.all))
}

fn scope(live: bool, config: bool) -> Scope {
    Scope {
        live: live || !config,
        config,
    }
}

pub fn stats_period(a: &StatsPeriodArgs) -> Result<()> {
    let (domain, secs) = match (a.all, a.args.as_slice()) {
        (true, [s]) => (None, s),
        (false, [d, s]) => (Some(d.clone()), s),
        (true, _) => bail!("with --all give only SECONDS"),
        (false, _) => bail!("give DOMAIN SECONDS (or --all SECONDS)"),
    };
    let secs: u32 = secs
        .parse()
        .with_context(|| format!("SECONDS must be a whole number, got {secs:?}"))?;
    let mut hv = backend(&a.hv)?;
    let names = match domain {
        Some(d) => vec![d],
        None => hv.names()?,
    };
    let sc = scope(a.live, a.config);
    let mut failed = 0;
    for n in &names {
        match hv.set_stats_period(n, secs, sc) {
            Ok(()) => print(&format!("{n}: stats period {secs} s\n"))?,
            Err(e) if names.len() > 1 => {
                eprintln!("memwarden: {n}: {e}");
                failed += 1;
            }
            Err(e) => return Err(e.into()),
        }
    }
    if failed > 0 {
        bail!("{failed} of {} VMs failed", names.len());
    }
    Ok(())
}

pub fn setmem(a: &SetmemArgs) -> Result<()> {
    let target = parse_size(&a.size, KIB)?;
    let margin = parse_size(&a.margin, KIB)?;
    let mut hv = backend(&a.hv)?;
    if !a.force {
        let vm = hv.sample(&a.domain)?;
        if let Err(why) = memwarden_analysis::vm::target::check_target(&vm, target, margin) {
            bail!("refusing: {why}; use --force to try anyway");
        }
    }
    hv.set_memory(&a.domain, target, scope(a.live, a.config))?;
    print(&format!(
        "{}: balloon target {} ({} KiB)\n",
        a.domain,
        format_bytes(target),
        target / KIB
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use memwarden_hv::tags::libvirt_tag;

    /// Rebuilds the captured `virsh dommemstat` text from its own tags: byte for byte.
    #[test]
    fn dommemstat_text_matches_captured_virsh() {
        let captured = include_str!("../../../hv/tests/data/virsh-dommemstat.txt");
        let tags = captured
            .lines()
            .filter(|l| !l.is_empty())
            .map(|l| {
                let (k, v) = l.split_once(' ').expect("tag value");
                let n = LIBVIRT_TAGS
                    .iter()
                    .position(|(t, _)| *t == k)
                    .expect("known tag");
                libvirt_tag(n as u32, v.parse().expect("number"))
            })
            .collect();
        let mut stats = memwarden_hv::tags::balloon_from_tags(tags);
        assert_eq!(dommemstat_text(&stats, false), captured);
        stats.tags.push(libvirt_tag(42, 7));
        assert_eq!(dommemstat_text(&stats, false), captured);
        assert!(dommemstat_text(&stats, true).ends_with("tag_42 7\n\n"));
    }
}
