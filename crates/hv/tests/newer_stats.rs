//! The newer balloon statistics (virtio tags 10–15: OOM kills, allocation stalls, reclaim
//! scans) on real guests: a Linux 6.12 guest under QEMU 10 (bookworm-backports, unpacked by the
//! lab) with a 64 MiB swap disk fills its RAM and swap and is OOM-killed, and memwarden's QMP read must equal the guest's own /proc/vmstat, summed
//! the way the 6.12 driver sums it (`tags::NEWER`); under the system's QEMU 7.2 the same guest
//! shows none of them (QEMU drops tags ≥ 10 before 9.2).

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use memwarden_hv::qmp::QmpClient;
use memwarden_hv::tags::NEWER;
use memwarden_hv::{Hypervisor, QmpBackend};
use memwarden_lab::{wait_for, GuestOpts, Kernel, Lab, QemuGuest};
use memwarden_model::vm::BalloonStats;

/// The page size the driver's `pages_to_bytes` shifts by (x86_64).
const PAGE: u64 = 4096;

fn now_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The guest's /proc/vmstat counters the driver reads, from its console.
fn vmstat(g: &QemuGuest) -> BTreeMap<String, u64> {
    let out = g
        .console("run grep -E '^(oom_kill|allocstall_[a-z0-9]+|pgscan_kswapd|pgscan_direct|pgsteal_kswapd|pgsteal_direct) ' /proc/vmstat")
        .expect("vmstat");
    out.lines()
        .filter_map(|l| {
            let (k, v) = l.trim().split_once(' ')?;
            Some((k.to_string(), v.trim().parse().ok()?))
        })
        .collect()
}

/// What the driver reports for `n`, from vmstat: the counter (all `allocstall_*` summed),
/// times the page size for the byte statistics.
fn expected(vm: &BTreeMap<String, u64>, n: &memwarden_hv::tags::NewerStat) -> u64 {
    let raw: u64 = match n.vmstat.strip_suffix('*') {
        Some(prefix) => vm
            .iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .map(|(_, v)| v)
            .sum(),
        None => *vm
            .get(n.vmstat)
            .unwrap_or_else(|| panic!("{} in {vm:?}", n.vmstat)),
    };
    if n.bytes {
        raw * PAGE
    } else {
        raw
    }
}

/// The typed field memwarden fills for `n`.
fn typed(b: &BalloonStats, name: &str) -> Option<u64> {
    match name {
        "oom_kills" => b.oom_kills,
        "alloc_stalls" => b.alloc_stalls,
        "async_scans" => b.async_scanned_bytes,
        "direct_scans" => b.direct_scanned_bytes,
        "async_reclaims" => b.async_reclaimed_bytes,
        "direct_reclaims" => b.direct_reclaimed_bytes,
        other => panic!("unknown newer stat {other}"),
    }
}

/// A small swap disk: anonymous memory becomes reclaimable, so that kswapd and direct reclaim
/// scan and reclaim (swap out) before the OOM kill and the four byte statistics are not all 0
/// (the guest's root is its initramfs: it has no file pages to reclaim).
const SWAP_MIB: u64 = 64;

fn boot(lab: &Lab, name: &str, qemu: Option<memwarden_lab::Qemu>) -> (QemuGuest, QmpBackend) {
    let g = QemuGuest::boot(
        lab,
        GuestOpts {
            name: name.into(),
            mem_mib: 512,
            stats_polling: Some(1),
            swap_mib: SWAP_MIB,
            qemu,
            ..GuestOpts::default()
        },
    )
    .expect("guest boots");
    let hv = QmpBackend::new(&[g.qmp_socket().display().to_string()]).expect("backend");
    (g, hv)
}

/// Balloon stats pushed after host time `t` (last_update is the host's receipt time, whole
/// seconds: a push stamped t + 2 was computed after t).
fn fresh_stats(hv: &mut QmpBackend, name: &str, t: u64) -> BalloonStats {
    let mut got = None;
    wait_for(
        "a stats push after the vmstat read",
        Duration::from_secs(30),
        || {
            got = hv
                .memory_stats(name)
                .ok()
                .filter(|s| s.last_update_unix_s.is_some_and(|u| u >= t + 2));
            got.is_some()
        },
    );
    got.expect("fresh stats")
}

/// The raw `guest-stats` keys QEMU sends (QMP, the balloon found by memwarden).
fn raw_keys(g: &QemuGuest, hv: &mut QmpBackend, name: &str) -> Vec<String> {
    let path = hv.sample(name).expect("sample").device.path.expect("path");
    let mut c = QmpClient::connect(
        &g.qmp_socket(),
        std::time::Instant::now() + Duration::from_secs(5),
    )
    .expect("connect");
    let r = c
        .execute(
            "qom-get",
            Some(serde_json::json!({"path": path, "property": "guest-stats"})),
        )
        .expect("guest-stats");
    r["stats"]
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default()
}

