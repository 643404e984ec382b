//! One guest as the policy sees it: whether it may be touched at all (fail closed: every reason
//! not to is a skip in plain words), its floor and ceiling, its pressure, how much of it is idle,
//! and what shrinking it would really give the host.

use memwarden_analysis::vm::target::floor;
use memwarden_analysis::vm::{checks, FindingKind, VmReport};
use memwarden_model::units::format_bytes;
use memwarden_model::vm::{ReadStatus, VmState};

use crate::config::Config;
use crate::history::{GuestRates, History};
use crate::state::VmRecord;

/// A guest the policy may act on, with the figures its actions are computed from (bytes).
#[derive(Debug, Clone, PartialEq)]
pub struct GuestView {
    pub name: String,
    pub uuid: Option<String>,
    pub actual_bytes: u64,
    pub max_bytes: u64,
    /// The lowest safe balloon target: `target::floor` (use + kernel reserve + margin), and
    /// never below `<min_guarantee>`.
    pub floor_bytes: u64,
    /// The margin the floor keeps above the guest's use: [`margin_for`].
    pub margin_bytes: u64,
    /// The largest rise in use between two statistics updates the guest has shown (recorded,
    /// or just now), bytes.
    pub burst_seen_bytes: u64,
    /// Guest use, balloon excluded (MemTotal − MemAvailable, less a deflate-on-oom balloon).
    pub used_bytes: u64,
    /// Guest MemAvailable.
    pub usable_bytes: u64,
    /// usable / (used + usable): the share of the guest's own memory it could still use.
    pub usable_share: f64,
    pub cache_bytes: u64,
    pub host_rss_bytes: Option<u64>,
    /// `figures().host_backed_idle_bytes`: guest memory QEMU backs that the guest holds free or
    /// as cache (an upper bound: QEMU's own memory is inside RSS).
    pub host_idle_bytes: Option<u64>,
    pub free_page_reporting: bool,
    pub deflate_on_oom: bool,
    pub rates: GuestRates,
    /// Why the guest is under pressure; `None` when it is not.
    pub pressure: Option<String>,
    /// How much more the guest is expected to use before a growth asked for now and the next
    /// cycle's could land: its fill rate × (lookahead cycles × the cycle + the statistics'
    /// age); 0 when its use is not growing or there is no history to tell.
    pub projected_fill_bytes: u64,
    /// How far it could shrink and keep its usable share at the high watermark, with its
    /// projected fill counted as used.
    pub idle_bytes: u64,
    pub share: u32,
}

impl GuestView {
    /// How much to grow a guest under pressure: back up to the high watermark, at least the
    /// minimum change (a guest swapping with a fine share still gets something).
    /// A filling guest is grown for the use it is heading to (its projected fill), not the
    /// use it reported.
    pub fn grow_wanted(&self, cfg: &Config) -> u64 {
        (self.to_high_watermark(cfg).max(0.0) as u64).max(cfg.min_change_bytes)
    }

    /// The guest's own memory (used + usable, balloon excluded).
    fn total_bytes(&self) -> f64 {
        self.used_bytes.saturating_add(self.usable_bytes) as f64
    }

    /// Usable once the projected fill is used: what the controller must judge by.
    fn usable_ahead_bytes(&self) -> f64 {
        self.usable_bytes as f64 - self.projected_fill_bytes as f64
    }

    /// The balloon change that puts the usable share ahead at the high watermark: positive,
    /// bytes to give; negative, bytes idle. (A change of x moves usable and total by x.)
    fn to_high_watermark(&self, cfg: &Config) -> f64 {
        let h = cfg.guest_usable_high_share;
        (h * self.total_bytes() - self.usable_ahead_bytes()) / (1.0 - h)
    }

