//! The only code in this crate that opens files: [`HostReader`], rooted at an injectable
//! `proc` and `sys` so that tests read captured trees from real kernels.
//!
//! meminfo is required; every other source is optional and degrades to `None` (or an empty
//! list) with one line in [`HostSample::degraded`] saying which file and why.

use std::fs;
use std::path::{Path, PathBuf};

use memwarden_model::host::{
    HostSample, HugepagePool, KsmSysfs, Meminfo, Module, NodeMeminfo, ProcKsm, ProcessMem, Psi,
    SmapsRollup, ThpSysfs, UksmSysfs, VmallocInfo, Vmstat,
};

use crate::error::{Error, Result};
use crate::{
    hugepages, ksm, meminfo, modules, psi, smaps_rollup, status, thp, vmallocinfo, vmstat,
};

/// What to read per process. smaps_rollup is what costs (the kernel walks every mapping):
/// a collector that runs every few seconds reads it only when PSS is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessOptions {
    /// Read smaps_rollup (PSS, USS, swap PSS); status alone otherwise.
    pub smaps: bool,
}

impl Default for ProcessOptions {
    fn default() -> Self {
        ProcessOptions { smaps: true }
    }
}

/// Reads a host's memory files from `proc` and `sys` roots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostReader {
    proc_root: PathBuf,
    sys_root: PathBuf,
}

impl HostReader {
    /// This machine: /proc and /sys.
    pub fn live() -> Self {
        HostReader {
            proc_root: PathBuf::from("/proc"),
            sys_root: PathBuf::from("/sys"),
        }
    }

