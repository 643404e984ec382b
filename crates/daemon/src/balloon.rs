//! The balloon controller inside `serve`: one cycle per sample when `[balloon] enabled`.
//!
//! Every cycle that did something (an action, a refusal, a measured shrink) is written three
//! ways: the log (one line per action, with its reason), the audit file (`balloon-audit.jsonl`
//! next to the history, one JSON object per cycle, append-only, for whoever must answer "why
//! did my VM shrink at 03:12?"), and the store's `balloon` events; and counted on /metrics.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use memwarden_collector::Collector;
use memwarden_control::balloon::{Cycle, CycleReport};
use memwarden_model::units::format_bytes;
use memwarden_model::Sample;
use memwarden_policy::Direction;
use memwarden_store::Store;
use tracing::{info, warn};

use crate::config::Config;

/// The controller's state in the daemon, kept across reloads.
#[derive(Debug)]
pub struct BalloonRunner {
    cycle: Cycle,
    /// Actions done, by (VM, direction): `memwarden_balloon_actions_total`.
    pub actions_total: BTreeMap<(String, &'static str), u64>,
    /// Actions the hypervisor refused, by VM: `memwarden_balloon_action_errors_total`.
    pub errors_total: BTreeMap<String, u64>,
    was_enabled: bool,
}

/// The audit file for a history at `db`.
pub fn audit_path(db: &Path) -> PathBuf {
    db.with_file_name("balloon-audit.jsonl")
}

impl BalloonRunner {
    pub fn new(cfg: &Config) -> BalloonRunner {
        BalloonRunner {
            cycle: Cycle::new(Box::new(cfg.balloon.clone())),
            actions_total: BTreeMap::new(),
            errors_total: BTreeMap::new(),
            was_enabled: false,
        }
    }

    /// A reloaded configuration: the new policy from the next cycle, history and hysteresis kept.
    pub fn reload(&mut self, cfg: &Config) {
        self.cycle.set_controller(Box::new(cfg.balloon.clone()));
    }

    /// One cycle on `sample` when the controller is on, as JSON (for the audit file, the
    /// store and /api/v1/balloon, serialised once); `None` when it is off.
    pub fn run(
        &mut self,
        cfg: &Config,
        sample: &Sample,
        collector: &mut Collector,
        store: Option<&mut Store>,
    ) -> Option<serde_json::Value> {
        let on = cfg.balloon.enabled;
        if on != self.was_enabled {
            info!(
                enabled = on,
                dry_run = cfg.balloon.dry_run,
                "balloon controller {}",
                if on { "on" } else { "off" }
            );
            self.was_enabled = on;
        }
        if !on {
            return None;
        }
        let hv = if cfg.balloon.dry_run {
            None
        } else {
            collector
                .hypervisor()
                .map(|h| h as &mut dyn memwarden_hv::Hypervisor)
        };
        let report = self.cycle.step(sample, hv);
        self.count(&report);
        let data = serde_json::to_value(&report).unwrap_or_default();
        let eventful = !report.plan.actions.is_empty() || !report.plan.measured.is_empty();
        if eventful {
            log(&report);
            audit(&audit_path(&cfg.db), &data);
            if let Some(store) = store {
                if let Err(e) = store.append_event(sample.taken_at_unix_ms, "balloon", &data) {
                    warn!(error = %e, "balloon cycle not recorded in the history");
                }
            }
        }
        Some(data)
    }

    fn count(&mut self, r: &CycleReport) {
        for a in &r.applied {
            match &a.error {
                None => {
                    let dir = match a.action.direction {
                        Direction::Grow => "grow",
                        Direction::Shrink => "shrink",
                    };
                    *self
                        .actions_total
                        .entry((a.action.vm.clone(), dir))
                        .or_default() += 1;
                }
                Some(_) => *self.errors_total.entry(a.action.vm.clone()).or_default() += 1,
            }
        }
    }
}

fn log(r: &CycleReport) {
    for a in &r.plan.actions {
        let outcome = r.applied.iter().find(|x| x.action == *a).map_or(
            "planned (dry run)".to_string(),
            |x| match &x.error {
                None => "applied".to_string(),
                Some(e) => format!("refused: {e}"),
            },
        );
        info!(
            vm = %a.vm,
            from = %format_bytes(a.from_bytes),
            to = %format_bytes(a.target_bytes),
            outcome = %outcome,
            "balloon {:?}: {}",
            a.direction,
            a.reason
        );
    }
    for m in &r.plan.measured {
        info!(
            vm = %m.vm,
            balloon = %format_bytes(m.balloon_bytes),
            host_gain_bytes = m.host_gain_bytes,
            after_s = m.after_s,
            "balloon shrink measured (QEMU RSS drop)"
        );
    }
}

/// Appends one line; a failure is logged, never fatal (the store and the log still have it).
fn audit(path: &Path, data: &serde_json::Value) {
    let line = format!("{data}\n");
    let r = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .and_then(|mut f| f.write_all(line.as_bytes()));
    if let Err(e) = r {
        warn!(path = %path.display(), error = %e, "balloon audit line not written");
    }
}