    /// What a balloon can take back from the host: the guest memory QEMU backs that the guest
    /// holds free or as cache (`HOST IDLE` in `memwarden vms`: with free page reporting on,
    /// the guest has already returned its free pages and only its cache counts), less QEMU's
    /// own resident memory (`qemu_overhead_bytes`), which is inside RSS too.
    pub fn resident_idle_bytes(&self, cfg: &Config) -> Option<u64> {
        let rss = self.host_rss_bytes?;
        let beyond_use = rss
            .saturating_sub(self.used_bytes)
            .saturating_sub(cfg.qemu_overhead_bytes);
        Some(self.host_idle_bytes?.min(beyond_use))
    }
}

/// The largest change of one guest in one cycle, by direction.
pub fn step_limit(cfg: &Config, max_bytes: u64, grow: bool) -> u64 {
    let (bytes, share) = if grow {
        (cfg.max_grow_step_bytes, cfg.max_grow_step_share)
    } else {
        (cfg.max_shrink_step_bytes, cfg.max_shrink_step_share)
    };
    bytes.min((max_bytes as f64 * share) as u64)
}

/// Findings that make a guest's figures unusable for any decision.
const DOUBT: [FindingKind; 8] = [
    FindingKind::NotRead,
    FindingKind::Paused,
    FindingKind::NoBalloonDevice,
    FindingKind::PollingOff,
    FindingKind::StaleStats,
    FindingKind::GuestDriverAbsent,
    FindingKind::UnsetValues,
    FindingKind::Inconsistent,
];

/// The margin a guest's floor keeps above its use: `margin_bytes`, more for a guest without
/// deflate-on-oom (its OOM killer, not its balloon, answers an allocation that outruns the
/// controller), at least `margin_burst_factor` × the largest burst it has shown, plus what harm
/// has added.
pub fn margin_for(
    cfg: &Config,
    deflate_on_oom: bool,
    burst_seen_bytes: u64,
    harm_bytes: u64,
) -> u64 {
    let base = if deflate_on_oom {
        cfg.margin_bytes as f64
    } else {
        cfg.margin_bytes as f64 * cfg.margin_without_deflate_on_oom_factor
    };
    let burst = burst_seen_bytes as f64 * cfg.margin_burst_factor;
    (base.max(burst).min(u64::MAX as f64 / 4.0) as u64).saturating_add(harm_bytes)
}

/// Judges `vm` with no memory of it: see [`judge_with`].
pub fn judge(vm: &VmReport, history: &History, cfg: &Config) -> Result<GuestView, String> {
    judge_with(vm, history, cfg, None)
}

