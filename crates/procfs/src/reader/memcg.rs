//! A VM's memory cgroup: the QEMU process's cgroup v2 path, then the domain cgroup's
//! memory.stat under the cgroup2 mount (`/sys/fs/cgroup`, or `/sys/fs/cgroup/unified` on hybrid
//! hosts). Bounded reads of regular files, as everywhere in the reader.

use memwarden_model::vm::VmCgroupMem;

use super::{caps, read_text, HostReader};
use crate::error::Result;
use crate::memcg;

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
        for mount in ["fs/cgroup", "fs/cgroup/unified"] {
            let path = self
                .sys_root
                .join(mount)
                .join(vm_cg.trim_start_matches('/'))
                .join("memory.stat");
            let text = match read_text(&path, caps::SMALL) {
                Ok(t) => t,
                Err(e) if e.is_not_found() => continue,
                Err(e) => return Err(e),
            };
            let stat = memcg::parse_memory_stat("memory.stat", &text).map_err(|e| e.at(&path))?;
            let get = |k: &str| stat.iter().find(|(key, _)| key == k).map(|(_, v)| *v);
            return Ok(Some(VmCgroupMem {
                path: vm_cg.to_string(),
                sec_pagetables_bytes: get("sec_pagetables"),
                pagetables_bytes: get("pagetables"),
                kernel_bytes: get("kernel"),
            }));
        }
        Ok(None)
    }
}
