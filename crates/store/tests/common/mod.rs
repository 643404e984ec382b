//! Realistic samples for tests and the benchmark: a captured host tree read by the real reader,
//! padded to ~100 processes, with 4 VMs, and values that drift between samples the way a live
//! host's do (gauges wander, counters only grow, most processes sit still).
#![allow(dead_code)] // each test binary uses a different part

use std::path::PathBuf;

use memwarden_model::host::ProcessMem;
use memwarden_model::vm::{BalloonStats, StatTag, TagUnit, VmSample, VmState};
use memwarden_model::Sample;

pub fn fixture_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/host-6.18-sandbox")
}

/// A tiny seeded PRNG (xorshift64*): reproducible drift without a dependency.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// Successive samples 10 s apart starting at `start_ms`.
#[derive(Debug)]
pub struct Generator {
    pub sample: Sample,
    rng: Rng,
}

impl Generator {
    pub fn new(start_ms: u64, seed: u64) -> Generator {
        let reader = memwarden_procfs::HostReader::at_root(fixture_root());
        let mut host = reader.read_host().expect("read the fixture host");
        // Pad to ~100 processes, as on a real KVM host.
        let base: Vec<ProcessMem> = host.processes.clone();
        let mut pid = 5000;
        while host.processes.len() < 100 {
            let mut p = base[host.processes.len() % base.len()].clone();
            pid += 7;
            p.pid = pid;
            p.name = format!("worker{}", pid % 13);
            p.cmdline = format!("/usr/sbin/worker{} --conf /etc/w/{pid}.conf", pid % 13);
            host.processes.push(p);
        }
        let qemu = host
            .processes
            .iter()
            .max_by_key(|p| p.smaps.as_ref().map_or(0, |s| s.rss))
            .cloned()
            .expect("a process");
        let vms = (0..4).map(|i| vm(i, &qemu)).collect();
        Generator {
            sample: Sample {
                taken_at_unix_ms: start_ms,
                host,
                vms,
                degraded: Vec::new(),
                sources: Vec::new(),
                redaction: Default::default(),
            },
            rng: Rng::new(seed),
        }
    }

    /// The next sample, 10 s later.
    pub fn next_sample(&mut self) -> Sample {
        let rng = &mut self.rng;
        let s = &mut self.sample;
        s.taken_at_unix_ms += 10_000;
        for e in &mut s.host.meminfo.entries {
            if e.value > 0 && rng.chance(70) {
                e.value = wander(rng, e.value);
            }
        }
        if let Some(v) = &mut s.host.vmstat {
            for (_, x) in &mut v.entries {
                if *x > 0 && rng.chance(60) {
                    *x += rng.below(5000);
                }
            }
        }
        if let Some(psi) = &mut s.host.psi {
            psi.some.avg10 = rng.below(300) as f64 / 100.0;
            psi.some.total_us += rng.below(100_000);
        }
        for p in &mut s.host.processes {
            if rng.chance(20) {
                drift_process(rng, p);
            }
        }
        for v in &mut s.vms {
            let b = &mut v.balloon;
            for x in [
                &mut b.unused_bytes,
                &mut b.usable_bytes,
                &mut b.disk_caches_bytes,
            ] {
                *x = x.map(|x| wander(rng, x));
            }
            for x in [
                &mut b.major_faults,
                &mut b.minor_faults,
                &mut b.swap_in_bytes,
            ] {
                *x = x.map(|x| x + rng.below(1000));
            }
            b.last_update_unix_s = Some(s.taken_at_unix_ms / 1000);
            v.read_at_unix_s = s.taken_at_unix_ms / 1000;
            if let Some(p) = &mut v.host {
                drift_process(rng, p);
            }
        }
        s.clone()
    }
}

/// A gauge moving by up to ±0.5 %, page-aligned.
fn wander(rng: &mut Rng, v: u64) -> u64 {
    let step = (v / 200).max(4096);
    (v + rng.below(step * 2)).saturating_sub(step) / 4096 * 4096
}

fn drift_process(rng: &mut Rng, p: &mut ProcessMem) {
    if let Some(sm) = &mut p.smaps {
        sm.rss = wander(rng, sm.rss);
        sm.pss = wander(rng, sm.pss);
        sm.private_dirty = wander(rng, sm.private_dirty);
        sm.anonymous = wander(rng, sm.anonymous);
    }
    p.status.vm_rss = p.status.vm_rss.map(|x| wander(rng, x));
}

fn vm(i: u32, qemu: &ProcessMem) -> VmSample {
    let gib = 1u64 << 30;
    let mut host = qemu.clone();
    host.pid = 9000 + i;
    host.name = "qemu-system-x86".into();
    host.cmdline = format!("/usr/bin/qemu-system-x86_64 -name guest=vm{i} -m 4096");
    let balloon = BalloonStats {
        actual_bytes: Some(4 * gib),
        swap_in_bytes: Some(0),
        swap_out_bytes: Some(0),
        major_faults: Some(1200),
        minor_faults: Some(1_500_000),
        unused_bytes: Some(gib + u64::from(i) * 100_000_000),
        available_bytes: Some(4 * gib - 200_000_000),
        usable_bytes: Some(2 * gib),
        rss_bytes: Some(3 * gib),
        last_update_unix_s: Some(0),
        disk_caches_bytes: Some(gib / 2),
        tags: vec![StatTag {
            name: "actual".into(),
            value: 4 * gib / 1024,
            unit: TagUnit::Kib,
        }],
        ..BalloonStats::default()
    };
    VmSample {
        name: format!("vm{i}"),
        uuid: Some(format!("6d3c1f0e-0000-4000-8000-00000000000{i}")),
        state: VmState::Running,
        max_memory_bytes: Some(4 * gib),
        balloon,
        qemu_pid: Some(host.pid),
        host: Some(host),
        ..VmSample::default()
    }
}
