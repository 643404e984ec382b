//! The recent past the policy needs, kept small: per VM the guest's cumulative counters (major
//! faults, swap-in, OOM kills, allocation stalls) to turn into rates, and QEMU's RSS to measure
//! what earlier shrinks gave back; per host the figures the oracles average (MOM's `StatAvg`).
//!
//! Built from a slice of samples (the store's or the daemon's last minute), oldest first or not:
//! points are sorted by time. A VM is followed by its UUID when it has one, else by its name.

use std::collections::BTreeMap;

use memwarden_analysis::vm::figures;
use memwarden_model::vm::{VmSample, VmState};
use memwarden_model::Sample;

/// One VM at one past sample.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct VmPoint {
    /// When the sample was taken, ms since the Unix epoch.
    pub taken_at_unix_ms: u64,
    /// When the guest last pushed statistics (host clock, s), else when the VM was read.
    pub stats_at_unix_s: u64,
    /// The guest had statistics at this point (`stats_at_unix_s` is its push, not our read).
    /// A rebooting guest has none for a while: those points are no update, and their read
    /// times can be later than the new kernel's first push.
    pub pushed: bool,
    /// The hypervisor said it crashed (a pvpanic device, libvirt's `crashed`): one crash is
    /// one event, however many samples see it crashed.
    pub crashed: bool,
    pub major_faults: Option<u64>,
    pub minor_faults: Option<u64>,
    pub swap_in_bytes: Option<u64>,
    pub oom_kills: Option<u64>,
    pub alloc_stalls: Option<u64>,
    pub actual_bytes: Option<u64>,
    /// Guest MemFree (`unused`).
    pub unused_bytes: Option<u64>,
    /// Guest use (MemTotal − MemAvailable, balloon excluded): how fast it grows.
    pub used_bytes: Option<u64>,
    /// QEMU's resident memory on the host.
    pub host_rss_bytes: Option<u64>,
}

impl VmPoint {
    pub fn of(vm: &VmSample, taken_at_unix_ms: u64) -> VmPoint {
        let b = &vm.balloon;
        let f = figures(vm);
        VmPoint {
            taken_at_unix_ms,
            stats_at_unix_s: b
                .last_update_unix_s
                .filter(|t| *t > 0)
                .unwrap_or(vm.read_at_unix_s),
            pushed: b.last_update_unix_s.is_some_and(|t| t > 0),
            crashed: vm.state == VmState::Crashed,
            major_faults: b.major_faults,
            minor_faults: b.minor_faults,
            swap_in_bytes: b.swap_in_bytes,
            oom_kills: b.oom_kills,
            alloc_stalls: b.alloc_stalls,
            actual_bytes: b.actual_bytes,
            unused_bytes: b.unused_bytes,
            used_bytes: f.guest_used_bytes,
            host_rss_bytes: f.host_rss_bytes,
        }
    }
}

/// The host at one past sample (bytes).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HostPoint {
    pub taken_at_unix_ms: u64,
    pub mem_total_bytes: Option<u64>,
    pub mem_available_bytes: Option<u64>,
    /// MemFree + Buffers + Cached: what oVirt MOM calls the host's free memory.
    pub mem_free_buffers_cached_bytes: Option<u64>,
}

impl HostPoint {
    pub fn of(sample: &Sample) -> HostPoint {
        let m = &sample.host.meminfo;
        HostPoint {
            taken_at_unix_ms: sample.taken_at_unix_ms,
            mem_total_bytes: m.get("MemTotal"),
            mem_available_bytes: m.get("MemAvailable"),
            mem_free_buffers_cached_bytes: m.get("MemFree").map(|f| {
                f.saturating_add(m.get_or_zero("Buffers"))
                    .saturating_add(m.get_or_zero("Cached"))
            }),
        }
    }
}

