//! A VM's memory cgroup read from the files a 6.1 kernel printed for a libvirt-style
//! `machine.slice/machine-qemu...scope/libvirt/emulator` layout on cgroup v2
//! (`fixtures/cgroup-v2-6.1-vm`, NOTE.md says how), and the hybrid and v1 layouts where there is
//! nothing to read.

use std::fs;
use std::path::{Path, PathBuf};

use memwarden_procfs::HostReader;

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/cgroup-v2-6.1-vm")
}

fn write(root: &Path, rel: &str, text: &str) {
    let p = root.join(rel);
    fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
    fs::write(p, text).expect("write");
}

#[test]
fn the_domain_cgroup_is_read_above_the_emulator_thread() {
    let cg = HostReader::at_root(fixture())
        .read_vm_cgroup(108)
        .expect("reads")
        .expect("a v2 memory cgroup");
    assert_eq!(
        cg.path,
        "/machine.slice/machine-qemu\\x2d1\\x2dmwlab\\x2dvm.scope"
    );
    // As printed (NOTE.md): TCG guests have no KVM page tables of their own.
    assert_eq!(cg.sec_pagetables_bytes, Some(0));
    assert_eq!(cg.pagetables_bytes, Some(28672));
    assert_eq!(cg.kernel_bytes, Some(53248));
}

#[test]
fn a_hybrid_host_without_a_v2_memory_controller_has_none() {
    let t = tempfile::tempdir().expect("tempdir");
    let r = t.path();
    write(
        r,
        "proc/9/cgroup",
        "12:memory:/machine/web.libvirt-qemu\n0::/machine/web.libvirt-qemu\n",
    );
    write(
        r,
        "sys/fs/cgroup/memory/machine/web.libvirt-qemu/memory.stat",
        "cache 0\n",
    );
    write(
        r,
        "sys/fs/cgroup/unified/machine/web.libvirt-qemu/cgroup.procs",
        "9\n",
    );
    assert_eq!(
        HostReader::at_root(r).read_vm_cgroup(9).expect("reads"),
        None
    );
    write(r, "proc/10/cgroup", "12:memory:/machine/x\n");
    assert_eq!(
        HostReader::at_root(r).read_vm_cgroup(10).expect("v1 only"),
        None
    );
    write(r, "proc/11/cgroup", "0::/\n");
    assert_eq!(
        HostReader::at_root(r).read_vm_cgroup(11).expect("root"),
        None
    );
}

#[test]
fn a_bad_memory_stat_is_named_and_a_gone_process_is_an_error() {
    let t = tempfile::tempdir().expect("tempdir");
    let r = t.path();
    write(
        r,
        "proc/9/cgroup",
        "0::/machine.slice/v.scope/libvirt/vcpu0\n",
    );
    write(
        r,
        "sys/fs/cgroup/machine.slice/v.scope/memory.stat",
        "anon 4096\nsec_pagetables lots\n",
    );
    let e = HostReader::at_root(r)
        .read_vm_cgroup(9)
        .expect_err("bad line");
    assert!(e.to_string().contains("memory.stat line 2"), "{e}");
    assert!(e.to_string().contains("v.scope"), "{e}");
    let e = HostReader::at_root(r)
        .read_vm_cgroup(10)
        .expect_err("no such pid");
    assert!(e.is_not_found(), "{e}");
}

#[test]
fn the_hosts_vm_cgroups_are_found_without_the_hypervisor() {
    let h = HostReader::at_root(fixture());
    let cgs = h.read_vm_cgroups().expect("reads").expect("one VM cgroup");
    assert_eq!(cgs.len(), 1);
    assert_eq!(
        cgs[0].path,
        "/machine.slice/machine-qemu\\x2d1\\x2dmwlab\\x2dvm.scope"
    );
    assert_eq!(cgs[0].sec_pagetables_bytes, Some(0));
    // libvirt without systemd on a hybrid host: directories in the v2 tree, no memory.stat.
    let t = tempfile::tempdir().expect("tempdir");
    write(
        t.path(),
        "sys/fs/cgroup/unified/machine/web.libvirt-qemu/cgroup.procs",
        "9\n",
    );
    write(
        t.path(),
        "sys/fs/cgroup/memory/machine/web.libvirt-qemu/memory.stat",
        "cache 0\n",
    );
    assert_eq!(
        HostReader::at_root(t.path())
            .read_vm_cgroups()
            .expect("reads"),
        None
    );
    // Pure v2 without systemd: found under machine/.
    write(
        t.path(),
        "sys/fs/cgroup/machine/db.libvirt-qemu/memory.stat",
        "anon 4096\nsec_pagetables 8192\n",
    );
    let cgs = HostReader::at_root(t.path())
        .read_vm_cgroups()
        .expect("reads")
        .expect("one");
    assert_eq!(
        (cgs[0].path.as_str(), cgs[0].sec_pagetables_bytes),
        ("/machine/db.libvirt-qemu", Some(8192))
    );
}
