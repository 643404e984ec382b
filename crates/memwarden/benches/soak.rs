//! A soak of the release daemon under faults: `memwarden serve` runs for `SOAK_MINUTES`
//! (default 30) while a driver injects faults on a schedule printed at the start, then the
//! run is judged from what the daemon stored, logged and exported.
//!
//! `SOAK_MINUTES=3 cargo bench -p memwarden --bench soak` is the short validation run (about
//! 5 minutes with guest boots). Root, the lab's libvirtd (held exclusively for the whole run:
//! other tests that need libvirtd wait meanwhile) and 3 lab guest slots (set here when
//! `MEMWARDEN_LAB_SLOTS` is not).
//!
//! Two daemons, because `serve` reads one VM source (`[vms] source` is libvirt, qmp or none;
//! it refuses `--connect` with `--qmp`): `libvirt` reads 3 lab guests
//! (256 MiB, TCG) under the lab's libvirtd, `qmp` reads 100 VMs simulated by
//! `qmp-sim DIR --healthy 100`.
//! Both sample every [`INTERVAL_S`] s, keep their history on one small tmpfs (so that it can
//! be filled), and run the balloon controller as a dry run against a host target no host meets
//! (every cycle plans, nothing is applied), so that an action planned on a VM that was not read
//! would show in the audit file.
//!
//! Faults ([`SCHEDULE`], times as shares of the run): libvirtd stopped and started, a guest's
//! QEMU frozen (SIGSTOP) for 30 s, bursts of 200 concurrent scrapes, the store's disk full until
//! each daemon has counted a store error (bounded), SIGHUP with a broken then the good
//! configuration, 2,000 idle TCP connections per daemon held then closed, a guest's QEMU
//! killed; /metrics is scraped every second throughout (its RSS and counters kept per scrape).
//!
//! Printed at the end, per daemon: samples expected, taken, stored and lost (with the store's
//! errors), gaps in the stored history, VM reads that were not ok, the slowest sample, RSS and
//! fds at start and end, the scrapes, whether the log and /metrics named each fault, balloon
//! actions planned on VMs that were not read, and the goals as PASS/MISS lines. A bench reports:
//! a miss never panics.

#[path = "../tests/serve_support/mod.rs"]
mod serve_support;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use memwarden_lab::{signal, Domain, DomainOpts, Frozen, Lab, Libvirtd, URI};
use memwarden_model::vm::{ReadStatus, VmRead};
use memwarden_model::SourceHealth;
use memwarden_store::Store;
use serde::Deserialize;
use serve_support::{http, Proc, Serve, Tmpfs};

const BIN: &str = env!("CARGO_BIN_EXE_memwarden");
/// The sampling interval: a fifth of the default 10 s, so that a short run takes 90 samples.
const INTERVAL_S: u64 = 2;
const GUESTS: usize = 3;
const QMP_VMS: usize = 100;
const BURST_SCRAPES: usize = 200;
const IDLE_CONNECTIONS: usize = 2000;
/// How long a fault's traces may take to reach the log and /metrics after it ends: a sample
/// in progress, the next one, and a scrape.
const GRACE: Duration = Duration::from_secs(3 * INTERVAL_S);
/// Big enough for a 30-minute run's history of both daemons, their WALs and audit lines (the
/// 3-minute run left under 1 MiB each), small enough to fill in a moment.
const TMPFS_OPTS: &str = "size=128m";

// ---------------------------------------------------------------------------------------------
// The fault schedule, as data.

/// Which daemon a fault is aimed at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Libvirt,
    Both,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    LibvirtdRestart,
    FreezeGuest,
    KillGuest,
    DiskFull,
    BadConfig,
    ScrapeBurst,
    IdleConnections,
}

/// How long a fault lasts before the driver undoes it.
#[derive(Debug, Clone, Copy)]
enum Hold {
    Instant,
    Secs(u64),
    /// A share of the run, at least 3 intervals (so that a few samples see it).
    Share(f64),
    /// Until every daemon it hits has counted a store error (at least 3 intervals, at most this
    /// share of the run): SQLite writes into WAL pages it already has, so a full disk shows only
    /// once the WAL must grow, which can take minutes after a checkpoint.
    UntilStoreErrors(f64),
}

#[derive(Debug, Clone, Copy)]
struct Fault {
    /// When, as a share of the run (so that a short and a long run keep the same shape).
    at: f64,
    kind: Kind,
    hold: Hold,
}

/// Apart enough that each fault's traces can be told from the next one's (except the first
/// burst and the freeze, which overlap on purpose: load while a VM hangs). The last fault is at
/// 90 %: the last tenth shows whether RSS and fds come back.
const SCHEDULE: [Fault; 8] = [
    fault(0.12, Kind::LibvirtdRestart, Hold::Share(0.03)),
    fault(0.18, Kind::FreezeGuest, Hold::Secs(30)),
    fault(0.28, Kind::ScrapeBurst, Hold::Instant),
    fault(0.36, Kind::DiskFull, Hold::UntilStoreErrors(0.20)),
    fault(0.62, Kind::BadConfig, Hold::Share(0.04)),
    fault(0.70, Kind::ScrapeBurst, Hold::Instant),
    fault(0.72, Kind::IdleConnections, Hold::Share(0.08)),
    fault(0.90, Kind::KillGuest, Hold::Instant),
];

const fn fault(at: f64, kind: Kind, hold: Hold) -> Fault {
    Fault { at, kind, hold }
}

/// RSS and fds "at start" are read here, before the first fault and, in a 30-minute run, after
/// the daemon's warm-up: the first PSS pass and the balloon controller's history, which grows
/// for its first [`KEEP`] (then old points leave as new ones come). Read at 8 % (144 s), the
/// qmp daemon's anonymous memory grew 1.4 MiB after it (the sixth soak). The release daemon
/// with 100 simulated VMs and no fault at all: 3.9 MiB at 60 s, 6.7 MiB at 180 s (the
/// allocator's in-use bytes 2.5 then 3.9 MiB: 100 VMs' 180 s of points), then 6.1 to 6.7 MiB
/// for the next 5 minutes.
const BASELINE_AT: f64 = 0.11;
/// The balloon controller's history window ([`memwarden_control::balloon::DEFAULT_KEEP`]).
const KEEP: Duration = memwarden_control::balloon::DEFAULT_KEEP;

impl Kind {
    fn target(self) -> Target {
        match self {
            Kind::LibvirtdRestart | Kind::FreezeGuest | Kind::KillGuest => Target::Libvirt,
            _ => Target::Both,
        }
    }

    /// Whether the daemon should say so: a failure it suffers, not load it should just carry.
    fn must_be_named(self) -> bool {
        !matches!(self, Kind::ScrapeBurst | Kind::IdleConnections)
    }

    fn describe(self, w: &World) -> String {
        match self {
            Kind::LibvirtdRestart => "libvirtd stopped (SIGTERM)".into(),
            Kind::FreezeGuest => format!("QEMU of {} SIGSTOPped", w.frozen_name()),
            Kind::KillGuest => format!("QEMU of {} SIGKILLed", w.killed_name()),
            Kind::DiskFull => "the store's tmpfs filled to ENOSPC".into(),
            Kind::BadConfig => "SIGHUP with a broken configuration".into(),
            Kind::ScrapeBurst => format!("{BURST_SCRAPES} concurrent scrapes of /metrics"),
            Kind::IdleConnections => format!("{IDLE_CONNECTIONS} idle TCP connections opened"),
        }
    }

    fn describe_undo(self) -> &'static str {
        match self {
            Kind::LibvirtdRestart => "libvirtd started",
            Kind::FreezeGuest => "SIGCONT",
            Kind::DiskFull => "the filler deleted",
            Kind::BadConfig => "SIGHUP with the good configuration",
            Kind::IdleConnections => "the idle connections closed",
            Kind::KillGuest | Kind::ScrapeBurst => "",
        }
    }
}

impl Fault {
    /// The planned hold (the least, for a hold that waits for a condition).
    fn hold(&self, run: Duration) -> Duration {
        let least = Duration::from_secs(3 * INTERVAL_S);
        match self.hold {
            Hold::Instant => Duration::ZERO,
            Hold::Secs(s) => Duration::from_secs(s),
            Hold::Share(f) => run.mul_f64(f).max(least),
            Hold::UntilStoreErrors(_) => least,
        }
    }

    /// The longest hold.
    fn max_hold(&self, run: Duration) -> Duration {
        match self.hold {
            Hold::UntilStoreErrors(f) => run.mul_f64(f).max(self.hold(run)),
            _ => self.hold(run),
        }
    }

    fn start(&self, run: Duration) -> Duration {
        run.mul_f64(self.at)
    }
}

/// One step of the driver's timeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Step {
    Baseline,
    Inject(usize),
    Undo(usize),
    /// The end of fault N's window: the log's length and the scrapes so far are noted.
    Close(usize),
}

