//! With the built-in RPC client, a whole libvirt sample never maps libvirt.so: the point of
//! the client (its own test binary, so no other test has loaded the library into this process).

use std::time::Duration;

use memwarden_hv::{Hypervisor, LibvirtBackend};
use memwarden_lab::{Domain, DomainOpts, Lab, URI};

#[test]
fn a_qemu_system_sample_never_maps_libvirt_so() {
    let lab = Lab::new().expect("lab");
    let d = Domain::start(
        &lab,
        DomainOpts {
            name: "rpc-nolib".into(),
            stats_period: 1,
            ..DomainOpts::default()
        },
    )
    .expect("domain");
    let mut b = LibvirtBackend::new(URI);
    b.set_timeout(Duration::from_secs(10));
    let vms = b.list().expect("list");
    assert!(vms.iter().any(|v| v.name == d.name()));
    b.memory_stats(d.name()).expect("stats");
    assert_eq!(b.transport(), Some("rpc"));
    let maps = std::fs::read_to_string("/proc/self/maps").expect("maps");
    let libvirt: Vec<&str> = maps
        .lines()
        .filter(|l| l.contains("/libvirt.so") || l.contains("/libvirt-qemu.so"))
        .collect();
    assert!(libvirt.is_empty(), "libvirt mapped: {libvirt:#?}");
}
