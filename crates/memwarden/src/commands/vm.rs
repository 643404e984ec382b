//! VM commands: vms, dommemstat, stats-period, setmem.

use anyhow::{bail, Context, Result};
use serde::Serialize;

use memwarden_analysis::vm::{diagnose, figures, Finding, VmFigures};
use memwarden_hv::tags::LIBVIRT_TAGS;
use memwarden_hv::{Hypervisor, LibvirtBackend, QmpBackend, Scope};
use memwarden_model::units::{format_bytes, parse_size, KIB};
use memwarden_model::vm::{BalloonStats, VmSample};

use super::{print, print_json};
use crate::cli::{DommemstatArgs, HvArgs, SetmemArgs, StatsPeriodArgs, VmsArgs};
use crate::render;

pub(crate) fn backend(hv: &HvArgs, passthrough: bool) -> Result<Box<dyn Hypervisor>> {
    if !hv.qmp.is_empty() {
        return Ok(Box::new(QmpBackend::new(&hv.qmp)?));
    }
    let mut b = LibvirtBackend::connect(&hv.connect)
        .with_context(|| format!("connecting to {} (is libvirtd running?)", hv.connect))?;
    b.monitor_passthrough = passthrough;
    Ok(Box::new(b))
}

/// One VM in `memwarden vms --json`.
#[derive(Debug, Serialize)]
struct VmReport<'a> {
    #[serde(flatten)]
    vm: &'a VmSample,
    figures: VmFigures,
    diagnosis: Vec<Finding>,
}

pub fn vms(a: &VmsArgs) -> Result<()> {
    let mut hv = backend(&a.hv, a.monitor_passthrough)?;
    let vms = hv.list()?;
    if a.json {
        let reports: Vec<VmReport> = vms
            .iter()
            .map(|vm| VmReport {
                vm,
                figures: figures(vm),
                diagnosis: diagnose(vm),
            })
            .collect();
        return print_json(&reports);
    }
    if vms.is_empty() {
        return print("no running VMs\n");
    }
    let mut t = render::table(
        &[
            "NAME",
            "ACTUAL",
            "GUEST USED",
            "CACHE",
            "FREE",
            "USABLE",
            "HOST RSS",
            "KSM SHARED",
            "AGE",
            "DIAGNOSIS",
        ],
        &[1, 2, 3, 4, 5, 6, 7, 8],
    );
    let b = |v: Option<u64>| v.map(format_bytes).unwrap_or_else(|| "-".into());
    for vm in &vms {
        let f = figures(vm);
        let d = diagnose(vm);
        let diag = if d.is_empty() {
            "ok".to_string()
        } else {
            d.iter()
                .map(|f| f.text.as_str())
                .collect::<Vec<_>>()
                .join("; ")
        };
        t.add_row(vec![
            vm.name.clone(),
            b(f.actual_bytes),
            b(f.guest_used_bytes.or(f.guest_used_legacy_bytes)),
            b(f.guest_cache_bytes),
            b(f.guest_free_bytes),
            b(f.guest_usable_bytes),
            b(f.host_rss_bytes),
            b(f.ksm_merged_bytes),
            f.stats_age_s
                .map(|s| format!("{s}s"))
                .unwrap_or_else(|| "-".into()),
            diag,
        ]);
    }
    print(&format!("{t}\n"))
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
    let mut hv = backend(&a.hv, false)?;
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
    let mut hv = backend(&a.hv, false)?;
    let names = match domain {
        Some(d) => vec![d],
        None => hv.names()?,
    };
    let sc = scope(a.live, a.config);
    let mut failed = 0;
    for n in &names {
        match hv.set_stats_period(n, secs, sc) {
            Ok(()) => println!("{n}: stats period {secs} s"),
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
    let mut hv = backend(&a.hv, false)?;
    if !a.force {
        let vm = hv.sample(&a.domain)?;
        if let Err(why) = memwarden_analysis::vm::target::check_target(&vm, target, margin) {
            bail!("refusing: {why}; use --force to try anyway");
        }
    }
    hv.set_memory(&a.domain, target, scope(a.live, a.config))?;
    println!(
        "{}: balloon target {} ({} KiB)",
        a.domain,
        format_bytes(target),
        target / KIB
    );
    Ok(())
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
        let mut stats = memwarden_hv::tags::balloon_from_tags(tags, None);
        assert_eq!(dommemstat_text(&stats, false), captured);
        stats.tags.push(libvirt_tag(42, 7));
        assert_eq!(dommemstat_text(&stats, false), captured);
        assert!(dommemstat_text(&stats, true).ends_with("tag_42 7\n\n"));
    }
}