/// Judges `vm` by the figures and findings of the sample's view: a view to act on, or why it
/// is left alone. `record` is what the controller remembers of it (its bursts and harm raise
/// its floor).
pub fn judge_with(
    report: &VmReport,
    history: &History,
    cfg: &Config,
    record: Option<&VmRecord>,
) -> Result<GuestView, String> {
    let vm = report.vm;
    if cfg.is_manual(&vm.name) {
        return Err("listed in `manual`: its balloon is set by hand".into());
    }
    if vm.read.status != ReadStatus::Ok {
        let why = vm.read.reason.as_deref().unwrap_or("no reason given");
        return Err(format!("not read ({}): {why}", vm.read.status.as_str()));
    }
    match &vm.state {
        VmState::Running => {}
        VmState::Paused | VmState::Suspended => {
            return Err("paused: its guest can neither report nor answer the balloon".into())
        }
        other => return Err(format!("not running ({other:?})")),
    }
    let f = &report.figures;
    if vm.config.hugepages || f.host_hugetlb_bytes.is_some_and(|h| h > 0) {
        return Err(
            "hugepage-backed: ballooned pages stay reserved in the hugetlbfs pool, the host \
             gains nothing"
                .into(),
        );
    }
    if vm.config.locked {
        return Err("memory locked (<locked/>): the host cannot take its pages back".into());
    }
    // The most basic cause first (polling off explains numbers that no longer add up).
    if let Some(d) = DOUBT
        .iter()
        .find_map(|k| report.diagnosis.iter().find(|d| d.kind == *k))
    {
        return Err(d.text.clone());
    }
    let (Some(max), Some(actual)) = (vm.max_memory_bytes, f.actual_bytes) else {
        return Err("maximum memory or balloon size unknown: no ceiling to hold it to".into());
    };
    let (Some(used), Some(usable)) = (f.guest_used_bytes, f.guest_usable_bytes) else {
        return Err(
            "no `usable` (MemAvailable, Linux ≥ 4.16 guests): its pressure cannot be judged \
             (MemFree counts page cache as used)"
                .into(),
        );
    };
    let total = used.saturating_add(usable);
    if total == 0 {
        return Err("reports no memory at all".into());
    }
    let rates = history.rates(vm);
    let deflate_on_oom = checks::deflate_on_oom(vm);
    let burst_seen_bytes = record
        .map_or(0, |r| r.largest_burst_bytes)
        .max(rates.used_step_bytes.unwrap_or(0))
        // A lying guest's "burst" can only raise its own floor, up to its maximum.
        .min(max);
    let margin_bytes = margin_for(
        cfg,
        deflate_on_oom,
        burst_seen_bytes,
        record.map_or(0, |r| r.harm_margin_bytes),
    );
    let Some(base_floor) = floor(vm, margin_bytes) else {
        return Err("reports no memory statistics to set a floor from".into());
    };
    let floor_bytes = base_floor.max(vm.config.min_guarantee_bytes.unwrap_or(0));
    let usable_share = usable as f64 / total as f64;
    let projected_fill_bytes = projected_fill(&rates, f.stats_age_s, cfg);
    let mut view = GuestView {
        name: vm.name.clone(),
        uuid: vm.uuid.clone(),
        actual_bytes: actual,
        max_bytes: max,
        floor_bytes,
        margin_bytes,
        burst_seen_bytes,
        used_bytes: used,
        usable_bytes: usable,
        usable_share,
        cache_bytes: f.guest_cache_bytes.unwrap_or(0),
        host_rss_bytes: f.host_rss_bytes,
        host_idle_bytes: f.host_backed_idle_bytes,
        free_page_reporting: vm.device.free_page_reporting == Some(true),
        deflate_on_oom,
        rates,
        pressure: None,
        projected_fill_bytes,
        idle_bytes: 0,
        share: cfg.share(&vm.name),
    };
    view.idle_bytes = (-view.to_high_watermark(cfg)).max(0.0) as u64;
    view.pressure = pressure(&view, cfg);
    Ok(view)
}

/// What a guest whose use grows is expected to use more before the controller can help it
/// again. A guest's figures are untrusted: a rate from a counter that went backwards or from
/// one statistics update is already refused by `History::rates`, and whatever a lying guest
/// gains by it is bounded by its maximum and the grow step.
fn projected_fill(rates: &GuestRates, stats_age_s: Option<u64>, cfg: &Config) -> u64 {
    // A NaN rate is no fill (filtered out with the non-positive ones).
    let (Some(rate), Some(cycle)) = (rates.used_bytes_per_s.filter(|r| *r > 0.0), rates.cycle_s)
    else {
        return 0;
    };
    let ahead_s = cfg.guest_fill_lookahead_cycles * cycle + stats_age_s.unwrap_or(0) as f64;
    (rate * ahead_s).min(u64::MAX as f64 / 2.0) as u64
}

