//! `memwarden serve`: samples the host and its VMs every interval through the shared
//! collector, records each sample in the history store, and serves `/metrics`, a read-only
//! JSON API and a web page.
//!
//! Threads: the recorder (sampling + appends), the maintainer (retention, downsampling) and a
//! single-threaded tokio runtime for HTTP (with at most [`BLOCKING_THREADS`] for store reads),
//! which clients cannot use to starve sampling: connections are capped within the open-file
//! limit, less what sampling keeps (see [`process`] and [`server`]).
//!
//! SIGTERM/SIGINT: the sample in progress is finished and committed, then the process exits 0. SIGHUP: the configuration file is read again.

mod auth;
mod backlog;
mod balloon;
pub mod changes;
pub mod config;
mod health;
pub mod http;
pub mod ksm_tuning;
mod markers;
pub mod process;
pub mod query;
pub mod recorder;
mod report;
pub mod server;
mod tls;
mod watchdog;
pub mod web;
pub mod webconfig;

use std::path::PathBuf;
use std::sync::{mpsc, Arc, RwLock};

use anyhow::Context;
use memwarden_collector::Collector;
use memwarden_procfs::HostReader;
use tokio::signal::unix::{signal, SignalKind};
use tracing::{error, info, warn};

pub use balloon::restore as restore_balloon_state;
pub use config::Config;

/// Threads of the HTTP runtime that read the history (each holds a store handle: 3 fds).
pub const BLOCKING_THREADS: usize = 2;

fn collector_config(cfg: &Config) -> memwarden_collector::Config {
    memwarden_collector::Config {
        host: true,
        full: true,
        require_meminfo: true,
        vms: cfg.vms.vm_source(),
        deadline: cfg.deadline,
        parallelism: cfg.vms.parallelism(),
    }
}

/// Runs the daemon until SIGTERM or SIGINT. `config_path` is re-read on SIGHUP.
pub fn serve(cfg: Config, config_path: Option<PathBuf>) -> anyhow::Result<()> {
    cfg.validate().context("configuration")?;
    process::tune_allocator();
    process::private_umask();
    process::tighten_existing(&cfg.db);
    let nofile = process::raise_nofile();
    let collector = Collector::new(collector_config(&cfg), HostReader::live())
        .context("setting up the collector")?;
    if let Err(e) = memwarden_store::Store::open(&cfg.db) {
        warn!(error = %report::chain(&e), "history store not usable now; sampling and serving go on, recording is retried every sample");
    }
    let shared = Arc::new(RwLock::new(recorder::Shared::default()));
    // The configuration in force was loaded now (memwarden_config_last_reload_*).
    reloaded(&shared, true);
    let heartbeat = Arc::new(watchdog::Heartbeat::default());
    let (rec_tx, rec_rx) = mpsc::channel();
    let recorder = {
        let (cfg, shared, beat) = (cfg.clone(), shared.clone(), heartbeat.clone());
        std::thread::Builder::new()
            .name("recorder".into())
            .spawn(move || recorder::run(cfg, collector, shared, &beat, rec_rx))
            .context("starting the recorder thread")?
    };
    let maint_cfg = Arc::new(RwLock::new(cfg.clone()));
    let (maint_tx, maint_rx) = mpsc::channel::<()>();
    let maintainer = {
        let c = maint_cfg.clone();
        std::thread::Builder::new()
            .name("maintainer".into())
            .spawn(move || recorder::maintain_loop(c, maint_rx))
            .context("starting the maintenance thread")?
    };

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .max_blocking_threads(BLOCKING_THREADS)
        .build()
        .context("starting the HTTP runtime")?;
    let http_stats = Arc::new(server::Stats::default());
    // Before anything listens: a bad web configuration stops the daemon, never serves in clear.
    let web = Arc::new(
        web::Active::start(cfg.http.web_config_file.as_deref(), http_stats.clone())
            .context("[http] web_config_file")?,
    );
    let reload_shared = shared.clone();
    let state = http::AppState {
        shared,
        db: cfg.db.clone(),
        max_range: cfg.http.max_range,
        server: http_stats.clone(),
        history_reads: Arc::new(tokio::sync::Semaphore::new(http::HISTORY_READS)),
        history_wait: cfg.http.idle_timeout / 2,
    };
    let served = rt.block_on(async {
        let (listener, backlog) =
            server::listen(cfg.listen).with_context(|| format!("listening on {}", cfg.listen))?;
        let max_connections = connection_cap(&cfg, nofile)?;
        info!(listen = %cfg.listen, backlog, db = %cfg.db.display(), interval = ?cfg.interval, "memwarden serving");
        let mut term = signal(SignalKind::terminate()).context("SIGTERM handler")?;
        let mut int = signal(SignalKind::interrupt()).context("SIGINT handler")?;
        let mut hup = signal(SignalKind::hangup()).context("SIGHUP handler")?;
        let running = Arc::new(RwLock::new(cfg.clone()));
        {
            let running = running.clone();
            tokio::spawn(watchdog::run(heartbeat, move || {
                running.read().unwrap_or_else(|p| p.into_inner()).interval
            }));
        }
        watchdog::ready(&format!("serving on {}", cfg.listen));
        let reload_web = web.clone();
        let shutdown = async move {
            loop {
                tokio::select! {
                    _ = term.recv() => { info!("SIGTERM: finishing the current sample"); break; }
                    _ = int.recv() => { info!("SIGINT: finishing the current sample"); break; }
                    _ = hup.recv() => {
                        watchdog::reloading();
                        let toml = reload(&config_path, &running, &rec_tx, &maint_cfg);
                        let web = reload_web.reload();
                        reloaded(&reload_shared, toml && web);
                        watchdog::ready("configuration read again");
                    }
                }
            }
            watchdog::stopping();
            let _ = rec_tx.send(recorder::Control::Stop);
        };
        let limits = server::Limits::new(&cfg.http, max_connections);
        let router = http::router(state).layer(axum::middleware::from_fn_with_state(
            web.clone(),
            auth::require,
        ));
        server::serve(listener, router, limits, http_stats, web, shutdown).await;
        anyhow::Ok(())
    });
    let _ = maint_tx.send(());
    if recorder.join().is_err() {
        error!("the recorder thread panicked");
    }
    let _ = maintainer.join();
    served?;
    info!("stopped cleanly");
    Ok(())
}

