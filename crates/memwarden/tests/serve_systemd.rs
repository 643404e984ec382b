//! `memwarden serve` under systemd's notify protocol, with the socket systemd would give it:
//! READY once serving, watchdog pings at half the period while sampling goes on, RELOADING and
//! READY around a SIGHUP, STOPPING at SIGTERM; and the shipped unit passes
//! `systemd-analyze verify`.

mod serve_support;

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serve_support::Serve;

const BIN: &str = env!("CARGO_BIN_EXE_memwarden");
const HOST_ONLY: &str = "interval = \"300ms\"\ndeadline = \"100ms\"\n[vms]\nsource = \"none\"\n";

/// Every datagram until one holds `line` (as a line of its own), within `timeout`.
fn until_line(sock: &UnixDatagram, line: &str, timeout: Duration) -> Vec<String> {
    let t = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = timeout.saturating_sub(t.elapsed());
        assert!(
            !left.is_zero(),
            "no {line:?} within {timeout:?}; got {got:?}"
        );
        sock.set_read_timeout(Some(left)).expect("timeout");
        let Ok(n) = sock.recv(&mut buf) else { continue };
        let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
        let done = msg.lines().any(|l| l == line);
        got.push(msg);
        if done {
            return got;
        }
    }
}

#[test]
fn readiness_watchdog_reload_and_stop_are_told_to_systemd() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("notify");
    let sock = UnixDatagram::bind(&path).expect("bind the notify socket");
    let notify = format!("NOTIFY_SOCKET={}", path.display());
    let mut serve = Serve::start_wrapped(
        &["env", &notify, "WATCHDOG_USEC=1000000"],
        Path::new(BIN),
        None,
        HOST_ONLY,
        &[],
    );
    let first = until_line(&sock, "READY=1", Duration::from_secs(30));
    assert!(
        first
            .iter()
            .any(|m| m.contains("STATUS=serving on 127.0.0.1:")),
        "{first:?}"
    );
    // A 1 s watchdog is pinged every 0.5 s: at least 4 pings in 3 s.
    let t = Instant::now();
    let mut pings = 0;
    while t.elapsed() < Duration::from_secs(3) {
        until_line(&sock, "WATCHDOG=1", Duration::from_secs(2));
        pings += 1;
    }
    assert!(pings >= 4, "{pings} pings in 3 s");
    serve.wait_samples(3, Duration::from_secs(30));

    serve.signal("-HUP");
    let reload = until_line(&sock, "READY=1", Duration::from_secs(10));
    let all = reload.join("");
    assert!(all.contains("RELOADING=1"), "{reload:?}");
    assert!(all.contains("MONOTONIC_USEC="), "{reload:?}");

    serve.signal("-TERM");
    until_line(&sock, "STOPPING=1", Duration::from_secs(10));
    let status = serve.wait_exit(Duration::from_secs(15));
    assert!(status.success(), "{status:?}\n{}", serve.log_text());
    assert!(
        serve.log_text().contains("systemd watchdog"),
        "{}",
        serve.log_text()
    );
}

/// Without NOTIFY_SOCKET (not under systemd) nothing is sent and nothing fails.
#[test]
fn without_systemd_nothing_is_told_and_nothing_fails() {
    let mut serve = Serve::start_with_config(Path::new(BIN), HOST_ONLY, &[]);
    serve.wait_samples(2, Duration::from_secs(30));
    serve.signal("-TERM");
    assert!(serve.wait_exit(Duration::from_secs(15)).success());
    let log = serve.log_text();
    assert!(!log.contains("NOTIFY_SOCKET"), "{log}");
    assert!(!log.contains("watchdog"), "{log}");
}

#[test]
fn the_shipped_unit_passes_systemd_analyze_verify() {
    let unit = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/systemd/memwarden.service");
    let text = std::fs::read_to_string(&unit).expect("the unit");
    for key in [
        "Type=notify",
        "WatchdogSec=",
        "LimitNOFILE=",
        "StateDirectoryMode=0700",
    ] {
        assert!(text.contains(key), "{} lacks {key}", unit.display());
    }
    // verify checks that ExecStart exists: point it at the binary under test.
    let dir = tempfile::tempdir().expect("tempdir");
    let copy = dir.path().join("memwarden.service");
    std::fs::write(&copy, text.replace("/usr/local/bin/memwarden", BIN)).expect("write");
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&copy)
        .output()
        .expect("systemd-analyze (package systemd; scripts/setup.sh --test installs it)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        !stderr.contains("memwarden.service"),
        "systemd-analyze complained about the unit:\n{stderr}"
    );
}