/// Guest pressure signals derived from counters, per second; `None` when not computable (no
/// earlier point with older statistics, a counter the guest does not report, or a counter that
/// went backwards — a guest reboot or a wrap, never read as a huge rate).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct GuestRates {
    pub major_faults_per_s: Option<f64>,
    pub swap_in_bytes_per_s: Option<f64>,
    pub alloc_stalls_per_s: Option<f64>,
    /// OOM kills since the earlier point (QEMU ≥ 9 / Linux ≥ 6.12 guests).
    pub oom_kills: Option<u64>,
    /// How fast the guest's use grew, bytes per second, over each of the last two statistics
    /// intervals, the slower of the two (negative: it freed memory); `None` with fewer than
    /// three updates. A guest filling faster than the controller's cycle can follow runs out
    /// between two looks.
    pub used_bytes_per_s: Option<f64>,
    /// Seconds between the two newest recorded samples: the controller's cycle.
    pub cycle_s: Option<f64>,
    /// Seconds between the two statistics updates the rates come from.
    pub over_s: Option<u64>,
    /// How much the guest's use rose between the two newest statistics updates, bytes (0 when
    /// it fell): the burst it has shown it can allocate at once.
    pub used_step_bytes: Option<u64>,
    /// How much QEMU's resident memory rose since the previous sample (not since the previous
    /// statistics update): the guest touching memory it never touched before, seen before its
    /// statistics say so.
    pub host_rss_step_bytes: Option<u64>,
    /// The guest's cumulative counters (faults, swap) went backwards since the earlier update:
    /// its kernel started again (a reboot, a panic with `panic=N`, a crash and restart).
    pub counters_reset: bool,
    /// When the guest pushed the counters that `counters_reset` compared against.
    pub counters_before_unix_s: Option<u64>,
    /// No recorded point has these statistics yet: this is the first look at this update, so
    /// what changed in it (an OOM kill, a reset) is news. False when a cycle that came sooner
    /// than the guest's next push already saw it.
    pub new_update: bool,
}

/// The recent samples, reduced to what the policies read.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct History {
    pub host: Vec<HostPoint>,
    /// Per VM (UUID, else name), sorted by time.
    pub vms: BTreeMap<String, Vec<VmPoint>>,
}

/// How History follows a VM across samples.
pub fn vm_key(vm: &VmSample) -> String {
    key_of(vm.uuid.as_deref(), &vm.name)
}

/// The key of a VM with this UUID (if any) and name.
pub fn key_of(uuid: Option<&str>, name: &str) -> String {
    uuid.map_or_else(|| format!("name:{name}"), str::to_owned)
}

impl History {
    pub fn from_samples(samples: &[Sample]) -> History {
        let mut h = History::default();
        for s in samples {
            h.push(s);
        }
        h
    }

    /// Adds one sample (the daemon calls this after each cycle); keeps points sorted by time.
    pub fn push(&mut self, s: &Sample) {
        self.host.push(HostPoint::of(s));
        self.host.sort_by_key(|p| p.taken_at_unix_ms);
        for vm in &s.vms {
            let points = self.vms.entry(vm_key(vm)).or_default();
            points.push(VmPoint::of(vm, s.taken_at_unix_ms));
            points.sort_by_key(|p| p.taken_at_unix_ms);
        }
    }

    /// Drops points older than `oldest_unix_ms` (the daemon keeps a window).
    pub fn trim(&mut self, oldest_unix_ms: u64) {
        self.host.retain(|p| p.taken_at_unix_ms >= oldest_unix_ms);
        for points in self.vms.values_mut() {
            points.retain(|p| p.taken_at_unix_ms >= oldest_unix_ms);
        }
        self.vms.retain(|_, p| !p.is_empty());
    }

    pub fn points(&self, vm: &VmSample) -> &[VmPoint] {
        self.vms.get(&vm_key(vm)).map_or(&[], Vec::as_slice)
    }