/// The planned steps; an undo may come later than planned (it waits for its condition), and a
/// window closes [`GRACE`] after its fault's real undo.
fn timeline(run: Duration) -> Vec<(Duration, Step)> {
    let mut t = vec![(run.mul_f64(BASELINE_AT), Step::Baseline)];
    for (i, f) in SCHEDULE.iter().enumerate() {
        let (start, hold) = (f.start(run), f.hold(run));
        t.push((start, Step::Inject(i)));
        if !hold.is_zero() {
            t.push((start + hold, Step::Undo(i)));
        }
        t.push((start + f.max_hold(run) + GRACE, Step::Close(i)));
    }
    t.sort();
    t
}

// ---------------------------------------------------------------------------------------------
// What runs: guests, the simulator, two daemons.

/// One `memwarden serve` under test.
#[derive(Debug)]
struct Daemon {
    name: &'static str,
    serve: Serve,
    /// The configuration it was started with (written back after the broken one).
    good_config: String,
}

impl Daemon {
    fn pid(&self) -> u32 {
        self.serve.proc.pid()
    }
    fn log_len(&self) -> usize {
        std::fs::metadata(&self.serve.proc.log).map_or(0, |m| m.len() as usize)
    }
    fn health(&self) -> Option<serde_json::Value> {
        http("GET", self.serve.port, "/api/v1/health", &[], None)
            .ok()
            .filter(|r| r.status == 200)
            .and_then(|r| serde_json::from_slice(&r.body).ok())
    }
}

/// Everything the driver acts on.
struct World {
    libvirtd: Libvirtd,
    guests: Vec<Domain>,
    daemons: [Daemon; 2],
    tmpfs: Tmpfs,
    _sim: Proc,
    _sim_dir: tempfile::TempDir,
    _store_dir: tempfile::TempDir,
}

impl World {
    fn frozen_name(&self) -> &str {
        self.guests[0].name()
    }
    fn killed_name(&self) -> &str {
        self.guests[1].name()
    }
    fn targets(&self, t: Target) -> impl Iterator<Item = (usize, &Daemon)> {
        self.daemons
            .iter()
            .enumerate()
            .filter(move |(i, _)| t == Target::Both || *i == 0)
    }
}

fn config(source: &str) -> String {
    // The balloon target (1 EiB free) puts the host under pressure, and a 32 MiB margin (the
    // default 128 MiB, × 1.5 without deflate-on-oom, is most of a 256 MiB guest) leaves room
    // to shrink: every cycle plans shrinks of the idle lab guests, so that a plan for a guest
    // that was not read would show. (The simulator's VMs are never planned for: their "QEMU"
    // is the simulator, which backs none of their memory.)
    format!(
        "interval = \"{INTERVAL_S}s\"\ndeadline = \"1s\"\n\
         [vms]\n{source}\n\
         [balloon]\nenabled = true\ndry_run = true\nhost_min_available_bytes = 1152921504606846976\n\
         margin_bytes = 33554432\n"
    )
}

fn boot_guests(lab: &Lab, libvirtd: &Libvirtd) -> Vec<Domain> {
    (0..GUESTS)
        .map(|i| {
            let t = Instant::now();
            let d = Domain::start_on(
                libvirtd,
                lab,
                DomainOpts {
                    name: format!("soak{i}"),
                    mem_mib: 256,
                    stats_period: INTERVAL_S,
                    ..DomainOpts::default()
                },
            )
            .expect("lab domain");
            println!(
                "  guest {} up in {:.1} s (QEMU pid {})",
                d.name(),
                t.elapsed().as_secs_f64(),
                d.pid()
            );
            d
        })
        .collect()
}

/// The simulator's binary: cargo hands a bench only its own package's binaries, so it is
/// looked for beside `memwarden` and built there when absent.
fn qmp_sim_binary() -> PathBuf {
    let bin = Path::new(BIN).with_file_name("qmp-sim");
    if !bin.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let ok = Command::new(cargo)
            .args([
                "build",
                "--release",
                "-p",
                "memwarden-qmpsim",
                "--bin",
                "qmp-sim",
            ])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok && bin.exists(), "building {}", bin.display());
    }
    bin
}

fn start_simulator(dir: &Path) -> Proc {
    let mut cmd = Command::new(qmp_sim_binary());
    cmd.arg(dir).args(["--healthy", &QMP_VMS.to_string()]);
    let mut p = Proc::spawn("qmp-sim", cmd, &dir.with_extension("log"));
    let log = p.log.clone();
    serve_support::wait_for("qmp-sim READY", Duration::from_secs(60), || {
        p.assert_running();
        std::fs::read_to_string(&log)
            .ok()
            .filter(|t| t.contains("READY"))
    });
    p
}

/// Waits for a daemon's first sample.
fn start_daemon(name: &'static str, db: &Path, cfg: String) -> Daemon {
    let serve = Serve::start_at(Path::new(BIN), Some(db), &cfg, &[]);
    let d = Daemon {
        name,
        serve,
        good_config: cfg,
    };
    serve_support::wait_for(
        &format!("the {name} daemon's first sample"),
        Duration::from_secs(60),
        || {
            d.health()
                .filter(|h| h["samples_total"].as_u64().unwrap_or(0) >= 1)
        },
    );
    d
}

/// Raises this process's open-file limit (the idle connections and the bursts hold thousands
/// of sockets). `prlimit(1)`: the bench has no libc binding of its own.
fn raise_nofile(want: u64) {
    let text = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    let soft = text
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    if soft >= want {
        return;
    }
    let ok = Command::new("prlimit")
        .arg("--pid")
        .arg(std::process::id().to_string())
        .arg(format!("--nofile={want}:{want}"))
        .status()
        .is_ok_and(|s| s.success());
    println!("open-file limit {soft} raised to {want}: {ok}");
}

fn bring_up() -> World {
    raise_nofile(4 * IDLE_CONNECTIONS as u64 + 4 * BURST_SCRAPES as u64 + 1024);
    if std::env::var_os("MEMWARDEN_LAB_SLOTS").is_none() {
        std::env::set_var("MEMWARDEN_LAB_SLOTS", GUESTS.to_string());
    }
    let lab = Lab::new().expect("lab");
    // Held while the guests take their slots (two runs each holding one slot and waiting for
    // more would wait for each other); released once all three run.
    let _multi = lab.multi_guest().expect("multi-guest lock");
    println!("waiting for libvirtd to be ours alone (other tests using it finish first)");
    let libvirtd = Libvirtd::exclusive(&lab).expect("libvirtd, exclusively");
    let guests = boot_guests(&lab, &libvirtd);
    let store_dir = tempfile::tempdir().expect("tempdir");
    let tmpfs = Tmpfs::mount(&store_dir.path().join("store"), TMPFS_OPTS);
    let sim_dir = tempfile::tempdir().expect("tempdir");
    let sockets = sim_dir.path().join("vms");
    let sim = start_simulator(&sockets);
    let daemons = [
        start_daemon(
            "libvirt",
            &tmpfs.0.join("libvirt/history.db"),
            config(&format!("source = \"libvirt\"\nconnect = \"{URI}\"")),
        ),
        start_daemon(
            "qmp",
            &tmpfs.0.join("qmp/history.db"),
            config(&format!(
                "source = \"qmp\"\nqmp = [\"{}/*.qmp\"]",
                sockets.display()
            )),
        ),
    ];
    World {
        libvirtd,
        guests,
        daemons,
        tmpfs,
        _sim: sim,
        _sim_dir: sim_dir,
        _store_dir: store_dir,
    }
}

// ---------------------------------------------------------------------------------------------
// Scraping /metrics every second.

/// What one scrape showed (only what the report needs: the text is ~100 KB with 100 VMs).
#[derive(Debug, Clone, Default)]
struct Seen {
    samples: u64,
    sample_errors: u64,
    store_errors: u64,
    /// `memwarden_vms_gone_total`: VMs no longer listed by a source that was read.
    vms_gone: u64,
    /// `memwarden_store_bytes`: what the daemon says its store takes.
    store_bytes: u64,
    /// `process_resident_memory_bytes`: the daemon's RSS as it reports it.
    rss_bytes: u64,
    /// `memwarden_sqlite_memory_bytes`: what SQLite holds of that RSS.
    sqlite_bytes: u64,
    last_sample_duration_s: f64,
    /// `memwarden_source_success{source} 0`.
    sources_down: Vec<String>,
    /// `memwarden_vm_read_status{domain,status} 1` with a status other than ok.
    vms_not_ok: Vec<(String, String)>,
    /// `memwarden_vm_state{domain,state} 1` other than running.
    vm_states: Vec<(String, String)>,
    /// Any series about configuration reloads (none exists today).
    reload_series: Vec<String>,
}

#[derive(Debug, Clone)]
struct Scrape {
    t: Duration,
    daemon: usize,
    latency: Duration,
    seen: Result<Seen, String>,
}

