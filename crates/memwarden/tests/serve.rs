//! `memwarden serve` as a process: clean stop on SIGTERM, no committed sample lost to kill -9,
//! a read-only store logged while sampling and serving go on, SIGHUP, bad configuration.

mod serve_support;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use memwarden_store::Store;
use serve_support::{Serve, Tmpfs};

const T: Duration = Duration::from_secs(30);
const BIN: &str = env!("CARGO_BIN_EXE_memwarden");
const HOST_ONLY: &str = "interval = \"300ms\"\ndeadline = \"100ms\"\n[vms]\nsource = \"none\"\n";

fn stored(db: &Path) -> usize {
    let s = Store::open_read_only(db).expect("store opens");
    assert_eq!(
        s.check_integrity().expect("integrity check"),
        Vec::<String>::new()
    );
    s.range(0, u64::MAX).expect("range").len()
}

#[test]
fn sigterm_finishes_the_sample_and_exits_cleanly() {
    let mut d = Serve::start_with_config(Path::new(BIN), HOST_ONLY, &[]);
    let h = d.wait_samples(3, T);
    assert!(h["store_error"].is_null(), "{h}");
    let metrics = serve_support::get(d.port, "/metrics").text();
    assert!(metrics.contains("memwarden_host_meminfo_bytes{field=\"MemTotal\"}"));
    d.signal("-TERM");
    let st = d.wait_exit(Duration::from_secs(5));
    assert!(st.success(), "exit {st:?}; log:\n{}", d.log_text());
    assert!(d.log_text().contains("stopped cleanly"), "{}", d.log_text());
    // Every sample it reported was committed.
    let reported = h["samples_total"].as_u64().expect("count") as usize;
    assert!(stored(&d.db) >= reported, "stored < {reported}");
}

#[test]
fn kill_9_at_any_moment_loses_no_committed_sample() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("h.db");
    let cfg = "interval = \"200ms\"\ndeadline = \"100ms\"\n[vms]\nsource = \"none\"\n";
    let mut total_reported = 0;
    for (round, wait_ms) in [(0u64, 0u64), (1, 137), (2, 251), (3, 389)] {
        let mut d = Serve::start_at(Path::new(BIN), Some(&db), cfg, &[]);
        let h = d.wait_samples(2, T);
        // Kill in the middle of whatever it is doing: a sample, an append, a maintenance pass.
        std::thread::sleep(Duration::from_millis(wait_ms));
        let reported = h["samples_total"].as_u64().expect("count") as usize;
        d.signal("-KILL");
        d.wait_exit(Duration::from_secs(5));
        total_reported += reported;
        let n = stored(&db);
        assert!(
            n >= total_reported,
            "round {round}: {n} stored, {total_reported} reported committed"
        );
    }
}

/// A store that cannot be written (a read-only mount) is logged; sampling and /metrics go on,
/// and recording resumes on its own when the mount is writable again.
#[test]
fn a_read_only_store_is_logged_and_serving_goes_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mnt = Tmpfs::mount(&dir.path().join("ro"), "size=8m");
    mnt.remount("ro");
    let db = mnt.0.join("h.db");
    let mut d = Serve::start_at(Path::new(BIN), Some(&db), HOST_ONLY, &[]);
    let h = d.wait_samples(3, T);
    let err = h["store_error"].as_str().unwrap_or_default().to_string();
    assert!(err.contains("h.db"), "the error names the file: {h}");
    assert!(h["store_errors_total"].as_u64().unwrap_or(0) >= 2, "{h}");
    let body = serve_support::get(d.port, "/metrics").text();
    assert!(
        body.contains("memwarden_store_errors_total"),
        "store errors are exported"
    );
    assert!(
        d.log_text().contains("history not recorded"),
        "{}",
        d.log_text()
    );
    eprintln!("read-only store: {err}");

    mnt.remount("rw");
    let before = h["samples_total"].as_u64().unwrap_or(0);
    let t = Instant::now();
    loop {
        let h = d.health().expect("health");
        if h["store_error"].is_null() && h["samples_total"].as_u64().unwrap_or(0) > before + 2 {
            break;
        }
        assert!(t.elapsed() < T, "recording did not resume: {h}");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        d.log_text().contains("history recorded again"),
        "{}",
        d.log_text()
    );
    drop(d);
    assert!(stored(&db) >= 2, "samples after the remount are stored");
}

/// Waits until the log holds `text`.
fn wait_log(d: &Serve, text: &str) {
    serve_support::wait_for(&format!("{text:?} in the log"), T, || {
        d.log_text().contains(text).then_some(())
    });
}

