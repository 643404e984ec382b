//! Memory cgroups (v2): a process's `/proc/PID/cgroup` (kernel/cgroup/cgroup.c `proc_cgroup_show`:
//! `hierarchy-ID:controllers:path` per hierarchy, `0::/path` for cgroup v2) and a cgroup's
//! `memory.stat` (mm/memcontrol.c `memory_stat_format`: flat `key value` lines, bytes or event
//! counts; new keys appear between kernels, so every line is kept).

use crate::error::{Error, Result};
use crate::text::{numbered_lines, parse_u64};

/// The cgroup v2 path of a process (`0::/machine.slice/...`), `None` when it is in no v2
/// hierarchy (a pure cgroup v1 host). A path with `.` or `..` components is refused: it is
/// joined under a root.
pub fn parse_cgroup_v2_path(path: &str, text: &str) -> Result<Option<String>> {
    for (n, line) in numbered_lines(text) {
        let mut parts = line.splitn(3, ':');
        let (Some(id), Some(controllers), Some(cg)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(Error::parse(path, n, "\"ID:CONTROLLERS:PATH\"", line));
        };
        if id != "0" || !controllers.is_empty() {
            continue;
        }
        if !cg.starts_with('/') || cg.split('/').any(|c| c == "." || c == "..") {
            return Err(Error::parse(path, n, "an absolute cgroup path", line));
        }
        return Ok(Some(cg.to_string()));
    }
    Ok(None)
}

/// A cgroup's memory.stat, every `key value` line in order.
pub fn parse_memory_stat(path: &str, text: &str) -> Result<Vec<(String, u64)>> {
    numbered_lines(text)
        .map(|(n, line)| {
            let mut w = line.split_whitespace();
            match (w.next(), w.next().and_then(parse_u64), w.next()) {
                (Some(k), Some(v), None) => Ok((k.to_string(), v)),
                _ => Err(Error::parse(path, n, "\"KEY VALUE\"", line)),
            }
        })
        .collect()
}

/// The cgroup a VM's memory is charged to, from its QEMU process's cgroup: libvirt puts QEMU's
/// threads in `<domain cgroup>/libvirt/{emulator,vcpuN,iothreadN}` (cgroup v2, systemd or not),
/// or the process straight in the domain's cgroup; those inner levels are left out so that the
/// figure covers every thread of the VM (memory.stat is hierarchical).
pub fn vm_cgroup(process_cgroup: &str) -> &str {
    let mut p = process_cgroup.trim_end_matches('/');
    loop {
        let (parent, last) = p.rsplit_once('/').unwrap_or(("", p));
        let inner = last == "libvirt"
            || last == "emulator"
            || ["vcpu", "iothread"].iter().any(|k| {
                last.strip_prefix(k)
                    .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
            });
        if !inner || parent.is_empty() {
            return p;
        }
        p = parent;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_v2_line_is_found_and_v1_lines_skipped() {
        let hybrid = "12:memory:/machine/web.libvirt-qemu\n1:name=systemd:/\n0::/machine.slice/m.scope/libvirt/emulator\n";
        assert_eq!(
            parse_cgroup_v2_path("/proc/7/cgroup", hybrid).expect("parses"),
            Some("/machine.slice/m.scope/libvirt/emulator".into())
        );
        assert_eq!(
            parse_cgroup_v2_path("/proc/7/cgroup", "4:memory:/x\n").expect("v1 only"),
            None
        );
        let e = parse_cgroup_v2_path("/proc/7/cgroup", "0::/a/../../etc\n").expect_err("dots");
        assert!(e.to_string().contains("line 1"), "{e}");
        assert!(parse_cgroup_v2_path("/proc/7/cgroup", "garbage\n").is_err());
    }

    #[test]
    fn the_domain_cgroup_is_above_libvirts_inner_ones() {
        assert_eq!(
            vm_cgroup("/machine.slice/machine-qemu\\x2d1\\x2dweb.scope/libvirt/emulator"),
            "/machine.slice/machine-qemu\\x2d1\\x2dweb.scope"
        );
        assert_eq!(
            vm_cgroup("/machine.slice/s.scope/libvirt/vcpu12"),
            "/machine.slice/s.scope"
        );
        assert_eq!(
            vm_cgroup("/machine/web.libvirt-qemu"),
            "/machine/web.libvirt-qemu"
        );
        assert_eq!(
            vm_cgroup("/machine/vcpu"),
            "/machine/vcpu",
            "no digits: a name"
        );
        assert_eq!(vm_cgroup("/"), "");
    }

    #[test]
    fn memory_stat_lines_are_kept_and_bad_ones_named() {
        let s = parse_memory_stat("memory.stat", "anon 8409088\nsec_pagetables 0\n").expect("ok");
        assert_eq!(
            s,
            [("anon".into(), 8_409_088), ("sec_pagetables".into(), 0)]
        );
        let e = parse_memory_stat("memory.stat", "anon 1\nfile -4\n").expect_err("negative");
        assert!(e.to_string().starts_with("memory.stat line 2:"), "{e}");
        assert!(parse_memory_stat("memory.stat", "anon 1 2\n").is_err());
    }
}
