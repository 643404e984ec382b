//! The QMP backend: plain QEMU (run by hand, by Proxmox-like tools, or by our lab), no libvirt.
//!
//! Sockets come from paths or globs. The balloon device is found by type with `qom-list`
//! (under `/machine/peripheral` and `/machine/peripheral-anon`), never assumed to be
//! `balloon0`. Statistics: `query-balloon` (actual) + `qom-get guest-stats`, mapped to libvirt's
//! tag names and units ([`crate::tags::qmp_to_tags`]); `rss` is read from /proc like libvirt does.

mod client;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};

use memwarden_model::units::KIB;
use memwarden_model::vm::{BalloonDevice, BalloonStats, VmBackend, VmSample, VmState};

pub use client::{as_u64, parse_guest_stats, QmpClient};

use memwarden_procfs::HostReader;

use crate::{host, now_unix_s, tags, Error, Hypervisor, Scope};

/// QEMU instances reached through their QMP sockets.
#[derive(Debug, Clone)]
pub struct QmpBackend {
    sockets: Vec<PathBuf>,
    /// Reads the QEMU process (tests may point it at a captured tree).
    pub reader: HostReader,
    pub timeout: Duration,
}

impl QmpBackend {
    /// Sockets from paths or globs (`/run/qemu/*.qmp`); a pattern matching nothing is kept as a
    /// path so that the error names it.
    pub fn new(patterns: &[String]) -> Result<Self, Error> {
        let mut sockets = Vec::new();
        for p in patterns {
            let matches: Vec<PathBuf> = glob::glob(p)
                .map_err(|e| Error::Unsupported(format!("bad socket glob {p:?}: {e}")))?
                .filter_map(Result::ok)
                .collect();
            if matches.is_empty() {
                sockets.push(PathBuf::from(p));
            }
            sockets.extend(matches);
        }
        sockets.sort();
        sockets.dedup();
        Ok(QmpBackend {
            sockets,
            reader: HostReader::live(),
            timeout: Duration::from_secs(5),
        })
    }

    pub fn sockets(&self) -> &[PathBuf] {
        &self.sockets
    }

    fn connect(&self, socket: &Path) -> Result<QmpClient, Error> {
        QmpClient::connect(socket, self.timeout)
    }

    /// The socket serving VM `name`: its `-name`, its socket path, or the socket's directory.
    fn find(&self, name: &str) -> Result<(PathBuf, QmpClient), Error> {
        for s in &self.sockets {
            if s.as_os_str() == name {
                return Ok((s.clone(), self.connect(s)?));
            }
        }
        for s in &self.sockets {
            let Ok(mut c) = self.connect(s) else {
                continue;
            };
            if vm_name(&mut c, s) == name {
                return Ok((s.clone(), c));
            }
        }
        Err(Error::NoSuchVm {
            name: name.to_string(),
            where_: format!("{} QMP socket(s)", self.sockets.len()),
        })
    }

    fn read_vm(&self, socket: &Path, c: &mut QmpClient) -> Result<VmSample, Error> {
        let mut vm = VmSample {
            name: vm_name(c, socket),
            backend: VmBackend::Qmp,
            source: socket.display().to_string(),
            read_at_unix_s: now_unix_s(),
            qemu_pid: c.peer_pid,
            ..VmSample::default()
        };
        vm.uuid = c
            .execute("query-uuid", None)
            .ok()
            .and_then(|v| v["UUID"].as_str().map(str::to_string))
            .filter(|u| u != "00000000-0000-0000-0000-000000000000");
        vm.state = match c.execute("query-status", None)?["status"].as_str() {
            Some("running") => VmState::Running,
            Some("paused") => VmState::Paused,
            Some("shutdown") => VmState::Shutoff,
            Some("guest-panicked") | Some("internal-error") => VmState::Crashed,
            Some("suspended") => VmState::Suspended,
            Some(o) => VmState::Other(o.to_string()),
            None => VmState::Unknown,
        };
        match c.execute("query-memory-size-summary", None) {
            Ok(m) => {
                vm.max_memory_bytes = Some(
                    as_u64(&m["base-memory"])
                        .unwrap_or(0)
                        .saturating_add(as_u64(&m["plugged-memory"]).unwrap_or(0)),
                )
            }
            Err(e) => vm.degraded.push(format!("max memory unknown: {e}")),
        }
        vm.device = balloon_device(c)?;
        if let Some(pid) = vm.qemu_pid {
            match host::read_process(&self.reader, pid) {
                Ok(p) => vm.host = Some(p),
                Err(e) => vm.degraded.push(format!("QEMU process {pid}: {e}")),
            }
        }
        let rss_kib = vm
            .host
            .as_ref()
            .and_then(|h| h.status.vm_rss)
            .map(|b| b / KIB);
        vm.balloon = stats(c, &vm.device, rss_kib, vm.max_memory_bytes)?;
        Ok(vm)
    }
}

