//! `memwarden serve` seen by the real Prometheus tools: `promtool check metrics` accepts the
//! live /metrics of a daemon recording a real lab guest, and a real Prometheus server that
//! scrapes it every second gives back the VM's guest-used figure, which matches the guest's own
//! /proc/meminfo (MemTotal − MemAvailable).

mod serve_support;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use memwarden_lab::{GuestOpts, Lab, QemuGuest};
use serve_support::{get, lab_guest_name, urlencode, wait_for, Serve};

const BIN: &str = env!("CARGO_BIN_EXE_memwarden");

/// `promtool check metrics` on `text`: (success, its output).
fn promtool_check(text: &str) -> (bool, String) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus; scripts/setup.sh --test installs it)");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write to promtool");
    let out = child.wait_with_output().expect("promtool");
    let said =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), said)
}

/// An instant query: the values of the result vector.
fn query(port: u16, q: &str) -> Vec<(serde_json::Value, f64)> {
    let v = get(port, &format!("/api/v1/query?query={}", urlencode(q))).json();
    assert_eq!(v["status"], "success", "{v}");
    v["data"]["result"]
        .as_array()
        .expect("result vector")
        .iter()
        .map(|r| {
            let val = r["value"][1].as_str().and_then(|s| s.parse().ok());
            (r["metric"].clone(), val.expect("a numeric value"))
        })
        .collect()
}

/// The guest's own used figure, bytes: MemTotal − MemAvailable (what the virtio-balloon driver
/// reports as stat-total-memory − stat-available-memory, from which memwarden derives guest
/// used; see memwarden_analysis::vm::figures).
fn guest_used(g: &QemuGuest) -> i64 {
    let m = g.meminfo().expect("guest meminfo");
    (m["MemTotal"] as i64 - m["MemAvailable"] as i64) * 1024
}

#[test]
fn promtool_accepts_live_metrics_and_prometheus_reads_back_guest_used() {
    let lab = Lab::new().expect("lab");
    let g = QemuGuest::boot(
        &lab,
        GuestOpts {
            name: "prom".into(),
            stats_polling: Some(2),
            ..Default::default()
        },
    )
    .expect("guest");
    let name = lab_guest_name(&g);
    let socket = g.qmp_socket();
    let mut serve = Serve::start(
        Path::new(BIN),
        &["--qmp", &socket.display().to_string(), "--interval", "1s"],
    );
    serve.wait_samples(2, Duration::from_secs(60));

    // The balloon statistics arrive once the guest driver has polled: wait for the figure.
    let series = format!("memwarden_vm_guest_used_bytes{{domain=\"{name}\"");
    let metrics = wait_for(
        &format!("{series} on /metrics"),
        Duration::from_secs(30),
        || Some(get(serve.port, "/metrics").text()).filter(|t| t.contains(&series)),
    );

    let (ok, said) = promtool_check(&metrics);
    assert!(ok, "promtool check metrics refused /metrics:\n{said}");
    println!(
        "promtool check metrics: ok on {} lines{}",
        metrics.lines().count(),
        if said.trim().is_empty() {
            String::new()
        } else {
            format!(" ({})", said.trim())
        }
    );

    let tmp = tempfile::tempdir().expect("tempdir");
    let (mut prom, pport) = serve_support::prometheus(tmp.path(), serve.port, "1s");
    serve_support::wait_scraped(&mut prom, pport);
    let q = format!("memwarden_vm_guest_used_bytes{{domain=\"{name}\"}}");
    wait_for(
        "the guest-used series in Prometheus",
        Duration::from_secs(30),
        || Some(()).filter(|()| !query(pport, &q).is_empty()),
    );

    // The figure travels guest driver (polls every 2 s) → QMP → memwarden (samples every 1 s)
    // → Prometheus (scrapes every 1 s), so it describes the guest up to ~4 s before the query.
    // The idle lab guest's MemAvailable moves by a few KiB over that time (measured: 4 KiB
    // between the before and after readings printed below, and Prometheus's figure equal to
    // the first); reading meminfo over the console forks a `cat` and moves it a little too. So: bracket the query with two guest readings and allow
    // 1 MiB beyond them — far below what any unit or derivation error would give (a kB/KiB
    // or MemFree-vs-MemAvailable confusion is off by tens of MiB on this 256+ MiB guest).
    const TOLERANCE: i64 = 1 << 20;
    let mut last = String::new();
    for attempt in 0..5 {
        let before = guest_used(&g);
        let got = query(pport, &q);
        let after = guest_used(&g);
        assert_eq!(got.len(), 1, "one series for {q}: {got:?}");
        let (labels, value) = &got[0];
        assert_eq!(labels["domain"], name.as_str(), "{labels}");
        assert_eq!(labels["job"], "memwarden", "{labels}");
        let value = *value as i64;
        let (lo, hi) = (before.min(after), before.max(after));
        println!(
            "attempt {attempt}: Prometheus says {value} B; guest MemTotal−MemAvailable {before} B before, {after} B after; off by {} B",
            if value < lo { lo - value } else { (value - hi).max(0) }
        );
        if (lo - TOLERANCE..=hi + TOLERANCE).contains(&value) {
            drop(prom);
            return;
        }
        last = format!("{value} not within {TOLERANCE} B of [{lo}, {hi}]");
        std::thread::sleep(Duration::from_secs(2));
    }
    panic!("guest used through Prometheus never matched the guest: {last}");
}
