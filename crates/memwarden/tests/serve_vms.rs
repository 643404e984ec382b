//! `memwarden serve` tells its log when reading VMs goes wrong, once per change: a VM source
//! that cannot be read, a VM whose read fails and later recovers, a VM that is gone (and the
//! store's `vm_gone` event). Against the real binary, with a QMP monitor played by the test
//! (healthy, then silent like a QEMU whose main loop is stuck, then gone).

mod serve_support;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::{json, Value};
use serve_support::{wait_for, Serve};

const T: Duration = Duration::from_secs(30);
const BIN: &str = env!("CARGO_BIN_EXE_memwarden");
const CFG: &str = "interval = \"400ms\"\ndeadline = \"250ms\"\n";

/// A QMP monitor answering like a QEMU without a balloon device, on `path`; while `frozen` it
/// accepts and never sends its greeting (a QEMU stopped or stuck in its main loop).
struct FakeQemu {
    path: PathBuf,
    frozen: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl FakeQemu {
    fn start(path: &Path, name: &str) -> FakeQemu {
        let listener = UnixListener::bind(path).expect("bind the QMP socket");
        listener.set_nonblocking(true).expect("nonblocking");
        let (frozen, stop) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicBool::new(false)),
        );
        let (f, s, name) = (frozen.clone(), stop.clone(), name.to_string());
        let thread = std::thread::spawn(move || {
            let mut held = Vec::new();
            while !s.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((conn, _)) if f.load(Ordering::Relaxed) => held.push(conn),
                    Ok((conn, _)) => {
                        held.clear();
                        let name = name.clone();
                        std::thread::spawn(move || answer(conn, &name));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        FakeQemu {
            path: path.to_path_buf(),
            frozen,
            stop,
            thread: Some(thread),
        }
    }

    fn freeze(&self, on: bool) {
        self.frozen.store(on, Ordering::Relaxed);
    }

    /// The QEMU exits and its socket file is removed: nothing lists it any more.
    fn vanish(mut self) {
        self.stop_now();
        std::fs::remove_file(&self.path).expect("remove the socket");
    }

    fn stop_now(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for FakeQemu {
    fn drop(&mut self) {
        self.stop_now();
    }
}

fn answer(conn: UnixStream, name: &str) {
    let _ = conn.set_nonblocking(false);
    let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
    let mut out = match conn.try_clone() {
        Ok(c) => c,
        Err(_) => return,
    };
    let greeting = json!({"QMP": {"version": {"qemu": {"major": 7, "minor": 2, "micro": 0},
        "package": ""}, "capabilities": []}});
    if writeln!(out, "{greeting}").is_err() {
        return;
    }
    for line in BufReader::new(conn).lines() {
        let Ok(line) = line else { return };
        let Ok(cmd) = serde_json::from_str::<Value>(&line) else {
            return;
        };
        let mut reply = match cmd["execute"].as_str().unwrap_or("") {
            "qmp_capabilities" => json!({"return": {}}),
            "query-name" => json!({"return": {"name": name}}),
            "query-status" => json!({"return": {"status": "running", "running": true}}),
            "query-balloon" => json!({"error": {"class": "DeviceNotActive",
                "desc": "No balloon device has been activated"}}),
            other => json!({"error": {"class": "CommandNotFound",
                "desc": format!("The command {other} has not been found")}}),
        };
        reply["id"] = cmd["id"].clone();
        if writeln!(out, "{reply}").is_err() {
            return;
        }
    }
}

fn count(log: &str, text: &str) -> usize {
    log.lines().filter(|l| l.contains(text)).count()
}

fn wait_log(d: &Serve, text: &str) {
    wait_for(&format!("{text:?} in the log"), T, || {
        d.log_text().contains(text).then_some(())
    });
}

/// Lets `n` more samples pass.
fn samples_pass(d: &mut Serve, n: u64) {
    let now = d.health().expect("health")["samples_total"]
        .as_u64()
        .expect("samples_total");
    d.wait_samples(now + n, T);
}

#[test]
fn a_vm_that_stops_answering_recovers_and_goes_is_logged_once_each() {
    let dir = tempfile::tempdir().expect("tempdir");
    let steady = FakeQemu::start(&dir.path().join("steady.qmp"), "steady");
    let flaky = FakeQemu::start(&dir.path().join("flaky.qmp"), "flaky");
    let glob = format!("{}/*.qmp", dir.path().display());
    let mut d = Serve::start_with_config(Path::new(BIN), CFG, &["--qmp", &glob]);
    d.wait_samples(3, T);
    let log = d.log_text();
    assert_eq!(count(&log, "not read"), 0, "{log}");

    flaky.freeze(true);
    wait_log(&d, "VM flaky not read");
    samples_pass(&mut d, 4);
    let log = d.log_text();
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("VM flaky not read"))
        .collect();
    assert_eq!(lines.len(), 1, "once, not every sample:\n{log}");
    assert!(
        lines[0].contains("WARN") && lines[0].contains("timed out"),
        "a warning with the reason: {}",
        lines[0]
    );

    flaky.freeze(false);
    wait_log(&d, "VM flaky recovered");
    samples_pass(&mut d, 4);
    let log = d.log_text();
    assert_eq!(count(&log, "VM flaky recovered"), 1, "{log}");
    assert_eq!(count(&log, "VM flaky not read"), 1, "{log}");

    flaky.vanish();
    wait_log(&d, "VM flaky is gone");
    samples_pass(&mut d, 4);
    // A gone VM leaves no series behind: the counter says it went.
    let metrics = serve_support::get(d.port, "/metrics").text();
    assert!(
        metrics.lines().any(|l| l == "memwarden_vms_gone_total 1"),
        "{metrics}"
    );
    let log = d.log_text();
    let gone: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("VM flaky is gone"))
        .collect();
    assert_eq!(gone.len(), 1, "{log}");
    assert!(
        gone[0].contains("WARN") && gone[0].contains("not listed by qmp any more"),
        "{}",
        gone[0]
    );
    assert!(
        !log.contains("VM steady"),
        "nothing said about a VM read well:\n{log}"
    );

    d.signal("-TERM");
    d.wait_exit(Duration::from_secs(10));
    let events = memwarden_store::Store::open_read_only(&d.db)
        .expect("store")
        .events("vm_gone", 0, u64::MAX)
        .expect("events");
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].1["domain"], "flaky", "{events:?}");
    assert_eq!(events[0].1["source"], "qmp", "{events:?}");
    drop(steady);
}

#[test]
fn a_vm_source_that_cannot_be_read_is_warned_about_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let uri = format!(
        "qemu+unix:///system?socket={}",
        dir.path().join("no-libvirtd.sock").display()
    );
    let mut d = Serve::start_with_config(Path::new(BIN), CFG, &["--connect", &uri]);
    d.wait_samples(5, T);
    let log = d.log_text();
    let down: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("VM source not read"))
        .collect();
    assert_eq!(down.len(), 1, "once, not every sample:\n{log}");
    assert!(
        down[0].contains("WARN") && down[0].contains("libvirt") && down[0].contains("no-libvirtd"),
        "a warning naming the source and why: {}",
        down[0]
    );
}