/// `name{k="v",...} value` into its parts; `None` for comments and blank lines.
fn parse_line(line: &str) -> Option<(&str, BTreeMap<String, String>, f64)> {
    if line.starts_with('#') || line.trim().is_empty() {
        return None;
    }
    let (series, value) = line.rsplit_once(' ')?;
    let value = value.parse().ok()?;
    let (name, labels) = match series.split_once('{') {
        Some((n, rest)) => (n, rest.strip_suffix('}')?),
        None => (series, ""),
    };
    let mut map = BTreeMap::new();
    let mut rest = labels;
    while let Some((key, after)) = rest.split_once("=\"") {
        let mut val = String::new();
        let mut chars = after.char_indices();
        let mut end = after.len();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => {
                    if let Some((_, n)) = chars.next() {
                        val.push(if n == 'n' { '\n' } else { n });
                    }
                }
                '"' => {
                    end = i + 1;
                    break;
                }
                c => val.push(c),
            }
        }
        map.insert(key.trim_start_matches(',').to_string(), val);
        rest = &after[end..];
    }
    Some((name, map, value))
}

fn parse_metrics(text: &str) -> Seen {
    let mut s = Seen::default();
    for (name, labels, value) in text.lines().filter_map(parse_line) {
        let label = |k: &str| labels.get(k).cloned().unwrap_or_default();
        match name {
            "memwarden_samples_total" => s.samples = value as u64,
            "memwarden_sample_errors_total" => s.sample_errors = value as u64,
            "memwarden_store_errors_total" => s.store_errors = value as u64,
            "memwarden_vms_gone_total" => s.vms_gone = value as u64,
            "memwarden_store_bytes" => s.store_bytes = value as u64,
            "process_resident_memory_bytes" => s.rss_bytes = value as u64,
            "memwarden_sqlite_memory_bytes" => s.sqlite_bytes = value as u64,
            "memwarden_last_sample_duration_seconds" => s.last_sample_duration_s = value,
            "memwarden_source_success" if value == 0.0 => s.sources_down.push(label("source")),
            "memwarden_vm_read_status" if value == 1.0 && label("status") != "ok" => {
                s.vms_not_ok.push((label("domain"), label("status")));
            }
            "memwarden_vm_state" if value == 1.0 && label("state") != "running" => {
                s.vm_states.push((label("domain"), label("state")));
            }
            n if n.contains("reload") => s.reload_series.push(format!("{n} {value}")),
            _ => {}
        }
    }
    s
}

fn scrape(port: u16) -> (Duration, Result<Seen, String>) {
    let t = Instant::now();
    let r = http("GET", port, "/metrics", &[], None);
    let latency = t.elapsed();
    let seen = match r {
        Ok(r) if r.status == 200 => Ok(parse_metrics(&r.text())),
        Ok(r) => Err(format!("HTTP {}: {}", r.status, r.text().trim())),
        Err(e) => Err(e.to_string()),
    };
    (latency, seen)
}

/// Scrapes one daemon once a second until `stop` (a thread per daemon: a slow answer from one
/// never delays the other's scrapes).
fn scraper(
    daemon: usize,
    port: u16,
    start: Instant,
    stop: Arc<AtomicBool>,
    out: Arc<Mutex<Vec<Scrape>>>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut next = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            let (latency, seen) = scrape(port);
            let s = Scrape {
                t: start.elapsed(),
                daemon,
                latency,
                seen,
            };
            out.lock().unwrap_or_else(|p| p.into_inner()).push(s);
            next += Duration::from_secs(1);
            std::thread::sleep(next.saturating_duration_since(Instant::now()));
        }
    })
}

// ---------------------------------------------------------------------------------------------
// Injecting and undoing faults.

/// What an injected fault left to undo or to report.
#[derive(Debug, Default)]
struct Active {
    frozen: Option<Frozen>,
    filler: Option<PathBuf>,
    idle: Vec<(&'static str, Vec<TcpStream>)>,
    /// When the last idle connection was made: the hold counts from there.
    idle_connected: Option<Instant>,
}

/// Idle connections are held at least this long after the last one connects: past the
/// daemon's 5 s header deadline, so that it is its deadline, not the driver, that closes them.
const IDLE_LEAST_HOLD: Duration = Duration::from_secs(10);

/// One fault as it happened.
#[derive(Debug, Clone, Default)]
struct Injected {
    started: Duration,
    undone: Option<Duration>,
    closed: Duration,
    /// Each daemon's log length at injection and at the window's close.
    log_from: [usize; 2],
    log_to: [usize; 2],
    /// What the driver saw while doing it (burst results, bytes written...).
    notes: Vec<String>,
    /// Each daemon's store_errors_total on /metrics just before (disk full).
    store_errors_before: [u64; 2],
}

fn fill(dir: &Path) -> (PathBuf, u64, String) {
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).expect("create the filler");
    let chunk = vec![0xa5u8; 1 << 20];
    let mut written = 0u64;
    let err = loop {
        match f.write(&chunk) {
            Ok(0) => break "wrote 0 bytes".to_string(),
            Ok(n) => written += n as u64,
            Err(e) => break e.to_string(),
        }
    };
    (path, written, err)
}

/// `n` GETs of /metrics at once (gzip, as Prometheus asks); a line saying how they went.
fn burst(port: u16, n: usize) -> String {
    let barrier = Arc::new(Barrier::new(n));
    let handles: Vec<_> = (0..n)
        .map(|_| {
            let b = barrier.clone();
            std::thread::spawn(move || {
                b.wait();
                let t = Instant::now();
                let r = http(
                    "GET",
                    port,
                    "/metrics",
                    &[("Accept-Encoding", "gzip")],
                    None,
                );
                (t.elapsed(), r.map(|r| r.status).map_err(|e| e.to_string()))
            })
        })
        .collect();
    let mut lat = Vec::new();
    let mut failed: BTreeMap<String, usize> = BTreeMap::new();
    for h in handles {
        match h.join() {
            Ok((t, Ok(200))) => lat.push(t),
            Ok((_, Ok(status))) => *failed.entry(format!("HTTP {status}")).or_default() += 1,
            Ok((_, Err(e))) => *failed.entry(e).or_default() += 1,
            Err(_) => *failed.entry("thread panicked".into()).or_default() += 1,
        }
    }
    lat.sort();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1e3)
    };
    // A client past the listen backlog has its SYN dropped and sends it again after 1 s.
    let slow = lat.iter().filter(|d| **d >= Duration::from_secs(1)).count();
    format!(
        "{}/{n} answered 200, median {:.0} ms, max {:.0} ms, {slow} took ≥ 1 s{}",
        lat.len(),
        pct(0.5),
        pct(1.0),
        if failed.is_empty() {
            String::new()
        } else {
            format!("; failed: {failed:?}")
        }
    )
}

fn open_idle(port: u16, n: usize) -> (Vec<TcpStream>, String) {
    let t = Instant::now();
    let mut conns = Vec::with_capacity(n);
    let mut errors: BTreeMap<String, usize> = BTreeMap::new();
    for _ in 0..n {
        match TcpStream::connect(("127.0.0.1", port)) {
            Ok(s) => conns.push(s),
            Err(e) => *errors.entry(e.to_string()).or_default() += 1,
        }
    }
    let note = format!(
        "{} of {n} connected in {:.1} s; connect errors: {errors:?}",
        conns.len(),
        t.elapsed().as_secs_f64()
    );
    (conns, note)
}

/// How many of `conns` the daemon had already closed (EOF or reset); then closes them all.
fn close_idle(conns: Vec<TcpStream>) -> String {
    let n = conns.len();
    let closed_by_daemon = conns
        .iter()
        .filter(|c| {
            let _ = c.set_nonblocking(true);
            let mut b = [0u8; 1];
            match (&mut &**c).read(&mut b) {
                Ok(0) => true,
                Ok(_) => false,
                Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
            }
        })
        .count();
    drop(conns);
    format!("{closed_by_daemon} of {n} already closed by the daemon when the driver closed them")
}

fn last_store_errors(scrapes: &Mutex<Vec<Scrape>>, daemon: usize) -> u64 {
    let s = scrapes.lock().unwrap_or_else(|p| p.into_inner());
    s.iter()
        .rev()
        .filter(|s| s.daemon == daemon)
        .find_map(|s| s.seen.as_ref().ok().map(|x| x.store_errors))
        .unwrap_or(0)
}

