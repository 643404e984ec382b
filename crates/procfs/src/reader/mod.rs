//! The only code in this crate that opens files: [`HostReader`], rooted at an injectable
//! `proc` and `sys` so that tests read captured trees from real kernels.
//!
//! meminfo is required; every other source is optional and degrades to `None` (or an empty
//! list) with one line in [`HostSample::degraded`] saying which file and why.
//!
//! Every file is opened non-blocking and must be a regular file (a FIFO or a device in place of
//! a /proc file is refused, never waited on or read forever), and every read is capped at a size
//! no real kernel file reaches ([`caps`]): a larger file is an error naming the cap.
//!
//! Here: the reader, its roots and the assembly of one [`HostSample`]. Each file's reader is in
//! `kernel_files` (meminfo, vmstat, KSM, hugepages…), `process` (the process table) or
//! `consumers` (zram, sockets, DMA-bufs); `io` is the only place a file is opened.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use memwarden_model::host::{HostSample, Meminfo};

mod consumers;
mod io;
mod kernel_files;
mod memcg;
mod process;

use io::{file_name, read_text, subdirs};
use kernel_files::KSMD;
pub use process::ProcessScan;

pub use consumers::MAX_DMABUF_BUFFERS;

use crate::error::Result;
use crate::meminfo;

/// The most memwarden reads of each file, in bytes. Each is far above what a real kernel prints
/// (measured: meminfo 1.5 KiB, vmstat 5 KiB, a 2-CPU zoneinfo 5 KiB, a 2,000-area vmallocinfo
/// 200 KiB, smaps_rollup 1 KiB) and far below what would hurt memwarden's own memory.
pub mod caps {
    /// meminfo, vmstat, PSI, status, smaps_rollup, ksm files, osrelease, sysfs attributes.
    pub const SMALL: u64 = 1 << 20;
    /// /proc/zoneinfo (per zone per CPU: ~150 bytes; 1,024 CPUs × 5 zones is under 1 MiB).
    pub const ZONEINFO: u64 = 16 << 20;
    /// /proc/modules (~60 bytes a module).
    pub const MODULES: u64 = 16 << 20;
    /// /proc/vmallocinfo (~100 bytes an area).
    pub const VMALLOCINFO: u64 = 64 << 20;
    /// /proc/PID/smaps, read only on kernels before 4.14 (~1 KiB a mapping).
    pub const SMAPS: u64 = 256 << 20;
    /// /proc/PID/cmdline is cut (not refused) here: it is only shown.
    pub const CMDLINE: u64 = 64 << 10;
}

/// Which of the costly files to read. Two files cost most of a host read: every process's
/// smaps_rollup (the kernel walks every mapping) and /proc/vmallocinfo (the kernel formats and
/// symbolises every vmalloc area: measured as a quarter of a daemon's CPU when read every
/// sample). A collector that runs every few seconds reads them on a slower cadence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadOptions {
    /// Read smaps_rollup (PSS, USS, swap PSS); status alone otherwise.
    pub smaps: bool,
    /// Read /proc/vmallocinfo (`HostSample.vmalloc` is `None` otherwise, and not degraded).
    pub vmallocinfo: bool,
    /// A meminfo that cannot be read (or fails its checks) fails the read; otherwise it is left
    /// empty and said in `degraded`, for what needs no meminfo (`procs`, the KSM report).
    pub require_meminfo: bool,
}

impl Default for ReadOptions {
    fn default() -> Self {
        ReadOptions {
            smaps: true,
            vmallocinfo: true,
            require_meminfo: true,
        }
    }
}

/// Reads a host's memory files from `proc` and `sys` roots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostReader {
    proc_root: PathBuf,
    sys_root: PathBuf,
    /// The page size, found once: it cannot change while a kernel runs, and finding it reads
    /// an smaps (a walk of every mapping of a process).
    page_size: OnceLock<Option<u64>>,
}

impl HostReader {
    /// This machine: /proc and /sys.
    pub fn live() -> Self {
        HostReader {
            proc_root: PathBuf::from("/proc"),
            sys_root: PathBuf::from("/sys"),
            page_size: OnceLock::new(),
        }
    }

    /// A captured tree: `dir/proc` and `dir/sys`.
    pub fn at_root(dir: impl AsRef<Path>) -> Self {
        let dir = dir.as_ref();
        HostReader {
            proc_root: dir.join("proc"),
            sys_root: dir.join("sys"),
            page_size: OnceLock::new(),
        }
    }

    pub fn proc_root(&self) -> &Path {
        &self.proc_root
    }

    pub fn sys_root(&self) -> &Path {
        &self.sys_root
    }

    /// Everything in one pass. Fails only when meminfo cannot be read or parsed.
    pub fn read_host(&self) -> Result<HostSample> {
        self.read_host_with(ReadOptions::default())
    }