#[test]
fn a_6_12_guest_under_qemu_10_reports_its_oom_kill_and_reclaim_counters() {
    let lab = Lab::with_kernel(Kernel::Debian6_12).expect("lab");
    let qemu = lab.qemu10().expect("QEMU 10 unpacked");
    eprintln!("{} guest under {}", lab.kernel_release(), qemu.version);
    let (g, mut hv) = boot(&lab, "newer10", Some(qemu));
    let name = hv.names().expect("names")[0].clone();
    let keys = raw_keys(&g, &mut hv, &name);
    for n in NEWER {
        assert!(keys.iter().any(|k| k == n.qmp), "{} in {keys:?}", n.qmp);
    }

    // Before: no OOM kill, and what memwarden reads is the guest's vmstat.
    wait_for("first stats push", Duration::from_secs(30), || {
        hv.memory_stats(&name).is_ok_and(|s| s.oom_kills.is_some())
    });
    let before = vmstat(&g);
    assert_eq!(before.get("oom_kill"), Some(&0), "{before:?}");

    // More anonymous memory than the guest has free RAM and swap: its kernel swaps out what it
    // can, then OOM-kills memhog, so the console's `hog` reports failure. Just under MemTotal +
    // swap: a larger mmap is refused by the overcommit heuristic before anything is touched.
    let hog_mib = g.meminfo().expect("meminfo")["MemTotal"] / 1024 + SWAP_MIB - 8;
    let hog = g.console_timeout(&format!("hog {hog_mib}"), Duration::from_secs(180));
    eprintln!("hog {hog_mib}: {hog:?}");
    assert!(
        matches!(hog, Err(memwarden_lab::Error::Command { .. })),
        "memhog {hog_mib} MiB should have been OOM-killed: {hog:?}"
    );

    // Ground truth before and after a fresh push; memwarden's figures must lie between the two
    // reads (equal to both once reclaim has stopped).
    let t = now_s();
    let vm0 = vmstat(&g);
    let s = fresh_stats(&mut hv, &name, t);
    let vm1 = vmstat(&g);
    eprintln!("vmstat before the push: {vm0:?}\nafter: {vm1:?}");
    for n in NEWER {
        let (lo, hi) = (expected(&vm0, &n), expected(&vm1, &n));
        let ours = typed(&s, n.name);
        eprintln!(
            "{:<16} memwarden {:?}  guest vmstat {} ({}{})",
            n.name,
            ours,
            lo,
            n.vmstat,
            if n.bytes { " x 4096" } else { "" }
        );
        let ours = ours.unwrap_or_else(|| panic!("{} not read: {:?}", n.name, s.tags));
        assert!(
            (lo..=hi).contains(&ours),
            "{}: memwarden {ours}, guest {lo}..={hi}",
            n.name
        );
    }
    let kills = s.oom_kills.expect("oom_kills");
    assert!(kills >= 1, "the guest OOM-killed memhog");
    assert_eq!(
        kills, vm1["oom_kill"],
        "OOM kills are final once memhog is gone"
    );
    // An OOM kill follows failed direct reclaim: at least one allocation stalled.
    assert!(
        s.alloc_stalls.is_some_and(|v| v >= 1),
        "{:?}",
        s.alloc_stalls
    );
    // Swapping out before the kill: something was scanned and reclaimed.
    assert!(
        s.async_scanned_bytes.unwrap_or(0) + s.direct_scanned_bytes.unwrap_or(0) > 0,
        "no reclaim scan before the OOM kill: {s:?}"
    );
    // Reclaim can only take what it scanned.
    for (steal, scan) in [
        (s.async_reclaimed_bytes, s.async_scanned_bytes),
        (s.direct_reclaimed_bytes, s.direct_scanned_bytes),
    ] {
        assert!(steal <= scan, "reclaimed {steal:?} > scanned {scan:?}");
    }
}

#[test]
fn the_same_guest_under_the_system_qemu_7_2_reports_none_of_them() {
    let lab = Lab::with_kernel(Kernel::Debian6_12).expect("lab");
    let (g, mut hv) = boot(&lab, "newer72", None);
    let name = hv.names().expect("names")[0].clone();
    let s = {
        let mut got = None;
        wait_for("first stats push", Duration::from_secs(30), || {
            got = hv
                .memory_stats(&name)
                .ok()
                .filter(|s| s.available_bytes.is_some());
            got.is_some()
        });
        got.expect("stats")
    };
    let keys = raw_keys(&g, &mut hv, &name);
    eprintln!("QEMU 7.2 guest-stats keys: {keys:?}");
    for n in NEWER {
        assert!(!keys.iter().any(|k| k == n.qmp), "{} from QEMU 7.2", n.qmp);
        assert_eq!(typed(&s, n.name), None, "{}", n.name);
        assert!(!s.tags.iter().any(|t| t.name == n.name), "{:?}", s.tags);
    }
    // The guest itself counts them (6.12 driver): only QEMU 7.2 drops them.
    assert!(vmstat(&g).contains_key("oom_kill"));
}
