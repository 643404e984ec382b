//! The only code in this crate that opens files: [`HostReader`], rooted at an injectable
//! `proc` and `sys` so that tests read captured trees from real kernels.
//!
//! meminfo is required; every other source is optional and degrades to `None` (or an empty
//! list) with one line in [`HostSample::degraded`] saying which file and why.
//!
//! Every file is opened non-blocking and must be a regular file (a FIFO or a device in place of
//! a /proc file is refused, never waited on or read forever), and every read is capped at a size
//! no real kernel file reaches ([`caps`]): a larger file is an error naming the cap.

use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use memwarden_model::host::{
    HostSample, HugepagePool, KsmSysfs, KsmdCpu, Meminfo, Module, NodeMeminfo, ProcKsm, ProcessMem,
    ProcessReadError, Psi, SmapsRollup, ThpSysfs, UksmSysfs, VirtioBalloonSysfs, VmallocInfo,
    Vmstat, ZoneInfo,
};
use memwarden_model::units::{is_page_size, KIB};

mod consumers;

pub use consumers::MAX_DMABUF_BUFFERS;

use crate::error::{Error, Result};
use crate::{
    hugepages, ksm, meminfo, modules, psi, smaps_rollup, stat, status, thp, vmallocinfo, vmstat,
    zoneinfo,
};

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

/// The comm of KSM's kernel thread.
const KSMD: &str = "ksmd";

/// `O_NONBLOCK` (the same value on every Linux architecture memwarden builds for except
/// alpha, mips, parisc and sparc, which `libc` knows).
const O_NONBLOCK: i32 = libc::O_NONBLOCK;

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
}

impl Default for ReadOptions {
    fn default() -> Self {
        ReadOptions {
            smaps: true,
            vmallocinfo: true,
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
        let meminfo = self.read_meminfo()?;
        let warnings =
            meminfo::check(&meminfo).map_err(|e| e.at(&self.proc_root.join("meminfo")))?;
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
            process_errors: scan.errors,
            processes_exited: scan.exited,
            warnings: Vec::new(),
            degraded,
        }
    }

    /// /proc/meminfo (required everywhere), parsed but not checked (see [`meminfo::check`]).
    pub fn read_meminfo(&self) -> Result<Meminfo> {
        self.parse_file(&self.proc_root.join("meminfo"), caps::SMALL, meminfo::parse)
    }

    /// /proc/sys/kernel/osrelease, trimmed.
    pub fn read_kernel_release(&self) -> Result<String> {
        let path = self.proc_root.join("sys/kernel/osrelease");
        Ok(read_text(&path, caps::SMALL)?.trim().to_string())
    }

    pub fn read_vmstat(&self) -> Result<Vmstat> {
        self.parse_file(&self.proc_root.join("vmstat"), caps::SMALL, vmstat::parse)
    }

    pub fn read_psi(&self) -> Result<Psi> {
        self.parse_file(
            &self.proc_root.join("pressure/memory"),
            caps::SMALL,
            psi::parse,
        )
    }

    /// /proc/vmallocinfo with 4 KiB pages; the host read uses the page size it found.
    pub fn read_vmallocinfo(&self) -> Result<VmallocInfo> {
        self.read_vmallocinfo_with(memwarden_model::units::PAGE_SIZE)
    }

    pub fn read_vmallocinfo_with(&self, page_size: u64) -> Result<VmallocInfo> {
        self.parse_file(
            &self.proc_root.join("vmallocinfo"),
            caps::VMALLOCINFO,
            |t| vmallocinfo::parse_with_page_size(t, page_size),
        )
    }

    pub fn read_modules(&self) -> Result<Vec<Module>> {
        self.parse_file(
            &self.proc_root.join("modules"),
            caps::MODULES,
            modules::parse,
        )
    }

    pub fn read_zoneinfo(&self) -> Result<ZoneInfo> {
        self.parse_file(
            &self.proc_root.join("zoneinfo"),
            caps::ZONEINFO,
            zoneinfo::parse,
        )
    }

    /// The base page size: `KernelPageSize` of the first mapping in /proc/self/smaps (the live
    /// system), else of the first captured process that has smaps. `None` when none says.
    pub fn read_page_size(&self) -> Option<u64> {
        *self.page_size.get_or_init(|| self.find_page_size())
    }

