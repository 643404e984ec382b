//! `cargo bench -p memwarden-store`: bytes per day at full resolution (host + 4 VMs, one sample
//! every 10 s), append, maintain and range-read latency, and what downsampling leaves.
//! `MEMWARDEN_BENCH_SAMPLES` (default 8640, one day) shortens it.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use memwarden_store::{Retention, Store};

const DAY_MS: u64 = 86_400_000;

fn main() {
    let n: usize = std::env::var("MEMWARDEN_BENCH_SAMPLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(8640);
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("history.db");
    let mut store = Store::open(&path).expect("open");
    let start = 1_700_000_000_000 / DAY_MS * DAY_MS;
    let mut gen = common::Generator::new(start, 1);
    let retention = Retention::default();

    let mut appends = Vec::with_capacity(n);
    let mut maintains = Vec::new();
    let mut longest_write = 0;
    let mut json_bytes = 0usize;
    for i in 0..n {
        let mut s = gen.next_sample();
        s.redact(false);
        json_bytes += serde_json::to_vec(&s).map(|v| v.len()).unwrap_or(0);
        let t0 = Instant::now();
        store.append(&s).expect("append");
        appends.push(t0.elapsed());
        // The daemon maintains every few minutes; every 10 minutes here.
        if i % 60 == 59 {
            let t0 = Instant::now();
            let r = store
                .maintain(s.taken_at_unix_ms, &retention)
                .expect("maintain");
            maintains.push(t0.elapsed());
            longest_write = longest_write.max(r.longest_write_ms);
        }
    }
    let end = gen.sample.taken_at_unix_ms;
    store.maintain(end + 600_000, &retention).expect("maintain");
    let stats = store.stats().expect("stats");
    let per_day = stats.file_bytes as f64 * 8640.0 / n as f64;
    println!(
        "samples: {n} (host + 4 VMs, {} processes, 10 s apart)",
        gen.sample.host.processes.len()
    );
    println!(
        "raw JSON per sample: {:.1} KiB",
        json_bytes as f64 / n as f64 / 1024.0
    );
    println!(
        "file: {:.2} MiB for {n} samples = {:.2} MiB/day at full resolution ({:.0} B/sample; blobs {:.0} B/sample)",
        mib(stats.file_bytes),
        per_day / 1048576.0,
        stats.file_bytes as f64 / n as f64,
        stats.tiers.iter().map(|t| t.blob_bytes).sum::<u64>() as f64 / n as f64,
    );
    println!(
        "  of which WAL {:.2} MiB; tiers: {:?}",
        mib(stats.wal_bytes),
        stats
            .tiers
            .iter()
            .map(|t| (t.name.as_str(), t.rows, t.samples))
            .collect::<Vec<_>>()
    );
    println!("append: {}", summary(&mut appends));
    println!(
        "maintain (every 10 min): {}; longest write lock {longest_write} ms",
        summary(&mut maintains)
    );

    let ro = Store::open_read_only(&path).expect("open read-only");
    let mut hour = Vec::new();
    for k in 0..5u64 {
        let since = start + k * 3_600_000;
        let t0 = Instant::now();
        let got = ro.range(since, since + 3_600_000).expect("range");
        hour.push(t0.elapsed());
        assert!(!got.is_empty() || n < 360 * (k as usize + 1));
    }
    println!("range, 1 hour (360 samples): {}", summary(&mut hour));
    let t0 = Instant::now();
    let all = ro.range(0, u64::MAX).expect("range");
    println!(
        "range, everything ({} samples): {:.0} ms",
        all.len(),
        t0.elapsed().as_secs_f64() * 1e3
    );
    // A reader that names only what it needs (the planner's view: meminfo and VMs).
    #[derive(serde::Deserialize)]
    struct View {
        taken_at_unix_ms: u64,
        #[allow(dead_code)]
        host: ViewHost,
        #[allow(dead_code)]
        vms: Vec<memwarden_model::vm::VmSample>,
    }
    #[derive(serde::Deserialize)]
    struct ViewHost {
        #[allow(dead_code)]
        meminfo: memwarden_model::host::Meminfo,
    }
    let t0 = Instant::now();
    let view = ro
        .range_as(0, u64::MAX, |s: &View| s.taken_at_unix_ms)
        .expect("range_as");
    println!(
        "range_as meminfo + VMs only, everything ({} samples): {:.0} ms",
        view.len(),
        t0.elapsed().as_secs_f64() * 1e3
    );
    let t0 = Instant::now();
    ro.latest().expect("latest");
    println!("latest: {:.2} ms", t0.elapsed().as_secs_f64() * 1e3);

    // Three days later the day is minute means; 31 days later, hour means.
    for (label, later) in [("minute", 3 * DAY_MS), ("hour", 32 * DAY_MS)] {
        let t0 = Instant::now();
        let r = store.maintain(end + later, &retention).expect("maintain");
        let stats = store.stats().expect("stats");
        let blobs: u64 = stats.tiers.iter().map(|t| t.blob_bytes).sum();
        println!(
            "downsampled to {label} means in {:.1} s: {} samples kept, {:.0} KiB of blobs (longest write lock {} ms)",
            t0.elapsed().as_secs_f64(),
            stats.tiers.iter().map(|t| t.samples).sum::<u64>(),
            blobs as f64 / 1024.0,
            r.longest_write_ms,
        );
    }
}

fn mib(b: u64) -> f64 {
    b as f64 / 1048576.0
}

fn summary(v: &mut [Duration]) -> String {
    if v.is_empty() {
        return "none".into();
    }
    v.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    format!(
        "p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms (n={})",
        ms(v[v.len() / 2]),
        ms(v[v.len() * 99 / 100]),
        ms(v[v.len() - 1]),
        v.len()
    )
}
