//! What the KSM tuner remembers between intervals: where the cost window began and whether the
//! cost rule has stopped KSM. Plain data, updated by [`KsmHistory::record`] after each plan, so
//! that [`ksm_plan`](super::ksm_plan) stays a pure function of its inputs.

use memwarden_model::Sample;
use serde::{Deserialize, Serialize};

use super::{KsmPlan, RunDecision};

/// The KSM counters of one sample that the cost rule compares over time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KsmObservation {
    /// When the sample was taken, Unix milliseconds.
    pub at_ms: u64,
    /// ksmd's pid and CPU time (user + system), milliseconds.
    pub ksmd_pid: Option<u32>,
    pub ksmd_cpu_ms: Option<u64>,
    /// The kernel's full_scans counter.
    pub full_scans: Option<u64>,
}

impl KsmObservation {
    pub fn of(sample: &Sample) -> Self {
        let k = sample.host.ksmd;
        KsmObservation {
            at_ms: sample.taken_at_unix_ms,
            ksmd_pid: k.map(|k| k.pid),
            ksmd_cpu_ms: k.map(|k| k.total_ms()),
            full_scans: sample.host.ksm.as_ref().and_then(|k| k.full_scans),
        }
    }
}

/// The tuner's memory.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct KsmHistory {
    /// The first observation since ksmd last began running: the cost window starts here.
    pub window_start: Option<KsmObservation>,
    /// When the cost rule last stopped (or refused to start) KSM, Unix milliseconds, and why.
    pub refused_at_ms: Option<u64>,
    pub refused_why: Option<String>,
}

impl KsmHistory {
    /// Takes in the sample a plan was made from and the plan (assumed applied): a window opens
    /// when ksmd runs and closes when it stops; a cost refusal is remembered.
    pub fn record(&mut self, sample: &Sample, plan: &KsmPlan) {
        let running_after = match plan.run {
            RunDecision::Start | RunDecision::KeepRunning => true,
            RunDecision::Stop | RunDecision::StayStopped => false,
            RunDecision::Unavailable | RunDecision::LeaveAlone => {
                sample.host.ksm.as_ref().and_then(|k| k.run) == Some(1)
            }
        };
        if running_after {
            let obs = KsmObservation::of(sample);
            // A new ksmd (another pid) or a counter that went back restarts the window.
            let stale = self
                .window_start
                .is_some_and(|w| w.ksmd_pid != obs.ksmd_pid || w.ksmd_cpu_ms > obs.ksmd_cpu_ms);
            if self.window_start.is_none() || stale {
                self.window_start = Some(obs);
            }
        } else {
            self.window_start = None;
        }
        if let Some(v) = plan.cost.as_ref().filter(|v| !v.pass) {
            self.refused_at_ms = Some(sample.taken_at_unix_ms);
            self.refused_why = Some(v.why.clone());
        }
    }
}
