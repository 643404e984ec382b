//! `plan`: one cycle of the balloon controller, as a pure function of the sample, its recent
//! history, the configuration and the controller's state.
//!
//! Three passes, in order of urgency:
//! 1. grow every guest under pressure, at once (up to the high watermark, within the grow step
//!    and its maximum), even while the host is under pressure — the reason says what was traded;
//! 2. when the host is under pressure, shrink idle guests (ranked by [`crate::rank`]) until the
//!    expected host gain covers what the host wants plus what pass 1 granted; each down to its
//!    floor at most, within the shrink step, never against hysteresis;
//! 3. when the host is comfortable, give balloon memory back, within the surplus above target +
//!    dead band (so that even if guests use all of it the host stays out of pressure).

use std::collections::BTreeSet;

use memwarden_analysis::vm::figures;
use memwarden_analysis::vm::target::check_target;
use memwarden_model::units::{format_bytes, format_signed_bytes};
use memwarden_model::vm::VmSample;
use memwarden_model::Sample;
use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::guest::{judge, step_limit, GuestView};
use crate::history::{key_of, History};
use crate::host::{host_view, HostLevel, HostView};
use crate::rank::{order, Candidate};
use crate::state::State;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Grow,
    Shrink,
}

/// One balloon change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Action {
    /// The VM's name (`name` in JSON, as in `vms --json`).
    #[serde(rename = "name", alias = "vm")]
    pub vm: String,
    pub uuid: Option<String>,
    /// The balloon's size now (libvirt `actual`), bytes.
    pub from_bytes: u64,
    /// The size to set, bytes.
    pub target_bytes: u64,
    pub direction: Direction,
    /// Plain words, with the figures it came from.
    pub reason: String,
    /// What the host really gets back: QEMU-resident memory the guest held free or as cache
    /// (untouched pages give nothing). Negative for growth: what the host may have to find.
    pub expected_host_gain_bytes: i64,
    /// QEMU's RSS when the action was planned (to measure the real gain later).
    pub host_rss_bytes: Option<u64>,
}

/// A VM left alone this cycle, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Skip {
    #[serde(rename = "name", alias = "vm")]
    pub vm: String,
    pub uuid: Option<String>,
    pub reason: String,
}

/// What an earlier shrink really gave the host: the drop in QEMU's RSS since.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Measured {
    #[serde(rename = "name", alias = "vm")]
    pub vm: String,
    pub uuid: Option<String>,
    /// The balloon change that was asked for, bytes.
    pub balloon_bytes: u64,
    /// QEMU RSS before − now, bytes (negative if it grew).
    pub host_gain_bytes: i64,
    /// Seconds between the shrink and this measurement.
    pub after_s: u64,
    /// QEMU RSS when measured: the efficiency holds while the QEMU holds no more than this.
    #[serde(default)]
    pub rss_bytes: u64,
}

impl Measured {
    /// Host gain per balloon byte, 0–1.
    pub fn efficiency(&self) -> f64 {
        if self.balloon_bytes == 0 {
            return 0.0;
        }
        (self.host_gain_bytes as f64 / self.balloon_bytes as f64).clamp(0.0, 1.0)
    }
}

/// The controller's decision for one cycle.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub taken_at_unix_ms: u64,
    pub actions: Vec<Action>,
    pub skipped: Vec<Skip>,
    /// The host figures the plan came from.
    pub host: HostView,
    /// Earlier shrinks measured this cycle.
    pub measured: Vec<Measured>,
    /// Host need (plus what pressured guests were granted) that no guest could safely cover,
    /// bytes of expected host gain.
    pub unmet_need_bytes: u64,
}