    /// A captured tree: `dir/proc` and `dir/sys`.
    pub fn at_root(dir: impl AsRef<Path>) -> Self {
        let dir = dir.as_ref();
        HostReader {
            proc_root: dir.join("proc"),
            sys_root: dir.join("sys"),
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
        self.read_host_with(ProcessOptions::default())
    }

    /// Everything in one pass, each process read as `opts` says.
    pub fn read_host_with(&self, opts: ProcessOptions) -> Result<HostSample> {
        let meminfo = self.read_meminfo()?;
        let mut degraded = Vec::new();
        let d = &mut degraded;
        let kernel_release = optional(d, self.read_kernel_release(), "no osrelease");
        let vmstat = optional(d, self.read_vmstat(), "kernel too old?");
        let psi = optional(d, self.read_psi(), "kernel without CONFIG_PSI, or psi=0");
        let vmalloc = optional(d, self.read_vmallocinfo(), "kernel without CONFIG_PROC_FS?");
        let modules = optional(
            d,
            self.read_modules(),
            "kernel built without module support",
        );
        let ksm = optional(d, self.read_ksm(), "kernel without CONFIG_KSM");
        let hugepages = optional(d, self.read_hugepages(), "kernel without CONFIG_HUGETLBFS");
        let numa_nodes = optional(d, self.read_numa_nodes(), "kernel without CONFIG_NUMA");
        let thp = optional(
            d,
            self.read_thp(),
            "kernel without CONFIG_TRANSPARENT_HUGEPAGE",
        );
        // UKSM exists only on patched kernels: its absence is the normal case, not a degradation.
        let uksm = match self.read_uksm() {
            Err(e) if e.is_not_found() => None,
            r => optional(d, r, ""),
        };
        let processes = self.read_processes(opts, &mut degraded);
        Ok(HostSample {
            kernel_release,
            meminfo,
            vmstat,
            psi,
            vmalloc,
            modules,
            processes,
            ksm,
            uksm,
            hugepages: hugepages.unwrap_or_default(),
            numa_nodes: numa_nodes.unwrap_or_default(),
            thp,
            degraded,
        })
    }

    /// /proc/meminfo (required everywhere).
    pub fn read_meminfo(&self) -> Result<Meminfo> {
        self.parse_file(&self.proc_root.join("meminfo"), meminfo::parse)
    }

    /// /proc/sys/kernel/osrelease, trimmed.
    pub fn read_kernel_release(&self) -> Result<String> {
        let path = self.proc_root.join("sys/kernel/osrelease");
        Ok(read_text(&path)?.trim().to_string())
    }

    pub fn read_vmstat(&self) -> Result<Vmstat> {
        self.parse_file(&self.proc_root.join("vmstat"), vmstat::parse)
    }

    pub fn read_psi(&self) -> Result<Psi> {
        self.parse_file(&self.proc_root.join("pressure/memory"), psi::parse)
    }

    pub fn read_vmallocinfo(&self) -> Result<VmallocInfo> {
        self.parse_file(&self.proc_root.join("vmallocinfo"), vmallocinfo::parse)
    }

    pub fn read_modules(&self) -> Result<Vec<Module>> {
        self.parse_file(&self.proc_root.join("modules"), modules::parse)
    }

    /// Every file of /sys/kernel/mm/ksm (an error when the directory is absent).
    pub fn read_ksm(&self) -> Result<KsmSysfs> {
        let dir = self.sys_root.join("kernel/mm/ksm");
        Ok(ksm::ksm_sysfs(read_dir_files(&dir)?))
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
            nodes.push(self.parse_file(&dir.join("meminfo"), meminfo::parse_node)?);
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
        self.read_process_with(pid, ProcessOptions::default())
    }

    /// One process, read as `opts` says (`smaps: None` when not asked for).
    pub fn read_process_with(&self, pid: u32, opts: ProcessOptions) -> Result<ProcessMem> {
        let dir = self.proc_root.join(pid.to_string());
        let parsed = self.parse_file(&dir.join("status"), status::parse)?;
        let cmdline = read_bytes(&dir.join("cmdline"))?;
        let cmdline = String::from_utf8_lossy(&cmdline)
            .trim_end_matches('\0')
            .replace('\0', " ");
        let smaps = if opts.smaps {
            self.read_smaps(&dir)?
        } else {
            None
        };
        let ksm = self.read_proc_ksm(&dir)?;
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
        let (path, text, parse): (_, _, fn(&str) -> Result<SmapsRollup>) = match read_text(&rollup)
        {
            Ok(text) => (rollup, text, smaps_rollup::parse),
            Err(e) if e.is_not_found() => {
                let smaps = dir.join("smaps");
                match read_text(&smaps) {
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
        let stat = match read_text(&dir.join("ksm_stat")) {
            Ok(t) if t.trim().is_empty() => None,
            Ok(t) => Some(ksm::parse_stat(&t).map_err(|e| e.at(&dir.join("ksm_stat")))?),
            Err(e) if e.is_gone() || e.is_permission_denied() => None,
            Err(e) => return Err(e),
        };
        let merging_path = dir.join("ksm_merging_pages");
        let merging = match read_text(&merging_path) {
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

    /// Every process still there at the end of its read; exited ones are skipped silently,
    /// unreadable ones are noted in `degraded`.
    fn read_processes(&self, opts: ProcessOptions, degraded: &mut Vec<String>) -> Vec<ProcessMem> {
        let pids = match self.pids() {
            Ok(p) => p,
            Err(e) => {
                degraded.push(format!("processes: {e}"));
                return Vec::new();
            }
        };
        let mut out = Vec::with_capacity(pids.len());
        for pid in pids {
            match self.read_process_with(pid, opts) {
                Ok(p) => out.push(p),
                Err(e) if e.is_gone() => {}
                Err(e) => degraded.push(format!("process {pid} skipped: {e}")),
            }
        }
        out
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

    fn parse_file<T>(&self, path: &Path, parse: impl FnOnce(&str) -> Result<T>) -> Result<T> {
        parse(&read_text(path)?).map_err(|e| e.at(path))
    }
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
                format!("{path}: not present ({absent_hint})")
            } else if e.is_permission_denied() {
                format!("{path}: permission denied (run as root to read it)")
            } else {
                format!("unreadable: {e}")
            });
            None
        }
    }
}

fn read_bytes(path: &Path) -> Result<Vec<u8>> {
    fs::read(path).map_err(|e| Error::io(path, e))
}

/// The file as text; bytes that are not UTF-8 (process names can hold any) become U+FFFD.
fn read_text(path: &Path) -> Result<String> {
    let bytes = read_bytes(path)?;
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
        .filter_map(|e| Some((file_name(&e.path()), read_text(&e.path()).ok()?)))
        .collect();
    out.sort();
    Ok(out)
}