/// `query-name`, else the socket's parent directory (`/tmp/vm1/qmp.sock` → `vm1`), else the path.
fn vm_name(c: &mut QmpClient, socket: &Path) -> String {
    if let Some(n) = c
        .execute("query-name", None)
        .ok()
        .and_then(|v| v["name"].as_str().map(str::to_string))
    {
        return n;
    }
    socket
        .parent()
        .and_then(|p| p.file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| socket.display().to_string())
}

/// Finds the balloon by QOM type (`child<virtio-balloon-...>`) and reads its polling period.
pub fn balloon_device(c: &mut QmpClient) -> Result<BalloonDevice, Error> {
    for base in ["/machine/peripheral", "/machine/peripheral-anon"] {
        let Ok(list) = c.execute("qom-list", Some(json!({ "path": base }))) else {
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
            let period = c
                .execute(
                    "qom-get",
                    Some(json!({"path": path, "property": "guest-stats-polling-interval"})),
                )
                .ok()
                .as_ref()
                .and_then(as_u64);
            return Ok(BalloonDevice {
                present: true,
                path: Some(path),
                stats_period_s: period,
                model: Some(model.to_string()),
            });
        }
    }
    Ok(BalloonDevice::default())
}

fn stats(
    c: &mut QmpClient,
    dev: &BalloonDevice,
    rss_kib: Option<u64>,
    max: Option<u64>,
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
    Ok(tags::balloon_from_tags(tags, max))
}

impl Hypervisor for QmpBackend {
    fn list(&mut self) -> Result<Vec<VmSample>, Error> {
        let mut out = Vec::new();
        for s in self.sockets.clone() {
            let r = self.connect(&s).and_then(|mut c| self.read_vm(&s, &mut c));
            match r {
                Ok(vm) => out.push(vm),
                Err(e) if e.is_gone() => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    fn sample(&mut self, name: &str) -> Result<VmSample, Error> {
        let (s, mut c) = self.find(name)?;
        self.read_vm(&s, &mut c)
    }

    fn memory_stats(&mut self, name: &str) -> Result<BalloonStats, Error> {
        let (_, mut c) = self.find(name)?;
        let dev = balloon_device(&mut c)?;
        let rss = c
            .peer_pid
            .and_then(|p| host::read_process(&self.reader, p).ok())
            .and_then(|p| p.status.vm_rss)
            .map(|b| b / KIB);
        let max = c
            .execute("query-memory-size-summary", None)
            .ok()
            .and_then(|m| as_u64(&m["base-memory"]));
        stats(&mut c, &dev, rss, max)
    }

    fn set_memory(&mut self, name: &str, bytes: u64, scope: Scope) -> Result<(), Error> {
        if scope.config {
            return Err(Error::Unsupported(
                "plain QEMU has no persistent configuration: --config needs libvirt".into(),
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
            return Err(Error::Unsupported(
                "plain QEMU has no persistent configuration: --config needs libvirt".into(),
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
        for s in &self.sockets {
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