    /// Everything in one pass, each process read as `opts` says. Fails when meminfo cannot be
    /// read or parsed, or lacks MemTotal or MemFree; a meminfo cut short is a warning.
    pub fn read_host_with(&self, opts: ReadOptions) -> Result<HostSample> {
        let read = self.read_meminfo().and_then(|m| {
            let warnings = meminfo::check(&m).map_err(|e| e.at(&self.proc_root.join("meminfo")))?;
            Ok((m, warnings))
        });
        let (meminfo, warnings) = match read {
            Ok(r) => r,
            Err(e) if !opts.require_meminfo => {
                let mut s = self.read_host_without_meminfo(opts);
                s.degraded.push(format!("meminfo not read: {e}"));
                return Ok(s);
            }
            Err(e) => return Err(e),
        };
        let mut s = self.read_host_without_meminfo(opts);
        s.meminfo = meminfo;
        s.warnings.extend(warnings);
        Ok(s)
    }

    /// Everything but meminfo (left empty), never failing: what `procs` and `ksm` need, so
    /// that a broken meminfo does not stop them.
    pub fn read_host_without_meminfo(&self, opts: ReadOptions) -> HostSample {
        let mut degraded = Vec::new();
        let d = &mut degraded;
        let page_size_bytes = self.read_page_size();
        if page_size_bytes.is_none() {
            d.push(
                "page size: no readable KernelPageSize in any smaps; page counts converted \
                 with 4 KiB"
                    .to_string(),
            );
        }
        let page_size = page_size_bytes.unwrap_or(memwarden_model::units::PAGE_SIZE);
        let kernel_release = optional(d, self.read_kernel_release(), "no osrelease");
        let vmstat = optional(d, self.read_vmstat(), "an old or stripped kernel");
        let psi = optional(d, self.read_psi(), "CONFIG_PSI off, or psi=0");
        let vmalloc = if opts.vmallocinfo {
            optional(
                d,
                self.read_vmallocinfo_with(page_size),
                "a capture that left it out, or a hardened /proc",
            )
        } else {
            None
        };
        let modules = optional(
            d,
            self.read_modules(),
            "a kernel without module support, or a capture that left it out",
        );
        let zoneinfo = optional(d, self.read_zoneinfo(), "a capture that left it out");
        let ksm = optional(d, self.read_ksm(), "CONFIG_KSM off");
        let hugepages = optional(d, self.read_hugepages(), "CONFIG_HUGETLBFS off");
        let numa_nodes = optional(d, self.read_numa_nodes(), "CONFIG_NUMA off");
        let thp = optional(d, self.read_thp(), "CONFIG_TRANSPARENT_HUGEPAGE off");
        // UKSM exists only on patched kernels, a balloon only in guests that have one: their
        // absence is the normal case, not a degradation.
        let uksm = match self.read_uksm() {
            Err(e) if e.is_not_found() => None,
            r => optional(d, r, ""),
        };
        let virtio_balloon = match self.read_virtio_balloon() {
            Err(e) if e.is_not_found() => None,
            r => optional(d, r, "").flatten(),
        };
        // A host without zram or DMA-bufs is the normal case: absent, not degraded.
        let zram = optional(d, self.read_zram(), "a kernel before 4.1, without mm_stat").flatten();
        let sockstat = optional(
            d,
            self.read_sockstat(),
            "a capture that left it out, or a kernel without CONFIG_PROC_FS networking",
        );
        let dmabuf = optional(d, self.read_dmabuf(), "a buffer freed while being read").flatten();
        let zfs = optional(
            d,
            self.read_zfs(),
            "the zfs module unloaded while being read",
        )
        .flatten();
        let vm_cgroups =
            optional(d, self.read_vm_cgroups(), "a VM stopped while being read").flatten();
        let scan = self.read_processes(opts, &mut degraded);
        let ksmd = match &ksm {
            Some(_) => {
                let pid = scan
                    .processes
                    .iter()
                    .find(|p| p.name == KSMD && p.cmdline.is_empty())
                    .map(|p| p.pid);
                optional(
                    &mut degraded,
                    self.read_ksmd(pid),
                    "a capture that left out ksmd's stat",
                )
                .flatten()
            }
            None => None,
        };
        HostSample {
            kernel_release,
            meminfo: Meminfo::default(),
            vmstat,
            psi,
            vmalloc,
            modules,
            processes: scan.processes,
            ksm,
            uksm,
            ksmd,
            hugepages: hugepages.unwrap_or_default(),
            numa_nodes: numa_nodes.unwrap_or_default(),
            thp,
            zoneinfo,
            page_size_bytes,
            virtio_balloon,
            zram,
            sockstat,
            dmabuf,
            zfs,
            vm_cgroups,
            process_errors: scan.errors,
            processes_exited: scan.exited,
            warnings: Vec::new(),
            degraded,
        }
    }

    fn parse_file<T>(
        &self,
        path: &Path,
        cap: u64,
        parse: impl FnOnce(&str) -> Result<T>,
    ) -> Result<T> {
        parse(&read_text(path, cap)?).map_err(|e| e.at(path))
    }
}

/// `Some` on success; otherwise `None` and one line in `degraded`.
fn optional<T>(degraded: &mut Vec<String>, r: Result<T>, absent_hint: &str) -> Option<T> {
    match r {
        Ok(v) => Some(v),
        Err(e) => {
            let path = e.path().display();
            degraded.push(if e.is_not_found() {
                format!("{path}: not present (possible causes: {absent_hint})")
            } else if e.is_permission_denied() {
                format!("{path}: permission denied (run as root to read it)")
            } else {
                format!("unreadable: {}", e.with_cause())
            });
            None
        }
    }
}