fn inject(w: &World, f: Fault, act: &mut Active, rec: &mut Injected, scrapes: &Mutex<Vec<Scrape>>) {
    match f.kind {
        Kind::LibvirtdRestart => {
            if let Err(e) = w.libvirtd.stop() {
                rec.notes.push(format!("stop failed: {e}"));
            }
        }
        Kind::FreezeGuest => act.frozen = Some(Frozen::new(w.guests[0].pid())),
        Kind::KillGuest => signal(w.guests[1].pid(), "-KILL"),
        Kind::DiskFull => {
            for (i, _) in w.targets(Target::Both) {
                rec.store_errors_before[i] = last_store_errors(scrapes, i);
            }
            let (path, bytes, err) = fill(&w.tmpfs.0);
            rec.notes
                .push(format!("{} MiB written until: {err}", bytes >> 20));
            act.filler = Some(path);
        }
        Kind::BadConfig => {
            for (_, d) in w.targets(Target::Both) {
                // A key in the wrong table ([balloon]) with a value no duration parses:
                // refused, naming the file and the line.
                let broken = format!("{}interval = \"soon\"\n", d.good_config);
                std::fs::write(&d.serve.config, broken).expect("write the broken config");
                d.serve.signal("-HUP");
            }
        }
        Kind::ScrapeBurst => {
            let handles: Vec<_> = w
                .targets(Target::Both)
                .map(|(_, d)| {
                    let (name, port) = (d.name, d.serve.port);
                    std::thread::spawn(move || format!("{name}: {}", burst(port, BURST_SCRAPES)))
                })
                .collect();
            for h in handles {
                rec.notes
                    .push(h.join().unwrap_or_else(|_| "burst thread panicked".into()));
            }
        }
        Kind::IdleConnections => {
            // Both at once: a daemon accepts a flood at its own pace (seconds for 2,000).
            let handles: Vec<_> = w
                .targets(Target::Both)
                .map(|(_, d)| {
                    let (name, port) = (d.name, d.serve.port);
                    std::thread::spawn(move || (name, open_idle(port, IDLE_CONNECTIONS)))
                })
                .collect();
            for h in handles {
                if let Ok((name, (conns, note))) = h.join() {
                    rec.notes.push(format!("{name}: {note}"));
                    act.idle.push((name, conns));
                }
            }
            act.idle_connected = Some(Instant::now());
        }
    }
}

