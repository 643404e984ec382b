//! The libvirt backend against a real libvirtd and real lab guests (memwarden-lab).
//! Each test starts its own domain (at most 2 guests at once: the lab's slots).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use memwarden_analysis::vm::{diagnose, FindingKind};
use memwarden_hv::{Error, Hypervisor, LibvirtBackend, Scope};
use memwarden_lab::{virsh, wait_for, Domain, DomainOpts, Lab, URI};
use memwarden_model::units::{KIB, MIB};
use memwarden_model::vm::BalloonStats;

fn start(name: &str, period: u64, balloon: bool) -> (Lab, Domain) {
    let lab = Lab::new().expect("lab");
    let d = Domain::start(
        &lab,
        DomainOpts {
            name: name.into(),
            stats_period: period,
            balloon,
            ..DomainOpts::default()
        },
    )
    .expect("domain starts");
    (lab, d)
}

fn kib(s: &BalloonStats) -> BTreeMap<String, u64> {
    s.tags.iter().map(|t| (t.name.clone(), t.value)).collect()
}

#[test]
fn dommemstat_matches_virsh_and_the_guest_and_setmem_moves_both() {
    let (_lab, d) = start("hv-stats", 2, true);
    let mut hv = LibvirtBackend::connect(URI).expect("connect");
    wait_for("first guest stats", Duration::from_secs(60), || {
        hv.memory_stats(d.name())
            .map(|s| s.available_bytes.is_some())
            .unwrap_or(false)
    });

    // Back to back with virsh: identical for every tag except rss (QEMU's RSS moves between
    // reads); retried when virsh itself changed between the two reads around ours.
    let mut matched = false;
    for _ in 0..10 {
        let before = d.dommemstat().expect("virsh dommemstat");
        let ours = kib(&hv.memory_stats(d.name()).expect("memory_stats"));
        let after = d.dommemstat().expect("virsh dommemstat");
        let strip = |m: &BTreeMap<String, u64>| {
            let mut m = m.clone();
            m.remove("rss");
            m
        };
        assert_eq!(
            ours.keys().collect::<Vec<_>>(),
            before.keys().collect::<Vec<_>>()
        );
        if strip(&before) != strip(&after) {
            continue;
        }
        assert_eq!(strip(&ours), strip(&before));
        let (r0, r1, r) = (before["rss"], after["rss"], ours["rss"]);
        assert!(
            r0.min(r1) * 99 / 100 <= r && r <= r0.max(r1) * 101 / 100,
            "rss {r} vs virsh {r0}..{r1}"
        );
        matched = true;
        break;
    }
    assert!(matched, "virsh kept changing between reads");

    // The guest's own meminfo: MemTotal exactly; the rest after a fresh stats push, within
    // 2 MiB (the console command itself allocates a little).
    let mi = d.meminfo().expect("guest meminfo");
    let t = hv.memory_stats(d.name()).expect("stats").last_update_unix_s;
    wait_for(
        "a stats push after meminfo",
        Duration::from_secs(20),
        || {
            hv.memory_stats(d.name())
                .map(|s| s.last_update_unix_s > t)
                .unwrap_or(false)
        },
    );
    let s = kib(&hv.memory_stats(d.name()).expect("stats"));
    assert_eq!(s["available"], mi["MemTotal"]);
    for (tag, field) in [
        ("unused", "MemFree"),
        ("usable", "MemAvailable"),
        ("disk_caches", "Cached"),
    ] {
        let diff = s[tag].abs_diff(mi[field]);
        assert!(
            diff <= 2048,
            "{tag} {} vs guest {field} {} kB",
            s[tag],
            mi[field]
        );
    }

    // The bulk listing carries the same domain, healthy. Other tests' collectors read every
    // domain of this libvirtd too: while one holds this domain's query job, libvirt's NOWAIT
    // skips it ("busy" for that sample, as in production); a few tries see it read.
    let mut vms = Vec::new();
    for _ in 0..20 {
        vms = hv.list().expect("list");
        let read = vms
            .iter()
            .any(|v| v.name == d.name() && v.read.status == memwarden_model::vm::ReadStatus::Ok);
        if read {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
    let vm = vms
        .iter()
        .find(|v| v.name == d.name())
        .expect("listed by the bulk call");
    assert_eq!(vm.qemu_pid, Some(d.pid()));
    assert_eq!(vm.device.stats_period_s, Some(2));
    assert!(diagnose(vm).is_empty(), "{:?}", diagnose(vm));

    // setmem: -128 MiB moves actual and the guest's MemTotal by the same amount.
    let before = hv.memory_stats(d.name()).expect("stats");
    let (actual0, total0) = (
        before.actual_bytes.expect("actual"),
        d.meminfo().expect("meminfo")["MemTotal"] * KIB,
    );
    hv.set_memory(d.name(), actual0 - 128 * MIB, Scope::LIVE)
        .expect("setmem");
    // The driver gives pages back in steps: wait until it has given at least 128 MiB.
    wait_for("balloon to inflate", Duration::from_secs(60), || {
        d.meminfo()
            .map(|m| m["MemTotal"] * KIB + 128 * MIB <= total0)
            .unwrap_or(false)
    });
    let actual1 = hv
        .memory_stats(d.name())
        .expect("stats")
        .actual_bytes
        .expect("actual");
    let total1 = d.meminfo().expect("meminfo")["MemTotal"] * KIB;
    assert_eq!(actual0 - actual1, 128 * MIB);
    assert_eq!(total0 - total1, 128 * MIB);
}

#[test]
fn period_zero_is_diagnosed_and_stats_period_makes_it_live() {
    let (_lab, d) = start("hv-period0", 0, true);
    let mut hv = LibvirtBackend::connect(URI).expect("connect");
    let vm = hv.sample(d.name()).expect("sample");
    assert_eq!(vm.device.stats_period_s, Some(0));
    let kinds: Vec<_> = diagnose(&vm).into_iter().map(|f| f.kind).collect();
    assert!(kinds.contains(&FindingKind::PollingOff), "{kinds:?}");
    let t0 = vm.balloon.last_update_unix_s.unwrap_or(0);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        hv.memory_stats(d.name()).expect("stats").last_update_unix_s,
        vm.balloon.last_update_unix_s,
        "period 0: last_update must not move"
    );

    hv.set_stats_period(d.name(), 1, Scope::LIVE)
        .expect("stats-period");
    wait_for("last_update to move", Duration::from_secs(20), || {
        hv.memory_stats(d.name())
            .map(|s| s.last_update_unix_s.unwrap_or(0) > t0)
            .unwrap_or(false)
    });
    let vm = hv.sample(d.name()).expect("sample");
    assert_eq!(vm.device.stats_period_s, Some(1));
    assert!(diagnose(&vm).is_empty(), "{:?}", diagnose(&vm));
}

#[test]
fn no_balloon_is_diagnosed_and_a_vm_destroyed_mid_sample_is_skipped() {
    let (_lab, d) = start("hv-noballoon", 2, false);
    let mut hv = LibvirtBackend::connect(URI).expect("connect");
    let vm = hv.sample(d.name()).expect("sample");
    assert!(!vm.device.present);
    let kinds: Vec<_> = diagnose(&vm).into_iter().map(|f| f.kind).collect();
    assert_eq!(kinds, [FindingKind::NoBalloonDevice]);
    assert!(hv.set_stats_period(d.name(), 2, Scope::LIVE).is_err());

    // Destroy the domain while another thread samples in a loop: no sample may fail.
    let name = d.name().to_string();
    let sampler = std::thread::spawn(move || {
        let mut hv = LibvirtBackend::connect(URI).expect("connect");
        let (mut seen, mut gone, mut failed) = (0, 0, 0);
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(8) {
            // libvirtd holds a domain's object lock while it kills its QEMU, and the bulk call
            // waits for it: a call may miss its deadline then. That must be a timeout (or the
            // note that earlier calls are still waiting), never another failure.
            let vms = match hv.list() {
                Ok(v) => v,
                Err(e) => {
                    eprintln!("list failed: {}", e.plain());
                    assert!(
                        matches!(e, Error::LibvirtTimeout { .. } | Error::LibvirtBusy { .. }),
                        "{e:?}"
                    );
                    failed += 1;
                    continue;
                }
            };
            if vms.iter().any(|v| v.name == name) {
                seen += 1;
            } else {
                gone += 1;
            }
        }
        eprintln!("seen {seen}, gone {gone}, timed out {failed}");
        (seen, gone)
    });
    std::thread::sleep(Duration::from_secs(2));
    virsh(&["destroy", d.name()]).expect("destroy");
    let (seen, gone) = sampler.join().expect("sampler thread");
    assert!(seen > 0 && gone > 0, "seen {seen}, gone {gone}");
    assert!(hv.memory_stats(d.name()).is_err_and(|e| e.is_gone()));
}
