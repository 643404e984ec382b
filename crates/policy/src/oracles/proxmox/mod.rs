//! Proxmox VE's autoballoon (`PVE::AutoBalloon::compute_alg1`, driven by `pvestatd`'s
//! `auto_balloning` every 10 s), re-stated:
//!
//! - goal = MemTotal × target % (80) − used, used = MemTotal − MemAvailable: bytes to hand out
//!   (positive) or take back (negative); |goal| ≤ 10 MiB does nothing;
//! - only VMs whose balloon reports, with a floor (`balloon:` in the VM config — here libvirt's
//!   `<min_guarantee>`, or [`ProxmoxConfig::floor_share`] of max) and shares ≠ 0 take part;
//! - a VM is *comfortable* when its free memory (MemFree) > 25 % of its floor and its balloon is
//!   at or above the floor; growth goes to the others first, shrinking to the comfortable first;
//!   when that makes no progress, to all;
//! - the goal is split by shares (default 1000): desired = floor + (Σ(balloon − floor) + goal) ×
//!   share / Σ shares, clamped to [floor, max] (clamped VMs are redistributed in the next round),
//!   each VM moved by at most `max_change` (100 MiB) per cycle.

use std::collections::{BTreeMap, BTreeSet};

use memwarden_model::units::{format_bytes, MIB};
use memwarden_model::Sample;
use serde::{Deserialize, Serialize};

use super::{action, unseen};
use crate::decision::{Plan, Skip};
use crate::history::History;
use crate::host::{HostLevel, HostView};
use crate::state::State;
use crate::Controller;

/// One VM as `pvestatd` sees it (`vmstatus`), bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct PveVm {
    pub id: String,
    pub maxmem: f64,
    /// `shares`; `None` = 1000.
    pub shares: Option<u32>,
    /// Current balloon size (`actual`); 0 = driver not running.
    pub balloon: f64,
    /// The configured floor (`balloon:`); 0 = not set.
    pub balloon_min: f64,
    /// Guest MemFree; 0 when unknown.
    pub freemem: f64,
}

impl PveVm {
    fn shares(&self) -> f64 {
        f64::from(self.shares.filter(|s| *s > 0).unwrap_or(1000))
    }
}

/// Proxmox's knobs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProxmoxConfig {
    /// `ballooning-target`: host use (MemTotal − MemAvailable) aimed at, percent. 80.
    pub target_pct: f64,
    /// `$maxchange`: largest change per VM per cycle, bytes. 100 MiB.
    pub max_change_bytes: u64,
    /// The floor of a VM without `<min_guarantee>`, as a share of its maximum (Proxmox needs
    /// a `balloon:` value per VM; lab guests have none). `None`: such VMs are skipped, as
    /// Proxmox skips them.
    pub floor_share: Option<f64>,
    /// `shares` per VM name (default 1000; 0 leaves the VM alone).
    pub shares: BTreeMap<String, u32>,
}

impl Default for ProxmoxConfig {
    fn default() -> Self {
        ProxmoxConfig {
            target_pct: 80.0,
            max_change_bytes: 100 * MIB,
            floor_share: None,
            shares: BTreeMap::new(),
        }
    }
}

impl Controller for ProxmoxConfig {
    fn name(&self) -> &'static str {
        "proxmox"
    }
    /// pvestatd reads the raw statistics, not memwarden's view of them.
    fn plan(&self, view: &crate::View, history: &History, _state: &State) -> Plan {
        plan(view.sample(), history, self)
    }
}

/// Moves `bytes` (signed) across `ids` by shares; returns what is left. `res` holds the new
/// balloon sizes decided so far.
fn change(
    vms: &BTreeMap<&str, &PveVm>,
    res: &mut BTreeMap<String, f64>,
    ids: &[&str],
    bytes: f64,
    max_change: f64,
) -> f64 {
    let mut rest = bytes;
    let mut done = BTreeSet::new();
    let (mut repeat, mut progress) = (true, true);
    while rest != 0.0 && repeat && progress {
        repeat = false;
        progress = false;
        let live: Vec<&PveVm> = ids
            .iter()
            .filter(|id| !done.contains(**id))
            .map(|id| vms[id])
            .collect();
        let shares_total: f64 = live.iter().map(|d| d.shares()).sum();
        let alloc_old: f64 = live
            .iter()
            .map(|d| res.get(&d.id).copied().unwrap_or(d.balloon) - d.balloon_min)
            .sum();
        let alloc_new = alloc_old + rest;
        let mut changes = 0.0;
        for d in live {
            let mut desired = d.balloon_min + (alloc_new / shares_total * d.shares()).trunc();
            if desired > d.maxmem {
                desired = d.maxmem;
                repeat = true;
            } else if desired < d.balloon_min {
                desired = d.balloon_min;
                repeat = true;
            }
            let balloon = if bytes > 0.0 && desired > d.balloon {
                (d.balloon + max_change).min(desired)
            } else if desired < d.balloon {
                (d.balloon - max_change).max(desired)
            } else {
                done.insert(d.id.clone());
                continue;
            };
            if balloon != d.balloon {
                let old = res.get(&d.id).copied().unwrap_or(d.balloon);
                res.insert(d.id.clone(), balloon);
                if balloon != old {
                    changes += balloon - old;
                    progress = true;
                    repeat = true;
                }
            }
        }
        rest -= changes;
    }
    rest
}