/// Waits until every daemon has counted a store error since the fault began (on /metrics), or
/// until `latest`; whether they all did.
fn wait_store_errors(
    w: &World,
    rec: &Injected,
    scrapes: &Mutex<Vec<Scrape>>,
    latest: Instant,
) -> bool {
    loop {
        let bit = w
            .targets(Target::Both)
            .all(|(i, _)| last_store_errors(scrapes, i) > rec.store_errors_before[i]);
        if bit || Instant::now() >= latest {
            return bit;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Ends a fault. `latest` is when a hold that waits for a condition must end anyway.
fn undo(
    w: &World,
    f: Fault,
    act: &mut Active,
    rec: &mut Injected,
    scrapes: &Mutex<Vec<Scrape>>,
    latest: Instant,
) {
    match f.kind {
        Kind::LibvirtdRestart => {
            if let Err(e) = w.libvirtd.start() {
                rec.notes.push(format!("start failed: {e}"));
            }
        }
        Kind::FreezeGuest => act.frozen = None, // the guard sends SIGCONT
        Kind::DiskFull => {
            let bit = wait_store_errors(w, rec, scrapes, latest);
            rec.notes.push(if bit {
                "every daemon counted a store error".into()
            } else {
                "no store error counted by the longest hold".into()
            });
            if let Some(p) = act.filler.take() {
                let _ = std::fs::remove_file(p);
            }
        }
        Kind::BadConfig => {
            for (_, d) in w.targets(Target::Both) {
                std::fs::write(&d.serve.config, &d.good_config).expect("write the config");
                d.serve.signal("-HUP");
            }
        }
        Kind::IdleConnections => {
            if let Some(t) = act.idle_connected.take() {
                std::thread::sleep((t + IDLE_LEAST_HOLD).saturating_duration_since(Instant::now()));
            }
            for (name, conns) in act.idle.drain(..) {
                rec.notes.push(format!("{name}: {}", close_idle(conns)));
            }
        }
        Kind::KillGuest | Kind::ScrapeBurst => {}
    }
}

// ---------------------------------------------------------------------------------------------
// Reading the daemons back.

/// A daemon's resident memory and open fds, from /proc.
#[derive(Debug, Clone, Default)]
struct Footprint {
    rss_kib: u64,
    /// RSS split as the kernel counts it: anonymous memory (the heap: what a leak grows) and
    /// file pages (the binary's code and data, faulted in the first time a path runs, e.g. the
    /// first SIGHUP or TLS handshake: shared and reclaimable, not held by the daemon).
    anon_kib: u64,
    file_kib: u64,
    hwm_kib: u64,
    fds: u64,
    /// What the fds point at, counted by kind (`socket`, `pipe`, a file's path), so that the
    /// end can say which fds are new rather than only how many.
    fd_kinds: BTreeMap<String, u64>,
}

/// How many times, how far apart, the fds are counted: the fewest is kept. A daemon opens the
/// history for a moment (a query, the hourly maintenance) and a scrape holds a socket while it
/// is answered; one reading that lands on either is not an fd kept.
const FD_READINGS: u32 = 5;
const FD_READING_GAP: Duration = Duration::from_millis(300);

fn footprint(pid: u32) -> Footprint {
    let mut best = footprint_once(pid);
    for _ in 1..FD_READINGS {
        std::thread::sleep(FD_READING_GAP);
        let f = footprint_once(pid);
        // Memory from the first reading; the fds (and their kinds) from the fewest.
        if f.fds < best.fds {
            best.fds = f.fds;
            best.fd_kinds = f.fd_kinds;
        }
    }
    best
}

fn footprint_once(pid: u32) -> Footprint {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kib = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    let sockets = socket_names(pid);
    let mut fd_kinds = BTreeMap::new();
    let mut fds = 0;
    for fd in std::fs::read_dir(format!("/proc/{pid}/fd"))
        .into_iter()
        .flatten()
        .flatten()
    {
        fds += 1;
        let target = std::fs::read_link(fd.path()).map_or_else(
            |_| "(gone)".to_string(),
            |t| t.to_string_lossy().into_owned(),
        );
        // `socket:[1383829]` and `pipe:[…]`: the inode tells nothing across readings, what the
        // socket is connected to does.
        let kind = match target.split_once(":[") {
            Some(("socket", inode)) => {
                let inode = inode.trim_end_matches(']');
                match sockets.get(inode) {
                    Some(name) => format!("socket ({name})"),
                    None => "socket (not in ss or /proc/net)".to_string(),
                }
            }
            Some(("pipe", _)) => "pipe".to_string(),
            _ => target,
        };
        *fd_kinds.entry(kind).or_insert(0) += 1;
    }
    Footprint {
        rss_kib: kib("VmRSS:"),
        anon_kib: kib("RssAnon:"),
        file_kib: kib("RssFile:"),
        hwm_kib: kib("VmHWM:"),
        fds,
        fd_kinds,
    }
}

/// What each socket inode of the daemon is, by a name that stays the same across readings:
/// TCP by state and local port (a client's port would differ each time), unix by its path or
/// its peer's (a libvirt client socket is unnamed; the server's end is named
/// /run/libvirt/libvirt-sock), netlink as such. From `ss -xan` (peers come from sock_diag) and
/// the daemon's own /proc/PID/net/tcp{,6} and netlink.
fn socket_names(pid: u32) -> BTreeMap<String, String> {
    let mut names = BTreeMap::new();
    for (file, v6) in [("tcp", false), ("tcp6", true)] {
        let text = std::fs::read_to_string(format!("/proc/{pid}/net/{file}")).unwrap_or_default();
        for l in text.lines().skip(1) {
            let f: Vec<&str> = l.split_whitespace().collect();
            let (Some(local), Some(st), Some(inode)) = (f.get(1), f.get(3), f.get(9)) else {
                continue;
            };
            let port = local
                .rsplit_once(':')
                .and_then(|(_, p)| u16::from_str_radix(p, 16).ok())
                .unwrap_or(0);
            let state = match *st {
                "0A" => "listening",
                "01" => "established",
                "08" => "close-wait",
                other => other,
            };
            let ip = if v6 { "tcp6" } else { "tcp" };
            names.insert(inode.to_string(), format!("{ip} {state} on port {port}"));
        }
    }
    let netlink = std::fs::read_to_string(format!("/proc/{pid}/net/netlink")).unwrap_or_default();
    for l in netlink.lines().skip(1) {
        if let Some(inode) = l.split_whitespace().nth(9) {
            names.insert(inode.to_string(), "netlink".into());
        }
    }
    // Unix sockets: `u_str ESTAB 0 0 PATH|* INODE PEERPATH|* PEERINODE`.
    let ss = Command::new("ss").arg("-xan").output();
    let ss = ss
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let rows: Vec<Vec<&str>> = ss
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect())
        .collect();
    let path_of: BTreeMap<&str, &str> = rows
        .iter()
        .filter(|f| f.len() >= 8 && f[4] != "*")
        .map(|f| (f[5], f[4]))
        .collect();
    for f in rows.iter().filter(|f| f.len() >= 8) {
        let (kind, path, inode, peer) = (f[0], f[4], f[5], f[7]);
        let name = if path != "*" {
            format!("unix {kind} {path}")
        } else if let Some(p) = path_of.get(peer) {
            format!("unix {kind} to {p}")
        } else {
            format!("unix {kind} unnamed")
        };
        names.entry(inode.to_string()).or_insert(name);
    }
    names
}

/// The fds at `end` that were not open at `start`, and the other way round, by kind.
fn fd_change(start: &Footprint, end: &Footprint) -> String {
    let kinds: std::collections::BTreeSet<&String> =
        start.fd_kinds.keys().chain(end.fd_kinds.keys()).collect();
    let moved: Vec<String> = kinds
        .into_iter()
        .filter_map(|k| {
            let (a, b) = (
                start.fd_kinds.get(k).copied().unwrap_or(0),
                end.fd_kinds.get(k).copied().unwrap_or(0),
            );
            (a != b).then(|| format!("{k} {a} -> {b}"))
        })
        .collect();
    if moved.is_empty() {
        "the same kinds and counts".into()
    } else {
        moved.join(", ")
    }
}

/// The counters at one moment, from /api/v1/health.
#[derive(Debug, Clone, Copy, Default)]
struct Counters {
    samples: u64,
    sample_errors: u64,
    store_errors: u64,
    last_sample_unix_ms: u64,
}

fn counters(h: &serde_json::Value) -> Counters {
    let n = |k: &str| h[k].as_u64().unwrap_or(0);
    Counters {
        samples: n("samples_total"),
        sample_errors: n("sample_errors_total"),
        store_errors: n("store_errors_total"),
        last_sample_unix_ms: n("last_sample_unix_ms"),
    }
}

/// A stored sample, only the parts the report reads (the process table is skipped).
#[derive(Debug, Deserialize)]
struct StoredSample {
    taken_at_unix_ms: u64,
    #[serde(default)]
    vms: Vec<StoredVm>,
    #[serde(default)]
    sources: Vec<SourceHealth>,
}

#[derive(Debug, Deserialize)]
struct StoredVm {
    name: String,
    #[serde(default)]
    read: VmRead,
}

fn stored(db: &Path, from_ms: u64, to_ms: u64) -> Result<Vec<StoredSample>, String> {
    Store::open_read_only(db)
        .and_then(|s| s.range_as(from_ms, to_ms, |s: &StoredSample| s.taken_at_unix_ms))
        .map_err(|e| format!("{e:#}"))
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Everything known about one daemon at the end.
#[derive(Debug, Default)]
struct Outcome {
    at_launch: Footprint,
    at_start: Footprint,
    at_end: Footprint,
    c0: Counters,
    c1: Counters,
    samples: Vec<StoredSample>,
    store_read_error: Option<String>,
    log: String,
    end_health: serde_json::Value,
    /// The last successful scrape of its /metrics.
    last_seen: Option<Seen>,
    exit: String,
    store_bytes: u64,
}

impl Outcome {
    /// Samples taken in the window (health can be missing at the end: saturating).
    fn taken(&self) -> u64 {
        self.c1.samples.saturating_sub(self.c0.samples)
    }
    fn failed(&self) -> u64 {
        self.c1.sample_errors.saturating_sub(self.c0.sample_errors)
    }
    fn store_errors(&self) -> u64 {
        self.c1.store_errors.saturating_sub(self.c0.store_errors)
    }
    /// Taken but not found in the store.
    fn lost(&self) -> u64 {
        self.taken().saturating_sub(self.samples.len() as u64)
    }
}

fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir).map_or(0, |d| {
        d.filter_map(Result::ok)
            .filter_map(|e| e.metadata().ok())
            .map(|m| m.len())
            .sum()
    })
}

/// Stops a daemon with SIGTERM (it finishes and commits its sample) and reads back its store.
fn finish(d: &mut Daemon, o: &mut Outcome) {
    o.end_health = d.health().unwrap_or_default();
    o.c1 = counters(&o.end_health);
    d.serve.signal("-TERM");
    let st = {
        let child = &mut d.serve.proc.child;
        let t = Instant::now();
        loop {
            match child.try_wait() {
                Ok(Some(st)) => break Some(st),
                _ if t.elapsed() > Duration::from_secs(15) => break None,
                _ => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    };
    o.exit = st.map_or("did not exit within 15 s of SIGTERM".into(), |s| {
        s.to_string()
    });
    o.log = d.serve.log_text();
    match stored(
        &d.serve.db,
        o.c0.last_sample_unix_ms + 1,
        o.c1.last_sample_unix_ms,
    ) {
        Ok(s) => o.samples = s,
        Err(e) => o.store_read_error = Some(e),
    }
}

// ---------------------------------------------------------------------------------------------
// Judging.

/// Whether the log between two offsets names the fault, and the line that does.
fn log_names(kind: Kind, text: &str, w: &World) -> Option<String> {
    let (frozen, killed) = (w.frozen_name().to_string(), w.killed_name().to_string());
    let hit = |l: &str| {
        let l = l.to_lowercase();
        let any = |words: &[&str]| words.iter().any(|x| l.contains(x));
        match kind {
            Kind::LibvirtdRestart => l.contains("libvirt"),
            Kind::FreezeGuest => {
                l.contains(&frozen) && any(&["timed out", "busy", "not read", "frozen"])
            }
            Kind::KillGuest => {
                l.contains(&killed)
                    && any(&["gone", "unreachable", "not read", "vanished", "disappeared"])
            }
            Kind::DiskFull => any(&["disk full", "disk is full", "no space left"]),
            Kind::BadConfig => l.contains("configuration not reloaded"),
            Kind::ScrapeBurst | Kind::IdleConnections => {
                any(&["connection", "accept", "evict", "too many"])
            }
        }
    };
    text.lines()
        .find(|l| hit(l))
        .map(|l| l.chars().take(220).collect())
}

/// Whether a scrape in the fault's window named it on /metrics, and how.
fn metrics_name(
    kind: Kind,
    daemon: usize,
    rec: &Injected,
    scrapes: &[Scrape],
    w: &World,
) -> Option<String> {
    let window = scrapes
        .iter()
        .filter(|s| s.daemon == daemon && s.t >= rec.started && s.t <= rec.closed)
        .filter_map(|s| s.seen.as_ref().ok().map(|x| (s.t, x)));
    let at = |t: Duration| format!("t+{:.0}s", t.as_secs_f64());
    // A killed QEMU's transient domain may be gone from libvirt's list before the next sample
    // reads it: then the counter of gone VMs is what names it.
    let gone_before = scrapes
        .iter()
        .filter(|s| s.daemon == daemon && s.t < rec.started)
        .rev()
        .find_map(|s| s.seen.as_ref().ok().map(|x| x.vms_gone))
        .unwrap_or(0);
    for (t, s) in window {
        let found = match kind {
            Kind::LibvirtdRestart => s
                .sources_down
                .iter()
                .find(|x| x.contains("libvirt"))
                .map(|x| format!("memwarden_source_success{{source=\"{x}\"}} 0")),
            Kind::FreezeGuest | Kind::KillGuest => {
                let name = if kind == Kind::FreezeGuest {
                    w.frozen_name()
                } else {
                    w.killed_name()
                };
                s.vms_not_ok
                    .iter()
                    .find(|(d, _)| d == name)
                    .map(|(_, st)| format!("memwarden_vm_read_status{{status=\"{st}\"}} 1"))
                    .or_else(|| {
                        s.vm_states
                            .iter()
                            .find(|(d, _)| d == name)
                            .map(|(_, st)| format!("memwarden_vm_state{{state=\"{st}\"}} 1"))
                    })
                    .or_else(|| {
                        (kind == Kind::KillGuest && s.vms_gone > gone_before).then(|| {
                            format!("memwarden_vms_gone_total {gone_before} -> {}", s.vms_gone)
                        })
                    })
            }
            Kind::DiskFull => (s.store_errors > rec.store_errors_before[daemon]).then(|| {
                format!(
                    "memwarden_store_errors_total {} -> {}",
                    rec.store_errors_before[daemon], s.store_errors
                )
            }),
            Kind::BadConfig => s.reload_series.first().cloned(),
            Kind::ScrapeBurst | Kind::IdleConnections => None,
        };
        if let Some(f) = found {
            return Some(format!("{f} at {}", at(t)));
        }
    }
    None
}

fn log_slice(log: &str, from: usize, to: usize) -> &str {
    let to = to.min(log.len());
    let from = from.min(to);
    // Offsets are byte lengths of the file; step to char boundaries.
    let from = (from..=to).find(|&i| log.is_char_boundary(i)).unwrap_or(to);
    let to = (from..=to)
        .rev()
        .find(|&i| log.is_char_boundary(i))
        .unwrap_or(from);
    &log[from..to]
}

/// WARN and ERROR lines grouped by message (timestamps and figures left out), with counts.
fn log_problems(log: &str) -> Vec<(String, usize)> {
    let mut m: BTreeMap<String, usize> = BTreeMap::new();
    for l in log
        .lines()
        .filter(|l| l.contains(" WARN ") || l.contains(" ERROR "))
    {
        let body = l.split_once(' ').map_or(l, |(_, b)| b).trim();
        let key: String = body
            .chars()
            .map(|c| if c.is_ascii_digit() { '#' } else { c })
            .take(200)
            .collect();
        *m.entry(key).or_default() += 1;
    }
    let mut v: Vec<_> = m.into_iter().collect();
    v.sort_by_key(|b| std::cmp::Reverse(b.1));
    v
}

/// Audit lines whose plan acted on a VM the sample at that time did not read ok.
struct BalloonCheck {
    cycles: usize,
    actions: usize,
    on_unread: Vec<String>,
    unchecked: usize,
}

/// The audit lines of cycles within the daemon's window (its samples), checked against the
/// stored sample each cycle planned from.
fn balloon_check(audit: &Path, o: &Outcome, start_ms: u64) -> BalloonCheck {
    let by_time: BTreeMap<u64, &StoredSample> =
        o.samples.iter().map(|s| (s.taken_at_unix_ms, s)).collect();
    let window = o.c0.last_sample_unix_ms + 1..=o.c1.last_sample_unix_ms;
    let text = std::fs::read_to_string(audit).unwrap_or_default();
    let mut c = BalloonCheck {
        cycles: 0,
        actions: 0,
        on_unread: Vec::new(),
        unchecked: 0,
    };
    for line in text.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let at = v["plan"]["taken_at_unix_ms"].as_u64().unwrap_or(0);
        if !window.contains(&at) {
            continue;
        }
        c.cycles += 1;
        for a in v["plan"]["actions"].as_array().into_iter().flatten() {
            c.actions += 1;
            let name = a["name"].as_str().unwrap_or_default();
            let Some(sample) = by_time.get(&at) else {
                c.unchecked += 1; // its sample was not stored (disk full)
                continue;
            };
            let status = sample
                .vms
                .iter()
                .find(|v| v.name == name)
                .map(|v| v.read.status);
            if status != Some(ReadStatus::Ok) {
                c.on_unread.push(format!(
                    "t+{:.0}s {} {name} ({})",
                    at.saturating_sub(start_ms) as f64 / 1e3,
                    a["direction"].as_str().unwrap_or("?"),
                    status.map_or("no row", ReadStatus::as_str)
                ));
            }
        }
    }
    c
}

fn pct(a: u64, b: u64) -> f64 {
    if a == 0 {
        0.0
    } else {
        (b as f64 - a as f64) / a as f64 * 100.0
    }
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "PASS"
    } else {
        "MISS"
    }
}

// ---------------------------------------------------------------------------------------------
// The report.

fn print_schedule(run: Duration, w: &World) {
    println!(
        "\nFault schedule (t from start; run {:.0} s, sampling every {INTERVAL_S} s):",
        run.as_secs_f64()
    );
    let baseline = run.mul_f64(BASELINE_AT);
    println!(
        "  t+{:>5.0}s  RSS and fds read (\"at start\"){}",
        baseline.as_secs_f64(),
        if baseline < KEEP + GRACE {
            format!(
                "; before the controller's {} s history is full: RSS still grows after it",
                KEEP.as_secs()
            )
        } else {
            String::new()
        }
    );
    for f in &SCHEDULE {
        let (s, h, most) = (f.start(run), f.hold(run), f.max_hold(run));
        let at = |d: Duration| format!("t+{:.0}s", d.as_secs_f64());
        let undo = match f.hold {
            Hold::Instant => String::new(),
            Hold::UntilStoreErrors(_) => format!(
                "; {} once each daemon counted a store error, between {} and {}",
                f.kind.describe_undo(),
                at(s + h),
                at(s + most)
            ),
            _ if f.kind == Kind::IdleConnections => format!(
                "; {} at {}, or {} s after the last connected if that is later",
                f.kind.describe_undo(),
                at(s + h),
                IDLE_LEAST_HOLD.as_secs()
            ),
            _ => format!("; {} at {}", f.kind.describe_undo(), at(s + h)),
        };
        let target = match f.kind.target() {
            Target::Libvirt => "libvirt daemon",
            Target::Both => "both daemons",
        };
        println!(
            "  t+{:>5.0}s  {}{undo}  [{target}]",
            s.as_secs_f64(),
            f.kind.describe(w)
        );
    }
    println!("  throughout: GET /metrics of each daemon every second");
}

fn print_samples(names: [&str; 2], out: &[Outcome; 2]) {
    println!(
        "\nSamples (window from each daemon's sample at the start to its last before SIGTERM)"
    );
    println!("{:<44} {:>14} {:>14}", "", names[0], names[1]);
    let row = |label: &str, f: &dyn Fn(&Outcome) -> String| {
        println!("{label:<44} {:>14} {:>14}", f(&out[0]), f(&out[1]));
    };
    let window_ms = |o: &Outcome| {
        o.c1.last_sample_unix_ms
            .saturating_sub(o.c0.last_sample_unix_ms)
    };
    row("window", &|o| format!("{:.0} s", window_ms(o) as f64 / 1e3));
    row("samples expected (window / interval)", &|o| {
        (window_ms(o) / (INTERVAL_S * 1000)).to_string()
    });
    row("cycles run (taken + failed)", &|o| {
        (o.taken() + o.failed()).to_string()
    });
    row("samples taken (samples_total)", &|o| o.taken().to_string());
    row("samples failed (sample_errors_total)", &|o| {
        o.failed().to_string()
    });
    row("samples stored (read back from the store)", &|o| {
        o.store_read_error
            .as_ref()
            .map_or(o.samples.len().to_string(), |_| "unreadable".into())
    });
    row("lost: taken, not stored", &|o| o.lost().to_string());
    row("store errors (store_errors_total)", &|o| {
        o.store_errors().to_string()
    });
    row("store directory at the end (db, WAL, audit)", &|o| {
        format!("{:.1} MiB", o.store_bytes as f64 / 1048576.0)
    });
    row("memwarden_store_bytes, last scrape", &|o| {
        o.last_seen.as_ref().map_or("no scrape".into(), |s| {
            format!("{:.1} MiB", s.store_bytes as f64 / 1048576.0)
        })
    });
    for (o, n) in out.iter().zip(names) {
        if let Some(e) = &o.store_read_error {
            println!("  {n}: store not read: {e}");
        }
    }
}

/// Gaps in the stored history longer than 1.5 intervals, as (from, to) relative to `start_ms`.
fn gaps(samples: &[StoredSample], start_ms: u64) -> Vec<String> {
    samples
        .windows(2)
        .filter(|p| p[1].taken_at_unix_ms - p[0].taken_at_unix_ms > INTERVAL_S * 1500)
        .map(|p| {
            format!(
                "t+{:.0}s..t+{:.0}s",
                p[0].taken_at_unix_ms.saturating_sub(start_ms) as f64 / 1e3,
                p[1].taken_at_unix_ms.saturating_sub(start_ms) as f64 / 1e3
            )
        })
        .collect()
}

fn print_reads(name: &str, o: &Outcome, start_ms: u64) {
    println!("\n{name}: stored history");
    let g = gaps(&o.samples, start_ms);
    println!(
        "  gaps > 1.5 intervals: {}",
        if g.is_empty() {
            "none".into()
        } else {
            g.join(", ")
        }
    );
    // Sources that failed, and VM reads that were not ok, grouped by why.
    let mut why: BTreeMap<String, (usize, u64, u64)> = BTreeMap::new();
    let mut note = |key: String, at: u64| {
        let e = why.entry(key).or_insert((0, at, at));
        e.0 += 1;
        e.2 = at;
    };
    for s in &o.samples {
        let at = s.taken_at_unix_ms.saturating_sub(start_ms) / 1000;
        for src in s.sources.iter().filter(|x| !x.ok) {
            note(
                format!(
                    "source {}: {}",
                    src.name,
                    src.error.as_deref().unwrap_or("?")
                ),
                at,
            );
        }
        for v in s.vms.iter().filter(|v| v.read.status != ReadStatus::Ok) {
            let reason = v.read.reason.as_deref().unwrap_or("");
            let reason: String = reason.chars().take(120).collect();
            note(
                format!("VM {} {}: {reason}", v.name, v.read.status.as_str()),
                at,
            );
        }
    }
    if why.is_empty() {
        println!("  every source and every VM read ok in every stored sample");
    }
    for (k, (n, first, last)) in &why {
        println!("  {n:>4} samples, t+{first}s..t+{last}s: {k}");
    }
    let slowest = o.samples.iter().filter_map(|s| {
        s.sources
            .iter()
            .max_by_key(|x| x.duration_ms)
            .map(|x| (x.duration_ms, s.taken_at_unix_ms, x.name.clone()))
    });
    if let Some((ms, at, src)) = slowest.max() {
        println!(
            "  slowest stored sample: {ms} ms (its slowest source: {src}) at t+{:.0}s",
            at.saturating_sub(start_ms) as f64 / 1e3
        );
    }
}

fn print_footprint(names: [&str; 2], out: &[Outcome; 2], scrapes: &[Scrape]) {
    println!(
        "\nThe daemons' footprint (/proc/PID/status VmRSS, RssAnon, RssFile; /proc/PID/fd, the \
         fewest of {FD_READINGS} readings {} ms apart)",
        FD_READING_GAP.as_millis()
    );
    let mib = |kib: u64| kib as f64 / 1024.0;
    for (i, (o, n)) in out.iter().zip(names).enumerate() {
        println!(
            "  {n:<8} RSS {:.1} MiB at launch, {:.1} at start, {:.1} at end ({:+.1} %), peak {:.1}",
            mib(o.at_launch.rss_kib),
            mib(o.at_start.rss_kib),
            mib(o.at_end.rss_kib),
            pct(o.at_start.rss_kib, o.at_end.rss_kib),
            mib(o.at_end.hwm_kib.max(o.at_start.hwm_kib)),
        );
        println!(
            "  {:<8} of which anonymous (RssAnon) {:.1} MiB at start, {:.1} at end ({:+.1} %); \
             file pages (RssFile) {:.1} -> {:.1}",
            "",
            mib(o.at_start.anon_kib),
            mib(o.at_end.anon_kib),
            pct(o.at_start.anon_kib, o.at_end.anon_kib),
            mib(o.at_start.file_kib),
            mib(o.at_end.file_kib),
        );
        println!(
            "  {:<8} fds {} at launch, {} at start, {} at end ({:+.1} %)",
            "",
            o.at_launch.fds,
            o.at_start.fds,
            o.at_end.fds,
            pct(o.at_start.fds, o.at_end.fds),
        );
        println!(
            "  {:<8} fds changed between start and end: {}",
            "",
            fd_change(&o.at_start, &o.at_end)
        );
        println!(
            "  {:<8} RSS at each tenth of the run: {}",
            "",
            rss_curve(scrapes, i, |x| x.rss_bytes)
        );
        println!(
            "  {:<8} of which SQLite's (memwarden_sqlite_memory_bytes): {}",
            "",
            rss_curve(scrapes, i, |x| x.sqlite_bytes)
        );
    }
}

/// A figure the daemon reports (`bytes` of a scrape) at the first scrape of each tenth of the
/// run, MiB.
fn rss_curve(scrapes: &[Scrape], daemon: usize, bytes: impl Fn(&Seen) -> u64) -> String {
    let mine: Vec<(Duration, u64)> = scrapes
        .iter()
        .filter(|s| s.daemon == daemon)
        .filter_map(|s| s.seen.as_ref().ok().map(|x| (s.t, bytes(x))))
        .collect();
    let Some(end) = mine.last().map(|(t, _)| *t) else {
        return "no scrape".into();
    };
    (0..=10)
        .filter_map(|k| {
            let at = end.mul_f64(f64::from(k) / 10.0);
            mine.iter()
                .find(|(t, _)| *t >= at)
                .map(|(_, b)| format!("{:.1}", *b as f64 / 1048576.0))
        })
        .collect::<Vec<_>>()
        .join(" ")
        + " MiB"
}

fn print_scrapes(names: [&str; 2], scrapes: &[Scrape]) {
    println!("\nScrapes of /metrics every second");
    for (i, n) in names.iter().enumerate() {
        let mine: Vec<&Scrape> = scrapes.iter().filter(|s| s.daemon == i).collect();
        let mut lat: Vec<Duration> = mine.iter().map(|s| s.latency).collect();
        lat.sort();
        let failed: Vec<String> = mine
            .iter()
            .filter_map(|s| {
                s.seen
                    .as_ref()
                    .err()
                    .map(|e| format!("t+{:.0}s {e}", s.t.as_secs_f64()))
            })
            .collect();
        let slowest = mine
            .iter()
            .filter_map(|s| {
                s.seen
                    .as_ref()
                    .ok()
                    .map(|x| (x.last_sample_duration_s, s.t))
            })
            .max_by(|a, b| a.0.total_cmp(&b.0));
        println!(
            "  {n:<8} {} scrapes, {} failed, latency median {:.1} ms, max {:.1} ms",
            mine.len(),
            failed.len(),
            lat.get(lat.len() / 2)
                .map_or(0.0, |d| d.as_secs_f64() * 1e3),
            lat.last().map_or(0.0, |d| d.as_secs_f64() * 1e3),
        );
        for f in failed.iter().take(5) {
            println!("           failed: {f}");
        }
        if let Some((d, t)) = slowest {
            println!(
                "           slowest sample (memwarden_last_sample_duration_seconds): {:.0} ms, seen at t+{:.0}s",
                d * 1e3,
                t.as_secs_f64()
            );
        }
    }
}

fn print_http(names: [&str; 2], out: &[Outcome; 2]) {
    println!("\nHTTP side at the end (/api/v1/health \"http\")");
    for (o, n) in out.iter().zip(names) {
        println!("  {n:<8} {}", o.end_health["http"]);
    }
}

fn print_log(names: [&str; 2], out: &[Outcome; 2]) {
    println!("\nWARN and ERROR lines in each daemon's log (figures as #)");
    for (o, n) in out.iter().zip(names) {
        let p = log_problems(&o.log);
        println!(
            "  {n}: exit after SIGTERM: {}; \"stopped cleanly\": {}; {} kinds",
            o.exit,
            o.log.contains("stopped cleanly"),
            p.len()
        );
        for (line, count) in p.iter().take(12) {
            println!("    {count:>5} x {line}");
        }
        let failed = o
            .log
            .lines()
            .filter(|l| l.contains("sample failed"))
            .count();
        println!("    \"sample failed\" lines: {failed}");
    }
}

/// A daemon's RSS (as it reports it) at its last scrape before `from` and before `to`, MiB.
fn rss_around(scrapes: &[Scrape], daemon: usize, from: Duration, to: Duration) -> String {
    let at = |t: Duration| {
        scrapes
            .iter()
            .filter(|s| s.daemon == daemon && s.t <= t)
            .filter_map(|s| s.seen.as_ref().ok())
            .next_back()
            .map_or("?".to_string(), |x| {
                format!("{:.1}", x.rss_bytes as f64 / 1048576.0)
            })
    };
    format!("RSS {} -> {} MiB", at(from), at(to))
}

/// Whether the fault reached the daemon at all. A full disk may not: SQLite goes on writing
/// into WAL pages it already has.
fn bit(kind: Kind, daemon: usize, rec: &Injected, scrapes: &[Scrape]) -> bool {
    kind != Kind::DiskFull
        || scrapes
            .iter()
            .filter(|s| s.daemon == daemon && s.t >= rec.started && s.t <= rec.closed)
            .filter_map(|s| s.seen.as_ref().ok())
            .any(|x| x.store_errors > rec.store_errors_before[daemon])
}

struct Named {
    all_log: bool,
    all_metrics: bool,
    missing: Vec<String>,
}

fn print_faults(w: &World, recs: &[Injected], scrapes: &[Scrape], out: &[Outcome; 2]) -> Named {
    println!(
        "\nFaults: did the log and /metrics name them? (window: injection to undo + {} s)",
        GRACE.as_secs()
    );
    let mut named = Named {
        all_log: true,
        all_metrics: true,
        missing: Vec::new(),
    };
    for (f, rec) in SCHEDULE.iter().zip(recs) {
        let undone = rec.undone.map_or(String::new(), |u| {
            format!(", undone t+{:.0}s", u.as_secs_f64())
        });
        println!(
            "  t+{:.0}s{undone}: {}",
            rec.started.as_secs_f64(),
            f.kind.describe(w)
        );
        for n in &rec.notes {
            println!("      driver: {n}");
        }
        for (i, d) in w.targets(f.kind.target()) {
            let text = log_slice(&out[i].log, rec.log_from[i], rec.log_to[i]);
            let log = log_names(f.kind, text, w);
            let met = metrics_name(f.kind, i, rec, scrapes, w);
            let bit = bit(f.kind, i, rec, scrapes);
            let must = f.kind.must_be_named() && bit;
            println!(
                "      {:<8} {}{}",
                d.name,
                rss_around(scrapes, i, rec.started, rec.closed),
                if bit {
                    ""
                } else {
                    "; did not bite (no append failed): nothing to name"
                }
            );
            println!(
                "      {:<8} log: {:<4} {}",
                "",
                if log.is_some() { "yes" } else { "no" },
                log.as_deref().unwrap_or("")
            );
            println!(
                "      {:<8} /metrics: {:<4} {}{}",
                "",
                if met.is_some() { "yes" } else { "no" },
                met.as_deref().unwrap_or(""),
                if f.kind.must_be_named() {
                    ""
                } else {
                    "(load: not required)"
                }
            );
            if must {
                if log.is_none() {
                    named.all_log = false;
                    named
                        .missing
                        .push(format!("{:?} in {}'s log", f.kind, d.name));
                }
                if met.is_none() {
                    named.all_metrics = false;
                    named
                        .missing
                        .push(format!("{:?} on {}'s /metrics", f.kind, d.name));
                }
            }
        }
    }
    named
}

// ---------------------------------------------------------------------------------------------

fn run_minutes() -> f64 {
    std::env::var("SOAK_MINUTES")
        .ok()
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|m| *m > 0.0)
        .unwrap_or(30.0)
}

