//! KVM's page tables (meminfo `SecPageTables`), named per VM where the kernel lets us attribute
//! them. The kernel change that added `SecPageTables` (NR_SECONDARY_PAGETABLE) also added
//! `sec_pagetables` to cgroup v2's memory.stat, and KVM allocates a guest's EPT/NPT or shadow
//! tables in that guest's vCPU threads, so each libvirt domain's cgroup
//! (`machine.slice/machine-qemu\x2dN\x2dNAME.scope`, or `machine/NAME.libvirt-qemu` without
//! systemd) holds its share. The host-wide row is split into one row per VM and the rest
//! (IOMMU tables, VMs outside libvirt's cgroups): the same total, so X does not move. When the
//! cgroups' sum leads meminfo's (memcg statistics are flushed in per-CPU batches) the split is
//! not made and a rule says so. On cgroup v1 hosts there is nothing to split by; on kernels
//! before SecPageTables, KVM's tables are in no meminfo field: in X.

use memwarden_model::host::HostSample;
use memwarden_model::units::format_bytes;

use super::kernel::KernelTerms;

/// The label of one VM's row: `KVM page tables <name>`.
pub const VM_ROW_PREFIX: &str = "KVM page tables ";

/// The domain's name from its cgroup path: systemd escapes `-` as `\x2d` in
/// `machine-qemu\x2d<id>\x2d<name>.scope`; libvirt without systemd uses `<name>.libvirt-qemu`.
pub fn vm_name(path: &str) -> String {
    let last = path.rsplit('/').next().unwrap_or(path);
    if let Some(scope) = last
        .strip_prefix("machine-qemu\\x2d")
        .and_then(|r| r.strip_suffix(".scope"))
    {
        let unescaped = scope.replace("\\x2d", "-");
        // "<id>-<name>": the id is libvirt's domain number.
        return match unescaped.split_once('-') {
            Some((id, name)) if id.bytes().all(|b| b.is_ascii_digit()) => name.to_string(),
            _ => unescaped,
        };
    }
    last.strip_suffix(".libvirt-qemu")
        .unwrap_or(last)
        .to_string()
}

/// Adds SecPageTables to `k`: split per VM when the VMs' cgroups say how, else whole.
pub fn add(s: &HostSample, total: u64, k: &mut KernelTerms) {
    let Some(sec) = s.meminfo.get("SecPageTables") else {
        return;
    };
    let vms: Vec<(String, u64)> = s
        .vm_cgroups
        .iter()
        .flatten()
        .filter_map(|c| Some((vm_name(&c.path), c.sec_pagetables_bytes.filter(|b| *b > 0)?)))
        .collect();
    let in_vms = vms.iter().map(|(_, b)| *b).fold(0u64, u64::saturating_add);
    if vms.is_empty() || in_vms > sec {
        if in_vms > sec {
            k.rules.push(format!(
                "SecPageTables {}: not split per VM, the VMs' cgroups say {} (memcg statistics \
                 lag in per-CPU batches)",
                format_bytes(sec),
                format_bytes(in_vms)
            ));
        }
        k.push(total, "SecPageTables", Some(sec), "meminfo SecPageTables");
        return;
    }
    for (name, bytes) in &vms {
        k.push(
            total,
            &format!("{VM_ROW_PREFIX}{name}"),
            Some(*bytes),
            "sec_pagetables of the VM's cgroup v2 memory.stat",
        );
    }
    k.push(
        total,
        "SecPageTables (rest)",
        Some(sec - in_vms),
        "meminfo SecPageTables − the VMs' cgroups: IOMMU tables, VMs outside libvirt's cgroups",
    );
    k.rules.push(format!(
        "SecPageTables {}: {} of it in {} VMs' cgroups (sec_pagetables), one row each; the rest {}",
        format_bytes(sec),
        format_bytes(in_vms),
        vms.len(),
        format_bytes(sec - in_vms)
    ));
}

#[cfg(test)]
mod tests {
    use super::super::kernel::terms;
    use super::*;
    use memwarden_model::host::{Meminfo, MeminfoEntry, MeminfoUnit};
    use memwarden_model::units::MIB;
    use memwarden_model::vm::VmCgroupMem;

    fn sample(sec: u64, vms: &[(&str, u64)]) -> HostSample {
        let e = |key: &str, value| MeminfoEntry {
            key: key.into(),
            value,
            unit: MeminfoUnit::Bytes,
        };
        HostSample {
            meminfo: Meminfo {
                entries: vec![e("MemTotal", 4096 * MIB), e("SecPageTables", sec)],
            },
            vm_cgroups: Some(
                vms.iter()
                    .map(|(p, b)| VmCgroupMem {
                        path: (*p).into(),
                        sec_pagetables_bytes: Some(*b),
                        ..Default::default()
                    })
                    .collect(),
            ),
            ..Default::default()
        }
    }

    fn rows(s: &HostSample) -> Vec<(String, u64)> {
        terms(s)
            .parts
            .into_iter()
            .filter(|p| p.label.contains("PageTables") || p.label.starts_with("KVM"))
            .map(|p| (p.label, p.bytes))
            .collect()
    }

    #[test]
    fn names_come_from_libvirts_cgroups() {
        assert_eq!(
            vm_name("/machine.slice/machine-qemu\\x2d3\\x2dweb\\x2dfront.scope"),
            "web-front"
        );
        assert_eq!(vm_name("/machine/db.libvirt-qemu"), "db");
        assert_eq!(vm_name("/machine.slice/machine-qemu\\x2dodd.scope"), "odd");
    }

    #[test]
    fn secpagetables_is_split_per_vm_and_sums_to_the_same() {
        let s = sample(
            20 * MIB,
            &[
                ("/machine.slice/machine-qemu\\x2d1\\x2da.scope", 12 * MIB),
                ("/machine.slice/machine-qemu\\x2d2\\x2db.scope", 6 * MIB),
                ("/machine.slice/machine-qemu\\x2d3\\x2didle.scope", 0),
            ],
        );
        assert_eq!(
            rows(&s),
            [
                ("KVM page tables a".to_string(), 12 * MIB),
                ("KVM page tables b".to_string(), 6 * MIB),
                ("SecPageTables (rest)".to_string(), 2 * MIB),
            ]
        );
        let whole = sample(20 * MIB, &[]);
        let x = |s: &HostSample| crate::accounting::decompositions::by_lru(s).unaccounted_bytes;
        assert_eq!(x(&s), x(&whole), "the same total: X does not move");
        assert!(terms(&s)
            .rules
            .iter()
            .any(|r| r.contains("in 2 VMs' cgroups")));
    }

    #[test]
    fn cgroups_ahead_of_meminfo_leave_it_whole() {
        let s = sample(4 * MIB, &[("/machine/a.libvirt-qemu", 5 * MIB)]);
        assert_eq!(rows(&s), [("SecPageTables".to_string(), 4 * MIB)]);
        assert!(terms(&s).rules.iter().any(|r| r.contains("not split")));
        let none = sample(4 * MIB, &[]);
        assert_eq!(rows(&none), [("SecPageTables".to_string(), 4 * MIB)]);
    }
}
