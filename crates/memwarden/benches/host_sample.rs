//! What one look at the host costs, against the tool an operator would run instead.
//!
//! Prints figures, asserts nothing about speed (a noisy 2-core machine makes timed assertions
//! flaky). Run: `cargo bench -p memwarden --bench host_sample` (needs `smem` and GNU `time`;
//! scripts/setup.sh --test installs both).
//!
//! 1. In-process: a full host sample (meminfo, vmstat, PSI, vmallocinfo, modules, KSM, hugepages,
//!    THP, every process's smaps_rollup/status/ksm files), and meminfo alone.
//! 2. Whole commands, process start-up included: `memwarden procs` vs `smem -t` (PSS of every
//!    process, what smem exists for), wall time and peak RSS, as ratios.

use std::process::Command;
use std::time::{Duration, Instant};

use memwarden_procfs::HostReader;

fn time_n<F: FnMut()>(n: u32, mut f: F) -> (Duration, Duration) {
    let mut best = Duration::MAX;
    let start = Instant::now();
    for _ in 0..n {
        let t = Instant::now();
        f();
        best = best.min(t.elapsed());
    }
    (start.elapsed() / n, best)
}

/// Runs `cmd` under GNU time: (wall seconds, peak RSS KiB, stdout).
fn measured(cmd: &[&str]) -> Option<(f64, u64, String)> {
    let out = Command::new("/usr/bin/time")
        .arg("-f")
        .arg("MW_TIME %e %M")
        .args(cmd)
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let err = String::from_utf8_lossy(&out.stderr);
    let line = err.lines().find(|l| l.starts_with("MW_TIME "))?;
    let mut it = line.split_whitespace().skip(1);
    let wall: f64 = it.next()?.parse().ok()?;
    let rss: u64 = it.next()?.parse().ok()?;
    Some((wall, rss, String::from_utf8_lossy(&out.stdout).into_owned()))
}

fn avg(cmd: &[&str], n: usize) -> Option<(f64, u64, String)> {
    let mut wall = 0.0;
    let mut rss = 0;
    let mut last = String::new();
    for _ in 0..n {
        let (w, r, o) = measured(cmd)?;
        wall += w;
        rss = rss.max(r);
        last = o;
    }
    Some((wall / n as f64, rss, last))
}

fn main() {
    let reader = HostReader::live();
    let s = reader.read_host().expect("live host sample");
    let procs = s.processes.len();
    let (mean, best) = time_n(20, || {
        let _ = std::hint::black_box(reader.read_host());
    });
    println!(
        "full host sample ({procs} processes): mean {:.2} ms, best {:.2} ms",
        mean.as_secs_f64() * 1e3,
        best.as_secs_f64() * 1e3
    );
    let (mean_mi, _) = time_n(200, || {
        let _ = std::hint::black_box(reader.read_meminfo());
    });
    println!("meminfo alone: mean {:.1} µs", mean_mi.as_secs_f64() * 1e6);

    let bin = env!("CARGO_BIN_EXE_memwarden");
    let ours = avg(&[bin, "procs", "--json", "--top", "100000"], 5);
    let smem = avg(&["smem", "-t", "-c", "pid pss"], 5);
    match (ours, smem) {
        (Some((w1, r1, out1)), Some((w2, r2, out2))) => {
            println!("memwarden procs: {:.3} s wall, peak RSS {} KiB", w1, r1);
            println!("smem -t:         {:.3} s wall, peak RSS {} KiB", w2, r2);
            println!(
                "ratio memwarden/smem: time {:.2}x, peak RSS {:.2}x",
                w1 / w2.max(1e-3),
                r1 as f64 / r2.max(1) as f64
            );
            let ours_pss = serde_json::from_str::<serde_json::Value>(&out1)
                .ok()
                .and_then(|v| v["total_pss_bytes"].as_u64())
                .map(|b| b / 1024);
            let smem_pss = out2
                .lines()
                .last()
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse::<u64>().ok());
            println!(
                "Σ PSS (KiB, separate moments; smem counts itself, memwarden itself): memwarden {:?}, smem {:?}",
                ours_pss, smem_pss
            );
        }
        _ => println!("smem or /usr/bin/time missing: install with scripts/setup.sh --test"),
    }
}
