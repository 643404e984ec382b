//! The balloon controller inside `serve`: one cycle per sample when `[balloon] enabled`.
//!
//! Every cycle that acted (an action, a refusal), measured a shrink, saw harm to a guest, or left
//! a VM alone for a reason it had not given the cycle before (the same reason with new figures
//! is not new) is written three ways: the log (one line per action, measurement and harm, with
//! its reason), the audit file (`balloon-audit.jsonl` next to the history, one JSON object per
//! such cycle, append-only, for whoever must answer "why did my VM shrink at 03:12?"), and the
//! store's `balloon` events; harm also as a `balloon_harm` event, and counted on /metrics. The
//! controller's memory (`State`) is written to the store as a `balloon_state` event whenever it
//! changes, and read back at start: a restart of `serve` keeps hysteresis, beliefs and harm.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use memwarden_collector::Collector;
use memwarden_control::balloon::{Cycle, CycleReport, Outcome};
use memwarden_model::units::format_bytes;
use memwarden_model::Sample;
use memwarden_policy::{Direction, State, View};
use memwarden_store::Store;
use tracing::{debug, info, warn};

use crate::config::Config;

/// The controller's state in the daemon, kept across reloads.
#[derive(Debug)]
pub struct BalloonRunner {
    cycle: Cycle,
    /// Actions done, by (VM, direction): `memwarden_balloon_actions_total`.
    pub actions_total: BTreeMap<(String, &'static str), u64>,
    /// Actions the hypervisor refused, by VM: `memwarden_balloon_action_errors_total`.
    pub errors_total: BTreeMap<String, u64>,
    /// Harm seen, by (VM, kind): `memwarden_balloon_guest_harm_total`.
    pub harm_total: BTreeMap<(String, &'static str), u64>,
    was_enabled: bool,
    /// Why each VM was left alone last cycle, figures left out: a new reason is audited.
    last_skips: BTreeMap<String, String>,
    /// The state last written to the store; `None` until it was read back from it.
    stored_state: Option<State>,
    /// Sample again this soon: a ballooned guest is near its floor (see [`BalloonRunner::run`]).
    pub fast_poll: Option<std::time::Duration>,
    /// The audit file refused the last line: said once, and again when it takes one.
    audit_failing: bool,
}

/// The store's event holding the controller's state.
pub const STATE_EVENT: &str = "balloon_state";
/// How far back a stored state is taken up at start.
const STATE_MAX_AGE_MS: u64 = 7 * 24 * 3600 * 1000;

/// A reason without its figures: "shrunk 4 s ago" and "shrunk 6 s ago" are the same reason.
fn words(reason: &str) -> String {
    reason.replace(|c: char| c.is_ascii_digit() || c == '.', "")
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
            harm_total: BTreeMap::new(),
            was_enabled: false,
            last_skips: BTreeMap::new(),
            stored_state: None,
            fast_poll: None,
            audit_failing: false,
        }
    }

    /// A reloaded configuration: the new policy from the next cycle, history and hysteresis kept.
    pub fn reload(&mut self, cfg: &Config) {
        self.cycle.set_controller(Box::new(cfg.balloon.clone()));
    }

    /// One cycle on `view` when the controller is on, as JSON (for the audit file, the
    /// store and /api/v1/balloon, serialised once); `None` when it is off.
    pub fn run(
        &mut self,
        cfg: &Config,
        view: &View,
        collector: &mut Collector,
        store: Option<&mut Store>,
    ) -> Option<serde_json::Value> {
        let sample = view.sample();
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
        let mut store = store;
        if self.stored_state.is_none() {
            if let Some(st) = store
                .as_deref()
                .and_then(|s| restore(s, sample.taken_at_unix_ms))
            {
                info!(
                    vms = st.vms.len(),
                    "balloon controller state restored from the store"
                );
                self.cycle.restore_state(st.clone());
                self.stored_state = Some(st);
            } else {
                self.stored_state = Some(State::default());
            }
        }
        let report = self.cycle.step(view, hv);
        self.count(&report);
        self.fast_poll = fast_poll(&report, sample);
        let data = serde_json::to_value(&report).unwrap_or_default();
        let skips: BTreeMap<String, String> = report
            .plan
            .skipped
            .iter()
            .map(|k| (k.vm.clone(), words(&k.reason)))
            .collect();
        let skipped_differently = skips != self.last_skips;
        self.last_skips = skips;
        let eventful = !report.plan.actions.is_empty()
            || !report.plan.measured.is_empty()
            || !report.plan.harm.is_empty()
            || skipped_differently;
        if eventful {
            log(&report);
            let path = audit_path(&cfg.db);
            let written = audit(&path, &data);
            match (&written, self.audit_failing) {
                (Err(e), false) => warn!(
                    path = %path.display(),
                    error = %e,
                    "balloon audit lines not written until the file takes them again \
                     (the log and the store still have each cycle)"
                ),
                (Ok(()), true) => {
                    info!(path = %path.display(), "balloon audit lines written again")
                }
                _ => {}
            }
            self.audit_failing = written.is_err();
            if let Some(store) = store.as_deref_mut() {
                record(store, sample.taken_at_unix_ms, "balloon", &data);
                for h in &report.plan.harm {
                    let v = serde_json::to_value(h).unwrap_or_default();
                    record(store, sample.taken_at_unix_ms, "balloon_harm", &v);
                }
            }
        }
        if let Some(store) = store {
            let st = self.cycle.state();
            if self.stored_state.as_ref() != Some(st) {
                let v = serde_json::to_value(st).unwrap_or_default();
                record(store, sample.taken_at_unix_ms, STATE_EVENT, &v);
                self.stored_state = Some(st.clone());
            }
        }
        Some(data)
    }

