//! What `memwarden serve` costs to leave running, with 0 to 3 real libvirt guests.
//!
//! `cargo bench -p memwarden --bench serve_cost` (`MEMWARDEN_LAB_SLOTS=3` for 3 guests). For
//! each N, the release daemon samples every 1 s with PSS every 6 s (the default 10 s / 60 s
//! ratio, sped up) for `SAMPLES` samples; printed: its CPU per sample (from its own
//! getrusage, via /api/v1/health), that as a share of one core at the default 10 s interval
//! (target ≤ 0.1 %), its resident and peak resident memory (target ≤ 15 MiB), the mean sample
//! duration. (Store size per day is `cargo bench -p memwarden-store`'s: rows are compacted into
//! blocks every few minutes, which a run this short does not reach.)

#[path = "../tests/serve_support/mod.rs"]
mod serve_support;

use std::path::Path;
use std::time::Duration;

use memwarden_lab::{Domain, DomainOpts, Lab, URI};
use serve_support::Serve;

const SAMPLES: u64 = 30;
const T: Duration = Duration::from_secs(300);

fn main() {
    let lab = Lab::new().expect("lab");
    let max_n = memwarden_lab::slots().min(3);
    let mut doms: Vec<Domain> = Vec::new();
    println!("guests  cpu/sample  share@10s  rss      peak     sample");
    for n in 0..=max_n {
        while doms.len() < n {
            doms.push(
                Domain::start(
                    &lab,
                    DomainOpts {
                        name: format!("cost{}", doms.len()),
                        mem_mib: 256,
                        stats_period: 5,
                        ..DomainOpts::default()
                    },
                )
                .expect("domain"),
            );
        }
        let cfg = format!(
            "interval = \"1s\"\ndeadline = \"900ms\"\n[vms]\nsource = \"{}\"\nconnect = \"{URI}\"\n[record]\npss_every = \"6s\"\n",
            if n == 0 { "none" } else { "libvirt" }
        );
        let mut d = Serve::start_with_config(Path::new(env!("CARGO_BIN_EXE_memwarden")), &cfg, &[]);
        // Past start-up (first connection, first PSS pass), then measure.
        let h0 = d.wait_samples(3, T);
        let h1 = d.wait_samples(3 + SAMPLES, T);
        drop(d);
        let f = |h: &serde_json::Value, k: &str| h[k].as_f64().unwrap_or(0.0);
        let samples = f(&h1, "samples_total") - f(&h0, "samples_total");
        let cpu = (f(&h1, "cpu_seconds_total") - f(&h0, "cpu_seconds_total")) / samples;
        println!(
            "{n:<7} {:>7.2} ms  {:>7.3} %  {:>5.1} MiB {:>5.1} MiB {:>5.1} ms",
            cpu * 1e3,
            cpu / 10.0 * 100.0,
            f(&h1, "resident_bytes") / 1048576.0,
            f(&h1, "peak_resident_bytes") / 1048576.0,
            f(&h1, "last_sample_duration_seconds") * 1e3,
        );
    }
}
