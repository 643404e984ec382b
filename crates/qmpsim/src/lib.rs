//! A QMP simulator: stands in for N QEMU monitors, healthy or broken, on Unix sockets
//! `DIR/NAME.qmp`, all served by one process, so that a collector can be tested at scale and
//! against the ways a real QEMU misbehaves (hangs, silence, garbage, a byte at a time,
//! endless or huge lines, lies).
//!
//! Healthy endpoints answer like QEMU 7.2 with a `virtio-balloon-pci` device: the greeting,
//! capabilities negotiation, `query-name`/`-uuid`/`-status`/`-memory-size-summary`/
//! `-balloon`, `qom-list`, `qom-get`/`qom-set` of the balloon's properties, `balloon`,
//! QEMU's error classes and texts, and `BALLOON_CHANGE` events now and then. Replies are
//! written as QEMU writes them (key order and spacing); `tests/shapes.rs` checks them
//! against replies captured from a real QEMU 7.2 (`tests/data/`).
//!
//! Why one tokio current-thread runtime: the work per message is a few microseconds of JSON,
//! so one thread with epoll serves 1,000 sockets answered at once in well under a second
//! (measured in `tests/scale.rs`), leaves the second core of a 2-core machine to the
//! collector under test, and makes timed misbehaviours (`drip`) cheap tasks instead of
//! threads. Each socket is one task that serves one client at a time, as QEMU does.
//!
//! In-process: [`Simulator::start`] (background thread, stopped and sockets removed on
//! drop). As a process: [`serve`], or the `qmp-sim` binary.

mod conn;
mod json;
mod monitor;
mod state;

use std::collections::HashSet;
use std::io;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;

pub use conn::{DRIP_INTERVAL, HUGE_REPLY_BYTES};
pub use state::{BalloonState, GuestState, GuestStats};

/// One simulated QEMU monitor: socket `DIR/NAME.qmp`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub name: String,
    pub behaviour: Behaviour,
}

/// How an endpoint behaves. Every misbehaviour but `NoGreeting` greets like QEMU first.
// Endpoints are built once per run; boxing the healthy state would only burden callers.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Behaviour {
    /// QEMU 7.2 with this guest.
    Healthy(GuestState),
    /// Greets, then reads and never answers.
    HangAfterGreeting,
    /// Accepts the connection and says nothing, ever.
    NoGreeting,
    /// Answers the first command (`qmp_capabilities`) with a line that is neither JSON nor
    /// UTF-8; answers later ones as a healthy QEMU.
    Garbage,
    /// Healthy replies, sent one byte every [`DRIP_INTERVAL`] (the greeting comes at once).
    Drip,
    /// Answers the first command with an endless line (`{"return": "xxx...`, no newline)
    /// as fast as the client reads it.
    Flood,
    /// Greets, then closes the connection.
    CloseAfterGreeting,
    /// Healthy protocol, impossible statistics: free > total, available (usable) > total,
    /// total > actual ([`GuestState::liar`]).
    Liar,
    /// Greets and negotiates normally, then every reply is the healthy one padded with
    /// blanks to [`HUGE_REPLY_BYTES`] on one line (valid JSON, same value).
    Huge,
}

/// The `--misbehave KIND` names, in the order of [`Behaviour`].
pub const KINDS: &[&str] = &[
    "hang-after-greeting",
    "no-greeting",
    "garbage",
    "drip",
    "flood",
    "close-after-greeting",
    "liar",
    "huge",
];

impl Behaviour {
    /// A misbehaviour by its `--misbehave` name (see [`KINDS`]).
    pub fn from_kind(kind: &str) -> Option<Behaviour> {
        Some(match kind {
            "hang-after-greeting" => Behaviour::HangAfterGreeting,
            "no-greeting" => Behaviour::NoGreeting,
            "garbage" => Behaviour::Garbage,
            "drip" => Behaviour::Drip,
            "flood" => Behaviour::Flood,
            "close-after-greeting" => Behaviour::CloseAfterGreeting,
            "liar" => Behaviour::Liar,
            "huge" => Behaviour::Huge,
            _ => return None,
        })
    }

    /// `healthy` or the misbehaviour's `--misbehave` name.
    pub fn kind(&self) -> &'static str {
        match self {
            Behaviour::Healthy(_) => "healthy",
            Behaviour::HangAfterGreeting => "hang-after-greeting",
            Behaviour::NoGreeting => "no-greeting",
            Behaviour::Garbage => "garbage",
            Behaviour::Drip => "drip",
            Behaviour::Flood => "flood",
            Behaviour::CloseAfterGreeting => "close-after-greeting",
            Behaviour::Liar => "liar",
            Behaviour::Huge => "huge",
        }
    }
}

