//! Named numeric series from a sample: the one vocabulary the history CLI, the JSON API and the
//! leak finder share.
//!
//! Names: `meminfo.<Key>` (every meminfo line as printed: bytes, or a count for unit-less
//! lines such as `HugePages_Total`), `host.black_hole`, `host.lru.<part>` (the LRU
//! decomposition's parts), `host.zram`, `host.socket_buffers`, `host.dmabuf`, `host.zfs_arc` (consumers no
//! meminfo field counts, raw sizes), `host.ksm_saved`, `host.ksm_merging`, `host.ksmd_cpu_seconds` (ksmd's CPU time since
//! boot, a counter), `psi.some.avg10`,
//! `psi.full.avg10` (percent), `vm.*{vm=NAME}` and `process.rss`/`process.pss{process=NAME}`.
//! Everything is derived on read from the raw sample, so history recorded long ago gets
//! today's derivations.

use std::collections::BTreeMap;
use std::fmt;

use memwarden_model::host::ProcessMem;
use memwarden_model::Sample;
use serde::{Deserialize, Serialize};

use crate::{accounting, ksm, vm};

/// What a series is: a name and, for per-VM or per-process series, a label.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct SeriesKey {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vm: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process: Option<String>,
}

impl SeriesKey {
    fn host(name: impl Into<String>) -> SeriesKey {
        SeriesKey {
            name: name.into(),
            vm: None,
            process: None,
        }
    }
}

/// `name`, `name{vm="web1"}` or `name{process="nginx"}` (quotes and backslashes escaped).
impl fmt::Display for SeriesKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)?;
        let label = match (&self.vm, &self.process) {
            (Some(v), _) => Some(("vm", v)),
            (None, Some(p)) => Some(("process", p)),
            (None, None) => None,
        };
        if let Some((k, v)) = label {
            let v = v.replace('\\', "\\\\").replace('"', "\\\"");
            write!(f, "{{{k}=\"{v}\"}}")?;
        }
        Ok(())
    }
}

/// One value of one series in one sample.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Point {
    pub key: SeriesKey,
    pub value: f64,
}

/// Every point the sample yields, in key order.
pub fn points(sample: &Sample) -> Vec<Point> {
    let mut out: BTreeMap<SeriesKey, f64> = BTreeMap::new();
    let host = &sample.host;
    for e in &host.meminfo.entries {
        out.insert(
            SeriesKey::host(format!("meminfo.{}", e.key)),
            e.value as f64,
        );
    }
    let acc = accounting::analyse(host);
    if let Some(x) = acc.black_hole_bytes {
        out.insert(SeriesKey::host("host.black_hole"), x as f64);
    }
    // The first decomposition is the LRU one (the black hole's own).
    if let Some(lru) = acc.decompositions.first() {
        for p in &lru.parts {
            out.insert(
                SeriesKey::host(format!("host.lru.{}", slug(&p.label))),
                p.bytes as f64,
            );
        }
    }
    consumer_points(host, &mut out);
    let k = ksm::report(host);
    if let Some(v) = k.saved_bytes {
        out.insert(SeriesKey::host("host.ksm_saved"), v as f64);
    }
    if let Some(v) = k.processes_merging_bytes {
        out.insert(SeriesKey::host("host.ksm_merging"), v as f64);
    }
    if let Some(k) = &host.ksmd {
        // A counter since boot: what KSM costs is its rate (a share of one CPU), which a
        // reader takes between two points.
        out.insert(
            SeriesKey::host("host.ksmd_cpu_seconds"),
            k.total_ms() as f64 / 1e3,
        );
    }
    if let Some(psi) = &host.psi {
        out.insert(SeriesKey::host("psi.some.avg10"), psi.some.avg10);
        if let Some(full) = &psi.full {
            out.insert(SeriesKey::host("psi.full.avg10"), full.avg10);
        }
    }
    for v in &sample.vms {
        vm_points(v, &mut out);
    }
    process_points(sample, &mut out);
    out.into_iter()
        .map(|(key, value)| Point { key, value })
        .collect()
}

/// `host.zram` (Σ mem_used_total), `host.socket_buffers` (charged, bytes), `host.dmabuf`
/// (Σ sizes), `host.zfs_arc` (arcstats size): the raw size of each consumer, whether the
/// accounting subtracts it or not.
fn consumer_points(host: &memwarden_model::host::HostSample, out: &mut BTreeMap<SeriesKey, f64>) {
    if let Some(devs) = &host.zram {
        let b: u64 = devs
            .iter()
            .map(|d| d.mem_used_total_bytes)
            .fold(0, u64::saturating_add);
        out.insert(SeriesKey::host("host.zram"), b as f64);
    }
    if let Some((b, _)) = accounting::consumers::socket_buffer_bytes(host) {
        out.insert(SeriesKey::host("host.socket_buffers"), b as f64);
    }
    if let Some(d) = &host.dmabuf {
        out.insert(SeriesKey::host("host.dmabuf"), d.total_bytes() as f64);
    }
    if let Some(size) = host.zfs.as_ref().and_then(|z| z.arc("size")) {
        out.insert(SeriesKey::host("host.zfs_arc"), size as f64);
    }
}

