//! One instant of one host in the planner's terms, from a recorded [`Sample`] (the Prometheus
//! adapter builds the same thing from series).

use memwarden_model::host::{HostSample, KsmSysfs, Meminfo};
use memwarden_model::vm::VmSample;
use memwarden_model::Sample;
use serde::{Deserialize, Serialize};

use crate::vm;

/// What the planner reads of one host at one instant. Bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Observation {
    pub at_unix_ms: u64,
    pub mem_total_bytes: u64,
    /// MemTotal − MemAvailable: everything in use on the host, QEMU included.
    pub host_used_bytes: u64,
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
    /// What KSM saves on this VM's QEMU: see [`ksm_saved`].
    pub ksm_saved_bytes: Option<u64>,
}

/// What KSM saves on a process that has `merged_bytes` mapped to merged pages
/// (ksm_merging_pages), given the host's pages_shared and pages_sharing: one in every
/// (shared + sharing) merged mappings is the copy kept. The process's own count is current
/// even while ksmd is stopped; the global counters are then ksmd's last count, but only their
/// proportion is used. Not the global pages_sharing itself: it counts every process's merges,
/// and stays (stale) after ksmd stops and the merging processes are gone.
pub fn ksm_saved(merged_bytes: u64, pages_shared: u64, pages_sharing: u64) -> u64 {
    let all = u128::from(pages_shared) + u128::from(pages_sharing);
    if all == 0 {
        return 0;
    }
    (u128::from(merged_bytes) * u128::from(pages_sharing) / all) as u64
}

/// The observation a recorded sample holds, through the same derivations as `/metrics`
/// ([`vm::figures`]), so `plan --db` and `plan --prometheus` read alike.
pub fn observe(sample: &Sample) -> Observation {
    let h = &sample.host;
    let mem_total = h.meminfo.get("MemTotal").unwrap_or(0);
    let available = h.meminfo.get("MemAvailable").unwrap_or(mem_total);
    let ksm = h.ksm.as_ref();
    let shared = ksm.and_then(|k| k.pages_shared).unwrap_or(0);
    let sharing = ksm.and_then(|k| k.pages_sharing).unwrap_or(0);
    Observation {
        at_unix_ms: sample.taken_at_unix_ms,
        mem_total_bytes: mem_total,
        host_used_bytes: mem_total.saturating_sub(available),
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
                    ksm_saved_bytes: f.ksm_merged_bytes.map(|m| ksm_saved(m, shared, sharing)),
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
