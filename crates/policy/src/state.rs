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
    /// The guest's use when that was measured (absent in state written before 0.1.2: then the
    /// belief holds while QEMU's RSS alone has not grown).
    #[serde(default)]
    pub measured_at_used_bytes: Option<u64>,
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
    /// The lowest QEMU RSS beyond the guest's use seen ([`spare`]): what QEMU holds beyond
    /// the use above it the guest has touched and freed (or cached) since, so a balloon
    /// reaches it (no probe needed for that much). Measured beyond the use, not as RSS alone:
    /// RSS that rose with the use holds pages the guest is using, which no balloon takes.
    #[serde(default)]
    pub spare_low_bytes: Option<u64>,
    /// QEMU's RSS beyond the guest's use ([`spare`]) at which a shrink last stopped paying
    /// (`Measured::dry_spare_bytes`): the balloon reaches only what the guest touched and freed
    /// above it, so a shrink that would take QEMU below it takes pages QEMU never backed (seed
    /// 1796644295597144565: a touch-and-free taken back whole, then 49 MiB more of untouched
    /// memory, undone). Believed as long as the last measurement.
    #[serde(default)]
    pub dry_spare_bytes: Option<u64>,
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
    /// The measured efficiency, while it is still believed: not expired, and QEMU holds no more
    /// beyond the guest's use than it did then (QEMU that grew beyond the use holds pages the
    /// guest touched and freed since: what the last shrink gave says nothing about those; QEMU
    /// that grew with the use holds pages the guest is using, which changes nothing: seed
    /// 1796644295597144565, a guest shrunk into its own allocation because its RSS grew).
    pub fn belief(
        &self,
        cfg: &Config,
        rss_now: Option<u64>,
        used_now: Option<u64>,
        now_unix_ms: u64,
    ) -> Option<f64> {
        let eff = self.measured_efficiency?;
        let at = self.measured_at_unix_ms.unwrap_or(0);
        if now_unix_ms.saturating_sub(at) / 1000 >= self.ttl_s(cfg) {
            return None;
        }
        (!self.grew_since_measured(cfg, rss_now?, used_now)).then_some(eff)
    }

    /// Whether QEMU holds more (by the minimum change) beyond the guest's use than when the
    /// last shrink was measured; by RSS alone where the use then or now is unknown.
    pub fn grew_since_measured(&self, cfg: &Config, rss_now: u64, used_now: Option<u64>) -> bool {
        let rss_then = self.measured_at_rss_bytes.unwrap_or(0);
        let (now, then) = match (used_now, self.measured_at_used_bytes) {
            (Some(u_now), Some(u_then)) => (spare(rss_now, u_now), spare(rss_then, u_then)),
            _ => (rss_now, rss_then),
        };
        now > then.saturating_add(cfg.min_change_bytes)
    }

    /// The level where shrinks stopped paying, while the last measurement is believed.
    pub fn dry_spare(&self, cfg: &Config, now_unix_ms: u64) -> Option<u64> {
        let at = self.measured_at_unix_ms.unwrap_or(0);
        (now_unix_ms.saturating_sub(at) / 1000 < self.ttl_s(cfg))
            .then_some(self.dry_spare_bytes)
            .flatten()
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

/// QEMU's RSS beyond the guest's use: guest memory QEMU backs that the guest holds free or as
/// cache, plus QEMU's own.
pub fn spare(rss_bytes: u64, used_bytes: u64) -> u64 {
    rss_bytes.saturating_sub(used_bytes)
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
            r.dry_spare_bytes = m.dry_spare_bytes;
            if m.inconclusive.is_none() {
                r.fruitless_probes = if m.too_little {
                    r.fruitless_probes.saturating_add(1)
                } else {
                    0
                };
                r.measured_efficiency = Some(m.efficiency());
                r.measured_at_rss_bytes = Some(m.rss_bytes);
                r.measured_at_used_bytes = m.guest_used_bytes;
                r.measured_at_unix_ms = Some(now_unix_ms);
            }
        }
        for e in &plan.exposure {
            let r = next
                .vms
                .entry(key_of(e.uuid.as_deref(), &e.vm))
                .or_default();
            r.largest_burst_bytes = r.largest_burst_bytes.max(e.burst_seen_bytes);
            if let (Some(rss), Some(used)) = (e.host_rss_bytes, e.guest_used_bytes) {
                let now = spare(rss, used);
                r.spare_low_bytes = Some(r.spare_low_bytes.map_or(now, |l| l.min(now)));
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
            r.spare_low_bytes = None;
            r.dry_spare_bytes = None;
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
