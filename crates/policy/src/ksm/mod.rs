//! The KSM tuner: whether ksmd runs and how fast it scans — a pure function of one [`Sample`],
//! the tuner's [`KsmHistory`] and a [`KsmConfig`]. Off by default (`[ksm] tune`).
//!
//! 1. [`classic`]: ksmtuned's and MOM's rules decide whether KSM is needed and, on kernels
//!    without the advisor, its pace (pages_to_scan boost/decay, sleep by memory size);
//! 2. on kernels with KSM's scan-time advisor (`advisor_mode`, Linux 6.8+) the pace is handed
//!    to it: advisor_mode = scan-time, a target scan time and a CPU ceiling;
//! 3. [`cost`]: a running KSM that saves too little for ksmd's measured CPU is stopped, and not
//!    started again for a while.
//!
//! The plan lists every knob the tuner wants with its current value, each with a reason; the
//! actuator (`memwarden-control`) writes those that differ.

pub mod classic;
pub mod config;
pub mod cost;
pub mod history;

pub use config::{KsmConfig, KsmConfigError};
pub use cost::{CostVerdict, WindowCpu};
pub use history::{KsmHistory, KsmObservation};

use memwarden_model::host::KsmSysfs;
use memwarden_model::Sample;
use serde::Serialize;

/// A file of /sys/kernel/mm/ksm the tuner may write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Knob {
    Run,
    PagesToScan,
    SleepMillisecs,
    AdvisorMode,
    AdvisorTargetScanTime,
    AdvisorMaxCpu,
}

impl Knob {
    /// The file's name in /sys/kernel/mm/ksm.
    pub fn file(self) -> &'static str {
        match self {
            Knob::Run => "run",
            Knob::PagesToScan => "pages_to_scan",
            Knob::SleepMillisecs => "sleep_millisecs",
            Knob::AdvisorMode => "advisor_mode",
            Knob::AdvisorTargetScanTime => "advisor_target_scan_time",
            Knob::AdvisorMaxCpu => "advisor_max_cpu",
        }
    }
}

/// One knob: the value wanted, the value now, and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Setting {
    pub knob: Knob,
    pub value: String,
    /// As read in the sample (`advisor_mode` as its selected choice); `None` if unread.
    pub current: Option<String>,
    pub reason: String,
}

impl Setting {
    pub fn changes(&self) -> bool {
        self.current.as_deref() != Some(self.value.as_str())
    }
}

/// What the tuner decided about ksmd running.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunDecision {
    Start,
    KeepRunning,
    Stop,
    StayStopped,
    /// run = 2 (unmerging) or MemTotal unknown: nothing is touched.
    LeaveAlone,
    /// No /sys/kernel/mm/ksm.
    Unavailable,
}

/// One interval's plan.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KsmPlan {
    pub run: RunDecision,
    /// Why, in plain words, with the figures.
    pub reason: String,
    /// The knobs to set, in the order to write them (pace first, `run` last).
    pub settings: Vec<Setting>,
    /// Whether the host needs KSM, by the classic rules.
    pub need: Option<classic::Need>,
    /// The cost rule's verdict, when a window was long enough to judge.
    pub cost: Option<CostVerdict>,
    /// ksmd's CPU over the window so far (it may be too short to judge).
    pub window_cpu: Option<WindowCpu>,
    /// Whether the pace was handed to the kernel's scan-time advisor.
    pub advisor: bool,
}

impl KsmPlan {
    /// The settings that differ from the current values.
    pub fn changes(&self) -> impl Iterator<Item = &Setting> {
        self.settings.iter().filter(|s| s.changes())
    }
}