impl Endpoint {
    /// A healthy endpoint with [`GuestState::new`]`(name)`.
    pub fn healthy(name: &str) -> Endpoint {
        Endpoint {
            name: name.to_string(),
            behaviour: Behaviour::Healthy(GuestState::new(name)),
        }
    }

    /// `N` healthy endpoints `vm0`..`vm{N-1}` ([`GuestState::fleet`]).
    pub fn fleet(n: usize) -> Vec<Endpoint> {
        (0..n)
            .map(|i| {
                let g = GuestState::fleet(i);
                Endpoint {
                    name: format!("vm{i}"),
                    behaviour: Behaviour::Healthy(g),
                }
            })
            .collect()
    }

    /// `KIND:NAME` as `--misbehave` takes it.
    pub fn parse_misbehave(spec: &str) -> Result<Endpoint, String> {
        let (kind, name) = spec
            .split_once(':')
            .ok_or_else(|| format!("{spec:?}: expected KIND:NAME"))?;
        let behaviour = Behaviour::from_kind(kind).ok_or_else(|| {
            format!(
                "{kind:?}: unknown misbehaviour (one of {})",
                KINDS.join(", ")
            )
        })?;
        Ok(Endpoint {
            name: name.to_string(),
            behaviour,
        })
    }
}

/// Simulated monitors served on a background thread; dropping it stops them and removes
/// their sockets.
#[derive(Debug)]
pub struct Simulator {
    paths: Vec<PathBuf>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Simulator {
    /// Binds every socket (`dir/NAME.qmp`; a stale socket there is replaced) and returns
    /// once all of them listen. Names must be unique, non-empty and free of `/`.
    pub fn start(dir: &Path, endpoints: &[Endpoint]) -> io::Result<Simulator> {
        let mut seen = HashSet::new();
        for e in endpoints {
            if e.name.is_empty() || e.name.contains('/') || !seen.insert(e.name.as_str()) {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("endpoint name {:?} is empty, has a '/' or repeats", e.name),
                ));
            }
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()?;
        let mut paths = Vec::with_capacity(endpoints.len());
        let mut listeners = Vec::with_capacity(endpoints.len());
        let bound = (|| {
            for e in endpoints {
                let path = dir.join(format!("{}.qmp", e.name));
                if std::fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_socket()) {
                    std::fs::remove_file(&path)?;
                }
                let l = std::os::unix::net::UnixListener::bind(&path).map_err(|err| {
                    io::Error::new(err.kind(), format!("bind {}: {err}", path.display()))
                })?;
                paths.push(path);
                l.set_nonblocking(true)?;
                listeners.push(l);
            }
            io::Result::Ok(())
        })();
        if let Err(e) = bound {
            remove_sockets(&paths);
            return Err(e);
        }
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        {
            let _guard = rt.enter();
            for (l, e) in listeners.into_iter().zip(endpoints) {
                let l = tokio::net::UnixListener::from_std(l)?;
                rt.spawn(conn::serve_socket(l, e.name.clone(), e.behaviour.clone()));
            }
        }
        let thread = std::thread::Builder::new()
            .name("qmp-sim".into())
            .spawn(move || {
                // Until stopped (or the handle dropped); then dropping the runtime closes
                // every listener and connection.
                let _ = rt.block_on(stopped);
            })?;
        Ok(Simulator {
            paths,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// The sockets, in the order of the endpoints given to [`Simulator::start`].
    pub fn socket_paths(&self) -> &[PathBuf] {
        &self.paths
    }

    /// Blocks for as long as the simulator runs (for ever: it stops only when dropped).
    pub fn wait(mut self) {
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        remove_sockets(&self.paths);
    }
}

fn remove_sockets(paths: &[PathBuf]) {
    for p in paths {
        let _ = std::fs::remove_file(p);
    }
}

/// Serves `endpoints` under `dir` until the process is killed.
pub fn serve(dir: &Path, endpoints: &[Endpoint]) -> io::Result<()> {
    Simulator::start(dir, endpoints)?.wait();
    Ok(())
}

/// Raises this process's open-file soft limit to its hard limit (each socket costs a
/// listening fd plus one per connected client); returns the limit now in force.
pub fn raise_fd_limit() -> io::Result<u64> {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut lim = getrlimit(Resource::Nofile);
    if lim.current != lim.maximum {
        lim.current = lim.maximum;
        setrlimit(Resource::Nofile, lim)?;
    }
    Ok(lim.current.unwrap_or(u64::MAX))
}