fn main() {
    // The daemons run as systemd runs them: without RUST_BACKTRACE (which a developer's shell
    // often sets), under which every error captures a backtrace. The unwinder then reads the
    // binary's unwind tables: +640 KiB of file pages in RSS after the first broken SIGHUP.
    std::env::remove_var("RUST_BACKTRACE");
    std::env::remove_var("RUST_LIB_BACKTRACE");
    let run = Duration::from_secs_f64(run_minutes() * 60.0);
    println!(
        "memwarden soak: {:.1} min, {GUESTS} libvirt guests and {QMP_VMS} simulated QMP VMs, two daemons",
        run.as_secs_f64() / 60.0
    );
    let mut w = bring_up();
    let mut out: [Outcome; 2] = Default::default();
    for (o, d) in out.iter_mut().zip(&w.daemons) {
        o.at_launch = footprint(d.pid());
        o.c0 = counters(&d.health().unwrap_or_default());
    }
    let start = Instant::now();
    let start_ms = unix_ms();
    print_schedule(run, &w);
    println!();

    let scrapes = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let scraping: Vec<_> = w
        .daemons
        .iter()
        .enumerate()
        .map(|(i, d)| scraper(i, d.serve.port, start, stop.clone(), scrapes.clone()))
        .collect();
    let recs = drive(&w, run, start, &scrapes, &mut out);
    std::thread::sleep(run.saturating_sub(start.elapsed()));
    for (o, d) in out.iter_mut().zip(&w.daemons) {
        o.at_end = footprint(d.pid());
        // The history, its WAL and the audit file, while the daemon runs.
        o.store_bytes = d.serve.db.parent().map_or(0, dir_bytes);
    }
    stop.store(true, Ordering::Relaxed);
    for s in scraping {
        let _ = s.join();
    }
    println!(
        "t+{:>5.1}s  end: RSS and fds read, daemons stopped (SIGTERM)",
        start.elapsed().as_secs_f64()
    );
    for (o, d) in out.iter_mut().zip(w.daemons.iter_mut()) {
        finish(d, o);
    }
    let scrapes = scrapes.lock().unwrap_or_else(|p| p.into_inner()).clone();
    for (i, o) in out.iter_mut().enumerate() {
        o.last_seen = scrapes
            .iter()
            .rev()
            .filter(|s| s.daemon == i)
            .find_map(|s| s.seen.as_ref().ok().cloned());
    }
    report(&w, &out, &recs, &scrapes, start_ms);
}

