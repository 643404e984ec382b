//! The leak finder: which memory grows steadily over a run of samples, most worrying first.
//! Pure: samples in, judgements out.
//!
//! Candidates are only what can leak: kernel components (SUnreclaim, or Slab on kernels without
//! it; VmallocUsed, PageTables, SecPageTables, KernelStack, Percpu, Shmem, AnonPages, Unevictable,
//! the black hole), each process name's PSS (RSS where PSS was not read) and each VM's guest used
//! and QEMU RSS. MemFree, Cached and the like move all the time and leak nothing.
//!
//! A series is reported when it grew by more than a floor (`min_growth_bytes` and
//! `min_growth_fraction` of its level) and by more than `noise_factor` times the scatter around
//! its fit, and its growth is either
//! * **steady**: a line fits well (`r2 ≥ min_r2`) and later values are mostly higher (Kendall's
//!   tau ≥ `min_steadiness`) — a leak; or
//! * **one step**: two flat levels fit far better than a line (`step_ratio`) — something
//!   allocated once (a cache filled, a VM started). Reported as [`Shape::Step`] with when it
//!   happened and always ranked after every steady grower: it is worth a look, not an alarm,
//!   unless it repeats.
//!
//! Noise that wanders around a level fails the fit, the steadiness or the noise test.

mod fit;
mod next;

use memwarden_model::Sample;
use serde::{Deserialize, Serialize};

use crate::series::{self, Filter, Series, SeriesKey};

/// What leaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LeakKind {
    /// A host-wide meminfo component or the black hole.
    Kernel,
    Process,
    Vm,
}

/// How it grew.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Shape {
    /// Steadily, all along: the signature of a leak.
    Steady,
    /// Once, from one level to another.
    Step,
}

/// One series that grows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Leak {
    pub kind: LeakKind,
    /// The series (see [`crate::series`] for names): `meminfo.SUnreclaim`,
    /// `process.pss{process="java"}`, `vm.guest_used{vm="web1"}`.
    pub what: SeriesKey,
    pub shape: Shape,
    /// First and last sample times of the series, ms since the epoch.
    pub from_unix_ms: u64,
    pub until_unix_ms: u64,
    /// Level at the start and at the end (on the fitted line for a steady grower; the two
    /// levels for a step), bytes.
    pub start_bytes: i64,
    pub end_bytes: i64,
    pub growth_bytes: i64,
    /// Slope of the least-squares line, bytes per hour.
    pub slope_bytes_per_hour: f64,
    /// How well that line fits, 0..=1.
    pub r2: f64,
    /// Kendall's tau of the values in time order: 1 when every later value is higher.
    pub steadiness: f64,
    /// For a step: when the new level began.
    #[serde(default)]
    pub step_at_unix_ms: Option<u64>,
    pub points: usize,
    /// Where to look next, in plain words.
    pub look_next: String,
}

/// Thresholds; the defaults suit samples every 10 s to every hour over an hour or more.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LeakConfig {
    /// Growth below this is never reported, bytes.
    pub min_growth_bytes: u64,
    /// Nor below this fraction of the series' mean level.
    pub min_growth_fraction: f64,
    /// Growth must exceed this many standard deviations of the residuals around the fit.
    pub noise_factor: f64,
    /// A steady grower's line must explain this share of the variance.
    pub min_r2: f64,
    /// And its Kendall's tau must reach this.
    pub min_steadiness: f64,
    /// Two levels are taken for a step when their squared error is below this fraction of the
    /// line's.
    pub step_ratio: f64,
    pub min_points: usize,
    /// The series must span at least this long, ms.
    pub min_span_ms: u64,
}

impl Default for LeakConfig {
    fn default() -> Self {
        LeakConfig {
            min_growth_bytes: 1 << 20,
            min_growth_fraction: 0.01,
            noise_factor: 3.0,
            min_r2: 0.6,
            min_steadiness: 0.4,
            step_ratio: 0.5,
            min_points: 6,
            min_span_ms: 30 * 60_000,
        }
    }
}

/// meminfo components that can leak.
const KERNEL_FIELDS: &[&str] = &[
    "meminfo.SUnreclaim",
    "meminfo.VmallocUsed",
    "meminfo.PageTables",
    "meminfo.SecPageTables",
    "meminfo.KernelStack",
    "meminfo.Percpu",
    "meminfo.Shmem",
    "meminfo.AnonPages",
    "meminfo.Unevictable",
    "host.black_hole",
    "host.zram",
    "host.socket_buffers",
    "host.dmabuf",
    "host.zfs_arc",
];

/// Every growing series in `samples`, most worrying first: steady growers before steps, then by
/// slope weighted by how well the line fits.
pub fn find(samples: &[Sample], cfg: &LeakConfig) -> Vec<Leak> {
    find_in(series::series(samples, &filter()), cfg)
}

/// The series [`find`] judges (feed a [`series::SeriesBuilder`] with it to fold a long history
/// read one sample at a time, then call [`find_in`]).
pub fn filter() -> Filter {
    Filter {
        fields: [
            "meminfo.",
            "host.black_hole",
            "host.zram",
            "host.socket_buffers",
            "host.dmabuf",
            "host.zfs_arc",
            "process.",
            "vm.guest_used",
            "vm.qemu_rss",
        ]
        .map(String::from)
        .to_vec(),
        vm: None,
    }
}

