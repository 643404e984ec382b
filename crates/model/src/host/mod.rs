//! What the host kernel says about memory: one field per kernel file, parsed, in bytes.
//!
//! Required sources (meminfo) are plain fields; optional ones (PSI, KSM, vmallocinfo, ...) are
//! `Option` and stay `None` when the kernel lacks them or we may not read them; the reason is
//! kept in [`HostSample::degraded`].

mod kernel_mm;
mod meminfo;
mod process;

pub use kernel_mm::*;
pub use meminfo::*;
pub use process::*;

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
    #[serde(default)]
    pub hugepages: Vec<HugepagePool>,
    #[serde(default)]
    pub numa_nodes: Vec<NodeMeminfo>,
    #[serde(default)]
    pub thp: Option<ThpSysfs>,
    /// Optional sources that could not be read, one line each ("/proc/pressure/memory: not
    /// present (kernel without CONFIG_PSI)"). Never fatal.
    #[serde(default)]
    pub degraded: Vec<String>,
}
