//! What a hypervisor reports about one VM's memory, plus the host's view of its QEMU process.
//!
//! Filled by `memwarden-hv` (libvirt or QMP). Guest-reported figures (balloon statistics) are
//! untrusted: they are kept exactly as reported; every check on them lives in the analysis
//! crate, so that recorded samples are judged again by today's code.
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

impl StatTag {
    /// QEMU's "not reported" value: 2^64−1, or 2^64−1 divided by 1024 once a size went through
    /// libvirt's KiB conversion.
    pub fn is_unset(&self) -> bool {
        self.value == u64::MAX || (self.unit == TagUnit::Kib && self.value == u64::MAX / 1024)
    }
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
    /// OOM-killer kills in the guest (its vmstat `oom_kill`), cumulative. This and the five below:
    /// since Linux 6.12 guests under QEMU 9.2.0+ (`stat-oom-kills`...); libvirt (up to 11.3 at
    /// least) has no tag for them, memwarden reads them via QMP (see memwarden-hv's `tags::NEWER`).
    pub oom_kills: Option<u64>,
    /// Allocations that entered direct reclaim (the sum of the guest's `allocstall_*`), cumulative.
    pub alloc_stalls: Option<u64>,
    /// Memory kswapd scanned (`pgscan_kswapd` pages), cumulative.
    #[serde(alias = "async_scans")]
    pub async_scanned_bytes: Option<u64>,
    /// Memory direct reclaim scanned (`pgscan_direct` pages), cumulative.
    #[serde(alias = "direct_scans")]
    pub direct_scanned_bytes: Option<u64>,
    /// Memory kswapd reclaimed (`pgsteal_kswapd` pages), cumulative.
    #[serde(alias = "async_reclaims")]
    pub async_reclaimed_bytes: Option<u64>,
    /// Memory direct reclaim reclaimed (`pgsteal_direct` pages), cumulative.
    #[serde(alias = "direct_reclaims")]
    pub direct_reclaimed_bytes: Option<u64>,
    /// Every tag in libvirt form, source order, unknown ones included (sentinels included too:
    /// a tag left unset by the guest, 2^64−1, is kept here and left out of the typed fields).
    pub tags: Vec<StatTag>,
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
    /// deflate-on-oom (libvirt `autodeflate='on'`): the guest gives balloon pages back under
    /// memory pressure, and its MemTotal does not shrink while the balloon inflates.
    #[serde(default)]
    pub autodeflate: Option<bool>,
    /// Free page reporting (libvirt `freePageReporting='on'`, guest ≥ 5.7): freed guest pages
    /// go back to the host within seconds without shrinking the guest.
    #[serde(default)]
    pub free_page_reporting: Option<bool>,
}

/// How reading one VM went. Every VM the backend knows of gets a row, read or not.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReadStatus {
    /// Every figure was read within the deadline.
    #[default]
    Ok,
    /// libvirt skipped it: another job holds the domain (a monitor that does not answer).
    Busy,
    /// It did not finish within the deadline (connect, greeting and every command).
    TimedOut,
    /// Could not connect: no such socket, connection refused.
    Unreachable,
    /// It answered, but not in QMP: not JSON, not UTF-8, too large, or the wrong shape.
    ProtocolError,
    /// The VM or its QEMU went away while it was being read.
    Gone,
}

impl ReadStatus {
    /// The words tables and logs use.
    pub fn as_str(self) -> &'static str {
        match self {
            ReadStatus::Ok => "ok",
            ReadStatus::Busy => "busy",
            ReadStatus::TimedOut => "timed out",
            ReadStatus::Unreachable => "unreachable",
            ReadStatus::ProtocolError => "protocol error",
            ReadStatus::Gone => "gone",
        }
    }
}

/// The outcome of reading one VM.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmRead {
    pub status: ReadStatus,
    /// Why, in plain words, when the status is not `ok`.
    #[serde(default)]
    pub reason: Option<String>,
    /// How long this VM's exchange took, milliseconds.
    #[serde(default)]
    pub duration_ms: u64,
}

/// OpenStack Nova's `<nova:instance>` metadata on a libvirt domain.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NovaInstance {
    pub name: Option<String>,
    pub flavor: Option<String>,
    pub project: Option<String>,
    pub project_uuid: Option<String>,
    pub user: Option<String>,
    pub user_uuid: Option<String>,
    pub creation_time: Option<String>,
}