#[test]
fn sighup_reloads_what_it_can_and_names_what_needs_a_restart() {
    let base = format!("{HOST_ONLY}[record]\npss_every = \"300ms\"\n");
    let mut d = Serve::start_with_config(Path::new(BIN), &base, &[]);
    d.wait_samples(2, T);
    // keep_cmdlines on, and a new listen address (needs a restart).
    let write = |text: &str| std::fs::write(&d.config, text).expect("write config");
    write(&format!(
        "listen = \"127.0.0.1:1\"\n{base}keep_cmdlines = true\n"
    ));
    d.signal("-HUP");
    wait_log(&d, "configuration reloaded");
    let log = d.log_text();
    assert!(
        log.contains("need a restart") && log.contains("listen"),
        "{log}"
    );
    // Still serving on the old address, and later samples keep command lines.
    let n = d.health().expect("health")["samples_total"]
        .as_u64()
        .unwrap_or(0);
    d.wait_samples(n + 3, T);
    let latest = Store::open_read_only(&d.db)
        .expect("store")
        .latest()
        .expect("latest")
        .expect("a sample");
    assert!(
        latest.host.processes.iter().any(|p| !p.cmdline.is_empty()),
        "command lines kept after the reload"
    );
    // An invalid file on SIGHUP: the running configuration stays.
    std::fs::write(&d.config, "interval = \"300ms\"\nbogus_key = 1\n").expect("write config");
    d.signal("-HUP");
    wait_log(&d, "not reloaded");
    assert!(d.log_text().contains("bogus_key"), "{}", d.log_text());
    assert!(d.health().is_some(), "still serving");
}

#[test]
fn an_unknown_key_stops_start_up_naming_the_key_and_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("memwarden.toml");
    std::fs::write(&cfg, "[record]\nkeep_cmdline = true\n").expect("write");
    let out = Command::new(BIN)
        .args(["serve", "--config"])
        .arg(&cfg)
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("keep_cmdline") && err.contains(cfg.to_str().expect("utf-8")),
        "{err}"
    );
}

#[test]
fn by_default_no_command_line_is_recorded() {
    let mut d = Serve::start_with_config(Path::new(BIN), HOST_ONLY, &[]);
    d.wait_samples(2, T);
    d.signal("-TERM");
    d.wait_exit(Duration::from_secs(5));
    let latest = Store::open_read_only(&d.db)
        .expect("store")
        .latest()
        .expect("latest")
        .expect("a sample");
    assert!(latest.host.processes.len() > 3, "processes recorded");
    assert!(latest.host.processes.iter().all(|p| p.cmdline.is_empty()));
    assert!(latest.host.processes.iter().any(|p| !p.name.is_empty()));
}

