//! What one Prometheus scrape of `memwarden serve` costs, against the exporters an operator
//! would scrape instead, on the same machine in the same run: node_exporter (host memory) and
//! prometheus-libvirt-exporter (per-domain balloon statistics), both Debian packages that
//! scripts/setup.sh --test installs.
//!
//! For each exporter: wall time of one GET /metrics (median of N, fresh connection each, with
//! Prometheus's own Accept header), the exporter process's CPU per scrape (utime + stime from
//! /proc/PID/stat before and after the N scrapes, divided by N), the series it returns and the
//! body size; then memwarden/peer ratios. Prints; asserts nothing about speed.
//!
//! The three read different things at different times: node_exporter and the libvirt exporter
//! collect when scraped, memwarden renders its latest sample (it samples on its own interval,
//! set to 1 h here so that no sample lands inside the measurement) — so its cost of one sample
//! is printed too, as the daemon reports it. Everything sees the same libvirtd with one lab
//! domain (memwarden through `--connect`, the libvirt exporter through `--libvirt.uri`).
//!
//! Run: `cargo bench -p memwarden --bench scrape_cost` (root; boots a lab guest).

#[path = "../tests/serve_support/mod.rs"]
mod serve_support;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use memwarden_lab::{Domain, DomainOpts, Lab, URI};
use serve_support::{free_port, http, wait_for, Proc, Serve};

const BIN: &str = env!("CARGO_BIN_EXE_memwarden");
/// What Prometheus 2.x sends (OpenMetrics preferred, text 0.0.4 accepted).
const ACCEPT: &str = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
/// Enough scrapes that one clock tick (10 ms) of CPU is 0.01 ms per scrape.
const N: usize = 1000;
const WARMUP: usize = 5;

#[derive(Debug)]
struct Cost {
    name: &'static str,
    median: Duration,
    p90: Duration,
    cpu_per_scrape: Duration,
    series: usize,
    bytes: usize,
}

fn scrape(port: u16) -> (Duration, String) {
    let t = Instant::now();
    let r = http("GET", port, "/metrics", &[("Accept", ACCEPT)], None).expect("GET /metrics");
    let wall = t.elapsed();
    assert_eq!(r.status, 200, "/metrics on :{port}: {}", r.text());
    (wall, r.text())
}

/// Sample lines: neither comments (`# HELP`, `# TYPE`, `# EOF`) nor blank.
fn series(text: &str) -> usize {
    text.lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .count()
}

fn clock_ticks_per_second() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

fn measure(name: &'static str, p: &mut Proc, port: u16, hz: f64) -> Cost {
    for _ in 0..WARMUP {
        scrape(port);
    }
    p.assert_running();
    let (_, text) = scrape(port);
    let cpu0 = p.cpu_ticks();
    let mut walls: Vec<Duration> = (0..N).map(|_| scrape(port).0).collect();
    let cpu1 = p.cpu_ticks();
    p.assert_running();
    walls.sort();
    Cost {
        name,
        median: walls[N / 2],
        p90: walls[N * 9 / 10],
        cpu_per_scrape: Duration::from_secs_f64((cpu1 - cpu0) as f64 / hz / N as f64),
        series: series(&text),
        bytes: text.len(),
    }
}

/// Starts an exporter on a free port and waits for its /metrics.
fn exporter(name: &str, bin: &str, args: &[String], dir: &Path) -> (Proc, u16) {
    let port = free_port();
    let mut cmd = Command::new(bin);
    cmd.arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .args(args);
    let mut p = Proc::spawn(name, cmd, &dir.join(format!("{name}.log")));
    wait_for(
        &format!("{name} on :{port}"),
        Duration::from_secs(30),
        || {
            p.assert_running();
            http("GET", port, "/metrics", &[], None)
                .ok()
                .filter(|r| r.status == 200)
        },
    );
    (p, port)
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1e3)
}

fn ratio(a: f64, b: f64) -> String {
    if b > 0.0 {
        format!("{:.2}", a / b)
    } else {
        "n/a (peer 0)".into()
    }
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` runs us too: keep that quick.
    if std::env::args().any(|a| a == "--test" || a == "--list") {
        return;
    }
    let lab = Lab::new().expect("lab");
    let dom = Domain::start(
        &lab,
        DomainOpts {
            name: "scrape".into(),
            stats_period: 1,
            ..Default::default()
        },
    )
    .expect("lab domain");
    let tmp = tempfile::tempdir().expect("tempdir");
    let hz = clock_ticks_per_second();

    let mut serve = Serve::start_with_config(
        Path::new(BIN),
        "interval = \"1h\"\n[record]\npss_every = \"1h\"\n",
        &["--connect", URI],
    );
    serve.wait_samples(1, Duration::from_secs(60));
    let health = serve.health().expect("health");
    let (mut node, node_port) = exporter(
        "node_exporter",
        "prometheus-node-exporter",
        &[format!(
            "--collector.textfile.directory={}",
            tmp.path().display()
        )],
        tmp.path(),
    );
    let (mut lv, lv_port) = exporter(
        "libvirt_exporter",
        "prometheus-libvirt-exporter",
        &[format!("--libvirt.uri={URI}")],
        tmp.path(),
    );
    let port = serve.port;
    let ours = measure("memwarden serve", &mut serve.proc, port, hz);
    let node_cost = measure("node_exporter", &mut node, node_port, hz);
    let lv_cost = measure("libvirt_exporter", &mut lv, lv_port, hz);
    let (_, lv_text) = scrape(lv_port);
    let (_, our_text) = scrape(port);
    assert!(
        lv_text.contains(dom.name()) && our_text.contains(dom.name()),
        "both see the lab domain {}",
        dom.name()
    );

    println!(
        "\n/metrics, {N} scrapes each after {WARMUP} warm-up, one connection per scrape, Accept as Prometheus sends it"
    );
    println!(
        "{:<18} {:>12} {:>12} {:>16} {:>8} {:>10}",
        "exporter", "wall median", "wall p90", "CPU per scrape", "series", "bytes"
    );
    for c in [&ours, &node_cost, &lv_cost] {
        println!(
            "{:<18} {:>12} {:>12} {:>16} {:>8} {:>10}",
            c.name,
            ms(c.median),
            ms(c.p90),
            ms(c.cpu_per_scrape),
            c.series,
            c.bytes
        );
    }
    for peer in [&node_cost, &lv_cost] {
        println!(
            "memwarden/{:<17} wall {}  CPU {}  series {}",
            peer.name,
            ratio(ours.median.as_secs_f64(), peer.median.as_secs_f64()),
            ratio(
                ours.cpu_per_scrape.as_secs_f64(),
                peer.cpu_per_scrape.as_secs_f64()
            ),
            ratio(ours.series as f64, peer.series as f64),
        );
    }
    println!(
        "CPU per scrape is good to ±{:.3} ms (one clock tick over {N} scrapes)",
        1e3 / hz / N as f64
    );
    println!(
        "memwarden's own sample (off the scrape path, once per interval): {:.1} ms wall; daemon CPU so far {:.3} s over {} sample(s) + start-up; CPU tick {:.1} ms",
        health["last_sample_duration_seconds"].as_f64().unwrap_or(f64::NAN) * 1e3,
        health["cpu_seconds_total"].as_f64().unwrap_or(f64::NAN),
        health["samples_total"],
        1e3 / hz
    );
}