/// One interval of the tuner. Same inputs, same plan.
pub fn ksm_plan(sample: &Sample, history: &KsmHistory, cfg: &KsmConfig) -> KsmPlan {
    let mut plan = KsmPlan {
        run: RunDecision::Unavailable,
        reason: String::new(),
        settings: Vec::new(),
        need: None,
        cost: None,
        window_cpu: None,
        advisor: false,
    };
    let Some(k) = &sample.host.ksm else {
        plan.reason = "KSM is not available (no /sys/kernel/mm/ksm)".into();
        return plan;
    };
    plan.run = RunDecision::LeaveAlone;
    if k.run == Some(2) {
        plan.reason = "run = 2: KSM is unmerging every page, as someone asked; left alone".into();
        return plan;
    }
    let Some(need) = classic::need(sample, cfg) else {
        plan.reason = "MemTotal unknown: no basis for a decision".into();
        return plan;
    };
    let running = k.run == Some(1);
    plan.window_cpu = running.then(|| cost::window_cpu(sample, history)).flatten();
    plan.cost = running.then(|| cost::judge(sample, history, cfg)).flatten();
    let refused_until = history
        .refused_at_ms
        .map(|t| t.saturating_add(cfg.retry_after_s.saturating_mul(1000)))
        .filter(|until| sample.taken_at_unix_ms < *until);

    let (run, reason) = match (&plan.cost, running) {
        (Some(c), _) if !c.pass => (RunDecision::Stop, format!("cost rule: {}", c.why)),
        (_, false) if need.wanted && refused_until.is_some() => (
            RunDecision::StayStopped,
            format!(
                "needed ({}), but the cost rule stopped KSM {} s ago ({}); retried after {} s",
                need.why,
                sample
                    .taken_at_unix_ms
                    .saturating_sub(history.refused_at_ms.unwrap_or(0))
                    / 1000,
                history.refused_why.as_deref().unwrap_or("no reason kept"),
                cfg.retry_after_s
            ),
        ),
        (_, false) if need.wanted => (RunDecision::Start, format!("needed: {}", need.why)),
        (_, true) if need.wanted => (RunDecision::KeepRunning, format!("needed: {}", need.why)),
        (_, true) => (RunDecision::Stop, format!("not needed: {}", need.why)),
        (_, false) => (
            RunDecision::StayStopped,
            format!("not needed: {}", need.why),
        ),
    };
    plan.run = run;
    plan.reason = reason;
    if matches!(run, RunDecision::Start | RunDecision::KeepRunning) {
        plan.advisor = cfg.use_advisor && k.advisor_mode.is_some();
        plan.settings = if plan.advisor {
            advisor_settings(k, cfg)
        } else {
            let cpu = plan.window_cpu.map(|w| w.cpu_percent);
            let current = k.pages_to_scan.unwrap_or(cfg.pages_min);
            let (pages, why) = classic::pages_to_scan(current, need.low_free, cpu, cfg);
            let mut s = Vec::new();
            if k.advisor_mode.as_deref().is_some_and(|m| m != "none") {
                s.push(setting(
                    k,
                    Knob::AdvisorMode,
                    "none",
                    "the tuner sets the pace itself (use_advisor = false)".into(),
                ));
            }
            s.push(setting(k, Knob::PagesToScan, pages, why));
            s
        };
        let (sleep, why) = classic::sleep_ms(need.total_bytes, cfg);
        plan.settings
            .push(setting(k, Knob::SleepMillisecs, sleep, why));
        plan.settings.push(setting(
            k,
            Knob::Run,
            1,
            "ksmd scans (see the plan's reason)".into(),
        ));
    } else {
        plan.settings.push(setting(
            k,
            Knob::Run,
            0,
            "ksmd does not scan; merged pages stay merged (see the plan's reason)".into(),
        ));
    }
    plan.need = Some(need);
    plan
}

/// The advisor's knobs: its CPU ceiling and target scan time first, then the mode (switching
/// it on resets pages_to_scan to the advisor's starting value).
fn advisor_settings(k: &KsmSysfs, cfg: &KsmConfig) -> Vec<Setting> {
    let max_cpu = (cfg.max_cpu_percent.round() as u64).max(1);
    vec![
        setting(
            k,
            Knob::AdvisorMaxCpu,
            max_cpu,
            format!("ksmd may use at most {max_cpu} % of a CPU (max_cpu_percent)"),
        ),
        setting(
            k,
            Knob::AdvisorTargetScanTime,
            cfg.advisor_target_scan_time_s,
            format!(
                "one full scan of mergeable memory every {} s",
                cfg.advisor_target_scan_time_s
            ),
        ),
        setting(
            k,
            Knob::AdvisorMode,
            "scan-time",
            "this kernel has KSM's scan-time advisor: it sets pages_to_scan from each scan's \
             duration and ksmd's CPU"
                .into(),
        ),
    ]
}

fn setting(k: &KsmSysfs, knob: Knob, value: impl ToString, reason: String) -> Setting {
    let current = match knob {
        Knob::AdvisorMode => k.advisor_mode.clone(),
        _ => k
            .files
            .iter()
            .find(|(f, _)| f == knob.file())
            .map(|(_, v)| v.clone()),
    };
    Setting {
        knob,
        value: value.to_string(),
        current,
        reason,
    }
}

#[cfg(test)]
mod tests;
