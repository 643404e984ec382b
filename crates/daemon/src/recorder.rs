//! The sampling loop: every interval, one sample through the shared collector, recorded in
//! the store and published for the HTTP side. A store that fails (full disk, read-only) is
//! logged and counted; sampling and serving go on. A VM source or a VM that stops being read,
//! or is read again, and a VM that is gone, are logged once per change (see [`changes`]).

use std::path::Path;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use memwarden_analysis::view::View;
use memwarden_collector::Collector;
use memwarden_metrics::DaemonHealth;
use memwarden_model::clock::now_unix_ms;
use memwarden_store::{Row, Store};
use tracing::{debug, error, info, warn};

use crate::backlog::{self, Backlog};
use crate::balloon::BalloonRunner;
use crate::changes::{self, Watch};
use crate::config::{Config, RetentionConfig};
use crate::health;
use crate::report::chain;
use crate::watchdog::Heartbeat;

/// How often the recorder hands freed heap memory back to the kernel.
const TRIM_EVERY: Duration = Duration::from_secs(60);

/// What the recorder publishes: the latest sample's view and the daemon's health.
#[derive(Debug, Default)]
pub struct Shared {
    pub latest: Option<Arc<View>>,
    pub health: DaemonHealth,
    /// The store's last error, in plain words (`None` while appends succeed).
    pub store_error: Option<String>,
    pub peak_resident_bytes: u64,
    /// The balloon controller's last cycle, as JSON (`None` while it is off).
    pub last_balloon_cycle: Option<serde_json::Value>,
}

/// Messages to the recorder.
#[derive(Debug)]
pub enum Control {
    /// Use this configuration from the next sample (SIGHUP).
    Reload(Box<Config>),
    /// Finish the sample in progress (its append commits) and return.
    Stop,
}

/// The recorder's loop; returns when told to stop.
pub fn run(
    mut cfg: Config,
    mut collector: Collector,
    shared: Arc<RwLock<Shared>>,
    heartbeat: &Heartbeat,
    control: Receiver<Control>,
) {
    let mut store: Option<Store> = None;
    let mut backlog = Backlog::new(backlog::DEFAULT_CAP_BYTES);
    // The last sample's failure, while samples fail: logged when it starts or changes.
    let mut failing: Option<String> = None;
    let mut balloon = BalloonRunner::new(&cfg);
    let mut last_pss: Option<Instant> = None;
    let mut next = Instant::now();
    let mut ksm = crate::ksm_tuning::KsmTuner::default();
    let mut watch = Watch::default();
    let mut last_trim = Instant::now();
    loop {
        let pss = last_pss.is_none_or(|t| t.elapsed() + cfg.interval / 2 >= cfg.record.pss_every);
        collector.set_full(pss);
        let started = Instant::now();
        let result = collector.collect();
        let took = started.elapsed();
        let mut store_error = None;
        let mut published = None;
        let mut last_cycle = None;
        match result {
            Ok(mut sample) => {
                if pss {
                    last_pss = Some(started);
                }
                ksm.step(&cfg.ksm, &sample);
                sample.redact(cfg.record.keep_cmdlines);
                for d in &sample.degraded {
                    debug!(what = %d, "sample degraded");
                }
                match Row::encode(&sample) {
                    Ok(row) => backlog.push(row),
                    Err(e) => store_error = Some(format!("encoding the sample: {e}")),
                }
                if let Err(e) = flush(&mut store, &cfg, &mut backlog) {
                    store_error = Some(e);
                }
                // A source or a VM that stops being read (or is read again), a VM gone: once.
                let changed = watch.observe(&sample);
                changes::log(&changed);
                changes::record(store.as_mut(), sample.taken_at_unix_ms, &changed);
                let gone = changes::gone(&changed);
                if gone > 0 {
                    let mut s = shared.write().unwrap_or_else(|p| p.into_inner());
                    s.health.vms_gone_total += gone;
                }
                // The view of the sample before carries the slow-cadence figures this one lacks.
                let previous = shared
                    .read()
                    .unwrap_or_else(|p| p.into_inner())
                    .latest
                    .clone();
                let view = Arc::new(View::new(Arc::new(sample), previous.as_deref()));
                last_cycle = balloon.run(&cfg, &view, &mut collector, store.as_mut());
                published = Some(view);
            }
            Err(e) => {
                // Once per different failure, not every sample (samples_total and
                // sample_errors_total on /metrics count each).
                let why = chain(&e);
                if failing.as_ref() != Some(&why) {
                    error!(error = %why, "sample failed; trying again every interval");
                }
                failing = Some(why);
            }
        }
        if published.is_some() {
            if let Some(was) = failing.take() {
                info!(was = %was, "sampling recovered");
            }
        }
        let stored = StoreHealth {
            error: store_error,
            bytes: store_bytes(&cfg.db),
            backlog: backlog.len() as u64,
            dropped_total: backlog.dropped_total,
        };
        publish(&shared, published, took, stored);
        publish_balloon(&shared, &cfg, &balloon, last_cycle);
        heartbeat.beat();
        if last_trim.elapsed() >= TRIM_EVERY {
            // Whatever freed memory since (a burst of clients, a drained backlog, a SIGHUP)
            // goes back to the kernel: glibc keeps free pages otherwise (the soak: +2 MiB
            // after 2,000 idle connections, gone after a trim).
            let t = Instant::now();
            crate::process::release_free_memory();
            debug!(us = t.elapsed().as_micros() as u64, "free memory returned");
            last_trim = Instant::now();
        }
        debug!(ms = took.as_millis() as u64, pss, "sampled");
        next += cfg.interval;
        // A ballooned guest near its floor: look again within its statistics period.
        if let Some(soon) = balloon.fast_poll.filter(|_| cfg.balloon.enabled) {
            next = next.min(Instant::now() + soon);
        }
        // A sample that overran the interval: start the next one now, not a burst of them.
        if next < Instant::now() {
            next = Instant::now();
        }
        match control.recv_timeout(next.saturating_duration_since(Instant::now())) {
            Ok(Control::Stop) | Err(RecvTimeoutError::Disconnected) => {
                info!("recorder stopped");
                return;
            }
            Ok(Control::Reload(new)) => {
                info!(interval = ?new.interval, "configuration reloaded");
                collector.set_deadline(new.deadline);
                balloon.reload(&new);
                cfg = *new;
            }
            Err(RecvTimeoutError::Timeout) => {}
        }
    }
}

