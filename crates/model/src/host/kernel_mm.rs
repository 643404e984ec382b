//! Kernel-wide memory files other than meminfo: vmstat, PSI, vmallocinfo, modules, KSM, UKSM,
//! hugepage pools, THP settings, NUMA nodes.

use serde::{Deserialize, Serialize};

use super::Meminfo;

/// /proc/vmstat: `name value` pairs in the kernel's order, all kept.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vmstat {
    pub entries: Vec<(String, u64)>,
}

impl Vmstat {
    pub fn get(&self, key: &str) -> Option<u64> {
        self.entries.iter().find(|(k, _)| k == key).map(|(_, v)| *v)
    }
}

/// One PSI line (`some` or `full`) of /proc/pressure/memory.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct PsiLine {
    /// Percent of wall time stalled, averaged over 10 s.
    pub avg10: f64,
    pub avg60: f64,
    pub avg300: f64,
    /// Total stall time in microseconds since boot.
    pub total_us: u64,
}

/// /proc/pressure/memory.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Psi {
    pub some: PsiLine,
    /// `full` is absent on kernels before 5.13 for some resources; for memory it has always been
    /// printed, but parsing tolerates its absence.
    pub full: Option<PsiLine>,
}

/// One caller's share of vmalloc space (records of kind `vmalloc` only).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmallocCaller {
    /// `caller` field, e.g. `load_module+0x1234/0x2000` reduced to the symbol: `load_module`.
    pub caller: String,
    /// Sum of `pages=` of this caller's vmalloc records, in bytes.
    pub bytes: u64,
    pub records: u64,
}

/// /proc/vmallocinfo summarized. Only records flagged `vmalloc` count as memory the kernel
/// allocated (ioremap, vmap, user, vpages do not; see the accounting module).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmallocInfo {
    /// Sum of `pages=N` × page size over `vmalloc` records: what VmallocUsed counts.
    pub vmalloc_pages_bytes: u64,
    /// Sum of the size column over `vmalloc` records (includes one guard page each).
    pub vmalloc_size_bytes: u64,
    pub vmalloc_records: u64,
    /// Sum of the size column of `ioremap` records (device memory, not RAM).
    pub ioremap_bytes: u64,
    /// Sum of the size column of `vmap` records.
    pub vmap_bytes: u64,
    /// Records that are neither (percpu areas, `user`, `vpages`...), by size column.
    pub other_bytes: u64,
    /// `unpurged vm_area` records (freed lazily: address space only, no memory), by size column.
    #[serde(default)]
    pub unpurged_bytes: u64,
    /// `pages=` of the records whose caller allocates kernel stacks (`kernel_clone`,
    /// `_do_fork`, `copy_process`, `dup_task_struct`, `alloc_thread_stack_node`), in bytes:
    /// with CONFIG_VMAP_STACK the stacks KernelStack counts are vmalloc'd.
    #[serde(default)]
    pub stack_bytes: u64,
    /// Size column of the `pcpu_get_vm_areas` records: the address space of the percpu
    /// allocator's dynamic chunks (all units), an upper bound on the pages they hold. Also
    /// counted in `other_bytes`.
    #[serde(default)]
    pub percpu_chunk_bytes: u64,
    /// Top callers of vmalloc by bytes, largest first (the reader keeps at most 20).
    pub top_callers: Vec<VmallocCaller>,
    /// Set when this sample did not read vmallocinfo and carries what an earlier one read at
    /// this moment (the daemon reads the file on its slower PSS cadence, because the kernel's
    /// formatting of it costs more than the rest of a host read). What it decides (vmap'd
    /// stacks, the percpu chunks) does not change between reads; a same-moment comparison with
    /// meminfo (the `vmalloc` identity) is not made with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub carried_from_unix_ms: Option<u64>,
}

/// One line of /proc/modules.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Module {
    pub name: String,
    /// The size column, as lsmod prints it: the module's core layout size.
    pub size_bytes: u64,
    pub refcount: Option<u64>,
    /// `Live`, `Loading`, `Unloading`.
    pub state: String,
}

/// /sys/kernel/mm/ksm: every file present, by name, values as printed (numbers parsed where
/// they are numbers). Known files are also lifted into typed fields.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct KsmSysfs {
    /// 0 stop, 1 run, 2 unmerge all.
    pub run: Option<u64>,
    pub pages_shared: Option<u64>,
    pub pages_sharing: Option<u64>,
    pub pages_unshared: Option<u64>,
    pub pages_volatile: Option<u64>,
    pub pages_to_scan: Option<u64>,
    pub sleep_millisecs: Option<u64>,
    pub full_scans: Option<u64>,
    /// Since Linux 6.1.
    pub general_profit: Option<i64>,
    /// Since Linux 6.1.
    pub ksm_zero_pages: Option<u64>,
    /// Since Linux 6.4 (`zero_pages_sharing` before 6.5 in some trees).
    pub use_zero_pages: Option<u64>,
    /// Since Linux 6.9: `none` or `scan-time`.
    pub advisor_mode: Option<String>,
    /// Every file of the directory as `(name, trimmed contents)`, including the ones above.
    pub files: Vec<(String, String)>,
}

/// ksmd's CPU time, from /proc/PID/stat of the kernel thread named `ksmd`: what KSM costs.
/// A counter since boot; a share of CPU needs two of them (see `memwarden_analysis::ksm`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KsmdCpu {
    pub pid: u32,
    /// `utime`, converted from clock ticks, milliseconds.
    pub user_ms: u64,
    /// `stime`, converted from clock ticks, milliseconds (ksmd runs almost only here).
    pub system_ms: u64,
}

impl KsmdCpu {
    /// User plus system time, milliseconds.
    pub fn total_ms(&self) -> u64 {
        self.user_ms.saturating_add(self.system_ms)
    }
}

/// /sys/kernel/mm/uksm (UKSM-patched kernels only).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UksmSysfs {
    pub run: Option<u64>,
    pub pages_shared: Option<u64>,
    pub pages_sharing: Option<u64>,
    pub pages_unshared: Option<u64>,
    pub pages_scanned: Option<u64>,
    pub full_scans: Option<u64>,
    pub files: Vec<(String, String)>,
}

/// One hugepage size's pool, from /sys/kernel/mm/hugepages/hugepages-<N>kB/ (or a node's).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HugepagePool {
    /// `None` for the global pools, the node number for per-node pools.
    pub node: Option<u32>,
    pub page_size_bytes: u64,
    pub nr_hugepages: u64,
    pub free_hugepages: u64,
    pub resv_hugepages: u64,
    pub surplus_hugepages: u64,
    pub nr_overcommit_hugepages: Option<u64>,
}

/// /sys/devices/system/node/nodeN/meminfo, the `Node N ` prefix stripped.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeMeminfo {
    pub node: u32,
    pub meminfo: Meminfo,
}

/// /sys/kernel/mm/transparent_hugepage.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThpSysfs {
    /// The selected mode of `enabled`: `always`, `madvise` or `never`.
    pub enabled: Option<String>,
    pub defrag: Option<String>,
    pub shmem_enabled: Option<String>,
    /// Every plain file (and khugepaged/*) as `(relative name, trimmed contents)`.
    pub files: Vec<(String, String)>,
}