    /// Rates of `vm` now against the newest earlier point whose statistics are older (counters
    /// only move when the guest pushes, so points with the same statistics time say nothing).
    pub fn rates(&self, vm: &VmSample) -> GuestRates {
        let now = VmPoint::of(vm, 0);
        // Read from the host at every sample, so it moves while the guest's statistics lag.
        let host_rss_step_bytes = match (
            self.points(vm).last().and_then(|p| p.host_rss_bytes),
            now.host_rss_bytes,
        ) {
            (Some(a), Some(b)) => Some(b.saturating_sub(a)),
            _ => None,
        };
        let Some(before) = self
            .points(vm)
            .iter()
            .rev()
            .find(|p| p.stats_at_unix_s < now.stats_at_unix_s)
        else {
            return GuestRates {
                host_rss_step_bytes,
                ..GuestRates::default()
            };
        };
        let dt = now.stats_at_unix_s - before.stats_at_unix_s;
        let delta = |a: Option<u64>, b: Option<u64>| match (a, b) {
            (Some(a), Some(b)) => b.checked_sub(a),
            _ => None,
        };
        let per_s = |d: Option<u64>| d.map(|d| d as f64 / dt as f64);
        // A fill that goes on, not a one-off allocation (that is what the floor's margin is
        // for): the slower of the last two statistics intervals.
        let used_per_s = |a: &VmPoint, b: &VmPoint| match (a.used_bytes, b.used_bytes) {
            (Some(x), Some(y)) if b.stats_at_unix_s > a.stats_at_unix_s => {
                Some((y as f64 - x as f64) / (b.stats_at_unix_s - a.stats_at_unix_s) as f64)
            }
            _ => None,
        };
        let earlier = self
            .points(vm)
            .iter()
            .rev()
            .find(|p| p.stats_at_unix_s < before.stats_at_unix_s);
        let sustained = match (
            earlier.and_then(|e| used_per_s(e, before)),
            used_per_s(before, &now),
        ) {
            (Some(x), Some(y)) => Some(x.min(y)),
            _ => None,
        };
        // The spacing of the two newest points is the controller's cycle.
        let cycle_s = match self.points(vm) {
            [.., a, b] if b.taken_at_unix_ms > a.taken_at_unix_ms => {
                Some((b.taken_at_unix_ms - a.taken_at_unix_ms) as f64 / 1000.0)
            }
            _ => None,
        };
        let went_back =
            |a: Option<u64>, b: Option<u64>| matches!((a, b), (Some(a), Some(b)) if b < a);
        // Against the newest earlier value of each counter, not `before`'s: a rebooting guest
        // reports no statistics for a while (QEMU's are all unset until the new kernel's driver
        // pushes), and a point without counters would hide the reset.
        let last = |f: fn(&VmPoint) -> Option<u64>| {
            self.points(vm)
                .iter()
                .rev()
                .filter(|p| p.stats_at_unix_s < now.stats_at_unix_s)
                .find_map(f)
        };
        // When the counters a reset is judged against were pushed: the old kernel's last
        // update (a restart answered after it, from a libvirt event, is this same restart).
        let counters_before_unix_s = self
            .points(vm)
            .iter()
            .rev()
            .filter(|p| p.stats_at_unix_s < now.stats_at_unix_s)
            .find(|p| p.minor_faults.is_some() || p.major_faults.is_some())
            .map(|p| p.stats_at_unix_s);
        let counters_reset = went_back(last(|p| p.minor_faults), now.minor_faults)
            || went_back(last(|p| p.major_faults), now.major_faults)
            || went_back(last(|p| p.swap_in_bytes), now.swap_in_bytes);
        let used_step_bytes = match (before.used_bytes, now.used_bytes) {
            (Some(a), Some(b)) if !counters_reset => Some(b.saturating_sub(a)),
            _ => None,
        };
        let new_update = now.pushed
            && self
                .points(vm)
                .iter()
                .rev()
                .find(|p| p.pushed)
                .is_none_or(|p| p.stats_at_unix_s < now.stats_at_unix_s);
        GuestRates {
            new_update,
            used_step_bytes,
            host_rss_step_bytes,
            counters_reset,
            counters_before_unix_s,
            major_faults_per_s: per_s(delta(before.major_faults, now.major_faults)),
            swap_in_bytes_per_s: per_s(delta(before.swap_in_bytes, now.swap_in_bytes)),
            alloc_stalls_per_s: per_s(delta(before.alloc_stalls, now.alloc_stalls)),
            oom_kills: delta(before.oom_kills, now.oom_kills),
            used_bytes_per_s: sustained,
            cycle_s,
            over_s: Some(dt),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::fixtures::{guest, host_sample};
    use memwarden_model::units::MIB;

    #[test]
    fn rates_come_from_the_guest_s_own_update_times() {
        let mut a = guest("web1", 1024, 600, 600);
        a.balloon.major_faults = Some(1000);
        a.balloon.swap_in_bytes = Some(0);
        let mut b = a.clone();
        b.balloon.last_update_unix_s = a.balloon.last_update_unix_s.map(|t| t + 10);
        b.read_at_unix_s += 10;
        b.balloon.major_faults = Some(3000);
        b.balloon.swap_in_bytes = Some(50 * MIB);
        let h = History::from_samples(&[host_sample(0, vec![a.clone()])]);
        let r = h.rates(&b);
        assert_eq!(r.major_faults_per_s, Some(200.0));
        assert_eq!(r.swap_in_bytes_per_s, Some(5.0 * MIB as f64));
        assert_eq!(r.over_s, Some(10));
        // Same statistics time: nothing to compare with but QEMU's RSS, read by the host.
        assert_eq!(
            h.rates(&a),
            GuestRates {
                host_rss_step_bytes: Some(0),
                ..GuestRates::default()
            }
        );
    }

    #[test]
    fn a_counter_going_backwards_is_no_rate() {
        let mut a = guest("web1", 1024, 600, 600);
        a.balloon.major_faults = Some(u64::MAX - 10);
        let mut b = a.clone();
        b.balloon.last_update_unix_s = a.balloon.last_update_unix_s.map(|t| t + 2);
        b.balloon.major_faults = Some(5);
        let h = History::from_samples(&[host_sample(0, vec![a])]);
        assert_eq!(h.rates(&b).major_faults_per_s, None);
    }

    /// Seen in CI (a 6.12 guest under QEMU 10, sysrq b): while it reboots QEMU has no
    /// statistics, those points carry our read time, and one read a second after the last old
    /// push can be as late as the new kernel's first push. The reset must still be news.
    #[test]
    fn a_reboot_is_news_even_when_the_points_without_statistics_were_read_later() {
        let mut old = guest("web1", 512, 300, 300);
        old.balloon.minor_faults = Some(59_184);
        old.balloon.last_update_unix_s = Some(1_000_230);
        old.read_at_unix_s = 1_000_230;
        let mut gap = Vec::new();
        for t in 1_000_231..=1_000_235 {
            let mut g = guest("web1", 512, 300, 300);
            g.balloon = Default::default();
            g.balloon.actual_bytes = Some(300 * MIB);
            g.read_at_unix_s = t;
            gap.push(host_sample(t * 1000, vec![g]));
        }
        let mut samples = vec![host_sample(1_000_230_000, vec![old.clone()])];
        samples.extend(gap);
        let h = History::from_samples(&samples);
        let mut fresh = old.clone();
        fresh.balloon.minor_faults = Some(519);
        fresh.balloon.last_update_unix_s = Some(1_000_235);
        fresh.read_at_unix_s = 1_000_236;
        let r = h.rates(&fresh);
        assert!(r.counters_reset, "{r:?}");
        assert!(r.new_update, "{r:?}");
        // A point without statistics is never news itself.
        let mut none = fresh.clone();
        none.balloon = Default::default();
        assert!(!h.rates(&none).new_update);
    }

    #[test]
    fn trim_drops_old_points() {
        let g = guest("web1", 1024, 600, 600);
        let mut h = History::from_samples(&[
            host_sample(1_000, vec![g.clone()]),
            host_sample(5_000, vec![g.clone()]),
        ]);
        h.trim(2_000);
        assert_eq!(h.host.len(), 1);
        assert_eq!(h.points(&g).len(), 1);
    }
}
