//! `memwarden plan` on history recorded by the real daemon from a real lab guest: the figures
//! it prints against the guest's own /proc/meminfo, the host's MemTotal and QEMU's
//! /proc/PID/status; the same plan from a real Prometheus that scraped that daemon; and no
//! number, but the plain reason, from too short a history.

mod serve_support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use memwarden_lab::{GuestOpts, Lab, QemuGuest};
use serve_support::{get, lab_guest_name, wait_for, Serve};

const BIN: &str = env!("CARGO_BIN_EXE_memwarden");
const MIB: i64 = 1 << 20;
const GUEST_MIB: u64 = 256;

/// Ground truth read beside the recording.
#[derive(Debug, Clone, Copy)]
struct Truth {
    /// The guest's MemTotal − MemAvailable and MemTotal − MemFree, bytes.
    used: i64,
    legacy: i64,
    /// QEMU's VmRSS, bytes.
    rss: i64,
    /// The host's MemTotal − MemAvailable − QEMU's RSS, bytes.
    host_own: i64,
}

fn kib(text: &str, key: &str) -> i64 {
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse::<i64>().ok())
        .unwrap_or_else(|| panic!("{key} in {text}"))
        * 1024
}

fn host_meminfo(key: &str) -> i64 {
    kib(
        &std::fs::read_to_string("/proc/meminfo").expect("/proc/meminfo"),
        key,
    )
}

fn truth(g: &QemuGuest) -> Truth {
    let m = g.meminfo().expect("guest meminfo");
    let status = std::fs::read_to_string(format!("/proc/{}/status", g.pid())).expect("status");
    let rss = kib(&status, "VmRSS");
    Truth {
        used: (m["MemTotal"] as i64 - m["MemAvailable"] as i64) * 1024,
        legacy: (m["MemTotal"] as i64 - m["MemFree"] as i64) * 1024,
        rss,
        host_own: host_meminfo("MemTotal") - host_meminfo("MemAvailable") - rss,
    }
}

/// A guest with stats every second (and a `capture_mib` disk), recorded every 500 ms by
/// `memwarden serve`.
fn record(name: &str, capture_mib: u64) -> (QemuGuest, Serve) {
    let lab = Lab::new().expect("lab");
    let g = QemuGuest::boot(
        &lab,
        GuestOpts {
            name: name.into(),
            mem_mib: GUEST_MIB,
            stats_polling: Some(1),
            capture_mib,
            ..Default::default()
        },
    )
    .expect("guest");
    let socket = g.qmp_socket().display().to_string();
    let cfg = "interval = \"500ms\"\ndeadline = \"400ms\"\n";
    let mut serve = Serve::start_with_config(Path::new(BIN), cfg, &["--qmp", &socket]);
    serve.wait_samples(1, Duration::from_secs(60));
    // Balloon statistics arrive once the guest driver has polled.
    let series = format!(
        "memwarden_vm_guest_used_bytes{{domain=\"{}\"",
        lab_guest_name(&g)
    );
    wait_for(
        "the guest's statistics on /metrics",
        Duration::from_secs(30),
        || Some(()).filter(|()| get(serve.port, "/metrics").text().contains(&series)),
    );
    (g, serve)
}

/// `memwarden plan ARGS`: (stdout, parsed JSON when `--json`).
fn plan(args: &[&str]) -> String {
    let out = Command::new(BIN)
        .arg("plan")
        .args(args)
        .output()
        .expect("memwarden plan");
    assert!(
        out.status.success(),
        "memwarden plan {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8")
}

fn plan_json(args: &[&str]) -> Vec<serde_json::Value> {
    let mut a = args.to_vec();
    a.push("--json");
    let text = plan(&a);
    let v: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    v.as_array().cloned().expect("a list of answers")
}

fn int(v: &serde_json::Value) -> i64 {
    v.as_i64().unwrap_or_else(|| panic!("an integer: {v}"))
}

/// Whether `v` lies within `tol` of the range the readings span.
fn bracketed(v: i64, readings: &[i64], tol: i64) -> bool {
    let lo = readings.iter().min().copied().unwrap_or(0);
    let hi = readings.iter().max().copied().unwrap_or(0);
    (lo - tol..=hi + tol).contains(&v)
}

