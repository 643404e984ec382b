//! What the controller remembers between cycles, per VM: its last action (for hysteresis), what
//! its last shrink really gave the host (a belief that expires), the largest burst of use it has
//! shown, and the harm it came to. The caller keeps it (the daemon also writes it to its store,
//! so that it survives a restart); `plan` only reads it, and [`State::after`] returns the next
//! one, so the policy stays a pure function.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::decision::{Direction, HarmKind, Plan};
use crate::history::key_of;

/// A shrink waiting to be measured, with what the guest looked like when it was asked for (to
/// judge the measurement net of what the guest did meanwhile).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingShrink {
    pub at_unix_ms: u64,
    /// Balloon change asked for, bytes.
    pub balloon_bytes: u64,
    /// QEMU RSS when it was asked for.
    pub rss_before_bytes: u64,
    /// Guest use and cache when it was asked for (absent in state written before 0.1.1).
    #[serde(default)]
    pub used_before_bytes: Option<u64>,
    #[serde(default)]
    pub cache_before_bytes: Option<u64>,
}

/// One VM's memory.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct VmRecord {
    pub last_action_unix_ms: Option<u64>,
    pub last_direction: Option<Direction>,
    pub pending: Option<PendingShrink>,
    /// Host gain per byte of balloon measured on the last conclusive shrink (QEMU RSS drop /
    /// balloon change, 0–1); `None` until one was measured.
    pub measured_efficiency: Option<f64>,
    /// QEMU RSS when that was measured.
    #[serde(default)]
    pub measured_at_rss_bytes: Option<u64>,
    /// When that was measured (the belief expires `belief_ttl_s` later).
    #[serde(default)]
    pub measured_at_unix_ms: Option<u64>,
    /// Conclusive shrinks in a row that gave the host less than `min_host_gain_share`: each
    /// doubles how long that belief holds (at most 16 × `belief_ttl_s`).
    #[serde(default)]
    pub fruitless_probes: u32,
    /// The largest rise in guest use between two statistics updates seen so far, bytes.
    #[serde(default)]
    pub largest_burst_bytes: u64,
    /// The lowest QEMU RSS seen: what QEMU holds above it the guest has touched since, so a
    /// balloon reaches it (no probe needed for that much).
    #[serde(default)]
    pub rss_low_bytes: Option<u64>,
    /// Extra margin earned by harm, bytes.
    #[serde(default)]
    pub harm_margin_bytes: u64,
    /// When harm was last seen.
    #[serde(default)]
    pub harm_at_unix_ms: Option<u64>,
    /// When a restart of its kernel (a reboot or a crash) was last answered: its counters
    /// starting again afterwards are that same restart, not a second one.
    #[serde(default)]
    pub restart_at_unix_ms: Option<u64>,
}

impl VmRecord {
    /// The measured efficiency, while it is still believed: not expired, and QEMU has not grown
    /// since (a QEMU that grew holds pages the guest touched since: what the last shrink gave
    /// says nothing about those).
    pub fn belief(&self, cfg: &Config, rss_now: Option<u64>, now_unix_ms: u64) -> Option<f64> {
        let eff = self.measured_efficiency?;
        let at = self.measured_at_unix_ms.unwrap_or(0);
        if now_unix_ms.saturating_sub(at) / 1000 >= self.ttl_s(cfg) {
            return None;
        }
        let then = self.measured_at_rss_bytes.unwrap_or(0);
        (rss_now? <= then.saturating_add(cfg.min_change_bytes)).then_some(eff)
    }

    /// How long the last measurement is believed.
    pub fn ttl_s(&self, cfg: &Config) -> u64 {
        cfg.belief_ttl_s
            .saturating_mul(1 << self.fruitless_probes.min(4))
    }

    /// The last conclusive shrink gave too little, and the belief has expired: the next shrink
    /// is a probe.
    pub fn probing(&self) -> bool {
        self.fruitless_probes > 0
    }
}

/// The controller's memory of every VM, keyed by UUID (else `name:NAME`, as History).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct State {
    pub vms: BTreeMap<String, VmRecord>,
}

impl State {
    pub fn get(&self, key: &str) -> Option<&VmRecord> {
        self.vms.get(key)
    }

    /// The state once `plan` has been applied at `now_unix_ms`: actions recorded for
    /// hysteresis, shrinks left pending until measured, conclusive measurements believed,
    /// bursts and harm remembered.
    pub fn after(&self, plan: &Plan, now_unix_ms: u64) -> State {
        let mut next = self.clone();
        for m in &plan.measured {
            let r = next
                .vms
                .entry(key_of(m.uuid.as_deref(), &m.vm))
                .or_default();
            r.pending = None;
            if m.inconclusive.is_none() {
                r.fruitless_probes = if m.too_little {
                    r.fruitless_probes.saturating_add(1)
                } else {
                    0
                };
                r.measured_efficiency = Some(m.efficiency());
                r.measured_at_rss_bytes = Some(m.rss_bytes);
                r.measured_at_unix_ms = Some(now_unix_ms);
            }
        }
        for e in &plan.exposure {
            let r = next
                .vms
                .entry(key_of(e.uuid.as_deref(), &e.vm))
                .or_default();
            r.largest_burst_bytes = r.largest_burst_bytes.max(e.burst_seen_bytes);
            if let Some(rss) = e.host_rss_bytes {
                r.rss_low_bytes = Some(r.rss_low_bytes.map_or(rss, |l| l.min(rss)));
            }
        }
        for h in &plan.harm {
            let r = next
                .vms
                .entry(key_of(h.uuid.as_deref(), &h.vm))
                .or_default();
            r.harm_at_unix_ms = Some(now_unix_ms);
            if matches!(h.kind, HarmKind::Reboot | HarmKind::Crash) {
                r.restart_at_unix_ms = Some(now_unix_ms);
            }
            r.harm_margin_bytes = h.margin_after_bytes;
            // What the controller believed led to this: start over.
            r.measured_efficiency = None;
            r.pending = None;
            r.rss_low_bytes = None;
        }
        for a in &plan.actions {
            let r = next
                .vms
                .entry(key_of(a.uuid.as_deref(), &a.vm))
                .or_default();
            r.last_action_unix_ms = Some(now_unix_ms);
            r.last_direction = Some(a.direction);
            r.pending = match (a.direction, a.host_rss_bytes) {
                (Direction::Shrink, Some(rss)) => Some(PendingShrink {
                    at_unix_ms: now_unix_ms,
                    balloon_bytes: a.from_bytes - a.target_bytes,
                    rss_before_bytes: rss,
                    used_before_bytes: a.guest_used_bytes,
                    cache_before_bytes: a.guest_cache_bytes,
                }),
                _ => None,
            };
        }
        next
    }
}
