//! Synthetic histories: a steady leak among noise, pure noise (many seeds), a one-off step.

use memwarden_model::host::{
    HostSample, Meminfo, MeminfoEntry, MeminfoUnit, ProcessMem, SmapsRollup,
};
use memwarden_model::vm::{BalloonStats, VmSample};
use memwarden_model::Sample;

use super::*;

const MIB: f64 = 1048576.0;

/// xorshift64*: seeded, reproducible noise without a dependency.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn uniform(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Roughly standard normal (sum of 12 uniforms).
    fn normal(&mut self) -> f64 {
        (0..12).map(|_| self.uniform()).sum::<f64>() - 6.0
    }
}

/// A value wandering around `level`: each step pulled back by 10 % and pushed by noise of
/// `sd` — a random walk held around a level, like MemFree or a busy process's heap.
struct Wander {
    level: f64,
    x: f64,
    sd: f64,
}

impl Wander {
    fn new(level: f64, sd: f64) -> Wander {
        Wander {
            level,
            x: level,
            sd,
        }
    }
    fn next(&mut self, rng: &mut Rng) -> f64 {
        self.x += 0.1 * (self.level - self.x) + self.sd * rng.normal();
        self.x
    }
}

fn process(pid: u32, name: &str, bytes: f64) -> ProcessMem {
    let b = bytes.max(0.0) as u64;
    ProcessMem {
        pid,
        name: name.into(),
        smaps: Some(SmapsRollup {
            rss: b + (b >> 3),
            pss: b,
            ..SmapsRollup::default()
        }),
        ..ProcessMem::default()
    }
}

fn sample(i: u64, meminfo: &[(&str, f64)], procs: Vec<ProcessMem>, vms: Vec<VmSample>) -> Sample {
    let entries = meminfo
        .iter()
        .map(|(k, v)| MeminfoEntry {
            key: (*k).into(),
            value: v.max(0.0) as u64,
            unit: MeminfoUnit::Bytes,
        })
        .collect();
    Sample {
        taken_at_unix_ms: 1_700_000_000_000 + i * 10_000,
        host: HostSample {
            meminfo: Meminfo { entries },
            processes: procs,
            ..HostSample::default()
        },
        vms,
        ..Sample::default()
    }
}

/// Two hours at 10 s: a noisy host; `extra(i, rng)` adds processes of the test's own.
fn history(seed: u64, extra: impl Fn(u64, &mut Rng) -> Vec<ProcessMem>) -> Vec<Sample> {
    let mut rng = Rng::new(seed);
    let mut free = Wander::new(2000.0 * MIB, 50.0 * MIB);
    let mut slab = Wander::new(200.0 * MIB, 2.0 * MIB);
    let mut anon = Wander::new(900.0 * MIB, 20.0 * MIB);
    let mut web = Wander::new(300.0 * MIB, 10.0 * MIB);
    let mut db = Wander::new(50.0 * MIB, 0.5 * MIB);
    (0..720)
        .map(|i| {
            let mut procs = vec![
                process(10, "web", web.next(&mut rng)),
                process(11, "db", db.next(&mut rng)),
            ];
            procs.extend(extra(i, &mut rng));
            let mi = [
                ("MemTotal", 4096.0 * MIB),
                ("MemFree", free.next(&mut rng)),
                ("SUnreclaim", slab.next(&mut rng)),
                ("AnonPages", anon.next(&mut rng)),
            ];
            sample(i, &mi, procs, vec![])
        })
        .collect()
}

#[test]
fn steady_grower_is_found_and_ranked_first() {
    let samples = history(1, |i, rng| {
        let h = i as f64 / 360.0;
        vec![
            process(
                20,
                "leaky",
                100.0 * MIB + 20.0 * MIB * h + MIB * rng.normal(),
            ),
            process(
                21,
                "slow",
                80.0 * MIB + 5.0 * MIB * h + 0.3 * MIB * rng.normal(),
            ),
        ]
    });
    let leaks = find(&samples, &LeakConfig::default());
    let names: Vec<String> = leaks.iter().map(|l| l.what.to_string()).collect();
    assert_eq!(
        names,
        [
            "process.pss{process=\"leaky\"}",
            "process.pss{process=\"slow\"}"
        ],
        "{leaks:#?}"
    );
    let l = &leaks[0];
    assert_eq!((l.kind, l.shape), (LeakKind::Process, Shape::Steady));
    assert!((l.slope_bytes_per_hour / MIB - 20.0).abs() < 1.0, "{l:?}");
    assert!((l.growth_bytes as f64 / MIB - 40.0).abs() < 2.0, "{l:?}");
    assert!(l.r2 > 0.9 && l.steadiness > 0.8, "{l:?}");
    assert!(l.look_next.contains("smaps"));
    let json = serde_json::to_value(l).expect("serialize");
    assert_eq!(json["kind"], "process");
    assert_eq!(json["what"]["process"], "leaky");
}

