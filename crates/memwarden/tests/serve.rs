//! `memwarden serve` as a process: clean stop on SIGTERM, no committed sample lost to kill -9,
//! a read-only store logged while sampling and serving go on, SIGHUP, bad configuration.

mod common;

use std::process::Command;
use std::time::Duration;

use common::Daemon;
use memwarden_store::Store;

const T: Duration = Duration::from_secs(30);

fn stored(db: &std::path::Path) -> usize {
    let s = Store::open_read_only(db).expect("store opens");
    assert_eq!(
        s.check_integrity().expect("integrity check"),
        Vec::<String>::new()
    );
    s.range(0, u64::MAX).expect("range").len()
}

#[test]
fn sigterm_finishes_the_sample_and_exits_cleanly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("h.db");
    let mut d = Daemon::start(dir.path(), &db, &["--no-vms", "--interval", "300ms"]);
    let h = d.wait_samples(3, T);
    assert!(h["store_error"].is_null(), "{h}");
    let (code, metrics) = d.get("/metrics").expect("metrics");
    assert_eq!(code, 200);
    assert!(metrics.contains("memwarden_host_meminfo_bytes{field=\"MemTotal\"}"));
    d.signal("-TERM");
    let st = d.wait_exit(Duration::from_secs(5));
    assert!(st.success(), "exit {st:?}; log:\n{}", d.log_text());
    assert!(d.log_text().contains("stopped cleanly"), "{}", d.log_text());
    // Every sample it reported was committed.
    let reported = h["samples_total"].as_u64().expect("count") as usize;
    assert!(stored(&db) >= reported, "stored < {reported}");
}

#[test]
fn kill_9_at_any_moment_loses_no_committed_sample() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("h.db");
    let mut total_reported = 0;
    for (round, wait_ms) in [(0u64, 0u64), (1, 137), (2, 251), (3, 389)].iter().copied() {
        let mut d = Daemon::start(dir.path(), &db, &["--no-vms", "--interval", "200ms"]);
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
    let mnt = dir.path().join("ro");
    std::fs::create_dir(&mnt).expect("mkdir");
    let mount = |opts: &str| {
        let ok = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                opts,
                "memwarden-test",
                mnt.to_str().expect("utf-8"),
            ])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "mount -o {opts} (the suite runs as root)");
    };
    mount("size=8m");
    let remount = |opts: &str| {
        let ok = Command::new("mount")
            .args([
                "-o",
                &format!("remount,{opts}"),
                mnt.to_str().expect("utf-8"),
            ])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "remount {opts}");
    };
    struct Umount(std::path::PathBuf);
    impl Drop for Umount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
    let _umount = Umount(mnt.clone());
    remount("ro");
    let db = mnt.join("h.db");
    let d = Daemon::start(dir.path(), &db, &["--no-vms", "--interval", "300ms"]);
    let h = d.wait_samples(3, T);
    let err = h["store_error"].as_str().unwrap_or_default().to_string();
    assert!(err.contains("h.db"), "the error names the file: {h}");
    assert!(h["store_errors_total"].as_u64().unwrap_or(0) >= 2, "{h}");
    let (code, body) = d.get("/metrics").expect("metrics while the store fails");
    assert_eq!(code, 200);
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

    remount("rw");
    let before = h["samples_total"].as_u64().unwrap_or(0);
    let t = std::time::Instant::now();
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

#[test]
fn sighup_reloads_what_it_can_and_names_what_needs_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("h.db");
    let cfg = dir.path().join("memwarden.toml");
    let write = |text: &str| std::fs::write(&cfg, text).expect("write config");
    write("interval = \"300ms\"\ndeadline = \"100ms\"\n[vms]\nsource = \"none\"\n[record]\npss_every = \"300ms\"\n");
    let cfg_s = cfg.to_str().expect("utf-8").to_string();
    let d = Daemon::start(dir.path(), &db, &["--config", &cfg_s]);
    d.wait_samples(2, T);
    // keep_cmdlines on, and a new listen address (needs a restart).
    write("listen = \"127.0.0.1:1\"\ninterval = \"300ms\"\ndeadline = \"100ms\"\n[vms]\nsource = \"none\"\n[record]\npss_every = \"300ms\"\nkeep_cmdlines = true\n");
    d.signal("-HUP");
    let t = std::time::Instant::now();
    while !d.log_text().contains("configuration reloaded") {
        assert!(t.elapsed() < T, "no reload; log:\n{}", d.log_text());
        std::thread::sleep(Duration::from_millis(100));
    }
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
    let latest = Store::open_read_only(&db)
        .expect("store")
        .latest()
        .expect("latest")
        .expect("a sample");
    assert!(
        latest.host.processes.iter().any(|p| !p.cmdline.is_empty()),
        "command lines kept after the reload"
    );
    // An invalid file on SIGHUP: the running configuration stays.
    write("interval = \"300ms\"\nbogus_key = 1\n");
    d.signal("-HUP");
    let t = std::time::Instant::now();
    while !d.log_text().contains("not reloaded") {
        assert!(
            t.elapsed() < T,
            "bad config not reported; log:\n{}",
            d.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(d.log_text().contains("bogus_key"), "{}", d.log_text());
    assert!(d.health().is_some(), "still serving");
}

#[test]
fn an_unknown_key_stops_start_up_naming_the_key_and_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("memwarden.toml");
    std::fs::write(&cfg, "[record]\nkeep_cmdline = true\n").expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_memwarden"))
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
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("h.db");
    let d = Daemon::start(dir.path(), &db, &["--no-vms", "--interval", "300ms"]);
    d.wait_samples(2, T);
    drop(d);
    let s = Store::open_read_only(&db).expect("store");
    let latest = s.latest().expect("latest").expect("a sample");
    assert!(latest.host.processes.len() > 3, "processes recorded");
    assert!(latest.host.processes.iter().all(|p| p.cmdline.is_empty()));
    assert!(latest.host.processes.iter().any(|p| !p.name.is_empty()));
}
