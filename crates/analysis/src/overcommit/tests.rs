use super::*;

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

fn vm(name: &str, max: u64, used: u64, legacy: u64, rss: u64) -> VmObservation {
    VmObservation {
        name: name.into(),
        max_memory_bytes: Some(max),
        guest_used_bytes: Some(used),
        guest_used_legacy_bytes: Some(legacy),
        qemu_rss_bytes: Some(rss),
        ksm_saved_bytes: None,
    }
}

fn obs(at_s: u64, vms: Vec<VmObservation>) -> Observation {
    Observation {
        at_unix_ms: at_s * 1000,
        mem_total_bytes: 64 * GIB,
        host_used_bytes: 4 * GIB + vms.iter().filter_map(|v| v.qemu_rss_bytes).sum::<u64>(),
        vms,
    }
}

fn short() -> PlanConfig {
    PlanConfig {
        percentile: 99.0,
        min_span_ms: 60_000,
    }
}

#[test]
fn percentile_is_nearest_rank_and_time_weighted() {
    let v: Vec<f64> = (1..=100).map(f64::from).collect();
    let w = vec![1; 100];
    assert_eq!(percentile::index(&v, &w, 99.0), Some(98)); // the 99th of 100
    assert_eq!(percentile::index(&v, &w, 100.0), Some(99));
    assert_eq!(percentile::index(&v, &w, 50.0), Some(49));
    // One sample standing for as long as the 99 others together outweighs them.
    let mut w = vec![1; 100];
    w[0] = 99;
    assert_eq!(percentile::index(&v, &w, 40.0), Some(0));
    assert_eq!(percentile::index(&[], &[], 99.0), None);
    assert_eq!(percentile::index(&[1.0], &[1, 2], 99.0), None);
}

#[test]
fn weights_follow_gaps_and_cap_them() {
    assert_eq!(
        percentile::weights(&[0, 10, 20, 80, 10_000_000]),
        vec![10, 10, 60, percentile::MAX_WEIGHT_MS, 60]
    );
    assert_eq!(percentile::weights(&[5]), vec![1]);
    assert!(percentile::weights(&[]).is_empty());
}

#[test]
fn min_samples_for_a_percentile() {
    assert_eq!(percentile::min_samples(99.0), 100);
    assert_eq!(percentile::min_samples(95.0), 20);
    assert_eq!(percentile::min_samples(99.9), 1000);
    assert_eq!(percentile::min_samples(50.0), 2);
    assert_eq!(percentile::min_samples(100.0), usize::MAX);
}

#[test]
fn ratio_is_promised_over_demand_at_the_percentile() {
    // Two 8 GiB VMs; the guests use 2 GiB each, 1% of the time 3 GiB each. QEMU holds what the
    // guest touched (3 GiB: 1 GiB of it page cache) plus 100 MiB of its own.
    let mut all = Vec::new();
    for t in 0..200 {
        let used = if t % 100 == 7 { 3 * GIB } else { 2 * GIB };
        let legacy = used + GIB;
        let rss = legacy + 100 * MIB;
        all.push(obs(
            t * 10,
            vec![
                vm("a", 8 * GIB, used, legacy, rss),
                vm("b", 8 * GIB, used, legacy, rss),
            ],
        ));
    }
    let p = plan(&all, &short());
    assert_eq!(p.shortfall, None, "{:?}", p.notes);
    let m = p.at_percentile.clone().expect("a moment");
    // p99 of 200 samples, 2 of them high: the 198th value is still the low level.
    assert_eq!(m.guest_used_bytes, 4 * GIB);
    assert_eq!(m.qemu_overhead_bytes, 200 * MIB);
    assert_eq!(m.demand_bytes, 4 * GIB + 200 * MIB);
    assert_eq!(m.promised_bytes, 16 * GIB);
    let want = 16.0 * 1024.0 / (4.0 * 1024.0 + 200.0);
    assert!((p.ratio.expect("ratio") - want).abs() < 1e-9, "{p:?}");
    // p99.5 reaches the spikes.
    let hi = plan(
        &all,
        &PlanConfig {
            percentile: 99.5,
            ..short()
        },
    );
    assert_eq!(hi.at_percentile.expect("moment").guest_used_bytes, 6 * GIB);
    // The host's own use is 4 GiB throughout; the committed ratio is 16 GiB over 60 GiB.
    assert_eq!(p.host_own_bytes, Some(4 * GIB));
    assert_eq!(p.usable_bytes, Some(60 * GIB));
    assert!((p.committed_ratio.expect("committed") - 16.0 / 60.0).abs() < 1e-12);
}

