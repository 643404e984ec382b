//! The QMP backend against a plain QEMU lab guest (no libvirt): the same checks as the libvirt
//! backend, plus the QMP-only parts (balloon found by type, pid from SO_PEERCRED).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use memwarden_analysis::vm::{diagnose, FindingKind};
use memwarden_hv::qmp::QmpClient;
use memwarden_hv::tags::QMP_STATS;
use memwarden_hv::{Hypervisor, QmpBackend, Scope};
use memwarden_lab::{wait_for, GuestOpts, Lab, QemuGuest};
use memwarden_model::units::{KIB, MIB};
use memwarden_model::vm::ReadStatus;

#[test]
fn qmp_backend_reads_sets_and_diagnoses_a_plain_qemu_guest() {
    let lab = Lab::new().expect("lab");
    let g = QemuGuest::boot(
        &lab,
        GuestOpts {
            name: "hv-qmp".into(),
            stats_polling: None,
            ..GuestOpts::default()
        },
    )
    .expect("guest boots");
    let sock = g.qmp_socket().display().to_string();
    let mut hv = QmpBackend::new(std::slice::from_ref(&sock)).expect("backend");

    // Found by glob too, and the VM's name is QEMU's -name (or the run dir).
    let names = hv.names().expect("names");
    assert_eq!(names.len(), 1);
    let name = names[0].clone();

    // Polling off: diagnosed, and last_update does not move.
    let vm = hv.sample(&name).expect("sample");
    assert_eq!(vm.qemu_pid, Some(g.pid()), "pid from SO_PEERCRED");
    assert!(vm.device.present);
    assert!(
        vm.device
            .model
            .as_deref()
            .is_some_and(|m| m.starts_with("virtio-balloon")),
        "{:?}",
        vm.device
    );
    assert_eq!(vm.device.stats_period_s, Some(0));
    let kinds: Vec<_> = diagnose(&vm).into_iter().map(|f| f.kind).collect();
    assert!(kinds.contains(&FindingKind::PollingOff), "{kinds:?}");
    assert_eq!(vm.max_memory_bytes, Some(512 * MIB));
    assert_eq!(
        vm.qemu_pid,
        Some(g.pid()),
        "the collector joins the QEMU process by this pid"
    );

    // stats-period turns it live.
    let t0 = vm.balloon.last_update_unix_s.unwrap_or(0);
    hv.set_stats_period(&name, 1, Scope::LIVE).expect("period");
    wait_for("last_update to move", Duration::from_secs(20), || {
        hv.memory_stats(&name)
            .map(|s| s.last_update_unix_s.unwrap_or(0) > t0 && s.available_bytes.is_some())
            .unwrap_or(false)
    });
    let vm = hv.sample(&name).expect("sample");
    assert_eq!(vm.device.stats_period_s, Some(1));
    assert!(diagnose(&vm).is_empty(), "{:?}", diagnose(&vm));

    // Our libvirt-form tags equal QEMU's raw guest-stats / 1024, read back to back.
    let path = vm.device.path.clone().expect("balloon path");
    let mut matched = false;
    for _ in 0..10 {
        let raw = |c: &mut QmpClient| {
            c.execute(
                "qom-get",
                Some(serde_json::json!({"path": path, "property": "guest-stats"})),
            )
            .expect("guest-stats")
        };
        let mut c = QmpClient::connect(
            g.qmp_socket().as_path(),
            Instant::now() + Duration::from_secs(5),
        )
        .expect("connect");
        let r0 = raw(&mut c);
        drop(c);
        let ours: BTreeMap<String, u64> = hv
            .memory_stats(&name)
            .expect("stats")
            .tags
            .into_iter()
            .map(|t| (t.name, t.value))
            .collect();
        let mut c = QmpClient::connect(
            g.qmp_socket().as_path(),
            Instant::now() + Duration::from_secs(5),
        )
        .expect("connect");
        let r1 = raw(&mut c);
        if r0 != r1 {
            continue;
        }
        for (q, l, bytes) in QMP_STATS {
            let v = r0["stats"][q].as_u64().expect("stat present");
            let want = if bytes { v / KIB } else { v };
            assert_eq!(ours[l], want, "{q} -> {l}");
        }
        assert_eq!(ours["last_update"], r0["last-update"].as_u64().expect("lu"));
        matched = true;
        break;
    }
    assert!(matched, "guest-stats kept changing");

    // Against the guest's own meminfo.
    let mi = g.meminfo().expect("meminfo");
    let t = hv.memory_stats(&name).expect("stats").last_update_unix_s;
    wait_for("a stats push", Duration::from_secs(20), || {
        hv.memory_stats(&name)
            .map(|s| s.last_update_unix_s > t)
            .unwrap_or(false)
    });
    let s = hv.memory_stats(&name).expect("stats");
    assert_eq!(s.available_bytes, Some(mi["MemTotal"] * KIB));
    for (v, field) in [
        (s.unused_bytes, "MemFree"),
        (s.usable_bytes, "MemAvailable"),
        (s.disk_caches_bytes, "Cached"),
    ] {
        let v = v.expect("reported") / KIB;
        assert!(
            v.abs_diff(mi[field]) <= 2048,
            "{v} vs {field} {}",
            mi[field]
        );
    }

    // setmem: actual and MemTotal move by the same 128 MiB; --config is refused.
    let actual0 = s.actual_bytes.expect("actual");
    let total0 = mi["MemTotal"] * KIB;
    assert!(hv
        .set_memory(
            &name,
            actual0 - 128 * MIB,
            Scope {
                live: true,
                config: true
            }
        )
        .is_err());
    hv.set_memory(&name, actual0 - 128 * MIB, Scope::LIVE)
        .expect("balloon");
    // The driver gives pages back in steps: wait until it has given at least 128 MiB.
    wait_for("balloon to inflate", Duration::from_secs(60), || {
        g.meminfo()
            .map(|m| m["MemTotal"] * KIB + 128 * MIB <= total0)
            .unwrap_or(false)
    });
    let actual1 = hv
        .memory_stats(&name)
        .expect("stats")
        .actual_bytes
        .expect("actual");
    let total1 = g.meminfo().expect("meminfo")["MemTotal"] * KIB;
    assert_eq!(actual0 - actual1, 128 * MIB);
    assert_eq!(total0 - total1, 128 * MIB);

    // A QEMU that exits is a row that says so, not an error and not a silent gap.
    drop(g);
    let vms = hv.list().expect("list with a dead socket");
    assert_eq!(vms.len(), 1, "{vms:?}");
    assert!(
        matches!(
            vms[0].read.status,
            ReadStatus::Unreachable | ReadStatus::Gone
        ),
        "{:?}",
        vms[0].read
    );
}

