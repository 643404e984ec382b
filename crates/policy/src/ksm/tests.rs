//! The tuner's rules on hand-built samples (sizes in MiB), then its invariants under proptest.

use memwarden_model::host::{KsmSysfs, KsmdCpu, Meminfo, MeminfoEntry, MeminfoUnit};
use memwarden_model::units::{GIB, MIB};
use memwarden_model::vm::{VmSample, VmState};
use memwarden_model::Sample;
use proptest::prelude::*;

use super::*;

const T0: u64 = 1_800_000_000_000;

/// /sys/kernel/mm/ksm as this machine's kernel 6.18 prints it, with `run`, `pages_to_scan`,
/// `full_scans`, `general_profit` and `pages_sharing` as given; `advisor` false drops the
/// advisor's files (a kernel before 6.8).
fn ksm(run: u64, pages_to_scan: u64, full_scans: u64, profit: i64, advisor: bool) -> KsmSysfs {
    let mut files: Vec<(String, String)> = [
        ("full_scans", full_scans.to_string()),
        ("general_profit", profit.to_string()),
        ("max_page_sharing", "256".into()),
        ("pages_shared", "0".into()),
        ("pages_sharing", (profit.max(0) as u64 / 4096).to_string()),
        ("pages_to_scan", pages_to_scan.to_string()),
        ("run", run.to_string()),
        ("sleep_millisecs", "20".into()),
    ]
    .into_iter()
    .map(|(a, b)| (a.to_string(), b))
    .collect();
    if advisor {
        files.extend(
            [
                ("advisor_max_cpu", "70"),
                ("advisor_mode", "[none] scan-time"),
                ("advisor_target_scan_time", "200"),
            ]
            .map(|(a, b)| (a.to_string(), b.to_string())),
        );
    }
    memwarden_procfs::ksm_sysfs(files)
}

fn meminfo(total_mib: u64, available_mib: u64) -> Meminfo {
    Meminfo {
        entries: [
            ("MemTotal", total_mib),
            ("MemFree", available_mib),
            ("MemAvailable", available_mib),
        ]
        .map(|(k, v)| MeminfoEntry {
            key: k.into(),
            value: v * MIB,
            unit: MeminfoUnit::Bytes,
        })
        .to_vec(),
    }
}

fn vm(name: &str, max_mib: u64) -> VmSample {
    VmSample {
        name: name.into(),
        state: VmState::Running,
        max_memory_bytes: Some(max_mib * MIB),
        ..VmSample::default()
    }
}

/// A 24 GiB host at `at_ms` with `available_mib` free, KSM as given and ksmd at `cpu_ms`.
fn sample(at_ms: u64, available_mib: u64, k: KsmSysfs, cpu_ms: u64, vms: Vec<VmSample>) -> Sample {
    let mut s = Sample {
        taken_at_unix_ms: at_ms,
        vms,
        ..Sample::default()
    };
    s.host.meminfo = meminfo(24 * 1024, available_mib);
    s.host.ksm = Some(k);
    s.host.ksmd = Some(KsmdCpu {
        pid: 36,
        user_ms: 0,
        system_ms: cpu_ms,
    });
    s
}

/// A host short of memory (2 GiB of 24 available), no VMs listed.
fn short(at_ms: u64, k: KsmSysfs, cpu_ms: u64) -> Sample {
    sample(at_ms, 2048, k, cpu_ms, vec![])
}

fn value(plan: &KsmPlan, knob: Knob) -> Option<&str> {
    plan.settings
        .iter()
        .find(|s| s.knob == knob)
        .map(|s| s.value.as_str())
}

fn history_from(s: &Sample) -> KsmHistory {
    KsmHistory {
        window_start: Some(KsmObservation::of(s)),
        ..KsmHistory::default()
    }
}

#[test]
fn an_empty_section_is_the_default_and_valid_and_typos_are_refused() {
    let c: KsmConfig = toml::from_str("").expect("empty section");
    assert_eq!(c, KsmConfig::default());
    assert!(!c.tune, "off by default");
    assert_eq!(c.validate(), Ok(()));
    assert!(toml::from_str::<KsmConfig>("pages_boots = 3").is_err());
    let c = KsmConfig {
        pages_min: 2000,
        ..KsmConfig::default()
    };
    assert!(matches!(
        c.validate(),
        Err(KsmConfigError::PagesCrossed { .. })
    ));
    let c = KsmConfig {
        threshold_share: f64::NAN,
        ..KsmConfig::default()
    };
    assert!(c
        .validate()
        .expect_err("NaN")
        .to_string()
        .contains("threshold_share"));
}