#[test]
fn too_short_a_history_gives_no_number() {
    let few: Vec<Observation> = (0..50)
        .map(|t| obs(t * 10, vec![vm("a", GIB, 100 * MIB, 200 * MIB, 300 * MIB)]))
        .collect();
    let p = plan(&few, &short());
    assert_eq!(p.shortfall, Some(Shortfall::NotEnoughHistory));
    assert_eq!(p.ratio, None);
    assert_eq!(p.at_percentile, None);
    assert!(
        p.notes[0].starts_with("not enough history: 50 samples"),
        "{:?}",
        p.notes
    );
    // Enough samples, too short a span.
    let quick: Vec<Observation> = (0..150)
        .map(|t| obs(t / 10, vec![vm("a", GIB, 100 * MIB, 200 * MIB, 300 * MIB)]))
        .collect();
    let p = plan(&quick, &short());
    assert_eq!(p.shortfall, Some(Shortfall::NotEnoughHistory));
    assert!(p.notes[0].contains("over 14s"), "{:?}", p.notes);
    assert_eq!(plan(&[], &short()).shortfall, Some(Shortfall::NoSamples));
}

#[test]
fn vms_without_statistics_are_left_out_and_named() {
    let no_stats = VmObservation {
        name: "dark".into(),
        max_memory_bytes: Some(4 * GIB),
        qemu_rss_bytes: Some(GIB),
        ..VmObservation::default()
    };
    let only_dark: Vec<Observation> = (0..200)
        .map(|t| obs(t * 10, vec![no_stats.clone()]))
        .collect();
    let p = plan(&only_dark, &short());
    assert_eq!(p.shortfall, Some(Shortfall::NoVmStats));
    assert_eq!(p.ratio, None);
    // Its QEMU is still not the host's own use.
    assert_eq!(p.host_own_bytes, Some(4 * GIB));

    let mixed: Vec<Observation> = (0..200)
        .map(|t| {
            let dark = VmObservation {
                ksm_saved_bytes: Some(512 * MIB),
                ..no_stats.clone()
            };
            obs(t * 10, vec![vm("a", 2 * GIB, GIB, GIB, GIB), dark])
        })
        .collect();
    let p = plan(&mixed, &short());
    let m = p.at_percentile.expect("moment");
    assert_eq!((m.vms, m.promised_bytes), (1, 2 * GIB));
    // KSM's savings on the dark VM are not subtracted from the counted one's demand.
    assert_eq!(m.ksm_saved_bytes, 0);
    assert_eq!(p.ratio, Some(2.0));
    let dark = p.vms.iter().find(|v| v.name == "dark").expect("named");
    assert_eq!((dark.samples, dark.counted), (200, 0));
    assert_eq!(p.promised_now_bytes, Some(6 * GIB));
    assert_eq!(p.vms.len(), 2);
    assert_eq!(p.shortfall, None);
    assert_eq!(
        Shortfall::NoVms,
        plan(&[obs(0, vec![])], &short()).shortfall.expect("short")
    );
}

#[test]
fn ksm_savings_on_a_vm_lower_its_demand() {
    let all: Vec<Observation> = (0..100)
        .map(|t| {
            let a = VmObservation {
                ksm_saved_bytes: Some(300 * MIB),
                ..vm("a", 4 * GIB, GIB, GIB, GIB + 100 * MIB)
            };
            obs(t * 10, vec![a])
        })
        .collect();
    let p = plan(&all, &short());
    let m = p.at_percentile.expect("moment");
    assert_eq!(m.qemu_overhead_bytes, 100 * MIB);
    assert_eq!(m.ksm_saved_bytes, 300 * MIB);
    assert_eq!(m.demand_bytes, GIB - 200 * MIB);
    // The host's own use leaves out what the QEMU holds, its merged pages once.
    assert_eq!(p.host_own_bytes, Some(4 * GIB + 300 * MIB));
}

#[test]
fn ksm_saved_is_a_process_merged_pages_less_the_kept_copies() {
    // 3 sharing per shared: a quarter of the merged mappings are the copies kept.
    assert_eq!(ksm_saved(400 * MIB, 1000, 3000), 300 * MIB);
    // Without KSM counters (or ksmd never ran), nothing is claimed.
    assert_eq!(ksm_saved(400 * MIB, 0, 0), 0);
    assert_eq!(ksm_saved(0, 1000, 3000), 0);
    assert_eq!(ksm_saved(u64::MAX, u64::MAX, u64::MAX), u64::MAX / 2);
}

#[test]
fn overhead_never_negative_when_the_host_holds_less_than_the_guest_touched() {
    // Guest pages swapped out on the host: RSS below what the guest touched.
    let all: Vec<Observation> = (0..100)
        .map(|t| obs(t * 10, vec![vm("a", 4 * GIB, 2 * GIB, 3 * GIB, GIB)]))
        .collect();
    let m = plan(&all, &short()).at_percentile.expect("moment");
    assert_eq!(m.qemu_overhead_bytes, 0);
    assert_eq!(m.demand_bytes, 2 * GIB);
}