/// One cycle: see the module documentation.
pub fn plan(sample: &Sample, history: &History, cfg: &Config, state: &State) -> Plan {
    let now = sample.taken_at_unix_ms;
    let host = host_view(sample, cfg);
    let mut p = Plan {
        taken_at_unix_ms: now,
        actions: Vec::new(),
        skipped: Vec::new(),
        host,
        measured: Vec::new(),
        unmet_need_bytes: 0,
    };
    let mut views: Vec<(&VmSample, GuestView)> = Vec::new();
    for vm in &sample.vms {
        if let Some(m) = measure(vm, state, cfg, now) {
            p.measured.push(m);
        }
        match judge(vm, history, cfg) {
            Ok(v) => views.push((vm, v)),
            Err(reason) => p.skipped.push(skip(vm, reason)),
        }
    }
    let granted = grow_pressured(&mut p, &views, cfg);
    let moved: BTreeSet<String> = p.actions.iter().map(|a| a.vm.clone()).collect();
    let rest: Vec<_> = views
        .iter()
        .filter(|(_, v)| !moved.contains(&v.name))
        .collect();
    match p.host.level {
        HostLevel::Pressure => {
            let need = p.host.need_bytes.saturating_add(granted);
            shrink_idle(&mut p, &rest, cfg, state, need);
        }
        HostLevel::Comfortable => give_back(&mut p, &rest, cfg, state),
        HostLevel::DeadBand | HostLevel::Unknown => {}
    }
    p
}

fn skip(vm: &VmSample, reason: String) -> Skip {
    Skip {
        vm: vm.name.clone(),
        uuid: vm.uuid.clone(),
        reason,
    }
}

fn pct(x: f64) -> String {
    format!("{:.0}%", x * 100.0)
}

/// Seconds since the VM's last action, and its direction.
fn last_action(state: &State, v: &GuestView, now: u64) -> Option<(Direction, u64)> {
    let r = state.get(&key_of(v.uuid.as_deref(), &v.name))?;
    Some((
        r.last_direction?,
        now.saturating_sub(r.last_action_unix_ms?) / 1000,
    ))
}

/// The RSS drop since a pending shrink, once it has had `settle_s` to happen.
fn measure(vm: &VmSample, state: &State, cfg: &Config, now: u64) -> Option<Measured> {
    let pending = state.get(&key_of(vm.uuid.as_deref(), &vm.name))?.pending?;
    let after_s = now.saturating_sub(pending.at_unix_ms) / 1000;
    if after_s < cfg.settle_s {
        return None;
    }
    let rss = figures(vm).host_rss_bytes?;
    Some(Measured {
        vm: vm.name.clone(),
        uuid: vm.uuid.clone(),
        balloon_bytes: pending.balloon_bytes,
        host_gain_bytes: (i128::from(pending.rss_before_bytes) - i128::from(rss))
            .clamp(i64::MIN.into(), i64::MAX.into()) as i64,
        after_s,
        rss_bytes: rss,
    })
}

/// Pass 1. Returns the bytes granted.
fn grow_pressured(p: &mut Plan, views: &[(&VmSample, GuestView)], cfg: &Config) -> u64 {
    let mut granted = 0u64;
    for (vm, v) in views {
        let Some(why) = &v.pressure else { continue };
        if v.actual_bytes >= v.max_bytes {
            p.skipped.push(skip(
                vm,
                format!(
                    "under pressure ({why}) but already at its maximum {}: only the guest can \
                     free memory now",
                    format_bytes(v.max_bytes)
                ),
            ));
            continue;
        }
        let grow = v
            .grow_wanted(cfg)
            .min(step_limit(cfg, v.max_bytes, true))
            .min(v.max_bytes - v.actual_bytes);
        let target = v.actual_bytes + grow;
        let mut reason = format!(
            "under pressure ({why}): grow {} → {} (+{}), toward {} usable",
            format_bytes(v.actual_bytes),
            format_bytes(target),
            format_bytes(grow),
            pct(cfg.guest_usable_high_share)
        );
        if p.host.level == HostLevel::Pressure {
            reason.push_str(&format!(
                "; the host is under pressure too ({}), the guest comes first: traded up to {} \
                 more host memory, asked back from idle guests this cycle",
                p.host.why,
                format_bytes(grow)
            ));
        }
        granted = granted.saturating_add(grow);
        p.actions.push(Action {
            vm: v.name.clone(),
            uuid: v.uuid.clone(),
            from_bytes: v.actual_bytes,
            target_bytes: target,
            direction: Direction::Grow,
            reason,
            expected_host_gain_bytes: -(grow.min(i64::MAX as u64) as i64),
            host_rss_bytes: v.host_rss_bytes,
        });
    }
    granted
}

