//! Plain data: what one sample of a host (and its VMs) holds, in bytes.
//!
//! Readers (`memwarden-procfs`, `memwarden-hv`) fill these types; analyses and outputs only read
//! them. Everything is `Serialize`/`Deserialize` so that a recorder can store raw samples and
//! derive views again later. New fields carry `#[serde(default)]` so old records still load.

pub mod host;
pub mod units;
pub mod vm;

use serde::{Deserialize, Serialize};

/// One observation of the host and every VM on it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Sample {
    /// Wall-clock time the sample was started, milliseconds since the Unix epoch.
    pub taken_at_unix_ms: u64,
    pub host: host::HostSample,
    #[serde(default)]
    pub vms: Vec<vm::VmSample>,
    /// Why VMs could not be read at all (hypervisor unreachable), one line each; a VM that
    /// vanished mid-sample is simply absent. Host-side gaps are in `host.degraded`.
    #[serde(default)]
    pub degraded: Vec<String>,
}