    fn find_page_size(&self) -> Option<u64> {
        let from = |path: &Path| -> Option<u64> {
            let text = read_text(path, caps::SMAPS).ok()?;
            text.lines().find_map(|l| {
                let v = l.strip_prefix("KernelPageSize:")?.trim();
                let kib = crate::text::parse_u64(v.strip_suffix("kB")?.trim())?;
                kib.checked_mul(KIB).filter(|b| is_page_size(*b))
            })
        };
        if let Some(p) = from(&self.proc_root.join("self/smaps")) {
            return Some(p);
        }
        let pids = self.pids().ok()?;
        pids.iter()
            .take(64)
            .find_map(|pid| from(&self.proc_root.join(format!("{pid}/smaps"))))
    }

    /// The virtio-balloon device's `features`, from the driver's directory in sysfs. A
    /// `NotFound` error when no balloon driver is bound; `Ok(None)` when bound to no device.
    pub fn read_virtio_balloon(&self) -> Result<Option<VirtioBalloonSysfs>> {
        let dir = self.sys_root.join("bus/virtio/drivers/virtio_balloon");
        let entries = fs::read_dir(&dir).map_err(|e| Error::io(&dir, e))?;
        let mut devices: Vec<PathBuf> = entries
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| file_name(p).starts_with("virtio"))
            .collect();
        devices.sort();
        match devices.first() {
            None => Ok(None),
            Some(dev) => {
                let features = read_text(&dev.join("features"), caps::SMALL)?;
                Ok(Some(VirtioBalloonSysfs {
                    features: features.trim().to_string(),
                }))
            }
        }
    }

    /// Every file of /sys/kernel/mm/ksm (an error when the directory is absent).
    pub fn read_ksm(&self) -> Result<KsmSysfs> {
        let dir = self.sys_root.join("kernel/mm/ksm");
        Ok(ksm::ksm_sysfs(read_dir_files(&dir)?))
    }

    /// ksmd's CPU time. `pid` is where the process table found it; without one, /proc is
    /// searched for the kernel thread (`memwarden ksm` reads it twice, a moment apart, to
    /// measure its CPU share). `Ok(None)` when there is no ksmd (KSM never started on kernels
    /// that create the thread lazily, or a capture without it).
    pub fn read_ksmd(&self, pid: Option<u32>) -> Result<Option<KsmdCpu>> {
        let pid = match pid {
            Some(p) => Some(p),
            None => self.find_kernel_thread(KSMD)?,
        };
        let Some(pid) = pid else { return Ok(None) };
        let path = self.proc_root.join(pid.to_string()).join("stat");
        let s = self.parse_file(&path, caps::SMALL, stat::parse)?;
        if s.comm != KSMD {
            return Ok(None);
        }
        Ok(Some(KsmdCpu {
            pid,
            user_ms: stat::ticks_to_ms(s.utime_ticks),
            system_ms: stat::ticks_to_ms(s.stime_ticks),
        }))
    }

    /// The lowest pid whose comm is `name` and which has no command line (a kernel thread).
    fn find_kernel_thread(&self, name: &str) -> Result<Option<u32>> {
        for pid in self.pids()? {
            let dir = self.proc_root.join(pid.to_string());
            let Ok(comm) = read_text(&dir.join("comm"), caps::SMALL) else {
                continue;
            };
            if comm.trim_end_matches('\n') == name
                && read_bytes_cut(&dir.join("cmdline"), caps::CMDLINE).is_ok_and(|b| b.is_empty())
            {
                return Ok(Some(pid));
            }
        }
        Ok(None)
    }

    /// Every file of /sys/kernel/mm/uksm (UKSM-patched kernels only).
    pub fn read_uksm(&self) -> Result<UksmSysfs> {
        let dir = self.sys_root.join("kernel/mm/uksm");
        Ok(ksm::uksm_sysfs(read_dir_files(&dir)?))
    }

    /// Global pools, then every node's, each sorted by page size.
    pub fn read_hugepages(&self) -> Result<Vec<HugepagePool>> {
        let mut pools = self.read_pools(None, &self.sys_root.join("kernel/mm/hugepages"))?;
        for (node, node_dir) in self.node_dirs()? {
            match self.read_pools(Some(node), &node_dir.join("hugepages")) {
                Ok(p) => pools.extend(p),
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e),
            }
        }
        Ok(pools)
    }

    /// /sys/devices/system/node/nodeN/meminfo for every node, by node number.
    pub fn read_numa_nodes(&self) -> Result<Vec<NodeMeminfo>> {
        let mut nodes = Vec::new();
        for (_, dir) in self.node_dirs()? {
            nodes.push(self.parse_file(&dir.join("meminfo"), caps::SMALL, meminfo::parse_node)?);
        }
        Ok(nodes)
    }

    /// /sys/kernel/mm/transparent_hugepage: its files, khugepaged/* and the per-size
    /// hugepages-<N>kB/* (multi-size THP, since Linux 6.8), names relative to the directory.
    pub fn read_thp(&self) -> Result<ThpSysfs> {
        let dir = self.sys_root.join("kernel/mm/transparent_hugepage");
        let mut files = read_dir_files(&dir)?;
        for sub in subdirs(&dir)? {
            let name = file_name(&sub);
            if name == "khugepaged" || name.starts_with("hugepages-") {
                for (f, c) in read_dir_files(&sub)? {
                    files.push((format!("{name}/{f}"), c));
                }
            }
        }
        Ok(thp::thp_sysfs(files))
    }

    /// The numeric directories of /proc, ascending.
    pub fn pids(&self) -> Result<Vec<u32>> {
        let entries = fs::read_dir(&self.proc_root).map_err(|e| Error::io(&self.proc_root, e))?;
        let mut pids: Vec<u32> = entries
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
            .collect();
        pids.sort_unstable();
        Ok(pids)
    }

    /// One process. An error for which [`Error::is_gone`] holds means it exited meanwhile.
    pub fn read_process(&self, pid: u32) -> Result<ProcessMem> {
        self.read_process_with(pid, ReadOptions::default())
    }

    /// One process, read as `opts` says (`smaps: None` when not asked for).
    pub fn read_process_with(&self, pid: u32, opts: ReadOptions) -> Result<ProcessMem> {
        self.read_process_noted(pid, opts, &mut Vec::new())
    }

    /// One process. status is required; a cmdline, smaps or ksm file that cannot be read
    /// while the process is still there leaves that part empty and one line in `notes`.
    fn read_process_noted(
        &self,
        pid: u32,
        opts: ReadOptions,
        notes: &mut Vec<String>,
    ) -> Result<ProcessMem> {
        let dir = self.proc_root.join(pid.to_string());
        let parsed = self.parse_file(&dir.join("status"), caps::SMALL, status::parse)?;
        let mut partial = |what: &str, e: Error| -> Result<()> {
            still_there(&dir)?;
            notes.push(format!("{what}: {}", e.with_cause()));
            Ok(())
        };
        let cmdline = match read_bytes_cut(&dir.join("cmdline"), caps::CMDLINE) {
            Ok(b) => String::from_utf8_lossy(&b)
                .trim_end_matches('\0')
                .replace('\0', " "),
            Err(e) => {
                partial("cmdline", e)?;
                String::new()
            }
        };
        let smaps = if opts.smaps {
            match self.read_smaps(&dir) {
                Ok(s) => s,
                Err(e) => {
                    partial("smaps", e)?;
                    None
                }
            }
        } else {
            None
        };
        let ksm = match self.read_proc_ksm(&dir) {
            Ok(k) => k,
            Err(e) => {
                partial("ksm", e)?;
                None
            }
        };
        Ok(ProcessMem {
            pid,
            name: parsed.status.name.clone(),
            cmdline,
            uid: parsed.uid,
            status: parsed.status,
            smaps,
            ksm,
        })
    }

    /// smaps_rollup, or summed smaps when the kernel has no rollup (before 4.14); `None` for
    /// kernel threads and zombies (no mm: `ESRCH` or an empty file) and when permission is
    /// denied.
    fn read_smaps(&self, dir: &Path) -> Result<Option<SmapsRollup>> {
        let rollup = dir.join("smaps_rollup");
        let (path, text, parse): (_, _, fn(&str) -> Result<SmapsRollup>) =
            match read_text(&rollup, caps::SMALL) {
                Ok(text) => (rollup, text, smaps_rollup::parse),
                Err(e) if e.is_not_found() => {
                    let smaps = dir.join("smaps");
                    match read_text(&smaps, caps::SMAPS) {
                        Ok(text) => (smaps, text, smaps_rollup::parse_smaps),
                        Err(e) if e.is_permission_denied() => return Ok(None),
                        // Neither file while the process is still there: a kernel without
                        // CONFIG_PROC_PAGE_MONITOR, or a capture that left them out.
                        Err(e) if e.is_gone() => return still_there(dir).map(|()| None),
                        Err(e) => return Err(e),
                    }
                }
                Err(e) if e.is_permission_denied() => return Ok(None),
                // A kernel thread's smaps_rollup fails with ESRCH although the thread lives.
                Err(e) if e.is_gone() => return still_there(dir).map(|()| None),
                Err(e) => return Err(e),
            };
        if text.trim().is_empty() {
            return Ok(None);
        }
        parse(&text).map(Some).map_err(|e| e.at(&path))
    }

    /// ksm_stat and ksm_merging_pages; `None` when the kernel has neither, or the process has
    /// no mm (kernel threads read both as empty).
    fn read_proc_ksm(&self, dir: &Path) -> Result<Option<ProcKsm>> {
        let stat = match read_text(&dir.join("ksm_stat"), caps::SMALL) {
            Ok(t) if t.trim().is_empty() => None,
            Ok(t) => Some(ksm::parse_stat(&t).map_err(|e| e.at(&dir.join("ksm_stat")))?),
            Err(e) if e.is_gone() || e.is_permission_denied() => None,
            Err(e) => return Err(e),
        };
        let merging_path = dir.join("ksm_merging_pages");
        let merging = match read_text(&merging_path, caps::SMALL) {
            Ok(t) if t.trim().is_empty() => None,
            Ok(t) => Some(ksm::parse_merging_pages(&t).map_err(|e| e.at(&merging_path))?),
            Err(e) if e.is_gone() || e.is_permission_denied() => None,
            Err(e) => return Err(e),
        };
        // Missing because this kernel lacks the files, or because the process just exited?
        still_there(dir)?;
        Ok(match (stat, merging) {
            (None, None) => None,
            (stat, merging) => {
                let mut k = stat.unwrap_or_default();
                k.merging_pages = merging.or(k.merging_pages);
                Some(k)
            }
        })
    }

    /// Every process: those read (in part or whole), those that could not be read and why,
    /// and how many exited while being read (their /proc/PID directory is gone).
    pub fn read_processes(&self, opts: ReadOptions, degraded: &mut Vec<String>) -> ProcessScan {
        let mut scan = ProcessScan::default();
        let pids = match self.pids() {
            Ok(p) => p,
            Err(e) => {
                degraded.push(format!("processes: {}", e.with_cause()));
                return scan;
            }
        };
        scan.processes.reserve(pids.len());
        for pid in pids {
            let mut notes = Vec::new();
            match self.read_process_noted(pid, opts, &mut notes) {
                Ok(p) => scan.processes.push(p),
                Err(e) if e.is_gone() && !self.proc_root.join(pid.to_string()).exists() => {
                    scan.exited += 1;
                    continue;
                }
                Err(e) => scan.errors.push(ProcessReadError {
                    pid,
                    dropped: true,
                    why: e.with_cause(),
                }),
            }
            scan.errors
                .extend(notes.into_iter().map(|why| ProcessReadError {
                    pid,
                    dropped: false,
                    why,
                }));
        }
        scan
    }

    fn read_pools(&self, node: Option<u32>, dir: &Path) -> Result<Vec<HugepagePool>> {
        let mut pools = Vec::new();
        for sub in subdirs(dir)? {
            let name = file_name(&sub);
            if !name.starts_with("hugepages-") {
                continue;
            }
            let files = read_dir_files(&sub)?;
            pools.push(hugepages::pool(node, &name, &files).map_err(|e| match e {
                Error::Parse { .. } if e.path().starts_with("/sys") => {
                    let rel = e.path().file_name().map(PathBuf::from).unwrap_or_default();
                    e.at(&sub.join(rel))
                }
                e => e,
            })?);
        }
        pools.sort_by_key(|p| p.page_size_bytes);
        Ok(pools)
    }

    /// `(N, path)` of every /sys/devices/system/node/nodeN, by N.
    fn node_dirs(&self) -> Result<Vec<(u32, PathBuf)>> {
        let base = self.sys_root.join("devices/system/node");
        let mut nodes: Vec<(u32, PathBuf)> = subdirs(&base)?
            .into_iter()
            .filter_map(|p| Some((file_name(&p).strip_prefix("node")?.parse().ok()?, p)))
            .collect();
        nodes.sort();
        Ok(nodes)
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

/// What [`HostReader::read_processes`] found.
#[derive(Debug, Clone, Default)]
pub struct ProcessScan {
    pub processes: Vec<ProcessMem>,
    /// Processes left out (`dropped`) or read in part, with why.
    pub errors: Vec<ProcessReadError>,
    /// Processes that exited while being read.
    pub exited: u64,
}

/// `Ok` while the process's directory still has its status file; the `NotFound` error (which
/// [`Error::is_gone`] reports) once it has exited.
fn still_there(dir: &Path) -> Result<()> {
    let status = dir.join("status");
    fs::metadata(&status)
        .map(|_| ())
        .map_err(|e| Error::io(&status, e))
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

/// Opens `path` non-blocking (a FIFO without a writer does not hang the open) and refuses
/// anything but a regular file (a FIFO, a device such as /dev/zero, a directory).
fn open_regular(path: &Path) -> Result<fs::File> {
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(O_NONBLOCK)
        .open(path)
        .map_err(|e| Error::io(path, e))?;
    let meta = file.metadata().map_err(|e| Error::io(path, e))?;
    if !meta.is_file() {
        let kind = {
            use std::os::unix::fs::FileTypeExt;
            let t = meta.file_type();
            if t.is_fifo() {
                "a FIFO"
            } else if t.is_char_device() {
                "a character device"
            } else if t.is_block_device() {
                "a block device"
            } else if t.is_dir() {
                "a directory"
            } else if t.is_socket() {
                "a socket"
            } else {
                "not a regular file"
            }
        };
        return Err(Error::io(
            path,
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("refused: {kind}, not a regular file"),
            ),
        ));
    }
    Ok(file)
}

/// At most `cap` bytes of `path` and whether there was more.
fn read_capped(path: &Path, cap: u64) -> Result<(Vec<u8>, bool)> {
    let file = open_regular(path)?;
    let mut bytes = Vec::new();
    file.take(cap.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|e| Error::io(path, e))?;
    let more = bytes.len() as u64 > cap;
    bytes.truncate(usize::try_from(cap).unwrap_or(usize::MAX));
    Ok((bytes, more))
}

/// The whole file; an error when it is larger than `cap` (no real kernel file is).
fn read_bytes(path: &Path, cap: u64) -> Result<Vec<u8>> {
    match read_capped(path, cap)? {
        (_, true) => Err(Error::io(
            path,
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "refused: larger than {} (no kernel prints this file that large)",
                    memwarden_model::units::format_bytes(cap)
                ),
            ),
        )),
        (bytes, false) => Ok(bytes),
    }
}

/// The first `cap` bytes of the file (for text that is only shown).
fn read_bytes_cut(path: &Path, cap: u64) -> Result<Vec<u8>> {
    read_capped(path, cap).map(|(b, _)| b)
}

/// The file as text; bytes that are not UTF-8 (process names can hold any) become U+FFFD.
fn read_text(path: &Path, cap: u64) -> Result<String> {
    let bytes = read_bytes(path, cap)?;
    Ok(match String::from_utf8(bytes) {
        Ok(s) => s,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    })
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Subdirectories of `dir`, sorted by name.
fn subdirs(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out: Vec<PathBuf> = fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
        .map(|e| e.path())
        .collect();
    out.sort();
    Ok(out)
}

/// Every regular file of `dir` as `(name, contents)`, sorted by name. A file that cannot be
/// read (write-only, or an attribute that fails on this hardware) is left out.
fn read_dir_files(dir: &Path) -> Result<Vec<(String, String)>> {
    let mut out: Vec<(String, String)> = fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().map(|t| t.is_file()).unwrap_or(false))
        .filter_map(|e| {
            Some((
                file_name(&e.path()),
                read_text(&e.path(), caps::SMALL).ok()?,
            ))
        })
        .collect();
    out.sort();
    Ok(out)
}