#[test]
fn noise_around_a_level_is_never_reported() {
    for seed in 0..40 {
        let samples = history(seed, |_, _| vec![]);
        let leaks = find(&samples, &LeakConfig::default());
        assert!(leaks.is_empty(), "seed {seed}: {leaks:#?}");
    }
}

#[test]
fn a_one_off_step_is_told_apart_and_ranked_after_leaks() {
    let samples = history(7, |i, rng| {
        let once = if i < 300 { 100.0 } else { 300.0 };
        vec![
            process(30, "once", once * MIB + MIB * rng.normal()),
            process(
                31,
                "leaky",
                100.0 * MIB + 10.0 * MIB * (i as f64 / 360.0) + 0.5 * MIB * rng.normal(),
            ),
        ]
    });
    let leaks = find(&samples, &LeakConfig::default());
    assert_eq!(leaks.len(), 2, "{leaks:#?}");
    assert_eq!(leaks[0].what.process.as_deref(), Some("leaky"));
    assert_eq!(leaks[0].shape, Shape::Steady);
    let step = &leaks[1];
    assert_eq!(
        (step.what.process.as_deref(), step.shape),
        (Some("once"), Shape::Step)
    );
    assert_eq!(step.step_at_unix_ms, Some(samples[300].taken_at_unix_ms));
    assert!(
        (step.growth_bytes as f64 / MIB - 200.0).abs() < 1.0,
        "{step:?}"
    );
    assert!(step.look_next.contains("one-off"));
}

#[test]
fn growth_below_the_floor_is_not_reported() {
    // 0.5 MiB over two hours, perfectly steady: real, but too small to matter.
    let samples = history(3, |i, _| {
        vec![process(
            40,
            "tiny",
            100.0 * MIB + 0.5 * MIB * i as f64 / 720.0,
        )]
    });
    assert!(find(&samples, &LeakConfig::default()).is_empty());
}

#[test]
fn kernel_and_vm_growth_have_their_own_kind_and_advice() {
    let mut rng = Rng::new(5);
    let samples: Vec<Sample> = (0..720u64)
        .map(|i| {
            let h = i as f64 / 360.0;
            let vm = VmSample {
                name: "web1".into(),
                balloon: BalloonStats {
                    available_bytes: Some(4 << 30),
                    usable_bytes: Some((3000.0 * MIB - 50.0 * MIB * h + MIB * rng.normal()) as u64),
                    ..BalloonStats::default()
                },
                ..VmSample::default()
            };
            let mi = [
                ("MemTotal", 4096.0 * MIB),
                (
                    "SUnreclaim",
                    200.0 * MIB + 8.0 * MIB * h + 0.2 * MIB * rng.normal(),
                ),
            ];
            sample(i, &mi, vec![], vec![vm])
        })
        .collect();
    let leaks = find(&samples, &LeakConfig::default());
    let got: Vec<(LeakKind, String)> = leaks.iter().map(|l| (l.kind, l.what.to_string())).collect();
    assert_eq!(
        got,
        [
            (LeakKind::Vm, "vm.guest_used{vm=\"web1\"}".to_string()),
            (LeakKind::Kernel, "meminfo.SUnreclaim".to_string())
        ]
    );
    assert!(leaks[0].look_next.contains("inside the guest"));
    assert!(leaks[1].look_next.contains("slabinfo"));
}