/// The store's side of one cycle.
struct StoreHealth {
    error: Option<String>,
    bytes: u64,
    backlog: u64,
    dropped_total: u64,
}

/// Hands the sample and the daemon's health to the HTTP side; logs a store failure once, when it
/// begins, and again when recording resumes.
fn publish(shared: &RwLock<Shared>, view: Option<Arc<View>>, took: Duration, st: StoreHealth) {
    let store_error = st.error;
    let cpu = health::cpu_time().as_secs_f64();
    let (rss, peak) = health::resident_bytes();
    let mut s = shared.write().unwrap_or_else(|p| p.into_inner());
    match (&store_error, &s.store_error) {
        (Some(e), old) if old.as_ref() != Some(e) => {
            warn!(error = %e, "history not recorded; sampling goes on");
        }
        (None, Some(_)) => info!("history recorded again"),
        _ => {}
    }
    let h = &mut s.health;
    match &view {
        Some(view) => {
            h.samples_total += 1;
            h.last_sample_unix_ms = view.sample().taken_at_unix_ms;
        }
        None => h.sample_errors_total += 1,
    }
    h.store_errors_total += u64::from(store_error.is_some());
    h.store_bytes = st.bytes;
    h.store_backlog_samples = st.backlog;
    h.store_backlog_dropped_total = st.dropped_total;
    h.last_sample_duration_seconds = took.as_secs_f64();
    h.cpu_seconds_total = cpu;
    h.resident_bytes = rss;
    h.sqlite_memory_bytes = memwarden_store::sqlite_memory_bytes();
    s.peak_resident_bytes = peak;
    s.store_error = store_error;
    if view.is_some() {
        s.latest = view;
    }
}

/// The balloon controller's counters, for /metrics and /api/v1/health.
fn publish_balloon(
    shared: &RwLock<Shared>,
    cfg: &Config,
    b: &BalloonRunner,
    last_cycle: Option<serde_json::Value>,
) {
    let mut s = shared.write().unwrap_or_else(|p| p.into_inner());
    s.last_balloon_cycle = last_cycle;
    let h = &mut s.health;
    h.balloon_enabled = cfg.balloon.enabled;
    h.balloon_dry_run = cfg.balloon.dry_run;
    h.balloon_actions_total = b
        .actions_total
        .iter()
        .map(|((vm, dir), n)| (vm.clone(), (*dir).to_string(), *n))
        .collect();
    h.balloon_action_errors_total = b
        .errors_total
        .iter()
        .map(|(vm, n)| (vm.clone(), *n))
        .collect();
    h.balloon_guest_harm_total = b
        .harm_total
        .iter()
        .map(|((vm, kind), n)| (vm.clone(), (*kind).to_string(), *n))
        .collect();
}

