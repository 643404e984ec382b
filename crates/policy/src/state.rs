//! What the controller remembers between cycles, per VM: its last action (for hysteresis) and
//! what its last shrink really gave the host. The caller keeps it; `plan` only reads it, and
//! [`State::after`] returns the next one, so the policy stays a pure function.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::history::key_of;
use crate::plan::{Direction, Plan};

/// A shrink waiting to be measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingShrink {
    pub at_unix_ms: u64,
    /// Balloon change asked for, bytes.
    pub balloon_bytes: u64,
    /// QEMU RSS when it was asked for.
    pub rss_before_bytes: u64,
}

/// One VM's memory.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct VmRecord {
    pub last_action_unix_ms: Option<u64>,
    pub last_direction: Option<Direction>,
    pub pending: Option<PendingShrink>,
    /// Host gain per byte of balloon measured on the last shrink (QEMU RSS drop / balloon
    /// change, 0–1); `None` until one was measured.
    pub measured_efficiency: Option<f64>,
    /// QEMU RSS when that was measured.
    #[serde(default)]
    pub measured_at_rss_bytes: Option<u64>,
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
    /// hysteresis, shrinks left pending until measured, measurements made by `plan` kept.
    pub fn after(&self, plan: &Plan, now_unix_ms: u64) -> State {
        let mut next = self.clone();
        for m in &plan.measured {
            let r = next
                .vms
                .entry(key_of(m.uuid.as_deref(), &m.vm))
                .or_default();
            r.pending = None;
            r.measured_efficiency = Some(m.efficiency());
            r.measured_at_rss_bytes = Some(m.rss_bytes);
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
                }),
                _ => None,
            };
        }
        next
    }
}
