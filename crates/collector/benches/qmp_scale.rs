//! The collector at scale: 10, 100 and 1,000 QMP endpoints served by the simulator in a
//! separate process (so that its CPU is not counted as ours), each sample read through the
//! shared collector. Prints wall time and this process's CPU per sample, and the peak RSS.
//!
//! `cargo bench -p memwarden-collector --bench qmp_scale` (figures, never pass/fail).

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use memwarden_collector::{Collector, Config, VmSource};
use memwarden_procfs::HostReader;

const ROUNDS: usize = 5;

fn cpu_s() -> f64 {
    // /proc/self/stat's utime + stime, in clock ticks (100 a second on Linux).
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, r)| r.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // After the ')' field 0 is state; utime is field 11, stime 12 (stat(5) 14 and 15).
    (ticks(11) + ticks(12)) / 100.0
}

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

struct Sim(Child);

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn main() {
    if let (Ok(dir), Ok(n)) = (std::env::var("QMPSIM_DIR"), std::env::var("QMPSIM_N")) {
        let _ = memwarden_qmpsim::raise_fd_limit();
        let n: usize = n.parse().unwrap_or(10);
        let eps = memwarden_qmpsim::Endpoint::fleet(n);
        if let Err(e) = memwarden_qmpsim::serve(std::path::Path::new(&dir), &eps) {
            eprintln!("simulator: {e}");
        }
        return;
    }
    let _ = memwarden_qmpsim::raise_fd_limit();
    println!("QMP endpoints read by the shared collector (simulator in another process)");
    println!(
        "{:>6} {:>10} {:>10} {:>10} {:>12} {:>8}",
        "VMs", "wall min", "wall med", "wall max", "our CPU/smp", "ok"
    );
    for n in [10usize, 100, 1000] {
        let dir = tempfile::tempdir().expect("tempdir");
        let exe = std::env::current_exe().expect("exe");
        let _sim = Sim(Command::new(exe)
            .env("QMPSIM_DIR", dir.path())
            .env("QMPSIM_N", n.to_string())
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn simulator"));
        let t = Instant::now();
        while std::fs::read_dir(dir.path()).map_or(0, |d| d.count()) < n {
            assert!(
                t.elapsed() < Duration::from_secs(30),
                "simulator did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(Duration::from_millis(200));
        let mut c = Collector::new(
            Config {
                host: false,
                full: false,
                vms: VmSource::Qmp {
                    patterns: vec![format!("{}/*.qmp", dir.path().display())],
                },
                ..Config::default()
            },
            HostReader::live(),
        )
        .expect("collector");
        // The first sample reads each QEMU's static facts; later ones are the steady state.
        let _ = c.collect();
        let mut walls = Vec::new();
        let cpu0 = cpu_s();
        let mut ok = 0;
        for _ in 0..ROUNDS {
            let t = Instant::now();
            let s = c.collect().expect("sample");
            walls.push(t.elapsed().as_secs_f64());
            ok = s
                .vms
                .iter()
                .filter(|v| v.read.status == memwarden_model::vm::ReadStatus::Ok)
                .count();
        }
        let cpu = (cpu_s() - cpu0) / ROUNDS as f64;
        walls.sort_by(f64::total_cmp);
        println!(
            "{n:>6} {:>8.1}ms {:>8.1}ms {:>8.1}ms {:>10.1}ms {:>5}/{n}",
            walls[0] * 1e3,
            walls[walls.len() / 2] * 1e3,
            walls[walls.len() - 1] * 1e3,
            cpu * 1e3,
            ok
        );
    }
    println!("peak RSS of this process: {} KiB", peak_rss_kib());
}
