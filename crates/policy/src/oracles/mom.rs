//! oVirt MOM's stock balloon rules (`doc/balloon.rules`, MOM 0.6; collectors
//! `mom/Collectors/HostMemory.py` and `GuestBalloon.py`, libvirt interface), re-stated:
//!
//! - host free = MemFree + Buffers + Cached, over MemTotal (`host_free_percent`), averaged over
//!   the recent samples (`StatAvg`);
//! - below `pressure_threshold` (20 %) every guest is shrunk, else every ballooned guest grown;
//! - shrink: the guest's wanted free share scales with host pressure
//!   (`min_guest_free_percent × host_free / pressure_threshold`, or `host_free − 5 %` once host
//!   free ≤ `pressure_critical`, which forces the guest to swap); the floor is
//!   max(`balloon_min` = `<min_guarantee>` or 0, guest used + wanted free × current), where
//!   used = StatAvg(balloon_cur) − StatAvg(mem_unused) (MemFree: page cache counts as used);
//!   the new size is current × (1 − 5 %), raised to the floor, set only if not above current;
//! - grow: current × (1 + 5 %), raised to used + 20 % × current, capped at the maximum;
//! - a change of at most 0.25 % of current is not made.
//!
//! There is no guest-pressure rule: under host pressure MOM only shrinks.

use memwarden_model::units::format_bytes;
use memwarden_model::vm::VmSample;
use memwarden_model::Sample;
use serde::{Deserialize, Serialize};

use super::{action, unseen};
use crate::decision::{Plan, Skip};
use crate::history::{History, HostPoint};
use crate::host::{HostLevel, HostView};
use crate::state::State;
use crate::Controller;

/// MOM's constants, with their stock values as defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MomRules {
    /// `pressure_threshold`: host free share below which guests are shrunk. 0.20.
    pub pressure_threshold: f64,
    /// `pressure_critical`: host free share at or below which guests are pushed into swap. 0.05.
    pub pressure_critical: f64,
    /// `min_guest_free_percent`: free share an unconstrained guest keeps. 0.20.
    pub min_guest_free_percent: f64,
    /// `max_balloon_change_percent`: largest change per cycle, share of current. 0.05.
    pub max_balloon_change_percent: f64,
    /// `min_balloon_change_percent`: smallest change worth making, share of current. 0.0025.
    pub min_balloon_change_percent: f64,
}

impl Default for MomRules {
    fn default() -> Self {
        MomRules {
            pressure_threshold: 0.20,
            pressure_critical: 0.05,
            min_guest_free_percent: 0.20,
            max_balloon_change_percent: 0.05,
            min_balloon_change_percent: 0.0025,
        }
    }
}

impl Controller for MomRules {
    fn name(&self) -> &'static str {
        "mom"
    }
    /// MOM reads the raw statistics, not memwarden's view of them.
    fn plan(&self, view: &crate::View, history: &History, _state: &State) -> Plan {
        plan(view.sample(), history, self)
    }
}