/// `[http] max_connections`, lowered (and logged) so that the fds open now and those sampling
/// needs stay free under the open-file limit.
fn connection_cap(cfg: &Config, nofile: process::NofileLimit) -> anyhow::Result<usize> {
    let open = process::open_fds();
    let vm_sockets = cfg.vms.vm_source().sockets(cfg.vms.parallelism());
    let wanted = cfg.http.max_connections;
    let Some(cap) = process::connection_cap(wanted, nofile.soft, open, vm_sockets) else {
        anyhow::bail!(
            "the open-file limit {} leaves no fd for HTTP connections ({open} open, {} kept for \
             sampling): raise it (LimitNOFILE= in the unit, ulimit -n)",
            nofile.soft,
            process::SAMPLING_FDS + vm_sockets
        );
    };
    if cap < wanted {
        warn!(
            max_connections = cap,
            configured = wanted,
            nofile = nofile.soft,
            open,
            kept_for_sampling = process::SAMPLING_FDS + vm_sockets,
            "[http] max_connections lowered to fit the open-file limit"
        );
    } else {
        info!(max_connections = cap, "HTTP connection cap");
    }
    Ok(cap)
}

/// A configuration load's outcome on /metrics (`memwarden_config_last_reload_successful`, and
/// its time when it succeeded), as Prometheus exports its own.
fn reloaded(shared: &RwLock<recorder::Shared>, ok: bool) {
    let mut s = shared.write().unwrap_or_else(|p| p.into_inner());
    s.health.config_last_reload_successful = ok;
    if ok {
        s.health.config_last_reload_success_unix_ms = memwarden_model::clock::now_unix_ms();
    }
}

/// SIGHUP: read the file again; apply what can change while running, say what cannot. Whether
/// the file was accepted (true when there is none to read).
fn reload(
    path: &Option<PathBuf>,
    running: &Arc<RwLock<Config>>,
    rec_tx: &mpsc::Sender<recorder::Control>,
    maint_cfg: &Arc<RwLock<Config>>,
) -> bool {
    let Some(path) = path else {
        warn!("SIGHUP: no configuration file to read again (started without one)");
        return true;
    };
    let new = match Config::load(Some(path)) {
        Ok((c, _)) => c,
        Err(e) => {
            error!(error = %format!("{e:#}"), "SIGHUP: configuration not reloaded; the running one stays");
            return false;
        }
    };
    let mut cur = running.write().unwrap_or_else(|p| p.into_inner());
    let mut applied = new.clone();
    let keep = cur.restart_needed(&new);
    if !keep.is_empty() {
        warn!(keys = ?keep, "SIGHUP: these need a restart; their running values stay");
        applied.listen = cur.listen;
        applied.db = cur.db.clone();
        applied.vms = cur.vms.clone();
        applied.http = cur.http.clone();
    }
    *cur = applied.clone();
    *maint_cfg.write().unwrap_or_else(|p| p.into_inner()) = applied.clone();
    let _ = rec_tx.send(recorder::Control::Reload(Box::new(applied)));
    info!(file = %path.display(), "SIGHUP: configuration reloaded");
    true
}