fn vm_points(v: &memwarden_model::vm::VmSample, out: &mut BTreeMap<SeriesKey, f64>) {
    let f = vm::figures(v);
    let b = &v.balloon;
    let figures = [
        ("vm.balloon_actual", f.actual_bytes),
        ("vm.guest_used", f.guest_used_bytes),
        ("vm.guest_cache", f.guest_cache_bytes),
        ("vm.usable", f.guest_usable_bytes),
        ("vm.unused", f.guest_free_bytes),
        ("vm.qemu_rss", f.host_rss_bytes),
        ("vm.qemu_pss", f.host_pss_bytes),
        ("vm.swap_in", b.swap_in_bytes),
        ("vm.swap_out", b.swap_out_bytes),
        ("vm.major_faults", b.major_faults),
    ];
    for (name, value) in figures {
        if let Some(value) = value {
            let key = SeriesKey {
                name: name.into(),
                vm: Some(v.name.clone()),
                process: None,
            };
            out.insert(key, value as f64);
        }
    }
}

/// RSS and PSS per process name, summed over processes of the same name; a VM's QEMU process
/// is named after its VM (joined by pid), so "which VM" reads directly.
fn process_points(sample: &Sample, out: &mut BTreeMap<SeriesKey, f64>) {
    let vm_of_pid: BTreeMap<u32, &str> = sample
        .vms
        .iter()
        .filter_map(|v| {
            Some((
                v.qemu_pid.or(v.host.as_ref().map(|p| p.pid))?,
                v.name.as_str(),
            ))
        })
        .collect();
    let host_pids: std::collections::BTreeSet<u32> =
        sample.host.processes.iter().map(|p| p.pid).collect();
    // QEMU processes the host scan missed (another pid namespace, raced) still count, once.
    let vm_only = sample
        .vms
        .iter()
        .filter_map(|v| v.host.as_ref())
        .filter(|p| !host_pids.contains(&p.pid));
    let mut sums: BTreeMap<(&str, &str), f64> = BTreeMap::new();
    for p in sample.host.processes.iter().chain(vm_only) {
        let label = vm_of_pid.get(&p.pid).copied().unwrap_or(&p.name);
        if let Some(rss) = rss(p) {
            *sums.entry(("process.rss", label)).or_default() += rss as f64;
        }
        if let Some(sm) = &p.smaps {
            *sums.entry(("process.pss", label)).or_default() += sm.pss as f64;
        }
    }
    for ((name, label), value) in sums {
        let key = SeriesKey {
            name: name.into(),
            vm: None,
            process: Some(label.to_owned()),
        };
        out.insert(key, value);
    }
}

/// smaps_rollup's Rss, else status VmRSS.
fn rss(p: &ProcessMem) -> Option<u64> {
    p.smaps.as_ref().map(|s| s.rss).or(p.status.vm_rss)
}

/// A decomposition label as a name part: `vmalloc (incl. stacks)` → `vmalloc`,
/// `per-CPU free pages` → `per-CPU_free_pages`.
fn slug(label: &str) -> String {
    let head = label.split(" (").next().unwrap_or(label).trim();
    head.replace([' ', ','], "_")
}

/// Which series [`series`] returns.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Filter {
    /// Series names or name prefixes (`meminfo.`, `vm.guest_used`); empty means all.
    pub fields: Vec<String>,
    /// Only series of this VM: its `vm.*` series and its QEMU process's. Host-wide series are
    /// left out.
    pub vm: Option<String>,
}

impl Filter {
    pub fn matches(&self, key: &SeriesKey) -> bool {
        let field = self.fields.is_empty() || self.fields.iter().any(|f| key.name.starts_with(f));
        let vm = match &self.vm {
            None => true,
            Some(v) => key.vm.as_ref() == Some(v) || key.process.as_ref() == Some(v),
        };
        field && vm
    }
}

/// One series over time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Series {
    pub key: SeriesKey,
    /// `(taken_at_unix_ms, value)`, oldest first.
    pub points: Vec<(u64, f64)>,
}

/// The series of `samples` that `filter` selects, in key order; a series has a point for each
/// sample that yields it.
pub fn series(samples: &[Sample], filter: &Filter) -> Vec<Series> {
    let mut b = SeriesBuilder::new(filter.clone());
    for s in samples {
        b.push(s);
    }
    b.finish()
}

/// [`series`] built one sample at a time, in any order: a long history read from the store
/// is folded into the points it yields, never held as whole samples (a sample with its process
/// table is ~100 times its selected points).
#[derive(Debug, Default)]
pub struct SeriesBuilder {
    filter: Filter,
    by_key: BTreeMap<SeriesKey, Vec<(u64, f64)>>,
}

impl SeriesBuilder {
    pub fn new(filter: Filter) -> SeriesBuilder {
        SeriesBuilder {
            filter,
            by_key: BTreeMap::new(),
        }
    }

    pub fn push(&mut self, s: &Sample) {
        for p in points(s) {
            if self.filter.matches(&p.key) {
                self.by_key
                    .entry(p.key)
                    .or_default()
                    .push((s.taken_at_unix_ms, p.value));
            }
        }
    }

    /// The series, in key order, each oldest first.
    pub fn finish(self) -> Vec<Series> {
        self.by_key
            .into_iter()
            .map(|(key, mut points)| {
                // Stable: two samples of one moment keep the order they were pushed in.
                points.sort_by_key(|(t, _)| *t);
                points.shrink_to_fit();
                Series { key, points }
            })
            .collect()
    }
}

#[cfg(test)]
#[path = "series_tests.rs"]
mod tests;