#[test]
fn a_roomy_host_leaves_ksm_stopped() {
    let s = sample(
        T0,
        20 * 1024,
        ksm(0, 100, 0, 0, false),
        0,
        vec![vm("a", 2048)],
    );
    let p = ksm_plan(&s, &KsmHistory::default(), &KsmConfig::default());
    assert_eq!(p.run, RunDecision::StayStopped, "{}", p.reason);
    assert_eq!(p.settings.len(), 1);
    assert_eq!(value(&p, Knob::Run), Some("0"));
    assert_eq!(p.changes().count(), 0, "nothing to write");
}

#[test]
fn low_free_memory_starts_ksm_with_ksmtuneds_pace() {
    // 24 GiB host, threshold 20 % = 4.8 GiB, 2 GiB available.
    let s = short(T0, ksm(0, 100, 0, 0, false), 0);
    let p = ksm_plan(&s, &KsmHistory::default(), &KsmConfig::default());
    assert_eq!(p.run, RunDecision::Start, "{}", p.reason);
    assert_eq!(value(&p, Knob::PagesToScan), Some("400"), "100 + boost 300");
    // 10 ms × 16 GiB / 24 GiB = 6.7 ms, held at the 10 ms floor.
    assert_eq!(value(&p, Knob::SleepMillisecs), Some("10"));
    assert_eq!(
        p.settings.last().map(|s| s.knob),
        Some(Knob::Run),
        "run last"
    );
    assert_eq!(value(&p, Knob::Run), Some("1"));
    assert!(p.reason.contains("MemAvailable"), "{}", p.reason);
    let need = p.need.expect("figures");
    assert_eq!(need.threshold_bytes, (24.0 * GIB as f64 * 0.2) as u64);
}

#[test]
fn committed_memory_near_the_hosts_starts_ksm_and_decays_the_pace() {
    // Plenty free, but VMs may use 22 GiB of 24: committed + 4.8 GiB > total.
    let s = sample(
        T0,
        16 * 1024,
        ksm(1, 400, 3, 0, false),
        0,
        vec![vm("a", 11 * 1024), vm("b", 11 * 1024)],
    );
    let p = ksm_plan(&s, &history_from(&s), &KsmConfig::default());
    assert_eq!(p.run, RunDecision::KeepRunning, "{}", p.reason);
    assert_eq!(value(&p, Knob::PagesToScan), Some("350"), "400 − decay 50");
    // A small host sleeps longer: 10 ms × 16 / 4.
    let mut small = s.clone();
    small.host.meminfo = meminfo(4 * 1024, 3 * 1024);
    let p = ksm_plan(&small, &history_from(&small), &KsmConfig::default());
    assert_eq!(value(&p, Knob::SleepMillisecs), Some("40"));
}

#[test]
fn advisor_kernels_get_the_advisor_and_no_pages_to_scan() {
    let s = short(T0, ksm(0, 100, 0, 0, true), 0);
    let p = ksm_plan(&s, &KsmHistory::default(), &KsmConfig::default());
    assert!(p.advisor);
    let knobs: Vec<Knob> = p.settings.iter().map(|s| s.knob).collect();
    assert_eq!(
        knobs,
        [
            Knob::AdvisorMaxCpu,
            Knob::AdvisorTargetScanTime,
            Knob::AdvisorMode,
            Knob::SleepMillisecs,
            Knob::Run
        ]
    );
    assert_eq!(value(&p, Knob::AdvisorMode), Some("scan-time"));
    assert_eq!(value(&p, Knob::AdvisorMaxCpu), Some("20"));
    assert_eq!(p.settings[2].current.as_deref(), Some("none"));
    // Told not to use it: classic pace, and the advisor switched off if it was on.
    let cfg = KsmConfig {
        use_advisor: false,
        ..KsmConfig::default()
    };
    let mut k = ksm(1, 100, 0, 0, true);
    k.advisor_mode = Some("scan-time".into());
    let s = sample(T0, 2048, k, 0, vec![]);
    let p = ksm_plan(&s, &history_from(&s), &cfg);
    assert_eq!(value(&p, Knob::AdvisorMode), Some("none"));
    assert_eq!(value(&p, Knob::PagesToScan), Some("400"));
}

