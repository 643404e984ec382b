//! The host's kernel files, one reader each: meminfo, vmstat, PSI, vmallocinfo, modules,
//! zoneinfo, the page size, virtio-balloon, KSM, hugepages, NUMA nodes and THP. Each parses
//! what [`super::io`] read under its cap; none assembles a sample (that is [`super`]).

use std::fs;
use std::path::{Path, PathBuf};

use memwarden_model::host::{
    HugepagePool, KsmSysfs, KsmdCpu, Meminfo, Module, NodeMeminfo, Psi, ThpSysfs, UksmSysfs,
    VirtioBalloonSysfs, VmallocInfo, Vmstat, ZoneInfo,
};
use memwarden_model::units::{is_page_size, KIB};

use super::io::{file_name, read_bytes_cut, read_dir_files, read_text, subdirs};
use super::{caps, HostReader};
use crate::error::{Error, Result};
use crate::{hugepages, ksm, meminfo, modules, psi, stat, thp, vmallocinfo, vmstat, zoneinfo};

/// The comm of KSM's kernel thread.
pub(super) const KSMD: &str = "ksmd";

impl HostReader {
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
}
