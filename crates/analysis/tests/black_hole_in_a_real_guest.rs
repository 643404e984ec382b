//! Ground truth for the black hole: a balloon driver is exactly the kind of alloc_pages() user
//! no /proc counter sees. In a real guest (Debian 6.1 kernel, virtio_balloon), inflating the
//! balloon by 128 MiB with `deflate-on-oom=on` keeps MemTotal and takes the pages from the buddy
//! allocator: the unaccounted rest X must grow by 128 MiB. Without deflate-on-oom the driver
//! lowers MemTotal instead, and X must not move. Both read on the guest's own console.

use std::time::Duration;

use memwarden_analysis::accounting::decompositions;
use memwarden_hv::{Hypervisor, QmpBackend, Scope};
use memwarden_lab::{wait_for, GuestOpts, Lab, QemuGuest};
use memwarden_model::host::HostSample;
use memwarden_model::units::MIB;

fn guest_sample(g: &QemuGuest) -> HostSample {
    let text = g.console("run cat /proc/meminfo").expect("guest meminfo");
    let meminfo = memwarden_procfs::parse_meminfo(&text).expect("guest meminfo parses");
    HostSample {
        meminfo,
        ..Default::default()
    }
}

/// X by LRU and by page cache, and MemTotal, on the guest now.
fn black_hole(g: &QemuGuest) -> (i128, i128, u64) {
    let s = guest_sample(g);
    let lru = decompositions::by_lru(&s).unaccounted_bytes.expect("X");
    let pc = decompositions::by_page_cache(&s)
        .unaccounted_bytes
        .expect("X");
    (lru, pc, s.meminfo.get_or_zero("MemTotal"))
}

fn inflate_to(g: &QemuGuest, bytes: u64) {
    let mut qmp = QmpBackend::new(&[g.qmp_socket().to_string_lossy().into_owned()]).expect("qmp");
    let name = qmp
        .names()
        .expect("names")
        .into_iter()
        .next()
        .expect("one VM");
    qmp.set_memory(&name, bytes, Scope::LIVE).expect("balloon");
    wait_for(
        "the balloon to reach its target",
        Duration::from_secs(60),
        || qmp.memory_stats(&name).expect("stats").actual_bytes == Some(bytes),
    );
    // The guest driver frees its pages batch by batch after QEMU reports the target: let it settle.
    std::thread::sleep(Duration::from_secs(2));
}

fn run(deflate_on_oom: bool) -> (i128, i128, i128, i128, u64, u64) {
    let lab = Lab::new().expect("lab");
    let g = QemuGuest::boot(
        &lab,
        GuestOpts {
            name: if deflate_on_oom {
                "bh-doo".into()
            } else {
                "bh-plain".into()
            },
            mem_mib: 512,
            balloon_opts: if deflate_on_oom {
                "deflate-on-oom=on".into()
            } else {
                String::new()
            },
            ..Default::default()
        },
    )
    .expect("boot");
    let (lru0, pc0, total0) = black_hole(&g);
    inflate_to(&g, 384 * MIB);
    let (lru1, pc1, total1) = black_hole(&g);
    eprintln!(
        "deflate-on-oom={deflate_on_oom}: MemTotal {total0} -> {total1}, X(LRU) {lru0} -> {lru1}, X(page cache) {pc0} -> {pc1}"
    );
    (lru0, lru1, pc0, pc1, total0, total1)
}

#[test]
fn balloon_pages_with_deflate_on_oom_land_in_the_black_hole() {
    let (lru0, lru1, pc0, pc1, total0, total1) = run(true);
    assert_eq!(total0, total1, "deflate-on-oom keeps MemTotal");
    let grown = 128 * i128::from(MIB);
    let tol = 4 * i128::from(MIB);
    assert!(
        ((lru1 - lru0) - grown).abs() <= tol,
        "X(LRU) grew by {} not 128 MiB",
        lru1 - lru0
    );
    assert!(
        ((pc1 - pc0) - grown).abs() <= tol,
        "X(page cache) grew by {} not 128 MiB",
        pc1 - pc0
    );
}

#[test]
fn balloon_without_deflate_on_oom_lowers_memtotal_not_the_black_hole() {
    let (lru0, lru1, _, _, total0, total1) = run(false);
    assert_eq!(total0 - total1, 128 * MIB, "MemTotal drops by the balloon");
    assert!(
        (lru1 - lru0).abs() <= 4 * i128::from(MIB),
        "X moved by {}",
        lru1 - lru0
    );
}
