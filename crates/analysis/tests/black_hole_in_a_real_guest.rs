//! Ground truth for the black hole: a balloon driver is exactly the kind of alloc_pages() user
//! no /proc counter sees. In a real guest (Debian 6.1 kernel, virtio_balloon), inflating the
//! balloon by 128 MiB with `deflate-on-oom=on` keeps MemTotal and takes the pages from the buddy
//! allocator: the unaccounted rest of meminfo alone (the old X) must grow by 128 MiB, and
//! memwarden, which reads vmstat's balloon counters and the device's features, must name those
//! 128 MiB as the balloon and leave X where it was. Without deflate-on-oom the driver lowers
//! MemTotal instead, and neither X moves. Everything is read on the guest's own console.
//!
//! The lab's guests are shared: run these one at a time (`--test-threads=1`) on small machines.

use std::time::Duration;

use memwarden_analysis::accounting::{self, decompositions};
use memwarden_hv::{Hypervisor, QmpBackend, Scope};
use memwarden_lab::{wait_for, GuestOpts, Lab, QemuGuest};
use memwarden_model::host::{HostSample, VirtioBalloonSysfs, ZoneInfo};
use memwarden_model::units::MIB;

fn cat(g: &QemuGuest, path: &str) -> String {
    g.console(&format!("run cat {path}"))
        .unwrap_or_else(|e| panic!("guest {path}: {e}"))
}

fn zoneinfo(g: &QemuGuest) -> ZoneInfo {
    memwarden_procfs::parse_zoneinfo(&cat(g, "/proc/zoneinfo")).expect("guest zoneinfo parses")
}

/// meminfo alone (what X was computed from before zoneinfo, vmstat and the balloon's features
/// were read), the full sample, and a second zoneinfo read after the rest.
fn guest_samples(g: &QemuGuest) -> (HostSample, HostSample, ZoneInfo) {
    let zone1 = zoneinfo(g);
    let meminfo =
        memwarden_procfs::parse_meminfo(&cat(g, "/proc/meminfo")).expect("guest meminfo parses");
    let vmstat = memwarden_procfs::parse_vmstat(&cat(g, "/proc/vmstat")).expect("vmstat");
    let vmalloc =
        memwarden_procfs::parse_vmallocinfo(&cat(g, "/proc/vmallocinfo")).expect("vmallocinfo");
    let features = cat(g, "/sys/bus/virtio/drivers/virtio_balloon/virtio*/features");
    let zone2 = zoneinfo(g);
    let bare = HostSample {
        meminfo: meminfo.clone(),
        ..Default::default()
    };
    let full = HostSample {
        meminfo,
        vmstat: Some(vmstat),
        vmalloc: Some(vmalloc),
        zoneinfo: Some(zone1),
        page_size_bytes: Some(4096),
        virtio_balloon: Some(VirtioBalloonSysfs {
            features: features.trim().to_string(),
        }),
        ..Default::default()
    };
    (bare, full, zone2)
}

/// One reading: X from meminfo alone, X from the full sample, the balloon part, MemTotal.
struct Reading {
    x_bare: i128,
    x: i128,
    balloon: u64,
    total: u64,
    rules: Vec<String>,
}

fn read(g: &QemuGuest) -> Reading {
    let (bare, full, _) = guest_samples(g);
    let lru = decompositions::by_lru(&full);
    Reading {
        x_bare: decompositions::by_lru(&bare).unaccounted_bytes.expect("X"),
        x: lru.unaccounted_bytes.expect("X"),
        balloon: lru
            .parts
            .iter()
            .find(|p| p.label.starts_with("balloon"))
            .map_or(0, |p| p.bytes),
        total: full.meminfo.get_or_zero("MemTotal"),
        rules: accounting::analyse(&full).kernel_rules,
    }
}

