//! The QMP backend: plain QEMU (run by hand, by Proxmox-like tools, or by our lab), no libvirt.
//!
//! Sockets come from paths or globs. The balloon device is found by type with `qom-list`
//! (under `/machine/peripheral` and `/machine/peripheral-anon`), never assumed to be
//! `balloon0`. Statistics: `query-balloon` (actual) + `qom-get guest-stats`, mapped to libvirt's
//! tag names and units ([`crate::tags::qmp_to_tags`]); `rss` is read from /proc like libvirt does.

mod client;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use memwarden_model::units::KIB;
use memwarden_model::vm::{
    BalloonDevice, BalloonStats, ReadStatus, VmBackend, VmRead, VmSample, VmState,
};

pub use client::{as_u64, clip, parse_guest_stats, quote, QmpClient, REPLY_CAP};

use memwarden_procfs::HostReader;

use crate::{host, now_unix_s, tags, Error, Hypervisor, Scope};

/// Default deadline for one VM's whole exchange (connect, greeting, every command).
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(2);

/// What does not change while one QEMU runs: read once per QEMU process, not every sample.
#[derive(Debug, Clone)]
struct Static {
    peer_pid: Option<u32>,
    name: String,
    uuid: Option<String>,
    max_memory_bytes: Option<u64>,
    device: BalloonDevice,
}

/// QEMU instances reached through their QMP sockets.
#[derive(Debug)]
pub struct QmpBackend {
    patterns: Vec<String>,
    /// Reads the QEMU process for `memory_stats` (tests may point it at a captured tree).
    pub reader: HostReader,
    /// One VM's whole exchange must finish within this.
    pub timeout: Duration,
    /// How many VMs are read at once.
    pub parallelism: usize,
    cache: Mutex<HashMap<PathBuf, Static>>,
}

/// Default parallelism: the number of cores × 4 (the work is waiting on sockets, not CPU).
pub fn default_parallelism() -> usize {
    std::thread::available_parallelism().map_or(4, |n| n.get() * 4)
}

fn has_glob(p: &str) -> bool {
    p.contains(['*', '?', '['])
}

