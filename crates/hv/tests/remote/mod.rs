//! What a remote URI (ssh, TLS) must show of a lab domain, shared by the transports' tests.

use std::time::{Duration, Instant};

use memwarden_hv::{Hypervisor, LibvirtBackend, Scope};
use memwarden_lab::{Domain, URI};
use memwarden_model::units::MIB;

/// `remote` (already using the RPC client) lists `d` as the local socket shows it, without a
/// QEMU pid (a remote daemon's is not read from local files), reads its memory statistics, and
/// a balloon target it sets lands; `how` names the transport in messages.
pub fn reads_and_balloons_like_the_local_socket(
    remote: &mut LibvirtBackend,
    d: &Domain,
    how: &str,
) {
    let mut local = LibvirtBackend::new(URI);
    local.set_timeout(Duration::from_secs(10));
    let there = remote
        .list()
        .unwrap_or_else(|e| panic!("list over {how}: {e}"));
    assert_eq!(remote.transport(), Some("rpc"));
    let vm = there
        .iter()
        .find(|v| v.name == d.name())
        .unwrap_or_else(|| panic!("{} not listed over {how}", d.name()));
    let here = local.sample(d.name()).expect("local sample");
    assert_eq!(vm.uuid, here.uuid);
    assert_eq!(vm.max_memory_bytes, here.max_memory_bytes);
    assert_eq!(vm.device, here.device, "the balloon device's facts");
    assert_eq!(
        vm.qemu_pid, None,
        "a remote daemon's QEMU pid is not read from local files"
    );
    assert!(here.qemu_pid.is_some(), "the local socket's is");
    assert!(remote.memory_stats(d.name()).is_ok());

    let target = 200 * MIB;
    remote
        .set_memory(d.name(), target, Scope::LIVE)
        .unwrap_or_else(|e| panic!("setmem over {how}: {e}"));
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let actual = local.sample(d.name()).expect("sample").balloon.actual_bytes;
        if actual == Some(target) {
            break;
        }
        assert!(
            Instant::now() < until,
            "actual {actual:?}, set {target} over {how}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// libvirt.so is not mapped in this process.
pub fn assert_libvirt_so_unmapped() {
    let maps = std::fs::read_to_string("/proc/self/maps").expect("maps");
    assert!(
        !maps.lines().any(|l| l.contains("/libvirt.so")),
        "libvirt.so mapped"
    );
}

/// Listing over `uri` (the RPC client, a 5 s timeout) fails, within 8 s: its message.
pub fn refused_within_the_deadline(uri: &str) -> String {
    let mut b = LibvirtBackend::new(uri);
    b.transport = memwarden_hv::Transport::Rpc;
    b.set_timeout(Duration::from_secs(5));
    let t = Instant::now();
    let e = b.list().expect_err("refused");
    assert!(
        t.elapsed() < Duration::from_secs(8),
        "took {:?}",
        t.elapsed()
    );
    e.to_string()
}
