//! What a hypervisor reports about one VM's memory, plus the host's view of its QEMU process.
//!
//! Filled by `memwarden-hv` (libvirt or QMP). Guest-reported figures (balloon statistics) are
//! untrusted: they are kept as reported, and the checks that failed are listed in
//! [`BalloonStats::problems`]; the analysis crate derives figures and a diagnosis from them.
//!
//! Units: typed fields are bytes (`_bytes`), counts, or seconds (`_s`). [`BalloonStats::tags`]
//! keeps every tag exactly in libvirt's form (KiB for sizes), in the order the source gave them,
//! unknown tags included, so `virsh dommemstat` can be reproduced byte for byte.

use serde::{Deserialize, Serialize};

use crate::host::ProcessMem;

/// Which backend produced a [`VmSample`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VmBackend {
    #[default]
    Libvirt,
    Qmp,
}

/// Run state as the hypervisor reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VmState {
    Running,
    Paused,
    Shutoff,
    Crashed,
    Suspended,
    #[default]
    Unknown,
    /// A state string we do not know (QMP `query-status` grows new ones).
    Other(String),
}

/// How a tag's value is expressed in libvirt's form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TagUnit {
    /// KiB (`actual`, `unused`, `available`, `usable`, `rss`, `disk_caches`, `swap_in`, `swap_out`).
    Kib,
    /// A plain count (faults, hugetlb allocations, OOM kills...).
    Count,
    /// Seconds since the Unix epoch (`last_update`).
    UnixSeconds,
    /// Unknown tag: value kept exactly as received.
    Raw,
}

/// One balloon statistic in libvirt's form, e.g. `unused 452528` (KiB).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatTag {
    /// libvirt's tag name (`unused`, `disk_caches`, ...), or for unknown ones the source's own
    /// name (`stat-foo` from QMP, `tag_13` for an unknown libvirt tag number).
    pub name: String,
    pub value: u64,
    pub unit: TagUnit,
}

/// The virtio-balloon statistics of one VM. Sizes in bytes; `None` when not reported.
///
/// Mapping (guest view): `available` = MemTotal, `unused` = MemFree, `usable` = MemAvailable,
/// `disk_caches` = Cached (Linux guests). `actual` is the balloon target set by the host.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BalloonStats {
    /// Current balloon size as seen by the guest: memory the guest may use (libvirt `actual`).
    pub actual_bytes: Option<u64>,
    /// Data read from guest swap, cumulative.
    pub swap_in_bytes: Option<u64>,
    /// Data written to guest swap, cumulative.
    pub swap_out_bytes: Option<u64>,
    pub major_faults: Option<u64>,
    pub minor_faults: Option<u64>,
    /// Guest free memory (Linux: MemFree; Windows: includes the standby list).
    pub unused_bytes: Option<u64>,
    /// Guest total memory (Linux: MemTotal).
    pub available_bytes: Option<u64>,
    /// Memory the guest can use without swapping (Linux: MemAvailable). Since Linux 4.16 guests.
    pub usable_bytes: Option<u64>,
    /// Host RSS of the QEMU process, as libvirt reads it (libvirt only).
    pub rss_bytes: Option<u64>,
    /// When the guest last pushed statistics, seconds since the Unix epoch (host clock).
    pub last_update_unix_s: Option<u64>,
    /// Guest page cache (Linux: Cached). Since Linux 4.18 guests.
    pub disk_caches_bytes: Option<u64>,
    pub hugetlb_pgalloc: Option<u64>,
    pub hugetlb_pgfail: Option<u64>,
    /// Since QEMU 9.x / Linux 6.12 guests (`stat-oom-kills`); libvirt reads it only via QMP.
    pub oom_kills: Option<u64>,
    pub alloc_stalls: Option<u64>,
    pub async_scans: Option<u64>,
    pub direct_scans: Option<u64>,
    pub async_reclaims: Option<u64>,
    pub direct_reclaims: Option<u64>,
    /// Every tag in libvirt form, source order, unknown ones included (sentinels included too).
    pub tags: Vec<StatTag>,
    /// Tags the guest left unset (value 2^64−1, or its KiB form): kept out of the typed fields.
    #[serde(default)]
    pub unset: Vec<String>,
    /// Checks on the guest's numbers that failed, in plain words ("free > total"). Never fatal.
    #[serde(default)]
    pub problems: Vec<String>,
}

/// How the newer statistics (OOM kills, stalls...) were or were not obtained for a libvirt VM.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "status", content = "detail")]
pub enum ExtraStats {
    /// Not attempted (QMP backend reads them directly; or not asked for).
    #[default]
    NotAsked,
    /// Read through libvirt-qemu's monitor passthrough.
    Read,
    /// The passthrough was refused or failed; the reason.
    Unavailable(String),
}

/// Why the guest's statistics are what they are: the facts a diagnosis needs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BalloonDevice {
    /// False for `<memballoon model='none'/>` or a QEMU without `-device virtio-balloon`.
    pub present: bool,
    /// QOM path of the device (QMP) or libvirt's alias (`balloon0`).
    pub path: Option<String>,
    /// The stats polling period in seconds; 0 = off. `None` when unknown.
    pub stats_period_s: Option<u64>,
    /// The device model (`virtio`, `virtio-balloon-pci`...).
    pub model: Option<String>,
}

/// One VM in one sample.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmSample {
    pub name: String,
    /// SMBIOS/libvirt UUID when known (QMP: `query-uuid`).
    #[serde(default)]
    pub uuid: Option<String>,
    #[serde(default)]
    pub backend: VmBackend,
    /// libvirt URI or the QMP socket path.
    #[serde(default)]
    pub source: String,
    #[serde(default)]
    pub state: VmState,
    /// Maximum memory (libvirt `maxMemory`/`memory`; QMP: the RAM size at boot), bytes.
    #[serde(default)]
    pub max_memory_bytes: Option<u64>,
    #[serde(default)]
    pub balloon: BalloonStats,
    #[serde(default)]
    pub device: BalloonDevice,
    #[serde(default)]
    pub extra_stats: ExtraStats,
    /// The guest OS when known (`linux`, `windows`), from libvirt metadata or the QMP caller.
    #[serde(default)]
    pub guest_os: Option<String>,
    /// Host time the sample was read, seconds since the Unix epoch (for stats age).
    #[serde(default)]
    pub read_at_unix_s: u64,
    /// The QEMU process id on the host.
    #[serde(default)]
    pub qemu_pid: Option<u32>,
    /// The host's view of the QEMU process (RSS, PSS, swap, hugetlb, KSM); `None` if unreadable.
    #[serde(default)]
    pub host: Option<ProcessMem>,
    /// Non-fatal problems while reading this VM, one line each.
    #[serde(default)]
    pub degraded: Vec<String>,
}