#[test]
fn plan_from_the_store_matches_the_guest_and_prometheus_agrees() {
    let (g, mut serve) = record("plan", 80);
    // 64 MiB of reclaimable page cache in the guest: guest used (MemTotal − MemAvailable) and
    // what the guest holds (MemTotal − MemFree) then differ by that much, so a planner that
    // took one for the other would miss the QEMU overhead by 64 MiB.
    // The shell keeps the disk open (fd 7): Linux drops a block device's cache on last close.
    g.console("run exec 7<$(disk capture); dd if=$(disk capture) of=/dev/null bs=1M count=64")
        .expect("read the disk in the guest");
    let tmp = tempfile::tempdir().expect("tempdir");
    let (mut prom, pport) = serve_support::prometheus(tmp.path(), serve.port, "500ms");
    serve_support::wait_scraped(&mut prom, pport);
    // 70 s at 500 ms: over 100 samples (the p99's minimum) in the last 60 s on both sides,
    // with the guest's own figures read along the way.
    let mut readings = vec![truth(&g)];
    for _ in 0..7 {
        std::thread::sleep(Duration::from_secs(10));
        serve.proc.assert_running();
        readings.push(truth(&g));
    }
    let window = ["--since", "60s", "--min-span", "30s"];
    for t in &readings {
        assert!(
            t.legacy - t.used >= 48 * MIB,
            "the guest's page cache: {t:?}"
        );
    }
    println!("ground truth: {readings:?}");

    // (1) From the store.
    let db = serve.db.display().to_string();
    let mut args = vec!["--db", db.as_str()];
    args.extend(window);
    let text = plan(&args);
    println!("memwarden plan --db:\n{text}");
    let answers = plan_json(&args);
    assert_eq!(answers.len(), 1);
    let p = &answers[0]["plan"];
    assert!(p["shortfall"].is_null(), "{p}");
    assert_eq!(int(&p["mem_total_bytes"]), host_meminfo("MemTotal"));
    assert!(int(&p["samples_counted"]) >= 100, "{p}");
    let m = &p["at_percentile"];
    assert_eq!(int(&m["vms"]), 1, "{m}");
    assert_eq!(int(&m["promised_bytes"]), GUEST_MIB as i64 * MIB, "{m}");
    // The guest's MemAvailable moves by KiBs when idle, and reading it over the console forks
    // a `cat`: 1 MiB beyond the readings' range (a unit or MemFree/MemAvailable mix-up is off
    // by tens of MiB on this guest).
    let used: Vec<i64> = readings.iter().map(|t| t.used).collect();
    assert!(
        bracketed(int(&m["guest_used_bytes"]), &used, MIB),
        "{m} vs {used:?}"
    );
    // QEMU's RSS creeps under TCG (its code cache); 4 MiB beyond the readings' range.
    let rss: Vec<i64> = readings.iter().map(|t| t.rss).collect();
    assert!(
        bracketed(int(&m["qemu_rss_bytes"]), &rss, 4 * MIB),
        "{m} vs {rss:?}"
    );
    let overhead: Vec<i64> = readings
        .iter()
        .map(|t| t.rss - t.legacy.min(t.rss))
        .collect();
    assert!(
        bracketed(int(&m["qemu_overhead_bytes"]), &overhead, 5 * MIB),
        "{m} vs {overhead:?}"
    );
    // The figures add up, and the ratio is promised over demand.
    assert_eq!(
        int(&m["demand_bytes"]),
        int(&m["guest_used_bytes"]) + int(&m["qemu_overhead_bytes"]) - int(&m["ksm_saved_bytes"])
    );
    let ratio = p["ratio"].as_f64().expect("a ratio");
    let want = int(&m["promised_bytes"]) as f64 / int(&m["demand_bytes"]) as f64;
    assert!((ratio - want).abs() < 1e-9, "{ratio} vs {want}");
    assert!(
        text.contains(&format!("ram_allocation_ratio ≤ {ratio:.2}")),
        "{text}"
    );
    // The host's own use excludes QEMU: its p99 is at least what the lowest reading showed
    // (less 64 MiB of other tests' and builds' churn), and below MemTotal.
    let own = int(&p["host_own_bytes"]);
    let lowest = readings.iter().map(|t| t.host_own).min().unwrap_or(0);
    assert!(
        own >= lowest - 64 * MIB && own < host_meminfo("MemTotal"),
        "{own} vs {lowest}"
    );

    // (3) The same recording, judged against the default minimum span of a day: no number.
    let short = plan(&["--db", db.as_str(), "--since", "60s"]);
    assert!(short.contains("not enough history"), "{short}");
    assert!(!short.contains("ram_allocation_ratio"), "{short}");

    // (2) From Prometheus, over the same window, every 500 ms.
    let url = format!("http://127.0.0.1:{pport}");
    let mut args = vec!["--prometheus", url.as_str(), "--step", "500ms"];
    args.extend(window);
    let text = plan(&args);
    println!("memwarden plan --prometheus:\n{text}");
    let fleet = plan_json(&args);
    // What Prometheus refuses is said, not turned into an empty plan: a day every second is
    // over its 11,000 points per series.
    let refused = Command::new(BIN)
        .args([
            "plan",
            "--prometheus",
            &url,
            "--since",
            "1d",
            "--step",
            "1s",
        ])
        .output()
        .expect("memwarden plan");
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{said}");
    assert!(
        said.contains("Prometheus refused") && said.contains("11,000"),
        "{said}"
    );
    drop(prom);
    assert_eq!(fleet.len(), 2, "the host and the fleet: {fleet:?}");
    let instance = format!("127.0.0.1:{}", serve.port);
    assert_eq!(fleet[0]["source"], instance.as_str());
    assert_eq!(fleet[1]["source"], "fleet");
    let q = &fleet[0]["plan"];
    assert!(q["shortfall"].is_null(), "{q}");
    assert_eq!(q["mem_total_bytes"], p["mem_total_bytes"]);
    assert!(int(&q["samples_counted"]) >= 100, "{q}");
    let qm = &q["at_percentile"];
    assert_eq!(qm["promised_bytes"], m["promised_bytes"]);
    // Both sides read the same idle guest over the same minute; Prometheus's figures lag by up
    // to a scrape. Agreement: each figure within 2 MiB, the ratio within 1%.
    for k in [
        "guest_used_bytes",
        "qemu_rss_bytes",
        "qemu_overhead_bytes",
        "demand_bytes",
    ] {
        let (a, b) = (int(&qm[k]), int(&m[k]));
        assert!((a - b).abs() <= 2 * MIB, "{k}: Prometheus {a}, store {b}");
    }
    let qratio = q["ratio"].as_f64().expect("a ratio from Prometheus");
    assert!(
        (qratio - ratio).abs() <= 0.01 * ratio,
        "Prometheus {qratio} vs store {ratio}"
    );
    // One host: the fleet is that host.
    assert_eq!(fleet[1]["plan"]["ratio"], q["ratio"]);
    assert!(text.contains("fleet:"), "{text}");
}

#[test]
fn too_short_a_history_says_so_instead_of_a_number() {
    let (_g, mut serve) = record("plan-short", 0);
    serve.wait_samples(4, Duration::from_secs(60));
    let db = serve.db.display().to_string();
    let args = ["--db", db.as_str(), "--since", "1h", "--min-span", "30s"];
    let text = plan(&args);
    println!("{text}");
    assert!(
        text.contains("not enough history: ")
            && text.contains("the p99 needs at least 100 samples over at least 30s"),
        "{text}"
    );
    assert!(text.contains("no ratio"), "{text}");
    assert!(!text.contains("ram_allocation_ratio"), "{text}");
    let p = &plan_json(&args)[0]["plan"];
    assert_eq!(p["shortfall"], "not_enough_history", "{p}");
    assert!(p["ratio"].is_null() && p["at_percentile"].is_null(), "{p}");
    // The guest was there and counted: it is the history that is short, not the statistics.
    assert!(int(&p["samples_counted"]) >= 1, "{p}");
}