/// Why `v` may not be shrunk now (hysteresis, settling, unknown RSS), or `None`.
fn hold_back(v: &GuestView, cfg: &Config, state: &State, now: u64) -> Option<String> {
    match last_action(state, v, now) {
        Some((Direction::Grow, s)) if s < cfg.min_reverse_interval_s => {
            return Some(format!(
                "grown {s} s ago: not shrunk before {} s have passed (hysteresis)",
                cfg.min_reverse_interval_s
            ))
        }
        Some((Direction::Shrink, s)) if s < cfg.settle_s => {
            return Some(format!(
                "shrunk {s} s ago: waiting {} s for its QEMU to give the pages back",
                cfg.settle_s
            ))
        }
        _ => {}
    }
    if v.host_rss_bytes.is_none() {
        return Some(
            "QEMU's RSS unknown: cannot tell whether shrinking it frees anything on the host"
                .into(),
        );
    }
    None
}

/// Pass 2.
fn shrink_idle(
    p: &mut Plan,
    views: &[&(&VmSample, GuestView)],
    cfg: &Config,
    state: &State,
    need: u64,
) {
    let now = p.taken_at_unix_ms;
    let mut cands = Vec::new();
    for (vm, v) in views.iter().map(|x| (x.0, &x.1)) {
        if let Some(why) = hold_back(v, cfg, state, now) {
            p.skipped.push(skip(vm, why));
            continue;
        }
        let room = v.actual_bytes.saturating_sub(v.floor_bytes);
        let give = v
            .idle_bytes
            .min(room)
            .min(step_limit(cfg, v.max_bytes, false));
        if give < cfg.min_change_bytes {
            p.skipped.push(skip(
                vm,
                format!(
                    "nothing to give: {} idle above {} usable, {} above its floor {}",
                    format_bytes(v.idle_bytes),
                    pct(cfg.guest_usable_high_share),
                    format_bytes(room),
                    format_bytes(v.floor_bytes)
                ),
            ));
            continue;
        }
        let eff = p
            .measured
            .iter()
            .find(|m| m.vm == v.name && m.uuid == v.uuid)
            .map(Measured::efficiency)
            .or_else(|| {
                let r = state.get(&key_of(v.uuid.as_deref(), &v.name))?;
                // A QEMU that has grown since holds pages the guest touched since (a fill, a
                // growth): what its last shrink gave says nothing about those.
                let rss = v.host_rss_bytes?;
                let then = r.measured_at_rss_bytes.unwrap_or(0);
                (rss <= then.saturating_add(cfg.min_change_bytes))
                    .then_some(r.measured_efficiency)
                    .flatten()
            });
        let c = Candidate::new(v, give, cfg, eff);
        if c.gain(give) == 0 {
            p.skipped.push(skip(
                vm,
                format!(
                    "shrinking it would free nothing on the host: QEMU holds {} for {} of guest \
                     use (its free memory was never touched{})",
                    format_bytes(v.host_rss_bytes.unwrap_or(0)),
                    format_bytes(v.used_bytes),
                    if v.free_page_reporting {
                        ", or free page reporting already returned it"
                    } else {
                        ""
                    }
                ),
            ));
            continue;
        }
        cands.push((vm, c));
    }
    cands.sort_by(|a, b| order(a.1.view, b.1.view));
    let mut remaining = need;
    for (vm, c) in cands {
        if remaining == 0 {
            break;
        }
        let v = c.view;
        let bytes = c
            .bytes_for(remaining)
            .max(cfg.min_change_bytes)
            .min(c.give_bytes);
        let target = v.actual_bytes - bytes;
        // The same check `memwarden setmem` makes: a last guard, from the analysis crate.
        if let Err(refusal) = check_target(vm, target, cfg.margin_bytes) {
            p.skipped.push(skip(vm, refusal.to_string()));
            continue;
        }
        let gain = c.gain(bytes);
        remaining = remaining.saturating_sub(gain);
        let mut reason = format!(
            "{}: shrink {} → {} (−{}); {} idle ({} usable = {} of its memory), floor {}; \
             expected host gain {} (QEMU holds {} of guest memory beyond its use",
            p.host.why,
            format_bytes(v.actual_bytes),
            format_bytes(target),
            format_bytes(bytes),
            format_bytes(v.idle_bytes),
            format_bytes(v.usable_bytes),
            pct(v.usable_share),
            format_bytes(v.floor_bytes),
            format_bytes(gain),
            format_bytes(c.resident_idle_bytes),
        );
        if c.efficiency < 1.0 {
            reason.push_str(&format!(
                "; its last shrink gave back {} of the balloon",
                pct(c.efficiency)
            ));
        }
        if v.free_page_reporting {
            reason.push_str("; free page reporting is on: only its cache is left to take");
        }
        reason.push(')');
        p.actions.push(Action {
            vm: v.name.clone(),
            uuid: v.uuid.clone(),
            from_bytes: v.actual_bytes,
            target_bytes: target,
            direction: Direction::Shrink,
            reason,
            expected_host_gain_bytes: gain.min(i64::MAX as u64) as i64,
            host_rss_bytes: v.host_rss_bytes,
        });
    }
    p.unmet_need_bytes = remaining;
}