/// `compute_alg1`: the new balloon size of each VM that moves.
pub fn compute_alg1(vms: &[PveVm], goal: f64, max_change: f64) -> BTreeMap<String, f64> {
    let by_id: BTreeMap<&str, &PveVm> = vms.iter().map(|v| (v.id.as_str(), v)).collect();
    let mut all = Vec::new();
    let mut pressured = Vec::new();
    let mut comfortable = Vec::new();
    for (id, d) in &by_id {
        if d.balloon == 0.0 || d.balloon_min == 0.0 || d.shares == Some(0) {
            continue;
        }
        all.push(*id);
        if d.freemem > 0.0 && d.freemem > d.balloon_min * 0.25 && d.balloon >= d.balloon_min {
            comfortable.push(*id);
        } else {
            pressured.push(*id);
        }
    }
    let mut res = BTreeMap::new();
    let dead = 10.0 * MIB as f64;
    if goal > dead {
        let rest = change(&by_id, &mut res, &pressured, goal, max_change);
        if rest >= goal {
            change(&by_id, &mut res, &all, rest, max_change);
        }
    } else if goal < -dead {
        let rest = change(&by_id, &mut res, &comfortable, goal, max_change);
        if rest <= goal {
            change(&by_id, &mut res, &all, rest, max_change);
        }
    }
    res
}

/// One `pvestatd` cycle over `sample` (Proxmox keeps no history).
pub fn plan(sample: &Sample, _history: &History, cfg: &ProxmoxConfig) -> Plan {
    let m = &sample.host.meminfo;
    let (total, avail) = (m.get("MemTotal"), m.get("MemAvailable"));
    let mut p = Plan {
        taken_at_unix_ms: sample.taken_at_unix_ms,
        actions: Vec::new(),
        skipped: Vec::new(),
        host: HostView {
            mem_total_bytes: total,
            mem_available_bytes: avail,
            target_bytes: total.map_or(0, |t| (t as f64 * (1.0 - cfg.target_pct / 100.0)) as u64),
            dead_band_bytes: 10 * MIB,
            psi_some_avg10_pct: None,
            psi_full_avg10_pct: None,
            level: HostLevel::Unknown,
            need_bytes: 0,
            surplus_bytes: 0,
            why: "Proxmox: host MemTotal or MemAvailable unknown".into(),
        },
        measured: Vec::new(),
        unmet_need_bytes: 0,
        harm: Vec::new(),
        exposure: Vec::new(),
    };
    let (Some(total), Some(avail)) = (total, avail) else {
        return p;
    };
    let used = total.saturating_sub(avail) as f64;
    let goal = (total as f64 * cfg.target_pct / 100.0 - used).trunc();
    p.host.level = if goal < -(10.0 * MIB as f64) {
        p.host.need_bytes = (-goal) as u64;
        HostLevel::Pressure
    } else if goal > 10.0 * MIB as f64 {
        p.host.surplus_bytes = goal as u64;
        HostLevel::Comfortable
    } else {
        HostLevel::DeadBand
    };
    p.host.why = format!(
        "Proxmox: host used {:.1}% against a {:.0}% target, goal {}{}",
        used / total as f64 * 100.0,
        cfg.target_pct,
        if goal < 0.0 { "−" } else { "+" },
        format_bytes(goal.abs() as u64)
    );
    let mut vms = Vec::new();
    for vm in &sample.vms {
        if let Some(s) = unseen(vm) {
            p.skipped.push(s);
            continue;
        }
        let max = vm.max_memory_bytes.unwrap_or(0) as f64;
        let floor = vm
            .config
            .min_guarantee_bytes
            .map(|f| f as f64)
            .or_else(|| cfg.floor_share.map(|s| (max * s).trunc()));
        let Some(floor) = floor else {
            p.skipped.push(Skip {
                vm: vm.name.clone(),
                uuid: vm.uuid.clone(),
                reason: "Proxmox: no balloon floor set (`balloon:`); pvestatd skips it".into(),
            });
            continue;
        };
        vms.push(PveVm {
            id: vm.name.clone(),
            maxmem: max,
            shares: cfg.shares.get(&vm.name).copied(),
            balloon: vm.balloon.actual_bytes.unwrap_or(0) as f64,
            balloon_min: floor,
            freemem: vm.balloon.unused_bytes.unwrap_or(0) as f64,
        });
    }
    let res = compute_alg1(&vms, goal, cfg.max_change_bytes as f64);
    for vm in &sample.vms {
        let (Some(target), Some(from)) = (res.get(&vm.name), vm.balloon.actual_bytes) else {
            continue;
        };
        let target = *target as u64;
        if target != from {
            let why = format!(
                "{}: share-weighted step to {}",
                p.host.why,
                format_bytes(target)
            );
            p.actions.push(action(vm, from, target, why));
        }
    }
    p
}

#[cfg(test)]
mod tests;