#[test]
fn the_cost_rule_stops_ksm_that_saves_too_little_and_keeps_it_stopped() {
    let cfg = KsmConfig::default();
    let start = short(T0, ksm(1, 400, 10, 0, true), 1_000);
    let h = history_from(&start);
    // 600 s later, 2 full scans, ksmd used 60 s (10 % of a CPU), KSM saves 100 MiB: 10 MiB per
    // CPU percent, below 40 MiB.
    let later = short(
        T0 + 600_000,
        ksm(1, 400, 12, 100 * MIB as i64, true),
        61_000,
    );
    let p = ksm_plan(&later, &h, &cfg);
    let c = p.cost.clone().expect("judged");
    assert!(!c.pass, "{}", c.why);
    assert_eq!(c.cpu.full_scans, 2);
    assert!((c.cpu.cpu_percent - 10.0).abs() < 1e-9);
    assert_eq!(c.saved_bytes_per_cpu_percent, Some(10.0 * MIB as f64));
    assert_eq!(p.run, RunDecision::Stop);
    assert_eq!(p.settings.len(), 1, "only run is written when stopping");
    assert_eq!(value(&p, Knob::Run), Some("0"));

    let mut h = h;
    h.record(&later, &p);
    assert_eq!(h.window_start, None);
    assert_eq!(h.refused_at_ms, Some(T0 + 600_000));
    // Still needed a minute later, but not started again.
    let stopped = short(
        T0 + 660_000,
        ksm(0, 400, 12, 100 * MIB as i64, true),
        61_000,
    );
    let p = ksm_plan(&stopped, &h, &cfg);
    assert_eq!(p.run, RunDecision::StayStopped, "{}", p.reason);
    assert_eq!(value(&p, Knob::Run), Some("0"));
    // After retry_after_s, it may try again.
    let retry = short(T0 + 600_000 + 3_600_000, ksm(0, 400, 12, 0, true), 61_000);
    assert_eq!(ksm_plan(&retry, &h, &cfg).run, RunDecision::Start);
}

#[test]
fn the_cost_rule_keeps_ksm_that_pays_and_waits_for_a_full_scan() {
    let cfg = KsmConfig::default();
    let start = short(T0, ksm(1, 400, 10, 0, false), 1_000);
    let h = history_from(&start);
    // 5 % of a CPU for 2 GiB saved: 410 MiB per percent.
    let pays = short(T0 + 600_000, ksm(1, 400, 11, 2 * GIB as i64, false), 31_000);
    let p = ksm_plan(&pays, &h, &cfg);
    assert!(p.cost.as_ref().is_some_and(|c| c.pass), "{:?}", p.cost);
    assert_eq!(p.run, RunDecision::KeepRunning);
    // The same figures without a completed full scan, or over too short a window: no verdict.
    let no_scan = short(T0 + 600_000, ksm(1, 400, 10, 1, false), 31_000);
    assert_eq!(ksm_plan(&no_scan, &h, &cfg).cost, None);
    let brief = short(T0 + 60_000, ksm(1, 400, 11, 1, false), 31_000);
    assert_eq!(ksm_plan(&brief, &h, &cfg).cost, None);
    // Negative profit fails whatever the CPU.
    let loses = short(T0 + 600_000, ksm(1, 400, 11, -4096, false), 1_000);
    let p = ksm_plan(&loses, &h, &cfg);
    assert_eq!(p.run, RunDecision::Stop, "{}", p.reason);
    assert!(p.reason.contains("metadata"), "{}", p.reason);
}

#[test]
fn ksmd_above_the_cpu_cap_is_slowed_within_bounds() {
    let cfg = KsmConfig::default();
    let start = short(T0, ksm(1, 1000, 10, 0, false), 0);
    // 40 % of a CPU over 10 s (too short to judge the cost): scaled by 20/40.
    let busy = short(T0 + 10_000, ksm(1, 1000, 10, 0, false), 4_000);
    let p = ksm_plan(&busy, &history_from(&start), &cfg);
    assert_eq!(p.cost, None);
    assert_eq!(
        value(&p, Knob::PagesToScan),
        Some("500"),
        "{:?}",
        p.settings
    );
}

