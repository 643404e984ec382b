//! The balloon actuator and the controller's cycle: sample → history → plan → apply → state.
//!
//! [`apply`] sets each action's balloon target through the `Hypervisor` trait, live only (the
//! controller's targets are not written into a domain's persistent config), and reports every
//! action's outcome: one VM that refuses or has gone is reported as that, the rest still move.
//! [`Cycle`] is what the daemon, `memwarden balance --apply` and the real-guest comparison run:
//! it holds the controller's memory (recent history, per-VM state) and nothing that decides.

use std::time::Duration;

use memwarden_hv::{Hypervisor, Scope};

use memwarden_policy::{Action, Controller, History, Plan, State, View};
use serde::Serialize;

/// What became of one action.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Applied {
    pub action: Action,
    /// In JSON `"outcome": "applied" | "gone" | "refused"`, with `"error"` beside the last two.
    #[serde(flatten)]
    pub outcome: Outcome,
}

impl Applied {
    /// The hypervisor took the new target.
    pub fn done(&self) -> bool {
        self.outcome == Outcome::Applied
    }
}

/// What the hypervisor made of one action, by what a caller does about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", content = "error", rename_all = "snake_case")]
pub enum Outcome {
    /// The new target was taken.
    Applied,
    /// The VM went away meanwhile: nothing to retry, and no fault of the controller's.
    Gone(String),
    /// The hypervisor refused (no balloon, libvirtd down, a bad target): an error to count
    /// and show; the next cycle plans afresh.
    Refused(String),
}

impl Outcome {
    fn of(result: Result<(), memwarden_hv::Error>) -> Outcome {
        match result {
            Ok(()) => Outcome::Applied,
            Err(e) if e.is_gone() => Outcome::Gone(e.plain()),
            Err(e) => Outcome::Refused(e.plain()),
        }
    }
}

/// Sets every action's target; returns each outcome, in the plan's order.
pub fn apply(plan: &Plan, hv: &mut dyn Hypervisor) -> Vec<Applied> {
    plan.actions
        .iter()
        .map(|a| Applied {
            action: a.clone(),
            outcome: Outcome::of(hv.set_memory(&a.vm, a.target_bytes, Scope::LIVE)),
        })
        .collect()
}

/// One cycle's record: the plan, and what applying it did (empty on a dry run).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CycleReport {
    pub controller: &'static str,
    pub plan: Plan,
    pub applied: Vec<Applied>,
    pub dry_run: bool,
}

impl CycleReport {
    /// Actions the hypervisor took.
    pub fn done(&self) -> impl Iterator<Item = &Action> {
        self.applied.iter().filter(|a| a.done()).map(|a| &a.action)
    }
}

/// The controller's memory between cycles.
pub struct Cycle {
    controller: Box<dyn Controller + Send>,
    history: History,
    state: State,
    /// How far back the history reaches (rates and the oracles' averages need a minute or two).
    keep: Duration,
}

impl std::fmt::Debug for Cycle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cycle")
            .field("controller", &self.controller.name())
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

/// History kept by default: enough for rates over a few samples at any sane interval, and for
/// MOM's averages.
pub const DEFAULT_KEEP: Duration = Duration::from_secs(180);

impl Cycle {
    pub fn new(controller: Box<dyn Controller + Send>) -> Cycle {
        Cycle {
            controller,
            history: History::default(),
            state: State::default(),
            keep: DEFAULT_KEEP,
        }
    }

    /// A cycle that starts from recorded history (`memwarden balance` reads the daemon's).
    pub fn with_history(controller: Box<dyn Controller + Send>, history: History) -> Cycle {
        Cycle {
            history,
            ..Cycle::new(controller)
        }
    }

    /// Replaces the controller (a reloaded configuration); history and state are kept, so
    /// hysteresis holds across a reload.
    pub fn set_controller(&mut self, controller: Box<dyn Controller + Send>) {
        self.controller = controller;
    }

    pub fn state(&self) -> &State {
        &self.state
    }

    /// Starts from what an earlier run remembered (the daemon's store): hysteresis, beliefs,
    /// bursts and harm carry over a restart.
    pub fn restore_state(&mut self, state: State) {
        self.state = state;
    }

    /// Plans on `view` and, unless `hv` is `None` (a dry run), applies the plan. The sample
    /// joins the history after planning: the plan compares it with what came before.
    pub fn step(&mut self, view: &View, hv: Option<&mut dyn Hypervisor>) -> CycleReport {
        let sample = view.sample();
        let plan = self.controller.plan(view, &self.history, &self.state);
        let dry_run = hv.is_none();
        let applied = hv.map(|hv| apply(&plan, hv)).unwrap_or_default();
        // Only what was done is remembered: a refused action (or any, on a dry run) must not
        // count for hysteresis or wait to be measured.
        let mut done = plan.clone();
        done.actions = applied
            .iter()
            .filter(|a| a.done())
            .map(|a| a.action.clone())
            .collect();
        self.state = self.state.after(&done, sample.taken_at_unix_ms);
        self.history.push(sample);
        let keep_ms = u64::try_from(self.keep.as_millis()).unwrap_or(u64::MAX);
        self.history
            .trim(sample.taken_at_unix_ms.saturating_sub(keep_ms));
        CycleReport {
            controller: self.controller.name(),
            plan,
            applied,
            dry_run,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A VM gone meanwhile is told apart from a refusal, and JSON keeps one shape: the
    /// outcome's name, with the error beside it when there is one.
    #[test]
    fn outcomes_are_classed_and_serialized_flat() {
        assert_eq!(Outcome::of(Ok(())), Outcome::Applied);
        let gone = Outcome::of(Err(memwarden_hv::Error::NoSuchVm {
            name: "vm1".into(),
            where_: "libvirt".into(),
        }));
        assert!(matches!(gone, Outcome::Gone(_)), "{gone:?}");
        let refused = Outcome::of(Err(memwarden_hv::Error::NoBalloon {
            name: "vm1".into(),
            what: "setting the balloon target",
        }));
        assert!(matches!(refused, Outcome::Refused(ref e) if e.contains("no balloon")));
        let json = |o: &Outcome| serde_json::to_value(o).expect("serializes");
        assert_eq!(
            json(&Outcome::Applied),
            serde_json::json!({"outcome": "applied"})
        );
        assert_eq!(
            json(&Outcome::Refused("no".into())),
            serde_json::json!({"outcome": "refused", "error": "no"})
        );
    }
}