/// A guest filling its memory grows its QEMU's RSS, which the host counts in AnonPages: the VM
/// is the answer and goes before the aggregate, even when the aggregate's line is smoother.
#[test]
fn a_vm_whose_qemu_grows_goes_before_anonpages() {
    let mut rng = Rng::new(9);
    let samples: Vec<Sample> = (0..720u64)
        .map(|i| {
            let h = i as f64 / 360.0;
            let grown = 60.0 * MIB * h;
            let vm = VmSample {
                name: "leaky".into(),
                balloon: BalloonStats {
                    rss_bytes: Some((500.0 * MIB + grown + 6.0 * MIB * rng.normal()) as u64),
                    ..BalloonStats::default()
                },
                ..VmSample::default()
            };
            let mi = [
                ("MemTotal", 4096.0 * MIB),
                ("AnonPages", 900.0 * MIB + grown + 0.5 * MIB * rng.normal()),
            ];
            sample(i, &mi, vec![], vec![vm])
        })
        .collect();
    let leaks = find(&samples, &LeakConfig::default());
    let got: Vec<String> = leaks.iter().map(|l| l.what.to_string()).collect();
    assert_eq!(
        got,
        ["vm.qemu_rss{vm=\"leaky\"}", "meminfo.AnonPages"],
        "{leaks:#?}"
    );
}

#[test]
fn too_short_a_history_says_nothing() {
    let samples = history(1, |i, _| {
        vec![process(20, "leaky", 100.0 * MIB + MIB * i as f64)]
    });
    assert!(
        find(&samples[..100], &LeakConfig::default()).is_empty(),
        "100 samples = 16.5 min < 30 min"
    );
    assert!(!find(&samples[..200], &LeakConfig::default()).is_empty());
}

#[test]
fn consumers_outside_meminfo_are_ranked_by_their_growth() {
    use memwarden_model::host::{Sockstat, SockstatEntry, ZramMmStat};
    let mut rng = Rng::new(9);
    let samples: Vec<Sample> = (0..720u64)
        .map(|i| {
            let h = i as f64 / 360.0;
            let mut s = sample(i, &[("MemTotal", 4096.0 * MIB)], vec![], vec![]);
            s.host.zram = Some(vec![ZramMmStat {
                device: "zram0".into(),
                mem_used_total_bytes: (64.0 * MIB + 20.0 * MIB * h + 0.3 * MIB * rng.normal())
                    as u64,
                ..ZramMmStat::default()
            }]);
            // Socket buffers that wander around 12 MiB (3072 pages) but do not grow.
            s.host.sockstat = Some(Sockstat {
                entries: vec![SockstatEntry {
                    protocol: "TCP".into(),
                    key: "mem".into(),
                    value: (3072.0 + 20.0 * rng.normal()) as u64,
                }],
                ipv6: false,
            });
            s
        })
        .collect();
    let leaks = find(&samples, &LeakConfig::default());
    let got: Vec<String> = leaks.iter().map(|l| l.what.to_string()).collect();
    assert_eq!(got, ["host.zram"]);
    assert_eq!(leaks[0].kind, LeakKind::Kernel);
    assert!(
        leaks[0].look_next.contains("zramctl"),
        "{}",
        leaks[0].look_next
    );
}

#[test]
fn a_growing_zfs_arc_is_ranked_with_its_next_step() {
    use memwarden_model::host::{KstatEntry, ZfsArc};
    let mut rng = Rng::new(17);
    let samples: Vec<Sample> = (0..720u64)
        .map(|i| {
            let h = i as f64 / 360.0;
            let mut s = sample(i, &[("MemTotal", 4096.0 * MIB)], vec![], vec![]);
            let size = (512.0 * MIB + 100.0 * MIB * h + 0.5 * MIB * rng.normal()) as i64;
            s.host.zfs = Some(ZfsArc {
                arcstats: vec![KstatEntry {
                    name: "size".into(),
                    value: size,
                }],
                abdstats: None,
            });
            s
        })
        .collect();
    let leaks = find(&samples, &LeakConfig::default());
    let got: Vec<String> = leaks.iter().map(|l| l.what.to_string()).collect();
    assert_eq!(got, ["host.zfs_arc"]);
    assert_eq!(leaks[0].kind, LeakKind::Kernel);
    assert!(
        leaks[0].look_next.contains("zfs_arc_max"),
        "{}",
        leaks[0].look_next
    );
}