/// One sample's value from /metrics (a series without labels).
fn metric(port: u16, name: &str) -> Option<f64> {
    let text = serve_support::get(port, "/metrics").text();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

/// The soak bench's finding: `memwarden_store_bytes` was 0 whatever the history took.
#[test]
fn store_bytes_is_the_history_and_its_wal_on_disk() {
    // A long interval: the files rarely change between the scrape and the look at them.
    let cfg = "interval = \"2s\"\ndeadline = \"100ms\"\n[vms]\nsource = \"none\"\n";
    let mut d = Serve::start_with_config(Path::new(BIN), cfg, &[]);
    d.wait_samples(2, T);
    let wal = d.db.with_file_name("history.db-wal");
    let on_disk = || {
        let size = |p: &Path| std::fs::metadata(p).map_or(0, |m| m.len());
        size(&d.db) + size(&wal)
    };
    let mut last = (0, 0.0, 0);
    serve_support::wait_for("memwarden_store_bytes to match the files", T, || {
        let before = on_disk();
        let v = metric(d.port, "memwarden_store_bytes").expect("memwarden_store_bytes");
        let after = on_disk();
        last = (before, v, after);
        (before == after && v == before as f64 && v > 0.0).then_some(())
    });
    eprintln!("memwarden_store_bytes {} (files {})", last.1, last.0);
}

/// A SIGHUP with a bad file shows on /metrics (as Prometheus's own
/// `prometheus_config_last_reload_successful`) until a good one is read.
#[test]
fn a_failed_reload_is_on_metrics_until_a_good_one() {
    let mut d = Serve::start_with_config(Path::new(BIN), HOST_ONLY, &[]);
    d.wait_samples(1, T);
    let ok = "memwarden_config_last_reload_successful";
    let at = "memwarden_config_last_reload_success_timestamp_seconds";
    assert_eq!(metric(d.port, ok), Some(1.0), "1 at start");
    let started = metric(d.port, at).expect("a success time at start");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs_f64();
    assert!((now - started).abs() < 60.0, "{started} vs now {now}");

    std::fs::write(&d.config, "interval = \"300ms\"\nbogus_key = 1\n").expect("write config");
    d.signal("-HUP");
    wait_log(&d, "not reloaded");
    assert_eq!(metric(d.port, ok), Some(0.0), "a refused file");
    assert_eq!(metric(d.port, at), Some(started), "the last success stays");

    std::thread::sleep(Duration::from_millis(1100));
    std::fs::write(&d.config, HOST_ONLY).expect("write config");
    d.signal("-HUP");
    wait_log(&d, "SIGHUP: configuration reloaded");
    assert_eq!(metric(d.port, ok), Some(1.0), "a good file");
    let later = metric(d.port, at).expect("success time");
    assert!(later > started + 1.0, "{later} after {started}");
}

/// Runs `serve ARGS` with a throw-away history on a free port; its exit code and stderr, or
/// `None` when it was still serving after 10 s (it is then killed).
fn serve_briefly(dir: &Path, args: &[&str]) -> (Option<i32>, String) {
    let log = dir.join("serve.log");
    let mut cmd = Command::new(BIN);
    cmd.arg("serve")
        .args(args)
        .arg("--listen")
        .arg(format!("127.0.0.1:{}", serve_support::free_port()))
        .arg("--db")
        .arg(dir.join("h.db"));
    let mut p = serve_support::Proc::spawn("memwarden serve", cmd, &log);
    let t = Instant::now();
    let code = loop {
        if let Some(st) = p.child.try_wait().expect("try_wait") {
            break st.code();
        }
        if t.elapsed() > Duration::from_secs(10) {
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    drop(p);
    (code, std::fs::read_to_string(&log).unwrap_or_default())
}

/// The soak bench's finding: given both, serve read QMP and silently dropped libvirt.
#[test]
fn libvirt_and_qmp_together_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (code, err) = serve_briefly(
        dir.path(),
        &["--connect", "qemu:///system", "--qmp", "/run/x.qmp"],
    );
    assert_eq!(code, Some(2), "a usage error: {err}");
    assert!(
        err.contains("--connect") && err.contains("--qmp") && err.contains("cannot be used with"),
        "{err}"
    );

    let cfg = dir.path().join("memwarden.toml");
    let cfg_arg = cfg.to_str().expect("utf-8");
    for (text, key) in [
        (
            "[vms]\nsource = \"libvirt\"\nqmp = [\"/run/x.qmp\"]\n",
            "[vms] qmp",
        ),
        ("[vms]\nqmp = [\"/run/x.qmp\"]\n", "[vms] qmp"),
        (
            "[vms]\nsource = \"qmp\"\nqmp = [\"/run/x.qmp\"]\nconnect = \"qemu+ssh://h/system\"\n",
            "[vms] connect",
        ),
    ] {
        std::fs::write(&cfg, text).expect("write");
        let (code, err) = serve_briefly(dir.path(), &["--config", cfg_arg]);
        assert_eq!(code, Some(1), "{text}: {err}");
        assert!(
            err.contains(key) && err.contains("source") && err.contains(cfg_arg),
            "{text}: {err}"
        );
    }
    // A flag replaces the file's choice of source: --qmp over a file that names a libvirt URI.
    std::fs::write(&cfg, "[vms]\nconnect = \"qemu+ssh://h/system\"\n").expect("write");
    let sock = dir.path().join("none.qmp");
    let (code, err) = serve_briefly(
        dir.path(),
        &["--config", cfg_arg, "--qmp", sock.to_str().expect("utf-8")],
    );
    assert!(!err.contains("[vms] connect"), "{code:?}: {err}");
}

/// Between two readings of the costly files (PSS every 60 s here, samples every 300 ms), the
/// API and /metrics read one view: the identities that need PSS and vmallocinfo are judged
/// with the last readings, whose age the API states, and /metrics gives the same verdict.
#[test]
fn between_pss_readings_the_api_and_metrics_judge_identities_alike() {
    let cfg = format!("{HOST_ONLY}[record]\npss_every = \"60s\"\n");
    let mut d = Serve::start_with_config(Path::new(BIN), &cfg, &[]);
    d.wait_samples(4, T);
    // Both read from one sample: the API's time is the one /metrics gives.
    let (latest, metrics) = serve_support::wait_for("/api and /metrics from one sample", T, || {
        let latest = serve_support::get(d.port, "/api/v1/latest").json();
        let metrics = serve_support::get(d.port, "/metrics").text();
        let at = latest["taken_at_unix_ms"].as_u64()? as f64 / 1e3;
        let same = metric(d.port, "memwarden_sample_timestamp_seconds").is_some()
            && metrics.lines().any(|l| {
                l.strip_prefix("memwarden_sample_timestamp_seconds ")
                    .and_then(|v| v.trim().parse::<f64>().ok())
                    == Some(at)
            });
        same.then_some((latest, metrics))
    });
    let processes = latest["sample"]["host"]["processes"]
        .as_array()
        .expect("processes");
    assert!(
        processes.iter().all(|p| p["smaps"].is_null()),
        "a light sample: no PSS read"
    );
    let carried = &latest["carried"];
    assert!(carried["age_s"].is_u64(), "{carried}");
    assert!(
        carried["identities"]
            .as_array()
            .is_some_and(|i| i.len() >= 2),
        "{carried}"
    );
    let identities = latest["accounting"]["identities"]
        .as_array()
        .expect("identities");
    for name in ["vmalloc", "mapped ≈ PSS"] {
        let id = identities
            .iter()
            .find(|i| i["name"] == name)
            .unwrap_or_else(|| panic!("no identity {name}"));
        let verdict = id["verdict"].as_str().expect("verdict");
        assert_ne!(verdict, "not_applicable", "{name}: {id}");
        let slug = if name == "vmalloc" {
            "vmalloc"
        } else {
            "mapped_pss"
        };
        let series = format!(
            "memwarden_host_identity_verdict{{identity=\"{slug}\",verdict=\"{verdict}\"}} 1"
        );
        assert!(metrics.contains(&series), "/metrics lacks {series}");
    }
}