#[test]
fn unmerging_and_missing_ksm_are_left_alone() {
    let s = short(T0, ksm(2, 100, 0, 0, false), 0);
    let p = ksm_plan(&s, &KsmHistory::default(), &KsmConfig::default());
    assert_eq!((p.run, p.settings.len()), (RunDecision::LeaveAlone, 0));
    let mut s = s;
    s.host.ksm = None;
    let p = ksm_plan(&s, &KsmHistory::default(), &KsmConfig::default());
    assert_eq!((p.run, p.settings.len()), (RunDecision::Unavailable, 0));
}

fn arb_case() -> impl Strategy<Value = (Sample, KsmHistory, KsmConfig)> {
    (
        (
            1u64..64 * 1024,
            0u64..=100,
            0u64..3,
            0u64..5000,
            any::<bool>(),
        ),
        (
            0u64..20,
            -(1i64 << 32)..(1i64 << 34),
            0u64..2_000_000,
            0u64..4_000_000,
        ),
        (
            0.0f64..=1.0,
            0u64..500,
            0u64..500,
            0u64..2000,
            0u64..3000,
            0.0f64..=100.0,
        ),
        (any::<bool>(), any::<bool>(), 0u64..5_000_000, 0u64..5_000),
    )
        .prop_map(|(mem, ksm_f, cfg_f, hist_f)| {
            let (total_mib, avail_pct, run, pages, advisor) = mem;
            let (scans, profit, cpu_ms, elapsed_ms) = ksm_f;
            let (share, boost, decay, a, b, max_cpu) = cfg_f;
            let (with_window, refused, refused_ago, vms_gib) = hist_f;
            let mut s = sample(
                T0 + elapsed_ms,
                0,
                ksm(run, pages, scans, profit, advisor),
                cpu_ms,
                vec![vm("v", vms_gib * 1024)],
            );
            s.host.meminfo = meminfo(total_mib, total_mib * avail_pct / 100);
            let h = KsmHistory {
                window_start: with_window.then_some(KsmObservation {
                    at_ms: T0,
                    ksmd_pid: Some(36),
                    ksmd_cpu_ms: Some(0),
                    full_scans: Some(0),
                }),
                refused_at_ms: refused.then(|| (T0 + elapsed_ms).saturating_sub(refused_ago)),
                refused_why: None,
            };
            let cfg = KsmConfig {
                threshold_share: share,
                pages_boost: boost,
                pages_decay: decay,
                pages_min: a.min(b),
                pages_max: a.max(b),
                max_cpu_percent: max_cpu,
                cost_window_s: 60,
                ..KsmConfig::default()
            };
            (s, h, cfg)
        })
}

proptest! {
    #[test]
    fn invariants_hold_on_any_input((s, h, cfg) in arb_case()) {
        let p = ksm_plan(&s, &h, &cfg);
        // Same input, same plan.
        prop_assert_eq!(&p, &ksm_plan(&s, &h, &cfg));
        let run = value(&p, Knob::Run);
        // Never run = 1 when the cost rule says no, nor while a refusal is fresh.
        if p.cost.as_ref().is_some_and(|c| !c.pass) {
            prop_assert_eq!(run, Some("0"));
        }
        let k = s.host.ksm.as_ref().expect("ksm");
        let fresh_refusal = h.refused_at_ms.is_some_and(|t| s.taken_at_unix_ms < t + cfg.retry_after_s * 1000);
        if k.run == Some(0) && fresh_refusal {
            prop_assert_ne!(run, Some("1"));
        }
        // pages_to_scan within bounds whenever it is written.
        if let Some(v) = value(&p, Knob::PagesToScan) {
            let v: u64 = v.parse().expect("a number");
            prop_assert!(cfg.pages_min <= v && v <= cfg.pages_max, "{} not in [{}, {}]", v, cfg.pages_min, cfg.pages_max);
        }
        // Advisor kernels that run KSM get the advisor, never a pages_to_scan of ours.
        if run == Some("1") && k.advisor_mode.is_some() {
            prop_assert!(p.advisor);
            prop_assert_eq!(value(&p, Knob::AdvisorMode), Some("scan-time"));
            prop_assert_eq!(value(&p, Knob::PagesToScan), None);
        }
        // At most one run setting, and it comes last.
        let runs = p.settings.iter().filter(|s| s.knob == Knob::Run).count();
        prop_assert!(runs <= 1);
        if runs == 1 {
            prop_assert_eq!(p.settings.last().map(|s| s.knob), Some(Knob::Run));
        }
    }
}