/// Runs the timeline: each step at its time; returns what each fault did.
fn drive(
    w: &World,
    run: Duration,
    start: Instant,
    scrapes: &Mutex<Vec<Scrape>>,
    out: &mut [Outcome; 2],
) -> Vec<Injected> {
    let mut act = Active::default();
    let mut recs: Vec<Injected> = vec![Injected::default(); SCHEDULE.len()];
    for (at, step) in timeline(run) {
        std::thread::sleep(at.saturating_sub(start.elapsed()));
        let now = start.elapsed();
        let logs = [w.daemons[0].log_len(), w.daemons[1].log_len()];
        match step {
            Step::Baseline => {
                for (o, d) in out.iter_mut().zip(&w.daemons) {
                    o.at_start = footprint(d.pid());
                }
                println!("t+{:>5.1}s  RSS and fds read", now.as_secs_f64());
            }
            Step::Inject(i) => {
                recs[i].started = now;
                recs[i].log_from = logs;
                println!(
                    "t+{:>5.1}s  {}",
                    now.as_secs_f64(),
                    SCHEDULE[i].kind.describe(w)
                );
                inject(w, SCHEDULE[i], &mut act, &mut recs[i], scrapes);
            }
            Step::Undo(i) => {
                let f = SCHEDULE[i];
                let latest = start + f.start(run) + f.max_hold(run);
                undo(w, f, &mut act, &mut recs[i], scrapes, latest);
                let now = start.elapsed();
                recs[i].undone = Some(now);
                let what = f.kind.describe_undo();
                println!("t+{:>5.1}s  {what}", now.as_secs_f64());
            }
            Step::Close(i) => {
                // GRACE after the real undo (which may have come later than planned).
                let due = recs[i].undone.unwrap_or(recs[i].started) + GRACE;
                std::thread::sleep(due.saturating_sub(start.elapsed()));
                recs[i].closed = start.elapsed();
                recs[i].log_to = [w.daemons[0].log_len(), w.daemons[1].log_len()];
            }
        }
    }
    recs
}