fn mean(values: impl Iterator<Item = Option<u64>>) -> Option<f64> {
    let v: Vec<f64> = values.flatten().map(|x| x as f64).collect();
    (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
}

/// One MOM cycle over `sample`, with `history` as StatAvg's window.
pub fn plan(sample: &Sample, history: &History, r: &MomRules) -> Plan {
    let now = HostPoint::of(sample);
    let window = || history.host.iter().chain(std::iter::once(&now));
    let free = mean(window().map(|p| p.mem_free_buffers_cached_bytes));
    let total = now.mem_total_bytes;
    let mut p = Plan {
        taken_at_unix_ms: sample.taken_at_unix_ms,
        actions: Vec::new(),
        skipped: Vec::new(),
        host: HostView {
            mem_total_bytes: total,
            mem_available_bytes: now.mem_available_bytes,
            target_bytes: total.map_or(0, |t| (t as f64 * r.pressure_threshold) as u64),
            dead_band_bytes: 0,
            psi_some_avg10_pct: None,
            psi_full_avg10_pct: None,
            level: HostLevel::Unknown,
            need_bytes: 0,
            surplus_bytes: 0,
            why: "MOM: host MemTotal or MemFree unknown".into(),
        },
        measured: Vec::new(),
        unmet_need_bytes: 0,
        harm: Vec::new(),
        exposure: Vec::new(),
    };
    let (Some(free), Some(total)) = (free, total.filter(|t| *t > 0)) else {
        return p;
    };
    let host_free = free / total as f64;
    let shrink = host_free < r.pressure_threshold;
    p.host.level = if shrink {
        HostLevel::Pressure
    } else {
        HostLevel::Comfortable
    };
    p.host.why = format!(
        "MOM: host free (MemFree+Buffers+Cached) {:.1}% {} pressure_threshold {:.0}%",
        host_free * 100.0,
        if shrink { "<" } else { "≥" },
        r.pressure_threshold * 100.0
    );
    for vm in &sample.vms {
        if let Some(s) = unseen(vm) {
            p.skipped.push(s);
            continue;
        }
        let points = history.points(vm);
        let avg = |f: fn(&crate::history::VmPoint) -> Option<u64>, cur: Option<u64>| {
            mean(points.iter().map(f).chain(std::iter::once(cur)))
        };
        let (Some(cur_avg), Some(unused_avg)) = (
            avg(|p| p.actual_bytes, vm.balloon.actual_bytes),
            avg(|p| p.unused_bytes, vm.balloon.unused_bytes),
        ) else {
            p.skipped.push(Skip {
                vm: vm.name.clone(),
                uuid: vm.uuid.clone(),
                reason: "MOM: no guest memory statistics (mem_unused)".into(),
            });
            continue;
        };
        let used = cur_avg - unused_avg;
        if let Some((target, why)) = guest_rule(vm, used, host_free, shrink, r) {
            let from = vm.balloon.actual_bytes.unwrap_or(0);
            p.actions
                .push(action(vm, from, target, format!("{}: {why}", p.host.why)));
        }
    }
    p
}

/// MOM's shrink_guest / grow_guest for one guest: the new balloon size and why, or `None`.
fn guest_rule(
    vm: &VmSample,
    used: f64,
    host_free: f64,
    shrink: bool,
    r: &MomRules,
) -> Option<(u64, String)> {
    let cur = vm.balloon.actual_bytes? as f64;
    let max = vm.max_memory_bytes? as f64;
    let balloon_min = vm.config.min_guarantee_bytes.unwrap_or(0) as f64;
    let big_enough = |size: f64| (size - cur).abs() > r.min_balloon_change_percent * cur;
    if shrink {
        let guest_free = if host_free <= r.pressure_critical {
            host_free - 0.05
        } else {
            r.min_guest_free_percent * host_free / r.pressure_threshold
        };
        let floor = balloon_min.max(used + guest_free * cur);
        let size = (cur * (1.0 - r.max_balloon_change_percent)).max(floor);
        (size <= cur && big_enough(size)).then(|| {
            (
                size as u64,
                format!(
                    "shrink by up to {:.0}% to {} (floor {}: used {} + {:.1}% free)",
                    r.max_balloon_change_percent * 100.0,
                    format_bytes(size as u64),
                    format_bytes(floor.max(0.0) as u64),
                    format_bytes(used.max(0.0) as u64),
                    guest_free * 100.0
                ),
            )
        })
    } else {
        if cur >= max {
            return None;
        }
        let floor = balloon_min.max(used + r.min_guest_free_percent * cur);
        let size = (cur * (1.0 + r.max_balloon_change_percent))
            .max(floor)
            .min(max);
        big_enough(size).then(|| {
            (
                size as u64,
                format!(
                    "grow by {:.0}% (at least to used + {:.0}%) to {}",
                    r.max_balloon_change_percent * 100.0,
                    r.min_guest_free_percent * 100.0,
                    format_bytes(size as u64)
                ),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decision::Direction;
    use crate::tests::fixtures::{guest, host_with};
    use memwarden_model::units::MIB;

    /// Host free (MemFree + Cached in the fixture = MemAvailable) 10 % of 16 GiB: under the 20 %
    /// threshold; a 512 MiB guest with 400 MiB free is shrunk by 5 %.
    #[test]
    fn under_pressure_every_guest_shrinks_five_percent() {
        let s = host_with(0, 1638, vec![guest("a", 512, 512, 400)]);
        let p = plan(&s, &History::default(), &MomRules::default());
        assert_eq!(p.host.level, HostLevel::Pressure);
        assert_eq!(p.actions.len(), 1);
        let a = &p.actions[0];
        assert_eq!(a.direction, Direction::Shrink);
        assert_eq!(a.target_bytes, (512.0 * 0.95 * MIB as f64) as u64);
    }

    /// The floor is used + a free share scaled by host pressure: host free 10 % of a 20 %
    /// threshold → 10 % of current; used = 512 − 60 = 452 MiB → floor 503.2 MiB, above the
    /// 5 % step (486.4 MiB), so the floor wins.
    #[test]
    fn the_floor_scales_with_host_pressure() {
        let s = host_with(0, 1638, vec![guest("a", 512, 512, 60)]);
        let p = plan(&s, &History::default(), &MomRules::default());
        let host_free = (819 + 819) as f64 / (16.0 * 1024.0);
        let want = 452.0 + 0.20 * host_free / 0.20 * 512.0;
        let got = p.actions[0].target_bytes as f64 / MIB as f64;
        assert!((got - want).abs() < 0.01, "{got} vs {want}");
    }

    /// Critical host pressure makes the wanted free share negative: the guest is pushed below
    /// its use (into swap), as the stock rules say.
    #[test]
    fn critical_pressure_pushes_below_use() {
        let s = host_with(0, 400, vec![guest("a", 512, 512, 10)]);
        let p = plan(&s, &History::default(), &MomRules::default());
        let used = (512 - 10) as f64 * MIB as f64;
        assert!(p.actions[0].target_bytes < used as u64, "{:?}", p.actions);
    }

    /// Without host pressure every ballooned guest grows 5 %, at least to used + 20 %, capped
    /// at max; one at max is left alone; a change ≤ 0.25 % is not made.
    #[test]
    fn without_pressure_ballooned_guests_grow() {
        let s = host_with(
            0,
            8000,
            vec![
                guest("a", 1024, 512, 400),
                guest("b", 1024, 1024, 400),
                guest("c", 1024, 1023, 900),
                guest("d", 1024, 400, 10),
            ],
        );
        let p = plan(&s, &History::default(), &MomRules::default());
        let t: Vec<_> = p
            .actions
            .iter()
            .map(|a| (a.vm.as_str(), a.target_bytes / MIB))
            .collect();
        // a: 512 × 1.05 = 537.6; c: 1023 → 1024 is 0.1 %: too small; d: used 390 + 80 = 470.
        assert_eq!(t, [("a", 537), ("d", 470)]);
    }

    /// StatAvg: the host's free memory is averaged over the window.
    #[test]
    fn host_free_is_averaged_over_history() {
        let g = guest("a", 512, 512, 400);
        let h = History::from_samples(&[host_with(0, 8000, vec![g.clone()])]);
        // Now 1638 MiB (10 %), average with 8000 → ~29 %: not under pressure.
        let p = plan(&host_with(10_000, 1638, vec![g]), &h, &MomRules::default());
        assert_eq!(p.host.level, HostLevel::Comfortable);
    }
}
