//! A VM's memory cgroup: the QEMU process's cgroup v2 path, then the domain cgroup's
//! memory.stat under the cgroup2 mount (`/sys/fs/cgroup`, or `/sys/fs/cgroup/unified` on hybrid
//! hosts). Bounded reads of regular files, as everywhere in the reader.

use memwarden_model::vm::VmCgroupMem;

use super::{caps, file_name, read_text, subdirs, HostReader};
use crate::error::Result;
use crate::memcg;

/// Where cgroup2 is mounted: alone (`/sys/fs/cgroup`), or beside v1 on hybrid hosts.
const MOUNTS: [&str; 2] = ["fs/cgroup", "fs/cgroup/unified"];

impl HostReader {
    /// The memory cgroup of the VM whose QEMU process is `pid`. `Ok(None)` when the process is
    /// in no cgroup v2 hierarchy, or its cgroup has no memory.stat (the memory controller is on
    /// cgroup v1, or not enabled there): the normal case on cgroup v1 hosts.
    pub fn read_vm_cgroup(&self, pid: u32) -> Result<Option<VmCgroupMem>> {
        let cg_path = self.proc_root.join(pid.to_string()).join("cgroup");
        let text = read_text(&cg_path, caps::SMALL)?;
        let Some(process_cg) = memcg::parse_cgroup_v2_path(&format!("/proc/{pid}/cgroup"), &text)
            .map_err(|e| e.at(&cg_path))?
        else {
            return Ok(None);
        };
        let vm_cg = memcg::vm_cgroup(&process_cg);
        if vm_cg.is_empty() {
            // In the root cgroup: not a VM's own.
            return Ok(None);
        }
        self.read_memory_stat(vm_cg)
    }

    /// Every libvirt domain's memory cgroup found on the host itself, without asking the
    /// hypervisor: `machine.slice/machine-qemu*.scope` (systemd) and `machine/*.libvirt-qemu`
    /// (libvirt without systemd) under the cgroup2 mount. `Ok(None)` when there is none (no
    /// VMs, or a cgroup v1 memory controller).
    pub fn read_vm_cgroups(&self) -> Result<Option<Vec<VmCgroupMem>>> {
        let mut out = Vec::new();
        for parent in ["machine.slice", "machine"] {
            for mount in MOUNTS {
                let dir = self.sys_root.join(mount).join(parent);
                let dirs = match subdirs(&dir) {
                    Ok(d) => d,
                    Err(e) if e.is_not_found() => continue,
                    Err(e) => return Err(e),
                };
                let mut names: Vec<String> = dirs
                    .iter()
                    .map(|d| file_name(d))
                    .filter(|n| {
                        (n.starts_with("machine-qemu") && n.ends_with(".scope"))
                            || n.ends_with(".libvirt-qemu")
                    })
                    .collect();
                names.sort();
                for n in names {
                    match self.read_memory_stat(&format!("/{parent}/{n}")) {
                        Ok(Some(cg)) => out.push(cg),
                        Ok(None) => {}
                        // Its VM stopped between the listing and the read.
                        Err(e) if e.is_not_found() => {}
                        Err(e) => return Err(e),
                    }
                }
            }
        }
        Ok((!out.is_empty()).then_some(out))
    }

    /// `cg`'s memory.stat under the first cgroup2 mount that has it; `Ok(None)` when none does.
    fn read_memory_stat(&self, cg: &str) -> Result<Option<VmCgroupMem>> {
        for mount in MOUNTS {
            let path = self
                .sys_root
                .join(mount)
                .join(cg.trim_start_matches('/'))
                .join("memory.stat");
            let text = match read_text(&path, caps::SMALL) {
                Ok(t) => t,
                Err(e) if e.is_not_found() => continue,
                Err(e) => return Err(e),
            };
            let stat = memcg::parse_memory_stat("memory.stat", &text).map_err(|e| e.at(&path))?;
            let get = |k: &str| stat.iter().find(|(key, _)| key == k).map(|(_, v)| *v);
            return Ok(Some(VmCgroupMem {
                path: cg.to_string(),
                sec_pagetables_bytes: get("sec_pagetables"),
                pagetables_bytes: get("pagetables"),
                kernel_bytes: get("kernel"),
            }));
        }
        Ok(None)
    }
}
