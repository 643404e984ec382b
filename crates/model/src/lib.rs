//! Plain data: what one sample of a host (and its VMs) holds, in bytes.
//!
//! Readers (`memwarden-procfs`, `memwarden-hv`) fill these types; analyses and outputs only read
//! them. Everything is `Serialize`/`Deserialize` so that a recorder can store raw samples and
//! derive views again later. New fields carry `#[serde(default)]` so old records still load.

pub mod clock;
pub mod host;
pub mod redact;
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
    /// Why VMs could not be read at all (hypervisor unreachable), one line each. A VM that
    /// could not be read is a row in `vms` with its [`vm::ReadStatus`]; host-side gaps are in
    /// `host.degraded`.
    #[serde(default)]
    pub degraded: Vec<String>,
    /// Each source of this sample (host, libvirt, QMP) with its success and duration.
    #[serde(default)]
    pub sources: Vec<SourceHealth>,
    /// What was taken out of this sample before it was kept ([`Sample::redact`]).
    #[serde(default)]
    pub redaction: redact::Redaction,
}

/// One source of a sample, as node_exporter's `scrape_collector_success`/`_duration_seconds`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceHealth {
    /// `host`, `libvirt qemu:///system`, `qmp`.
    pub name: String,
    pub ok: bool,
    pub duration_ms: u64,
    #[serde(default)]
    pub error: Option<String>,
    /// How a VM source was reached: `rpc` (memwarden's libvirt RPC client), `libvirt.so`, or
    /// `qmp`; `None` for the host and before a first connection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transport: Option<String>,
}
