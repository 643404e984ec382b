//! What `memwarden serve` costs to leave running, with 0 to 3 real libvirt guests.
//!
//! `cargo bench -p memwarden --bench serve_cost` (`MEMWARDEN_LAB_SLOTS=3` for 3 guests). For
//! each N, the release daemon samples every 1 s with PSS every 6 s (the default 10 s / 60 s
//! ratio, sped up) for `SAMPLES` samples; printed: its CPU per sample (from its own
//! getrusage, via /api/v1/health), that as a share of one core at the default 10 s interval
//! (target ≤ 0.1 %), its resident and peak resident memory (target ≤ 15 MiB), the mean sample
//! duration. (Store size per day is `cargo bench -p memwarden-store`'s: rows are compacted into
//! blocks every few minutes, which a run this short does not reach.)

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use memwarden_lab::{Domain, DomainOpts, Lab, URI};

const SAMPLES: u64 = 30;

fn health(port: u16) -> Option<serde_json::Value> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    write!(
        s,
        "GET /api/v1/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut raw = String::new();
    s.read_to_string(&mut raw).ok()?;
    serde_json::from_str(raw.split_once("\r\n\r\n")?.1).ok()
}

fn wait(port: u16, n: u64) -> serde_json::Value {
    let t = Instant::now();
    loop {
        if let Some(h) = health(port) {
            if h["samples_total"].as_u64().unwrap_or(0) >= n {
                return h;
            }
        }
        assert!(t.elapsed() < Duration::from_secs(300), "daemon stalled");
        std::thread::sleep(Duration::from_millis(50));
    }
}

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
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = dir.path().join("c.toml");
        std::fs::write(
            &cfg,
            format!(
                "interval = \"1s\"\ndeadline = \"900ms\"\n[vms]\nsource = \"{}\"\nconnect = \"{URI}\"\n[record]\npss_every = \"6s\"\n",
                if n == 0 { "none" } else { "libvirt" }
            ),
        )
        .expect("config");
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("port")
            .port();
        let mut child = Command::new(env!("CARGO_BIN_EXE_memwarden"))
            .args([
                "serve",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--config",
            ])
            .arg(&cfg)
            .arg("--db")
            .arg(dir.path().join("h.db"))
            .stderr(Stdio::null())
            .spawn()
            .expect("serve");
        // Past start-up (first connection, first PSS pass), then measure.
        let h0 = wait(port, 3);
        let h1 = wait(port, 3 + SAMPLES);
        let _ = child.kill();
        let _ = child.wait();
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
