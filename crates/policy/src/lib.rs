//! memwarden's balloon policy: which guests to grow or shrink, by how much, and why — a pure
//! function of one sample's [`View`] (the figures every output shows), its recent [`History`],
//! a [`Config`] and the controller's [`State`]. Applying a [`Plan`] (the actuator, through the `Hypervisor` trait), the
//! `memwarden balance` command and the daemon are thin layers on top.
//!
//! - [`plan`]: one cycle of the controller (see [`plan`](mod@plan) for its three passes);
//! - [`reclaim`]: "which guests would give 2 GiB, and what would the host really get?";
//! - [`oracles`]: oVirt MOM's stock rules and Proxmox's autoballoon, re-implemented from their
//!   published rules for comparison, with the same inputs and the same [`Plan`] output.
//!
//! Guest figures are untrusted: every VM whose statistics are stale, off, unset or do not add
//! up is skipped with its reason (the checks live in `memwarden-analysis`, once).

pub mod config;
pub mod decision;
pub mod guest;
pub mod harm;
pub mod history;
pub mod host;
pub mod ksm;
pub mod measure;
pub mod oracles;
pub mod plan;
pub mod rank;
pub mod reclaim;
pub mod state;

pub use config::{Config, ConfigError};
pub use decision::{Action, Direction, Exposure, Harm, HarmKind, Measured, Plan, Skip};
pub use history::History;
pub use host::{HostLevel, HostView};
pub use plan::plan;
pub use reclaim::{reclaim, ReclaimPlan};
pub use state::State;

pub use memwarden_analysis::view::View;

/// A balloon controller: memwarden's policy or one of the oracles, so that a comparison can run
/// them all on the same samples.
pub trait Controller {
    /// A short name for tables (`memwarden`, `mom`, `proxmox`).
    fn name(&self) -> &'static str;
    /// One cycle.
    fn plan(&self, view: &View, history: &History, state: &State) -> Plan;
}

impl Controller for Config {
    fn name(&self) -> &'static str {
        "memwarden"
    }
    fn plan(&self, view: &View, history: &History, state: &State) -> Plan {
        plan(view, history, self, state)
    }
}

#[cfg(test)]
mod tests;
