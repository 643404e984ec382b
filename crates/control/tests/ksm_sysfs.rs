//! The KSM actuator against this machine's real /sys/kernel/mm/ksm: a plan made from a live
//! sample is written, read back, and the original values restored (a drop guard, so a failing
//! assertion restores them too).

mod common;

use std::path::Path;

use memwarden_control::ksm::{apply, write_knob, write_settings, KsmSnapshot, Outcome, SYSFS_DIR};
use memwarden_model::Sample;
use memwarden_policy::ksm::{ksm_plan, Knob, KsmConfig, KsmHistory, RunDecision, Setting};
use memwarden_procfs::HostReader;

fn live_sample() -> Sample {
    Sample {
        taken_at_unix_ms: 1,
        host: HostReader::live().read_host().expect("live host"),
        ..Sample::default()
    }
}

/// A configuration under which this roomy host "needs" KSM: the threshold is all of memory.
fn eager(use_advisor: bool) -> KsmConfig {
    KsmConfig {
        threshold_share: 1.0,
        use_advisor,
        ..KsmConfig::default()
    }
}

fn sysfs() -> &'static Path {
    Path::new(SYSFS_DIR)
}

#[test]
fn an_advisor_plan_is_written_read_back_and_restored() {
    let guard = common::Restore::new();
    let s = live_sample();
    let k = s.host.ksm.as_ref().expect("KSM on this kernel");
    assert!(k.advisor_mode.is_some(), "kernel 6.18 has advisor_mode");
    let plan = ksm_plan(&s, &KsmHistory::default(), &eager(true));
    assert!(plan.advisor, "{plan:?}");
    assert!(matches!(
        plan.run,
        RunDecision::Start | RunDecision::KeepRunning
    ));
    let results = apply(&plan, sysfs());
    assert!(results.iter().all(|r| r.ok()), "{results:#?}");
    assert!(results.iter().any(|r| r.outcome == Outcome::Written));
    let now = KsmSnapshot::take(sysfs());
    assert_eq!(now.value(Knob::Run), Some("1"));
    assert_eq!(now.value(Knob::AdvisorMode), Some("scan-time"));
    assert_eq!(now.value(Knob::AdvisorMaxCpu), Some("20"));
    assert_eq!(now.value(Knob::AdvisorTargetScanTime), Some("200"));
    // The same plan again writes nothing.
    let again = apply(&plan, sysfs());
    assert!(
        again.iter().all(|r| r.outcome == Outcome::Unchanged),
        "{again:#?}"
    );
    drop(guard);
    assert_eq!(
        KsmSnapshot::take(sysfs()).value(Knob::AdvisorMode),
        Some("none"),
        "restored (the machine's original is none)"
    );
}

#[test]
fn a_classic_plan_sets_the_pace_within_bounds() {
    let _guard = common::Restore::new();
    let cfg = eager(false);
    let plan = ksm_plan(&live_sample(), &KsmHistory::default(), &cfg);
    assert!(!plan.advisor);
    let results = apply(&plan, sysfs());
    assert!(results.iter().all(|r| r.ok()), "{results:#?}");
    let now = KsmSnapshot::take(sysfs());
    let pages: u64 = now
        .value(Knob::PagesToScan)
        .and_then(|v| v.parse().ok())
        .expect("pages_to_scan");
    assert!((cfg.pages_min..=cfg.pages_max).contains(&pages), "{pages}");
    assert_eq!(now.value(Knob::Run), Some("1"));
}

#[test]
fn a_knob_that_refuses_is_reported_and_the_rest_are_written() {
    let guard = common::Restore::new();
    let old_sleep = guard.original.value(Knob::SleepMillisecs).expect("sleep");
    let new_sleep = if old_sleep == "37" { "38" } else { "37" };
    let settings = [
        Setting {
            knob: Knob::PagesToScan,
            value: "lots".into(),
            current: None,
            reason: "a value the kernel refuses".into(),
        },
        Setting {
            knob: Knob::SleepMillisecs,
            value: new_sleep.into(),
            current: None,
            reason: "a value it takes".into(),
        },
    ];
    let r = write_settings(&settings, sysfs());
    match &r[0].outcome {
        Outcome::Refused(why) => assert!(why.contains("Invalid argument"), "{why}"),
        o => panic!("pages_to_scan = lots: {o:?}"),
    }
    assert_eq!(r[1].outcome, Outcome::Written, "{r:#?}");
    assert_eq!(
        KsmSnapshot::take(sysfs()).value(Knob::SleepMillisecs),
        Some(new_sleep)
    );
    // Too long to be a setting: refused before any write.
    let long = "9".repeat(100);
    let r = write_knob(sysfs(), Knob::PagesToScan, &long);
    assert!(matches!(r.outcome, Outcome::Refused(_)), "{r:?}");
}

#[test]
fn a_directory_without_the_knobs_gets_no_new_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let r = write_knob(dir.path(), Knob::Run, "1");
    assert!(matches!(r.outcome, Outcome::Refused(_)), "{r:?}");
    assert!(!dir.path().join("run").exists(), "never created");
}