/// What the history takes on disk: the SQLite file plus its WAL, their sizes as `stat` gives
/// them (the `-shm` index is a mapped scratch file SQLite rebuilds; it is not history). A file
/// that cannot be read counts 0.
pub fn store_bytes(db: &Path) -> u64 {
    let mut wal = db.as_os_str().to_owned();
    wal.push("-wal");
    let size = |p: &Path| std::fs::metadata(p).map_or(0, |m| m.len());
    size(db) + size(Path::new(&wal))
}

/// Appends what the backlog holds (this sample last), opening the store when it is not open.
fn flush(store: &mut Option<Store>, cfg: &Config, backlog: &mut Backlog) -> Result<(), String> {
    if store.is_none() {
        *store = Some(Store::open(&cfg.db).map_err(|e| chain(&e))?);
    }
    let Some(s) = store.as_mut() else {
        return Err("store not open".into());
    };
    let waited = backlog.len().saturating_sub(1);
    match backlog.flush(|row| s.append_row(row)) {
        Ok(_) => {
            if waited > 0 {
                info!(
                    samples = waited,
                    "history caught up: samples kept while the store refused them are recorded"
                );
            }
            Ok(())
        }
        Err(e) => {
            // Reopen next time: a file replaced or remounted read-write comes back on its own.
            let msg = chain(&e);
            *store = None;
            Err(msg)
        }
    }
}

/// `[retention]` as the store takes it.
fn retention(r: &RetentionConfig) -> memwarden_store::Retention {
    memwarden_store::Retention {
        full: r.full,
        minute: r.minute,
        hour: r.hour,
    }
}

/// Retention and downsampling on a handle of its own, so appends never wait for it long.
///
/// The handle stays open between rounds and is reopened only after a failure, as the
/// recorder's is: SQLite cannot close a file while another handle of the same process holds a
/// lock on it (closing would drop that handle's POSIX locks), so it parks the fd until the
/// next open. A handle opened and closed every round left the daemon with one fd more or less
/// depending on when the recorder was writing.
pub fn maintain_loop(shared_cfg: Arc<RwLock<Config>>, control: Receiver<()>) {
    let mut store: Option<Store> = None;
    loop {
        let cfg = shared_cfg.read().unwrap_or_else(|p| p.into_inner()).clone();
        let t = Instant::now();
        if store.is_none() {
            match Store::open(&cfg.db) {
                Ok(s) => store = Some(s),
                Err(e) => {
                    warn!(error = %chain(&e), "retention and downsampling failed; trying again later")
                }
            }
        }
        if let Some(s) = store.as_mut() {
            match s.maintain(now_unix_ms(), &retention(&cfg.retention)) {
                Ok(r) => {
                    debug!(report = ?r, ms = t.elapsed().as_millis() as u64, "maintained");
                    if let Err(e) = s.release_memory() {
                        debug!(error = %chain(&e), "page cache kept");
                    }
                }
                Err(e) => {
                    warn!(error = %chain(&e), "retention and downsampling failed; trying again later");
                    store = None;
                }
            }
        }
        // Compaction decoded and re-encoded blocks of samples: give what it freed back.
        crate::process::release_free_memory();
        match control.recv_timeout(cfg.record.maintain_every.max(Duration::from_secs(1))) {
            Err(RecvTimeoutError::Timeout) => {}
            _ => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_bytes_is_the_file_plus_its_wal() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("history.db");
        assert_eq!(store_bytes(&db), 0, "nothing yet");
        std::fs::write(&db, vec![0u8; 8192]).expect("db");
        assert_eq!(store_bytes(&db), 8192);
        std::fs::write(dir.path().join("history.db-wal"), vec![0u8; 1000]).expect("wal");
        std::fs::write(dir.path().join("history.db-shm"), vec![0u8; 32768]).expect("shm");
        assert_eq!(
            store_bytes(&db),
            9192,
            "the WAL counts, the -shm index does not"
        );
    }
}