/// What the VM's configuration says about its memory (libvirt domain XML; QMP knows little).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmConfig {
    /// `<memtune><min_guarantee>`: a floor the balloon must not pass.
    #[serde(default)]
    pub min_guarantee_bytes: Option<u64>,
    #[serde(default)]
    pub hard_limit_bytes: Option<u64>,
    #[serde(default)]
    pub soft_limit_bytes: Option<u64>,
    /// `<memoryBacking><hugepages/>`: guest RAM is hugetlbfs; ballooning frees nothing.
    #[serde(default)]
    pub hugepages: bool,
    /// `<memoryBacking><locked/>`: guest RAM is mlocked on the host.
    #[serde(default)]
    pub locked: bool,
    #[serde(default)]
    pub nova: Option<NovaInstance>,
}

/// A VM's memory cgroup v2 `memory.stat`, the entries memwarden uses (bytes, as printed).
/// Hierarchical: the cgroup libvirt makes for the domain holds its emulator and vCPU threads'
/// cgroups below it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmCgroupMem {
    /// The cgroup's path below the cgroup2 mount, e.g.
    /// `/machine.slice/machine-qemu\x2d1\x2dweb.scope`.
    pub path: String,
    /// `sec_pagetables`: KVM's page tables for this guest (EPT/NPT or shadow), allocated by its
    /// vCPU threads; absent before the kernel that added meminfo `SecPageTables`.
    #[serde(default)]
    pub sec_pagetables_bytes: Option<u64>,
    /// `pagetables`: the QEMU process's own page tables.
    #[serde(default)]
    pub pagetables_bytes: Option<u64>,
    /// `kernel`: every kernel allocation charged to the cgroup (page tables of both kinds,
    /// stacks, slab, ...).
    #[serde(default)]
    pub kernel_bytes: Option<u64>,
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
    /// Host time this VM's own figures were read, seconds since the Unix epoch (stats age is
    /// measured against it, not against the start of the whole sample).
    #[serde(default)]
    pub read_at_unix_s: u64,
    /// Whether this VM could be read, and why not.
    #[serde(default)]
    pub read: VmRead,
    #[serde(default)]
    pub config: VmConfig,
    /// The QEMU process id on the host.
    #[serde(default)]
    pub qemu_pid: Option<u32>,
    /// The host's view of the QEMU process (RSS, PSS, swap, hugetlb, KSM); `None` if unreadable.
    #[serde(default)]
    pub host: Option<ProcessMem>,
    /// The VM's memory cgroup (cgroup v2), where its QEMU process is in one with the memory
    /// controller; `None` on cgroup v1 hosts, or when it could not be read (`degraded`).
    #[serde(default)]
    pub cgroup: Option<VmCgroupMem>,
    /// Non-fatal problems while reading this VM, one line each.
    #[serde(default)]
    pub degraded: Vec<String>,
    /// What the hypervisor announced about this VM since the previous sample (libvirt's
    /// lifecycle and reboot events), oldest first; `None` where nothing listens for events
    /// (QMP, whose monitor is opened per sample, and libvirt reached through libvirt.so).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events: Option<Vec<VmEvent>>,
}

/// One event the hypervisor announced about a VM between two samples.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmEvent {
    /// When memwarden received it (libvirt's events carry no time of their own), ms since the
    /// Unix epoch: at most one sample interval after it happened.
    pub seen_at_unix_ms: u64,
    pub kind: VmEventKind,
    /// The hypervisor's own words for it, e.g. `crashed (panicked)`, `stopped (crashed)`.
    pub detail: String,
}

/// What an event means for the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VmEventKind {
    /// The guest kernel panicked or the VM crashed (a pvpanic device, `on_crash`).
    Crashed,
    /// The guest was reset (a reboot from inside, `panic=N`, or `virsh reset`).
    Reset,
    /// The VM was started (booted, restored or migrated in).
    Started,
    /// The VM stopped (shut down, destroyed, saved or migrated away).
    Stopped,
    /// Anything else libvirt reports (suspended, resumed, defined...), kept as read.
    Other,
}