/// Pass 3.
fn give_back(p: &mut Plan, views: &[&(&VmSample, GuestView)], cfg: &Config, state: &State) {
    let now = p.taken_at_unix_ms;
    let mut order: Vec<&GuestView> = views
        .iter()
        .map(|x| &x.1)
        .filter(|v| v.actual_bytes < v.max_bytes)
        .collect();
    // Least room first; ties by name so the same input gives the same plan.
    order.sort_by(|a, b| {
        a.usable_share
            .total_cmp(&b.usable_share)
            .then_with(|| a.name.cmp(&b.name))
    });
    let mut budget = p.host.surplus_bytes;
    for v in order {
        if let Some((Direction::Shrink, s)) = last_action(state, v, now) {
            if s < cfg.min_reverse_interval_s {
                continue;
            }
        }
        let held = v.max_bytes - v.actual_bytes;
        let grow = held.min(step_limit(cfg, v.max_bytes, true)).min(budget);
        if grow < cfg.min_change_bytes.min(held) || grow == 0 {
            continue;
        }
        budget -= grow;
        p.actions.push(Action {
            vm: v.name.clone(),
            uuid: v.uuid.clone(),
            from_bytes: v.actual_bytes,
            target_bytes: v.actual_bytes + grow,
            direction: Direction::Grow,
            reason: format!(
                "{}: give back {} of the {} its balloon holds ({} → {})",
                p.host.why,
                format_bytes(grow),
                format_bytes(held),
                format_bytes(v.actual_bytes),
                format_bytes(v.actual_bytes + grow)
            ),
            expected_host_gain_bytes: -(grow.min(i64::MAX as u64) as i64),
            host_rss_bytes: v.host_rss_bytes,
        });
    }
}

impl Plan {
    /// One line per action and skip, for logs and the CLI's plain output.
    pub fn lines(&self) -> Vec<String> {
        let mut out = vec![self.host.why.clone()];
        for a in &self.actions {
            out.push(format!(
                "{} {:?} {} → {} (host {}): {}",
                a.vm,
                a.direction,
                format_bytes(a.from_bytes),
                format_bytes(a.target_bytes),
                format_signed_bytes(a.expected_host_gain_bytes.into()),
                a.reason
            ));
        }
        for s in &self.skipped {
            out.push(format!("{} skipped: {}", s.vm, s.reason));
        }
        out
    }
}