#[test]
fn a_vm_that_came_and_went_is_judged_by_each_samples_promise() {
    // "a" runs throughout at half its promise; "b" runs for a while at its full promise. The
    // fraction's p99 is taken with b (3/4 of 8 GiB), not b's use against a's promise alone.
    let all: Vec<Observation> = (0..300)
        .map(|t| {
            let mut vms = vec![vm("a", 4 * GIB, 2 * GIB, 2 * GIB, 2 * GIB)];
            if (100..150).contains(&t) {
                vms.push(vm("b", 4 * GIB, 4 * GIB, 4 * GIB, 4 * GIB));
            }
            obs(t * 10, vms)
        })
        .collect();
    let p = plan(&all, &short());
    let m = p.at_percentile.clone().expect("moment");
    assert_eq!(
        (m.vms, m.promised_bytes, m.demand_bytes),
        (2, 8 * GIB, 6 * GIB)
    );
    assert!((p.ratio.expect("ratio") - 8.0 / 6.0).abs() < 1e-12);
    let b = p.vms.iter().find(|v| v.name == "b").expect("b");
    assert_eq!((b.samples, b.counted), (50, 50));
    // Gone by the end: not promised now.
    assert_eq!(p.promised_now_bytes, Some(4 * GIB));
}

#[test]
fn a_fleet_pools_hosts_at_each_instant() {
    let h1: Vec<Observation> = (0..3)
        .map(|t| obs(t, vec![vm("a", 4 * GIB, GIB, GIB, GIB)]))
        .collect();
    let h2: Vec<Observation> = (1..4)
        .map(|t| obs(t, vec![vm("a", 4 * GIB, 3 * GIB, 3 * GIB, 3 * GIB)]))
        .collect();
    let f = merge(&[("h1".into(), h1), ("h2".into(), h2)]);
    assert_eq!(f.len(), 4);
    assert_eq!(f[1].mem_total_bytes, 128 * GIB);
    let names: Vec<&str> = f[1].vms.iter().map(|v| v.name.as_str()).collect();
    assert_eq!(names, ["h1/a", "h2/a"]);
    assert_eq!(f[3].vms.len(), 1);
}

#[test]
fn a_stored_view_observes_what_the_whole_sample_does() {
    use memwarden_model::host::{
        HostSample, KsmSysfs, Meminfo, MeminfoEntry, MeminfoUnit, ProcKsm, ProcessMem,
    };
    use memwarden_model::vm::{BalloonStats, VmSample};
    let kb = |key: &str, v: u64| MeminfoEntry {
        key: key.into(),
        value: v,
        unit: MeminfoUnit::Bytes,
    };
    let sample = memwarden_model::Sample {
        taken_at_unix_ms: 42_000,
        host: HostSample {
            meminfo: Meminfo {
                entries: vec![kb("MemTotal", 64 * GIB), kb("MemAvailable", 40 * GIB)],
            },
            ksm: Some(KsmSysfs {
                pages_shared: Some(1000),
                pages_sharing: Some(3000),
                ..KsmSysfs::default()
            }),
            processes: vec![ProcessMem {
                pid: 1,
                name: "init".into(),
                ..ProcessMem::default()
            }],
            ..HostSample::default()
        },
        vms: vec![VmSample {
            name: "web".into(),
            max_memory_bytes: Some(4 * GIB),
            balloon: BalloonStats {
                available_bytes: Some(4 * GIB),
                usable_bytes: Some(3 * GIB),
                unused_bytes: Some(2 * GIB),
                rss_bytes: Some(GIB + 300 * MIB),
                ..BalloonStats::default()
            },
            host: Some(ProcessMem {
                pid: 7,
                name: "qemu-system-x86".into(),
                ksm: Some(ProcKsm {
                    merging_pages: Some(400),
                    ..ProcKsm::default()
                }),
                ..ProcessMem::default()
            }),
            ..VmSample::default()
        }],
        ..memwarden_model::Sample::default()
    };
    let json = serde_json::to_vec(&sample).expect("serialize");
    let view: StoredSample = serde_json::from_slice(&json).expect("the view");
    let o = view.observe();
    assert_eq!(o, observe(&sample));
    assert_eq!(o.host_used_bytes, 24 * GIB);
    let v = &o.vms[0];
    assert_eq!(v.guest_used_bytes, Some(GIB));
    assert_eq!(v.guest_used_legacy_bytes, Some(2 * GIB));
    assert_eq!(v.qemu_rss_bytes, Some(GIB + 300 * MIB));
    assert_eq!(v.ksm_saved_bytes, Some(300 * 4096));
}