/// A plain QEMU guest started without any balloon device: listed, diagnosed in plain words,
/// and a balloon target is refused rather than sent.
#[test]
fn qmp_guest_without_a_balloon_is_diagnosed() {
    let lab = Lab::new().expect("lab");
    let g = QemuGuest::boot(
        &lab,
        GuestOpts {
            name: "qmp-noballoon".into(),
            balloon: false,
            ..Default::default()
        },
    )
    .expect("boot");
    let mut hv = QmpBackend::new(&[g.qmp_socket().to_string_lossy().into_owned()]).expect("qmp");
    let vms = hv.list().expect("list");
    assert_eq!(vms.len(), 1);
    let kinds: Vec<FindingKind> = diagnose(&vms[0]).into_iter().map(|f| f.kind).collect();
    assert_eq!(kinds, [FindingKind::NoBalloonDevice], "{:?}", vms[0]);
    // Only what the host itself knows (QEMU's RSS, as libvirt shows for such a domain).
    let tags: Vec<&str> = vms[0]
        .balloon
        .tags
        .iter()
        .map(|t| t.name.as_str())
        .collect();
    // No balloon: no guest tags (the host's view of QEMU comes from the collector, by pid).
    assert!(tags.is_empty(), "{:?}", vms[0].balloon);
    assert!(vms[0].balloon.actual_bytes.is_none() && vms[0].balloon.unused_bytes.is_none());
    let err = hv
        .set_memory(&vms[0].name, 384 * MIB, Scope::LIVE)
        .expect_err("no balloon");
    assert!(err.to_string().contains("balloon"), "{err}");
}