fn boot(name: &str, balloon_opts: &str) -> QemuGuest {
    let lab = Lab::new().expect("lab");
    QemuGuest::boot(
        &lab,
        GuestOpts {
            name: name.into(),
            mem_mib: 512,
            balloon_opts: balloon_opts.into(),
            ..Default::default()
        },
    )
    .expect("boot")
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

const TOL: i128 = 4 * MIB as i128;

#[test]
fn balloon_pages_with_deflate_on_oom_are_named_not_left_in_the_black_hole() {
    let g = boot("bh-doo", "deflate-on-oom=on");
    let r0 = read(&g);
    inflate_to(&g, 384 * MIB);
    let r1 = read(&g);
    eprintln!(
        "deflate-on-oom: MemTotal {} -> {}, X(meminfo alone) {} -> {}, X {} -> {}, balloon {} -> {}",
        r0.total, r1.total, r0.x_bare, r1.x_bare, r0.x, r1.x, r0.balloon, r1.balloon
    );
    assert_eq!(r0.total, r1.total, "deflate-on-oom keeps MemTotal");
    let grown = 128 * i128::from(MIB);
    assert!(
        ((r1.x_bare - r0.x_bare) - grown).abs() <= TOL,
        "meminfo alone: X grew by {} not 128 MiB",
        r1.x_bare - r0.x_bare
    );
    assert_eq!(r1.balloon - r0.balloon, 128 * MIB, "the balloon is named");
    assert!((r1.x - r0.x).abs() <= TOL, "X moved by {}", r1.x - r0.x);
    assert!(r1.x.abs() <= TOL, "X after is {}", r1.x);
}

#[test]
fn balloon_without_deflate_on_oom_lowers_memtotal_not_the_black_hole() {
    let g = boot("bh-plain", "");
    let r0 = read(&g);
    inflate_to(&g, 384 * MIB);
    let r1 = read(&g);
    eprintln!(
        "no deflate-on-oom: MemTotal {} -> {}, X(meminfo alone) {} -> {}, X {} -> {}, rules {:?}",
        r0.total, r1.total, r0.x_bare, r1.x_bare, r0.x, r1.x, r1.rules
    );
    assert_eq!(
        r0.total - r1.total,
        128 * MIB,
        "MemTotal drops by the balloon"
    );
    assert!(
        (r1.x_bare - r0.x_bare).abs() <= TOL,
        "X(meminfo alone) moved"
    );
    assert!((r1.x - r0.x).abs() <= TOL, "X moved by {}", r1.x - r0.x);
    assert_eq!(r1.balloon, 0, "not subtracted: already outside MemTotal");
    assert!(
        r1.rules.iter().any(|r| r.contains("balloon 128 MiB")),
        "the balloon is named: {:?}",
        r1.rules
    );
}

/// X before and after the per-CPU free pages term, on an idle guest: the term is what the
/// zoneinfo read with the sample says, a second zoneinfo read afterwards agrees with it within
/// the lists' churn, and what is left is a few MiB at most.
#[test]
fn pcp_free_pages_leave_the_black_hole_in_a_real_guest() {
    let g = boot("bh-pcp", "");
    let (_, full, zone2) = guest_samples(&g);
    let pcp1 = full.zoneinfo.as_ref().expect("zoneinfo").pcp_free_pages() * 4096;
    let pcp2 = zone2.pcp_free_pages() * 4096;
    let x = decompositions::by_lru(&full).unaccounted_bytes.expect("X");
    let mut without = full.clone();
    without.zoneinfo = None;
    let x_without = decompositions::by_lru(&without)
        .unaccounted_bytes
        .expect("X");
    eprintln!("idle guest: pcp {pcp1} then {pcp2}; X without the term {x_without}, with it {x}");
    assert!(pcp1 > 0, "an idle guest has pages on its per-CPU lists");
    assert_eq!(x_without - x, i128::from(pcp1));
    assert!(
        i128::from(pcp1.abs_diff(pcp2)) <= TOL,
        "two zoneinfo reads differ by {}",
        pcp1.abs_diff(pcp2)
    );
    assert!(x.abs() <= TOL, "X with the term is {x}");
}