/// Why the guest is under pressure, or `None`.
fn pressure(v: &GuestView, cfg: &Config) -> Option<String> {
    let mut why = Vec::new();
    let ahead_share = v.usable_ahead_bytes() / v.total_bytes();
    if v.usable_share < cfg.guest_usable_low_share {
        why.push(format!(
            "usable {} is {:.0}% of its memory (< {:.0}%)",
            format_bytes(v.usable_bytes),
            v.usable_share * 100.0,
            cfg.guest_usable_low_share * 100.0
        ));
    } else if ahead_share < cfg.guest_usable_low_share {
        let rate = v.rates.used_bytes_per_s.unwrap_or(0.0);
        why.push(format!(
            "filling at {}/s: usable {} ({:.0}%) falls under {:.0}% before the controller \
             could grow it again ({} more expected)",
            format_bytes(rate as u64),
            format_bytes(v.usable_bytes),
            v.usable_share * 100.0,
            cfg.guest_usable_low_share * 100.0,
            format_bytes(v.projected_fill_bytes)
        ));
    }
    let r = &v.rates;
    if let Some(s) = r
        .swap_in_bytes_per_s
        .filter(|s| *s >= cfg.guest_swap_in_bytes_per_s as f64)
    {
        why.push(format!("swapping in {}/s", format_bytes(s as u64)));
    }
    // Major faults also come from reading files; they mean a shortage only when the guest has
    // little room left.
    let tight = v.usable_share < cfg.guest_usable_high_share;
    if let Some(mf) = r
        .major_faults_per_s
        .filter(|m| tight && *m >= cfg.guest_major_faults_per_s)
    {
        why.push(format!("{mf:.0} major faults/s"));
    }
    if let Some(st) = r.alloc_stalls_per_s.filter(|s| tight && *s > 0.0) {
        why.push(format!("{st:.1} allocation stalls/s"));
    }
    if let Some(k) = r.oom_kills.filter(|k| *k > 0) {
        why.push(format!("{k} OOM kill(s) since the last sample"));
    }
    (!why.is_empty()).then(|| why.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::fixtures::{guest, host_sample, judge_vm, READ_AT_S, RESERVED_MIB};
    use memwarden_model::units::MIB;
    use memwarden_model::vm::VmSample;

    fn judged(vm: &VmSample) -> Result<GuestView, String> {
        judge_vm(vm, &History::default(), &Config::default(), None)
    }

    #[test]
    fn a_healthy_guest_has_a_floor_idle_memory_and_no_pressure() {
        let v = judged(&guest("web1", 1024, 1024, 800)).expect("eligible");
        let used = (1024 - RESERVED_MIB - 800) * MIB;
        assert_eq!(v.used_bytes, used);
        // No deflate-on-oom: 1.5 × the 128 MiB margin.
        assert_eq!(v.floor_bytes, used + RESERVED_MIB * MIB + 192 * MIB);
        assert_eq!(v.pressure, None);
        // (800 − 0.25 × 1000) / 0.75 MiB
        assert_eq!(v.idle_bytes, ((800.0 - 250.0) / 0.75 * MIB as f64) as u64);
    }

    #[test]
    fn min_guarantee_raises_the_floor() {
        let mut vm = guest("web1", 1024, 1024, 800);
        vm.config.min_guarantee_bytes = Some(700 * MIB);
        assert_eq!(judged(&vm).expect("eligible").floor_bytes, 700 * MIB);
    }

    #[test]
    fn low_usable_share_is_pressure_and_asks_for_the_high_watermark() {
        let v = judged(&guest("db1", 1024, 512, 40)).expect("eligible");
        let why = v.pressure.clone().expect("under pressure");
        assert!(why.contains("usable 40.0 MiB is 8% of its memory"), "{why}");
        let total = (512 - RESERVED_MIB) as f64;
        let want = ((0.25 * total - 40.0) / 0.75 * MIB as f64) as u64;
        assert_eq!(v.grow_wanted(&Config::default()), want);
    }

    #[test]
    fn major_faults_count_only_when_the_guest_is_tight() {
        let mut before = guest("db1", 1024, 1024, 150);
        before.balloon.major_faults = Some(0);
        let mut now = before.clone();
        now.balloon.last_update_unix_s = before.balloon.last_update_unix_s.map(|t| t + 10);
        now.read_at_unix_s += 10;
        now.balloon.major_faults = Some(5000);
        let h = History::from_samples(&[host_sample(0, vec![before])]);
        let v = judge_vm(&now, &h, &Config::default(), None).expect("eligible");
        assert_eq!(v.pressure.as_deref(), Some("500 major faults/s"));
        // The same faults with plenty of room are file reads.
        let mut roomy = now.clone();
        roomy.balloon.usable_bytes = Some(800 * MIB);
        roomy.balloon.unused_bytes = Some(800 * MIB);
        assert_eq!(
            judge_vm(&roomy, &h, &Config::default(), None)
                .expect("ok")
                .pressure,
            None
        );
    }

    /// `vm` with `usable_mib` MemAvailable, read `back_s` before READ_AT_S (statistics 1 s older).
    fn at(vm: &VmSample, usable_mib: u64, back_s: u64) -> VmSample {
        let mut v = vm.clone();
        v.balloon.usable_bytes = Some(usable_mib * MIB);
        v.balloon.unused_bytes = Some(usable_mib * MIB);
        v.balloon.last_update_unix_s = Some(READ_AT_S - 1 - back_s);
        v.read_at_unix_s = READ_AT_S - back_s;
        v
    }

    /// Two earlier samples of `vm`, 4 s and 2 s back, at these MemAvailable figures (MiB).
    fn past(vm: &VmSample, usable_mib: [u64; 2]) -> History {
        History::from_samples(&[
            host_sample((READ_AT_S - 4) * 1000, vec![at(vm, usable_mib[0], 4)]),
            host_sample((READ_AT_S - 2) * 1000, vec![at(vm, usable_mib[1], 2)]),
        ])
    }

    #[test]
    fn a_guest_filling_faster_than_a_cycle_can_follow_is_grown_for_where_it_is_heading() {
        // 488 MiB of guest memory (512 − the kernel's reserve), use growing 10 MiB/s, samples
        // every 2 s, statistics 1 s old: 5 s ahead is 50 MiB more use.
        let g = guest("fill", 1024, 512, 0);
        let h = past(&g, [130, 110]);
        let now = at(&g, 90, 0);
        let cfg = Config::default();
        // Without a past, 90 of 488 MiB (18%) is no pressure.
        assert_eq!(judged(&now).expect("eligible").pressure, None);
        let v = judge_vm(&now, &h, &cfg, None).expect("eligible");
        assert_eq!(v.rates.used_bytes_per_s, Some(10.0 * MIB as f64));
        assert_eq!(v.rates.cycle_s, Some(2.0));
        assert_eq!(v.projected_fill_bytes, 50 * MIB);
        let why = v.pressure.clone().expect("under pressure ahead of time");
        assert!(why.contains("filling at 10.0 MiB/s"), "{why}");
        // Grown to the high watermark of the use it is heading to: (0.25 × 488 − 40) / 0.75.
        let want = ((0.25 * 488.0 - 40.0) / 0.75 * MIB as f64) as u64;
        assert_eq!(v.grow_wanted(&cfg), want);
        // Lookahead 0 judges the present only.
        let now_only = Config {
            guest_fill_lookahead_cycles: 0.0,
            ..Config::default()
        };
        let v0 = judge_vm(&now, &h, &now_only, None).expect("eligible");
        assert_eq!(
            v0.projected_fill_bytes,
            10 * MIB,
            "the statistics' age alone"
        );
        assert_eq!(v0.pressure, None);
    }

    #[test]
    fn a_one_off_allocation_is_not_projected_forward() {
        // 100 MiB at once after a still interval: the margin covers it; a steady fill would
        // have shown in both intervals.
        let g = guest("burst", 1024, 512, 0);
        let h = past(&g, [300, 300]);
        let v = judge_vm(&at(&g, 200, 0), &h, &Config::default(), None).expect("eligible");
        assert_eq!(v.rates.used_bytes_per_s, Some(0.0));
        assert_eq!(v.projected_fill_bytes, 0);
        assert_eq!(v.pressure, None);
        // Two updates only: no sustained rate to tell.
        let short =
            History::from_samples(&[host_sample((READ_AT_S - 2) * 1000, vec![at(&g, 300, 2)])]);
        let v = judge_vm(&at(&g, 200, 0), &short, &Config::default(), None).expect("eligible");
        assert_eq!(v.rates.used_bytes_per_s, None);
    }

    #[test]
    fn a_filling_guest_has_less_idle_and_a_freeing_one_no_projected_fill() {
        let g = guest("fill", 1024, 1024, 0);
        let filling = past(&g, [840, 820]);
        let now = at(&g, 800, 0);
        let still = judged(&now).expect("eligible").idle_bytes;
        let v = judge_vm(&now, &filling, &Config::default(), None).expect("eligible");
        assert_eq!(v.projected_fill_bytes, 50 * MIB);
        assert_eq!(still - v.idle_bytes, (50.0 / 0.75 * MIB as f64) as u64 + 1);
        // Use falling: nothing projected, nothing taken off.
        let freeing = past(&g, [760, 780]);
        let v = judge_vm(&now, &freeing, &Config::default(), None).expect("eligible");
        assert_eq!(v.projected_fill_bytes, 0);
        assert_eq!(v.idle_bytes, still);
    }

    #[test]
    fn each_reason_to_stay_away_is_named() {
        let base = guest("vm", 1024, 1024, 800);
        let cases: Vec<(VmSample, &str)> = vec![
            (
                {
                    let mut v = base.clone();
                    v.state = VmState::Paused;
                    v
                },
                "paused",
            ),
            (
                {
                    let mut v = base.clone();
                    v.state = VmState::Shutoff;
                    v
                },
                "not running",
            ),
            (
                {
                    let mut v = base.clone();
                    v.read.status = ReadStatus::TimedOut;
                    v
                },
                "not read (timed out)",
            ),
            (
                {
                    let mut v = base.clone();
                    v.config.hugepages = true;
                    v
                },
                "hugepage-backed",
            ),
            (
                {
                    let mut v = base.clone();
                    v.config.locked = true;
                    v
                },
                "locked",
            ),
            (
                {
                    let mut v = base.clone();
                    v.device.stats_period_s = Some(0);
                    v
                },
                "polling is off",
            ),
            (
                {
                    let mut v = base.clone();
                    v.read_at_unix_s += 600;
                    v
                },
                "stale",
            ),
            (
                {
                    let mut v = base.clone();
                    v.device.present = false;
                    v
                },
                "no balloon device",
            ),
            (
                {
                    let mut v = base.clone();
                    v.balloon.usable_bytes = Some(5000 * MIB);
                    v
                },
                "do not add up",
            ),
            (
                {
                    let mut v = base.clone();
                    v.balloon.usable_bytes = None;
                    v
                },
                "no `usable`",
            ),
            (
                {
                    let mut v = base.clone();
                    v.max_memory_bytes = None;
                    v
                },
                "maximum memory",
            ),
        ];
        for (vm, want) in cases {
            let why = judged(&vm).expect_err(want);
            assert!(why.contains(want), "{want}: {why}");
        }
        let cfg = Config {
            manual: vec!["vm".into()],
            ..Config::default()
        };
        let why = judge_vm(&base, &History::default(), &cfg, None).expect_err("manual");
        assert!(why.contains("manual"), "{why}");
    }

    /// A deflate-on-oom guest keeps MemTotal while ballooned: judged by its own rule, not skipped.
    #[test]
    fn deflate_on_oom_guest_is_judged_by_its_own_rule() {
        let mut vm = guest("auto", 1024, 768, 500);
        vm.device.autodeflate = Some(true);
        vm.balloon.available_bytes = Some((1024 - RESERVED_MIB) * MIB);
        let v = judged(&vm).expect("eligible");
        assert!(v.deflate_on_oom);
        // MemTotal − MemAvailable − balloon held (256 MiB).
        assert_eq!(v.used_bytes, (1024 - RESERVED_MIB - 500 - 256) * MIB);
    }

    #[test]
    fn free_page_reporting_leaves_only_cache_to_gain() {
        let mut vm = crate::tests::fixtures::with_rss(guest("f", 1024, 1024, 800), 600);
        vm.balloon.disk_caches_bytes = Some(100 * MIB);
        let cfg = Config::default();
        let used = (1024 - RESERVED_MIB - 800) * MIB;
        let v = judged(&vm).expect("eligible");
        assert_eq!(
            v.resident_idle_bytes(&cfg),
            Some(600 * MIB - used - 64 * MIB)
        );
        vm.device.free_page_reporting = Some(true);
        assert_eq!(
            judged(&vm).expect("ok").resident_idle_bytes(&cfg),
            Some(100 * MIB)
        );
    }
}