    fn count(&mut self, r: &CycleReport) {
        for h in &r.plan.harm {
            *self
                .harm_total
                .entry((h.vm.clone(), h.kind.as_str()))
                .or_default() += 1;
        }
        for a in &r.applied {
            match &a.outcome {
                Outcome::Applied => {
                    let dir = match a.action.direction {
                        Direction::Grow => "grow",
                        Direction::Shrink => "shrink",
                    };
                    *self
                        .actions_total
                        .entry((a.action.vm.clone(), dir))
                        .or_default() += 1;
                }
                // A VM gone meanwhile is logged as gone (changes.rs), not a controller error.
                Outcome::Gone(_) => {}
                Outcome::Refused(_) => {
                    *self.errors_total.entry(a.action.vm.clone()).or_default() += 1;
                }
            }
        }
    }
}

/// A guest the controller holds memory of, left with less headroom than twice its margin, is
/// looked at again within its statistics period (at least 1 s), not the daemon's interval: its
/// growth then follows a fill within one statistics update.
fn fast_poll(r: &CycleReport, sample: &Sample) -> Option<std::time::Duration> {
    r.plan
        .exposure
        .iter()
        .filter(|e| e.balloon_bytes < e.max_bytes)
        .filter(|e| e.headroom_bytes < e.margin_bytes.saturating_mul(2))
        .filter_map(|e| {
            let vm = sample
                .vms
                .iter()
                .find(|v| v.name == e.vm && v.uuid == e.uuid)?;
            vm.device.stats_period_s.filter(|p| *p > 0)
        })
        .min()
        .map(|p| std::time::Duration::from_secs(p.max(1)))
}

/// The newest state an earlier run stored, if it is recent enough to still describe the VMs.
pub fn restore(store: &Store, now_unix_ms: u64) -> Option<State> {
    let since = now_unix_ms.saturating_sub(STATE_MAX_AGE_MS);
    match store.events(STATE_EVENT, since, now_unix_ms) {
        Ok(events) => {
            let (_, v) = events.into_iter().next_back()?;
            serde_json::from_value(v)
                .map_err(
                    |e| warn!(error = %e, "stored balloon state not understood: starting afresh"),
                )
                .ok()
        }
        Err(e) => {
            warn!(error = %crate::report::chain(&e), "stored balloon state not read: starting afresh");
            None
        }
    }
}

fn record(store: &mut Store, at_unix_ms: u64, kind: &str, data: &serde_json::Value) {
    if let Err(e) = store.append_event(at_unix_ms, kind, data) {
        warn!(error = %crate::report::chain(&e), kind, "balloon event not recorded in the history");
    }
}

fn log(r: &CycleReport) {
    for h in &r.plan.harm {
        warn!(
            vm = %h.vm,
            kind = h.kind.as_str(),
            before = h.before.as_deref().unwrap_or("nothing"),
            "guest harmed: {}; answered by giving it its memory back",
            h.detail
        );
    }
    for a in &r.plan.actions {
        let outcome = r.applied.iter().find(|x| x.action == *a).map_or(
            "planned (dry run)".to_string(),
            |x| match &x.outcome {
                Outcome::Applied => "applied".to_string(),
                Outcome::Gone(e) => format!("VM gone: {e}"),
                Outcome::Refused(e) => format!("refused: {e}"),
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
            "balloon shrink measured: {}",
            m.line()
        );
    }
    for k in &r.plan.skipped {
        debug!(vm = %k.vm, "balloon left alone: {}", k.reason);
    }
}

/// Appends one line; a failure is for the caller to log, never fatal (the store and the log
/// still have the cycle).
fn audit(path: &Path, data: &serde_json::Value) -> std::io::Result<()> {
    let line = format!("{data}\n");
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut f| f.write_all(line.as_bytes()))
}