impl QmpBackend {
    /// Sockets from paths or globs (`/run/qemu/*.qmp`). A plain path that does not exist is an
    /// error naming it (a typo is not "no VMs"); globs are expanded again at every `list`.
    pub fn new(patterns: &[String]) -> Result<Self, Error> {
        for p in patterns {
            if has_glob(p) {
                glob::Pattern::new(p).map_err(|e| {
                    Error::BadArgument(format!("bad socket glob {}: {e}", quote(p)))
                })?;
            } else if std::fs::symlink_metadata(p).is_err() {
                return Err(Error::Io {
                    path: PathBuf::from(p),
                    source: std::io::Error::new(
                        std::io::ErrorKind::NotFound,
                        "no QMP socket at this path",
                    ),
                });
            }
        }
        Ok(QmpBackend {
            patterns: patterns.to_vec(),
            reader: HostReader::live(),
            timeout: DEFAULT_DEADLINE,
            parallelism: default_parallelism(),
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// The sockets the patterns name now, sorted.
    pub fn sockets(&self) -> Vec<PathBuf> {
        let mut sockets = Vec::new();
        for p in &self.patterns {
            if has_glob(p) {
                if let Ok(paths) = glob::glob(p) {
                    sockets.extend(paths.filter_map(Result::ok));
                }
            } else {
                sockets.push(PathBuf::from(p));
            }
        }
        sockets.sort();
        sockets.dedup();
        sockets
    }

    /// The patterns that match no socket now (for "no socket matches ..." messages).
    pub fn empty_patterns(&self) -> Vec<String> {
        self.patterns
            .iter()
            .filter(|p| has_glob(p))
            .filter(|p| glob::glob(p).map_or(true, |mut g| g.next().is_none()))
            .cloned()
            .collect()
    }

    fn connect(&self, socket: &Path) -> Result<QmpClient, Error> {
        QmpClient::connect(socket, Instant::now() + self.timeout)
    }

    /// The socket serving VM `name`: its `-name`, its socket path, or its name from the path.
    fn find(&self, name: &str) -> Result<(PathBuf, QmpClient), Error> {
        let sockets = self.sockets();
        for s in &sockets {
            if s.as_os_str() == name {
                return Ok((s.clone(), self.connect(s)?));
            }
        }
        for s in &sockets {
            let Ok(mut c) = self.connect(s) else {
                continue;
            };
            if vm_name(&mut c, s) == name {
                return Ok((s.clone(), c));
            }
        }
        Err(Error::NoSuchVm {
            name: name.to_string(),
            where_: format!("{} QMP socket(s)", sockets.len()),
        })
    }

    /// One endpoint, read under one deadline. Never fails: a VM that cannot be read is a row
    /// with its [`ReadStatus`] and the reason.
    pub fn read_endpoint(&self, socket: &Path, deadline: Instant) -> VmSample {
        let started = Instant::now();
        let mut vm = row(socket);
        let mut peer_pid = None;
        let r = QmpClient::open(socket, deadline).and_then(|c| {
            peer_pid = c.peer_pid;
            let mut c = c.handshake()?;
            self.read_vm(&mut c, &mut vm)
        });
        vm.read_at_unix_s = now_unix_s();
        vm.read = match r {
            Ok(()) => VmRead::default(),
            Err(e) => {
                self.known_identity(socket, peer_pid, &mut vm);
                let status = e.read_status();
                VmRead {
                    status,
                    reason: Some(reason(status, &e, self.timeout)),
                    duration_ms: 0,
                }
            }
        };
        vm.read.duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        vm
    }

    /// A VM that stops answering keeps the name, UUID and pid it had while the same QEMU
    /// process (by SO_PEERCRED) answered: renamed after its socket, it would look like a new VM
    /// to the history, the controller's hysteresis and /metrics' labels.
    fn known_identity(&self, socket: &Path, peer_pid: Option<u32>, vm: &mut VmSample) {
        let Some(pid) = peer_pid else { return };
        let known = self.cache.lock().ok().and_then(|m| m.get(socket).cloned());
        if let Some(st) = known.filter(|s| s.peer_pid == Some(pid)) {
            vm.name = st.name;
            vm.uuid = st.uuid;
            vm.qemu_pid = Some(pid);
        }
    }

    fn read_vm(&self, c: &mut QmpClient, vm: &mut VmSample) -> Result<(), Error> {
        let socket = c.path().to_path_buf();
        let cached = self
            .cache
            .lock()
            .ok()
            .and_then(|m| m.get(&socket).cloned())
            .filter(|s| s.peer_pid == c.peer_pid && c.peer_pid.is_some());
        let st = match cached {
            Some(s) => s,
            None => {
                let s = read_static(c, &socket)?;
                if let Ok(mut m) = self.cache.lock() {
                    m.insert(socket.clone(), s.clone());
                }
                s
            }
        };
        vm.name = st.name;
        vm.uuid = st.uuid;
        vm.qemu_pid = c.peer_pid;
        vm.max_memory_bytes = st.max_memory_bytes;
        vm.device = st.device;
        vm.state = match c.execute("query-status", None)?["status"].as_str() {
            Some("running") => VmState::Running,
            Some("paused") => VmState::Paused,
            Some("shutdown") => VmState::Shutoff,
            Some("guest-panicked") | Some("internal-error") => VmState::Crashed,
            Some("suspended") => VmState::Suspended,
            Some(o) => VmState::Other(clip(o)),
            None => VmState::Unknown,
        };
        if let Some(path) = vm.device.path.clone().filter(|_| vm.device.present) {
            // The period can be changed at any time (`memwarden stats-period`): read it live.
            vm.device.stats_period_s = c
                .execute(
                    "qom-get",
                    Some(json!({"path": path, "property": "guest-stats-polling-interval"})),
                )
                .ok()
                .as_ref()
                .and_then(as_u64);
        }
        vm.balloon = stats(c, &vm.device, None)?;
        Ok(())
    }
}

/// A QMP VM's row before anything is read: named after its socket.
fn row(socket: &Path) -> VmSample {
    VmSample {
        name: name_from_path(socket),
        backend: VmBackend::Qmp,
        source: socket.display().to_string(),
        ..VmSample::default()
    }
}

/// What a failed read amounts to, in plain words an operator can act on.
fn reason(status: ReadStatus, e: &Error, budget: Duration) -> String {
    let what = match status {
        ReadStatus::TimedOut => format!(
            "not answering: nothing complete within {} ms (a wedged QEMU main loop, or another client holds the monitor)",
            budget.as_millis()
        ),
        ReadStatus::Unreachable => match e {
            // A socket file nobody listens on: the QEMU that made it exited (killed, crashed)
            // and left the file behind; QEMU does not remove it on SIGKILL.
            Error::Io { source, .. } if source.kind() == std::io::ErrorKind::ConnectionRefused => {
                "unreachable: nothing listens on this socket (its QEMU exited and left the \
                 file: start the VM, or remove the stale socket)"
                    .to_string()
            }
            Error::Io { source, .. } if source.kind() == std::io::ErrorKind::PermissionDenied => {
                "unreachable: not allowed to connect (run as root or as QEMU's user)".to_string()
            }
            _ => "unreachable: cannot connect to its QMP socket".to_string(),
        },
        ReadStatus::ProtocolError => "does not speak QMP as QEMU does".to_string(),
        ReadStatus::Gone => "gone: QEMU closed the connection (exited, or refused us)".to_string(),
        ReadStatus::Busy | ReadStatus::Ok => String::new(),
    };
    format!("{what} ({})", e.plain())
}

/// Reads what stays fixed while this QEMU runs: name, UUID, RAM size, the balloon device.
fn read_static(c: &mut QmpClient, socket: &Path) -> Result<Static, Error> {
    let name = soft(c.execute("query-name", None))?
        .and_then(|v| v["name"].as_str().map(clip))
        .unwrap_or_else(|| name_from_path(socket));
    let uuid = soft(c.execute("query-uuid", None))?
        .and_then(|v| v["UUID"].as_str().map(clip))
        .filter(|u| u != "00000000-0000-0000-0000-000000000000");
    let max_memory_bytes = soft(c.execute("query-memory-size-summary", None))?.map(|m| {
        as_u64(&m["base-memory"])
            .unwrap_or(0)
            .saturating_add(as_u64(&m["plugged-memory"]).unwrap_or(0))
    });
    let device = balloon_device(c)?;
    Ok(Static {
        peer_pid: c.peer_pid,
        name,
        uuid,
        max_memory_bytes,
        device,
    })
}

/// A VM's name from its socket path: `/run/vm1.qmp` → `vm1`; a generic file name
/// (`/tmp/vm1/qmp.sock`) → its directory, `vm1`.
pub fn name_from_path(socket: &Path) -> String {
    let stem = socket
        .file_stem()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if !stem.is_empty() && !matches!(stem.as_str(), "qmp" | "monitor" | "qmp-sock" | "mon") {
        return stem;
    }
    socket
        .parent()
        .and_then(|p| p.file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| socket.display().to_string())
}

/// `query-name`, else the name from the socket's path.
fn vm_name(c: &mut QmpClient, socket: &Path) -> String {
    c.execute("query-name", None)
        .ok()
        .and_then(|v| v["name"].as_str().map(str::to_string))
        .unwrap_or_else(|| name_from_path(socket))
}

/// Finds the balloon by QOM type (`child<virtio-balloon-...>`) and reads its polling period.
pub fn balloon_device(c: &mut QmpClient) -> Result<BalloonDevice, Error> {
    for base in ["/machine/peripheral", "/machine/peripheral-anon"] {
        let Some(list) = soft(c.execute("qom-list", Some(json!({ "path": base }))))? else {
            continue;
        };
        for item in list.as_array().into_iter().flatten() {
            let ty = item["type"].as_str().unwrap_or("");
            let Some(model) = ty
                .strip_prefix("child<")
                .and_then(|t| t.strip_suffix('>'))
                .filter(|t| t.starts_with("virtio-balloon"))
            else {
                continue;
            };
            let path = format!("{base}/{}", item["name"].as_str().unwrap_or(""));
            let mut get = |property: &str| {
                soft(c.execute("qom-get", Some(json!({"path": path, "property": property}))))
            };
            let period = get("guest-stats-polling-interval")?
                .as_ref()
                .and_then(as_u64);
            let autodeflate = get("deflate-on-oom")?.and_then(|v| v.as_bool());
            let free_page_reporting = get("free-page-reporting")?.and_then(|v| v.as_bool());
            return Ok(BalloonDevice {
                present: true,
                path: Some(path),
                stats_period_s: period,
                model: Some(clip(model)),
                autodeflate,
                free_page_reporting,
            });
        }
    }
    Ok(BalloonDevice::default())
}

/// A command QEMU refused (an old QEMU without the property) is `None`; a session that broke
/// (timeout, closed, not QMP) is an error for the whole VM.
fn soft(r: Result<Value, Error>) -> Result<Option<Value>, Error> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(Error::QmpCommand { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

fn stats(
    c: &mut QmpClient,
    dev: &BalloonDevice,
    rss_kib: Option<u64>,
) -> Result<BalloonStats, Error> {
    let actual = match c.execute("query-balloon", None) {
        Ok(v) => as_u64(&v["actual"]),
        Err(Error::QmpCommand { class, .. }) if class == "DeviceNotActive" => None,
        Err(e) => return Err(e),
    };
    let (raw, last) = match (&dev.path, dev.present) {
        (Some(path), true) => parse_guest_stats(&c.execute(
            "qom-get",
            Some(json!({"path": path, "property": "guest-stats"})),
        )?),
        _ => (Vec::new(), None),
    };
    let tags = tags::qmp_to_tags(actual, &raw, last, rss_kib);
    Ok(tags::balloon_from_tags(tags))
}

impl Hypervisor for QmpBackend {
    fn transport(&self) -> Option<&'static str> {
        Some("qmp")
    }

    fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    /// Every socket, read concurrently (at most `parallelism` at once), each under its own
    /// deadline of `timeout` from the moment its read starts. One row per socket.
    fn list(&mut self) -> Result<Vec<VmSample>, Error> {
        let sockets = self.sockets();
        let next = AtomicUsize::new(0);
        let rows: Vec<Mutex<Option<VmSample>>> = sockets.iter().map(|_| Mutex::new(None)).collect();
        let workers = self.parallelism.clamp(1, sockets.len().max(1));
        let this = &*self;
        std::thread::scope(|scope| {
            for _ in 0..workers {
                scope.spawn(|| loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(socket) = sockets.get(i) else { break };
                    let vm = this.read_endpoint(socket, Instant::now() + this.timeout);
                    if let Ok(mut slot) = rows[i].lock() {
                        *slot = Some(vm);
                    }
                });
            }
        });
        Ok(rows
            .into_iter()
            .filter_map(|m| m.into_inner().ok().flatten())
            .collect())
    }

    /// One VM, read on the session `find` opened (one connection, not two).
    fn sample(&mut self, name: &str) -> Result<VmSample, Error> {
        let (s, mut c) = self.find(name)?;
        let mut vm = row(&s);
        self.read_vm(&mut c, &mut vm)?;
        vm.read_at_unix_s = now_unix_s();
        Ok(vm)
    }

    fn memory_stats(&mut self, name: &str) -> Result<BalloonStats, Error> {
        let (_, mut c) = self.find(name)?;
        let dev = balloon_device(&mut c)?;
        let rss = c
            .peer_pid
            .and_then(|p| host::read_process(&self.reader, p).ok())
            .and_then(|p| p.status.vm_rss)
            .map(|b| b / KIB);
        stats(&mut c, &dev, rss)
    }

    fn set_memory(&mut self, name: &str, bytes: u64, scope: Scope) -> Result<(), Error> {
        if scope.config {
            return Err(Error::NotSupported(
                "plain QEMU has no persistent configuration: --config needs libvirt",
            ));
        }
        let (_, mut c) = self.find(name)?;
        if !balloon_device(&mut c)?.present {
            return Err(Error::NoBalloon {
                name: name.to_string(),
                what: "setting the balloon target",
            });
        }
        c.execute("balloon", Some(json!({ "value": bytes })))?;
        Ok(())
    }

    fn set_stats_period(&mut self, name: &str, seconds: u32, scope: Scope) -> Result<(), Error> {
        if scope.config {
            return Err(Error::NotSupported(
                "plain QEMU has no persistent configuration: --config needs libvirt",
            ));
        }
        let (_, mut c) = self.find(name)?;
        let dev = balloon_device(&mut c)?;
        let Some(path) = dev.path.filter(|_| dev.present) else {
            return Err(Error::NoBalloon {
                name: name.to_string(),
                what: "setting the stats period",
            });
        };
        c.execute(
            "qom-set",
            Some(
                json!({"path": path, "property": "guest-stats-polling-interval", "value": seconds}),
            ),
        )?;
        Ok(())
    }

    fn qemu_pid(&mut self, name: &str) -> Result<Option<u32>, Error> {
        Ok(self.find(name)?.1.peer_pid)
    }

    fn names(&mut self) -> Result<Vec<String>, Error> {
        let mut out = Vec::new();
        for s in &self.sockets() {
            if let Ok(mut c) = self.connect(s) {
                out.push(vm_name(&mut c, s));
            }
        }
        Ok(out)
    }
}

/// Parses a QMP reply line as a test helper would: `{"return": ...}` → the value.
pub fn reply_return(text: &str) -> Option<Value> {
    serde_json::from_str::<Value>(text)
        .ok()?
        .get("return")
        .cloned()
}
