//! One instant of one host in the planner's terms, from a recorded [`Sample`] (the Prometheus
//! adapter builds the same thing from series).

use memwarden_model::host::{HostSample, KsmSysfs, Meminfo};
use memwarden_model::vm::VmSample;
use memwarden_model::Sample;
use serde::{Deserialize, Serialize};

use crate::{ksm, vm};

/// What the planner reads of one host at one instant. Bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Observation {
    pub at_unix_ms: u64,
    pub mem_total_bytes: u64,
    /// MemTotal − MemAvailable: everything in use on the host, QEMU included.
    pub host_used_bytes: u64,
    /// KSM pages_sharing × page size (0 without KSM).
    pub ksm_saved_bytes: u64,
    pub vms: Vec<VmObservation>,
}

/// What the planner reads of one VM at one instant; `None` where it was not reported.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmObservation {
    pub name: String,
    /// What was promised to the guest: its maximum memory.
    pub max_memory_bytes: Option<u64>,
    /// MemTotal − MemAvailable in the guest (balloon statistics).
    pub guest_used_bytes: Option<u64>,
    /// MemTotal − MemFree in the guest: what it has touched and still holds, page cache
    /// included.
    pub guest_used_legacy_bytes: Option<u64>,
    pub qemu_rss_bytes: Option<u64>,
}

/// The observation a recorded sample holds, through the same derivations as `/metrics`
/// ([`vm::figures`], [`ksm::report`]), so `plan --db` and `plan --prometheus` read alike.
pub fn observe(sample: &Sample) -> Observation {
    let h = &sample.host;
    let mem_total = h.meminfo.get("MemTotal").unwrap_or(0);
    let available = h.meminfo.get("MemAvailable").unwrap_or(mem_total);
    Observation {
        at_unix_ms: sample.taken_at_unix_ms,
        mem_total_bytes: mem_total,
        host_used_bytes: mem_total.saturating_sub(available),
        ksm_saved_bytes: ksm::report(h).saved_bytes.unwrap_or(0),
        vms: sample
            .vms
            .iter()
            .map(|v| {
                let f = vm::figures(v);
                VmObservation {
                    name: v.name.clone(),
                    max_memory_bytes: v.max_memory_bytes,
                    guest_used_bytes: f.guest_used_bytes,
                    guest_used_legacy_bytes: f.guest_used_legacy_bytes,
                    qemu_rss_bytes: f.host_rss_bytes,
                }
            })
            .collect(),
    }
}

/// The part of a stored [`Sample`] the planner reads: time, meminfo, KSM counters and the VMs.
/// Decoding into it skips the rest (the process table is most of a sample), so a long window
/// reads several times faster than as whole samples (`Store::range_as`).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct StoredSample {
    pub taken_at_unix_ms: u64,
    pub host: StoredHost,
    #[serde(default)]
    pub vms: Vec<VmSample>,
}

/// See [`StoredSample`].
#[derive(Debug, Clone, Default, Deserialize)]
pub struct StoredHost {
    pub meminfo: Meminfo,
    #[serde(default)]
    pub ksm: Option<KsmSysfs>,
}

impl StoredSample {
    /// Its observation, through the very derivations [`observe`] applies to a whole sample.
    pub fn observe(self) -> Observation {
        observe(&Sample {
            taken_at_unix_ms: self.taken_at_unix_ms,
            host: HostSample {
                meminfo: self.host.meminfo,
                ksm: self.host.ksm,
                ..HostSample::default()
            },
            vms: self.vms,
            ..Sample::default()
        })
    }
}