fn report(w: &World, out: &[Outcome; 2], recs: &[Injected], scrapes: &[Scrape], start_ms: u64) {
    let names = [w.daemons[0].name, w.daemons[1].name];
    print_samples(names, out);
    for (o, n) in out.iter().zip(names) {
        print_reads(n, o, start_ms);
    }
    print_footprint(names, out, scrapes);
    print_scrapes(names, scrapes);
    print_http(names, out);
    print_log(names, out);
    let named = print_faults(w, recs, scrapes, out);
    let unread = print_balloon(w, out, start_ms);
    print_goals(names, out, &named, unread);
}

/// Balloon actions planned on VMs that were not read; how many.
fn print_balloon(w: &World, out: &[Outcome; 2], start_ms: u64) -> usize {
    println!(
        "\nBalloon controller (dry run; every cycle plans): actions on VMs that were not read"
    );
    let mut unread = 0;
    for (o, d) in out.iter().zip(&w.daemons) {
        let c = balloon_check(&audit_path(&d.serve.db), o, start_ms);
        unread += c.on_unread.len();
        println!(
            "  {:<8} {} audited cycles, {} actions planned, {} on a VM not read, {} not checkable (sample not stored)",
            d.name,
            c.cycles,
            c.actions,
            c.on_unread.len(),
            c.unchecked
        );
        for a in c.on_unread.iter().take(10) {
            println!("           {a}");
        }
    }
    unread
}

fn print_goals(names: [&str; 2], out: &[Outcome; 2], named: &Named, unread: usize) {
    println!("\nGoals");
    let lost: Vec<u64> = out.iter().map(Outcome::lost).collect();
    println!(
        "  {}  0 samples lost that the host side could read ({}: {}, {}: {}; taken but not stored)",
        verdict(lost.iter().all(|&l| l == 0)),
        names[0],
        lost[0],
        names[1],
        lost[1]
    );
    let within = |a: u64, b: u64| pct(a, b).abs() <= 10.0;
    let each = |f: &dyn Fn(&Outcome) -> String| {
        out.iter()
            .zip(names)
            .map(|(o, n)| format!("{n} {}", f(o)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    // "Start" is before the first fault, not after warm-up: without faults the qmp daemon's
    // RSS still grew 12.8 -> 21.7 MiB over its first 250 s (page caches, the controller's
    // history); the RSS around each fault above tells warm-up from what a fault left behind.
    let back_within = |what: &str, kib: fn(&Footprint) -> u64| {
        println!(
            "  {}  {what} back within 10 % of the start ({})",
            verdict(out.iter().all(|o| within(kib(&o.at_start), kib(&o.at_end)))),
            each(&|o| format!("{:+.1} %", pct(kib(&o.at_start), kib(&o.at_end))))
        );
    };
    back_within("RSS", |f| f.rss_kib);
    back_within("anonymous memory (the heap, what a leak grows)", |f| {
        f.anon_kib
    });
    println!(
        "  {}  fds back within 10 % of the start ({})",
        verdict(out.iter().all(|o| within(o.at_start.fds, o.at_end.fds))),
        each(&|o| format!("{} -> {}", o.at_start.fds, o.at_end.fds))
    );
    println!("  {}  every fault named in the log", verdict(named.all_log));
    println!(
        "  {}  every fault named on /metrics",
        verdict(named.all_metrics)
    );
    for m in &named.missing {
        println!("          not named: {m}");
    }
    println!(
        "  {}  no balloon action planned on a VM that was not read ({unread})",
        verdict(unread == 0)
    );
}

/// `balloon-audit.jsonl` next to the history (the daemon's private `balloon::audit_path`).
fn audit_path(db: &Path) -> PathBuf {
    db.with_file_name("balloon-audit.jsonl")
}