/// [`find`] on series already built with [`filter`].
pub fn find_in(all: Vec<series::Series>, cfg: &LeakConfig) -> Vec<Leak> {
    let mut leaks: Vec<Leak> = candidates(&all)
        .filter_map(|(kind, s)| judge(kind, s, cfg))
        .collect();
    leaks.sort_by(|a, b| {
        a.shape
            .cmp(&b.shape)
            .then(score(b).total_cmp(&score(a)))
            .then_with(|| a.what.cmp(&b.what))
    });
    part_before_aggregate(&mut leaks);
    leaks
}

/// AnonPages is the sum of every process's anonymous memory (a VM's QEMU among them): when one
/// process or QEMU grew by at least half as much, that one is the answer and goes first (the aggregate also carries whatever
/// else grew meanwhile, so it would otherwise outrank the part that explains it).
fn part_before_aggregate(leaks: &mut Vec<Leak>) {
    let Some(i) = leaks
        .iter()
        .position(|l| l.what.name == "meminfo.AnonPages")
    else {
        return;
    };
    let agg = &leaks[i];
    // A process, or a VM's QEMU (its RSS is anonymous memory of the host too).
    let part = |l: &Leak| {
        l.kind == LeakKind::Process || (l.kind == LeakKind::Vm && l.what.name == "vm.qemu_rss")
    };
    let j = leaks.iter().enumerate().skip(i + 1).find_map(|(j, l)| {
        (part(l) && l.shape == agg.shape && l.growth_bytes.saturating_mul(2) >= agg.growth_bytes)
            .then_some(j)
    });
    if let Some(j) = j {
        let part = leaks.remove(j);
        leaks.insert(i, part);
    }
}

fn score(l: &Leak) -> f64 {
    l.slope_bytes_per_hour * l.r2.max(0.0) * l.steadiness.max(0.0)
}

/// The series that can leak, with their kind.
fn candidates(all: &[Series]) -> impl Iterator<Item = (LeakKind, &Series)> {
    let has = |name: &str| all.iter().any(|s| s.key.name == name);
    let slab = if has("meminfo.SUnreclaim") {
        ""
    } else {
        "meminfo.Slab"
    };
    let vms: Vec<&str> = all.iter().filter_map(|s| s.key.vm.as_deref()).collect();
    let pss_of: Vec<&str> = all
        .iter()
        .filter(|s| s.key.name == "process.pss")
        .filter_map(|s| s.key.process.as_deref())
        .collect();
    all.iter().filter_map(move |s| {
        let k = &s.key;
        let kind = match k.name.as_str() {
            n if KERNEL_FIELDS.contains(&n) || n == slab => LeakKind::Kernel,
            "vm.guest_used" | "vm.qemu_rss" => LeakKind::Vm,
            // A VM's QEMU is judged as the VM (vm.qemu_rss), not twice.
            "process.pss" | "process.rss"
                if k.process.as_deref().is_some_and(|p| vms.contains(&p)) =>
            {
                return None
            }
            "process.pss" => LeakKind::Process,
            "process.rss" if !k.process.as_deref().is_some_and(|p| pss_of.contains(&p)) => {
                LeakKind::Process
            }
            _ => return None,
        };
        Some((kind, s))
    })
}

fn judge(kind: LeakKind, s: &Series, cfg: &LeakConfig) -> Option<Leak> {
    let (first, last) = (s.points.first()?.0, s.points.last()?.0);
    if s.points.len() < cfg.min_points || last.saturating_sub(first) < cfg.min_span_ms {
        return None;
    }
    let t: Vec<f64> = s
        .points
        .iter()
        .map(|(ms, _)| (ms - first) as f64 / 3_600_000.0)
        .collect();
    let v: Vec<f64> = s.points.iter().map(|(_, x)| *x).collect();
    let line = fit::line(&t, &v)?;
    let span_h = t.last().copied().unwrap_or(0.0);
    let level = v.iter().map(|x| x.abs()).sum::<f64>() / v.len() as f64;
    let floor = (cfg.min_growth_bytes as f64).max(cfg.min_growth_fraction * level);
    let n = v.len() as f64;
    let steadiness = fit::kendall_tau(&v);

    let step = fit::best_step(&v).filter(|st| st.sse < cfg.step_ratio * line.sse);
    let (shape, start, end, noise, step_at) = match step {
        Some(st) => (
            Shape::Step,
            st.before,
            st.after,
            (st.sse / n).sqrt(),
            Some(s.points[st.at].0),
        ),
        None => {
            if line.r2 < cfg.min_r2 || steadiness < cfg.min_steadiness {
                return None;
            }
            let start = line.intercept;
            (
                Shape::Steady,
                start,
                start + line.slope_per_hour * span_h,
                (line.sse / n).sqrt(),
                None,
            )
        }
    };
    let growth = end - start;
    if growth < floor || growth < cfg.noise_factor * noise {
        return None;
    }
    Some(Leak {
        kind,
        what: s.key.clone(),
        shape,
        from_unix_ms: first,
        until_unix_ms: last,
        start_bytes: start.round() as i64,
        end_bytes: end.round() as i64,
        growth_bytes: growth.round() as i64,
        slope_bytes_per_hour: line.slope_per_hour,
        r2: line.r2,
        steadiness,
        step_at_unix_ms: step_at,
        points: s.points.len(),
        look_next: next::look_next(&s.key, shape),
    })
}

#[cfg(test)]
mod tests;
