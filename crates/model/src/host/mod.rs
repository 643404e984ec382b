//! What the host kernel says about memory: one field per kernel file, parsed, in bytes.
//!
//! Required sources (meminfo) are plain fields; optional ones (PSI, KSM, vmallocinfo, ...) are
//! `Option` and stay `None` when the kernel lacks them or we may not read them; the reason is
//! kept in [`HostSample::degraded`].

mod consumers;
mod kernel_mm;
mod meminfo;
mod process;
mod zfs;
mod zoneinfo;

pub use consumers::*;
pub use kernel_mm::*;
pub use meminfo::*;
pub use process::*;
pub use zfs::*;
pub use zoneinfo::*;

use serde::{Deserialize, Serialize};

/// Everything read from one host's /proc and /sys in one pass.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct HostSample {
    /// `uname -r` as /proc/sys/kernel/osrelease says, when readable.
    #[serde(default)]
    pub kernel_release: Option<String>,
    pub meminfo: Meminfo,
    #[serde(default)]
    pub vmstat: Option<Vmstat>,
    #[serde(default)]
    pub psi: Option<Psi>,
    #[serde(default)]
    pub vmalloc: Option<VmallocInfo>,
    #[serde(default)]
    pub modules: Option<Vec<Module>>,
    #[serde(default)]
    pub processes: Vec<ProcessMem>,
    #[serde(default)]
    pub ksm: Option<KsmSysfs>,
    #[serde(default)]
    pub uksm: Option<UksmSysfs>,
    /// ksmd's CPU time; `None` without KSM, or when its /proc/PID/stat could not be read.
    #[serde(default)]
    pub ksmd: Option<KsmdCpu>,
    #[serde(default)]
    pub hugepages: Vec<HugepagePool>,
    #[serde(default)]
    pub numa_nodes: Vec<NodeMeminfo>,
    #[serde(default)]
    pub thp: Option<ThpSysfs>,
    /// /proc/zoneinfo (zones and their per-CPU free lists).
    #[serde(default)]
    pub zoneinfo: Option<ZoneInfo>,
    /// The kernel's base page size in bytes, as the reader found it (`KernelPageSize` of a
    /// process's smaps); `None` when it could not tell (see [`HostSample::page_size`]).
    #[serde(default)]
    pub page_size_bytes: Option<u64>,
    /// The virtio-balloon device's feature bits, when its driver is bound
    /// (`/sys/bus/virtio/drivers/virtio_balloon/virtioN/features`).
    #[serde(default)]
    pub virtio_balloon: Option<VirtioBalloonSysfs>,
    /// Every zram device's mm_stat, by device name; `None` when the host has no zram device
    /// (or one could not be read: `degraded` says why).
    #[serde(default)]
    pub zram: Option<Vec<ZramMmStat>>,
    /// /proc/net/sockstat (and sockstat6); `None` when it could not be read (`degraded`).
    #[serde(default)]
    pub sockstat: Option<Sockstat>,
    /// Exported DMA-buf buffers; `None` when neither the sysfs statistics nor debugfs's bufinfo
    /// exist (most servers), or they could not be read (`degraded`).
    #[serde(default)]
    pub dmabuf: Option<DmaBufs>,
    /// OpenZFS's ARC (arcstats and abdstats); `None` when the zfs module is not loaded (or its
    /// kstats could not be read: `degraded` says why).
    #[serde(default)]
    pub zfs: Option<ZfsArc>,
    /// The libvirt domains' memory cgroups found under the cgroup2 mount (`machine.slice`,
    /// `machine`): each VM's KVM page tables. `None` without any (no VMs, or cgroup v1).
    #[serde(default)]
    pub vm_cgroups: Option<Vec<crate::vm::VmCgroupMem>>,
    /// Processes that could not be read, or only in part, with why. Processes that exited
    /// while being read are only counted, in `processes_exited`.
    #[serde(default)]
    pub process_errors: Vec<ProcessReadError>,
    #[serde(default)]
    pub processes_exited: u64,
    /// Input that was read but looks wrong (a meminfo whose known keys stop early...). Shown in
    /// the output; figures that need what is missing are not computed.
    #[serde(default)]
    pub warnings: Vec<String>,
    /// Optional sources that could not be read, one line each ("/proc/pressure/memory: not
    /// present (kernel without CONFIG_PSI)"). Never fatal.
    #[serde(default)]
    pub degraded: Vec<String>,
}

impl HostSample {
    /// The page size to convert page counts with: the recorded one, else 4 KiB.
    pub fn page_size(&self) -> u64 {
        self.page_size_bytes
            .filter(|p| crate::units::is_page_size(*p))
            .unwrap_or(crate::units::PAGE_SIZE)
    }
}

/// The virtio-balloon device as its driver's sysfs shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VirtioBalloonSysfs {
    /// The `features` file: one `0`/`1` per feature bit, bit 0 first.
    pub features: String,
}

impl VirtioBalloonSysfs {
    /// VIRTIO_BALLOON_F_DEFLATE_ON_OOM (bit 2): the driver keeps ballooned pages in MemTotal
    /// (and gives them back under OOM) instead of taking them out of it.
    pub fn deflate_on_oom(&self) -> bool {
        self.features.as_bytes().get(2) == Some(&b'1')
    }
}

/// One process memwarden could not read (or read only in part).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessReadError {
    pub pid: u32,
    /// True when the process is left out of `processes`; false when it is there with the
    /// named file missing (an empty cmdline, no smaps...).
    pub dropped: bool,
    /// The file and the cause, one line.
    pub why: String,
}
