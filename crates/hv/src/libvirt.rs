//! The libvirt backend (the `virt` crate): one bulk `virConnectGetAllDomainStats` call for all
//! running domains, per-domain `virDomainMemoryStats` for `dommemstat`, and optionally the newer
//! QEMU statistics through libvirt-qemu's monitor passthrough.
//!
//! Calls block. The connection is closed explicitly on drop (the crate's own `Drop` panics when
//! close fails).

use std::path::PathBuf;

use serde_json::Value;
use virt::connect::Connect;
use virt::domain::Domain;
use virt::sys;

use memwarden_model::units::KIB;
use memwarden_model::vm::{
    BalloonStats, ExtraStats, StatTag, TagUnit, VmBackend, VmSample, VmState,
};

use crate::libvirt_ffi::{self, Param};
use crate::qmp::parse_guest_stats;
use memwarden_procfs::HostReader;

use crate::{host, now_unix_s, tags, xml, Error, Hypervisor, Scope};

/// A libvirt connection.
#[derive(Debug)]
pub struct LibvirtBackend {
    conn: Option<Connect>,
    uri: String,
    /// Read the newer QEMU stats (`stat-oom-kills`, ...) through `virDomainQemuMonitorCommand`.
    /// Off by default: libvirt marks a domain "tainted: custom-monitor" when it is used.
    pub monitor_passthrough: bool,
    /// Reads the QEMU process (tests may point it at a captured tree).
    pub reader: HostReader,
    /// Where libvirt's QEMU driver writes `NAME.pid`.
    pub pid_dir: PathBuf,
}

impl Drop for LibvirtBackend {
    fn drop(&mut self) {
        if let Some(c) = self.conn.take() {
            libvirt_ffi::close(c);
        }
    }
}

fn lv(op: &'static str, domain: Option<&str>) -> impl FnOnce(virt::error::Error) -> Error {
    let domain = domain.map(str::to_string);
    move |source| Error::Libvirt { op, domain, source }
}

impl LibvirtBackend {
    /// Opens `uri` (`qemu:///system`, `test:///default`...).
    pub fn connect(uri: &str) -> Result<Self, Error> {
        // libvirt's default handler prints every error to stderr; ours are returned instead.
        virt::error::clear_error_callback();
        let conn = Connect::open(Some(uri)).map_err(lv("connect", None))?;
        Ok(LibvirtBackend {
            conn: Some(conn),
            uri: uri.to_string(),
            monitor_passthrough: false,
            reader: HostReader::live(),
            pid_dir: PathBuf::from("/run/libvirt/qemu"),
        })
    }

    fn conn(&self) -> Result<&Connect, Error> {
        self.conn
            .as_ref()
            .ok_or_else(|| Error::Unsupported("libvirt connection already closed".into()))
    }

    fn lookup(&self, name: &str) -> Result<Domain, Error> {
        let d = self.conn()?.lookup_domain_by_name(name).map_err(|e| {
            if e.code().is(virt::error::ErrorNumber::NoDomain) {
                Error::NoSuchVm {
                    name: name.to_string(),
                    where_: self.uri.clone(),
                }
            } else {
                lv("lookup", Some(name))(e)
            }
        })?;
        Ok(d)
    }

    /// Only the bulk call, parsed. For the benchmark and for callers that need no host view.
    pub fn bulk_balloon(&self) -> Result<Vec<BulkRecord>, Error> {
        let recs = libvirt_ffi::all_domain_stats(
            self.conn()?,
            sys::VIR_DOMAIN_STATS_STATE | sys::VIR_DOMAIN_STATS_BALLOON,
            sys::VIR_CONNECT_GET_ALL_DOMAINS_STATS_ACTIVE,
        )
        .map_err(lv("virConnectGetAllDomainStats", None))?;
        let mut out = Vec::with_capacity(recs.len());
        for r in recs {
            let Ok(name) = r.domain.name() else { continue };
            let mut tags_ = Vec::new();
            let mut max = None;
            let mut state = VmState::Unknown;
            for (field, value) in &r.params {
                let v = match value {
                    Param::Uint(v) => *v,
                    Param::Int(i) => *i as u64,
                    _ => continue,
                };
                if field == "balloon.maximum" {
                    max = v.checked_mul(KIB);
                } else if field == "state.state" {
                    state = state_from(v);
                } else if let Some(t) = tags::bulk_field_tag(field) {
                    tags_.push(StatTag {
                        name: t.to_string(),
                        value: v,
                        unit: tags::unit_of(t),
                    });
                } else if let Some(rest) = field.strip_prefix("balloon.") {
                    // A balloon field this libvirt knows and we do not: keep it.
                    tags_.push(StatTag {
                        name: rest.to_string(),
                        value: v,
                        unit: TagUnit::Raw,
                    });
                }
            }
            out.push(BulkRecord {
                name,
                tags: tags_,
                max_memory_bytes: max,
                state,
            });
        }
        Ok(out)
    }

    /// Everything but the balloon numbers: XML facts, pid, host view, extra stats.
    fn complete(&self, d: &Domain, vm: &mut VmSample) -> Result<(), Error> {
        let name = vm.name.clone();
        let xml = d.xml_desc(0).map_err(lv("xml_desc", Some(&name)))?;
        vm.device = xml::memballoon(&xml);
        vm.guest_os = xml::guest_os(&xml);
        vm.uuid = d.uuid_string().ok();
        vm.qemu_pid = self.pid_of(&name);
        if let Some(pid) = vm.qemu_pid {
            match host::read_process(&self.reader, pid) {
                Ok(p) => vm.host = Some(p),
                Err(e) => vm.degraded.push(format!("QEMU process {pid}: {e}")),
            }
        }
        if self.monitor_passthrough && vm.device.present {
            vm.extra_stats = self.extra_stats(d, vm);
        }
        Ok(())
    }

    /// Newer stats through libvirt-qemu; appended to the tags when the guest reports them.
    fn extra_stats(&self, d: &Domain, vm: &mut VmSample) -> ExtraStats {
        let alias = vm.device.path.clone().unwrap_or_else(|| "balloon0".into());
        let cmd = serde_json::json!({"execute": "qom-get", "arguments": {
            "path": format!("/machine/peripheral/{alias}"), "property": "guest-stats"}});
        let reply = match libvirt_ffi::qemu_monitor_command(d, &cmd.to_string()) {
            Ok(r) => r,
            Err(e) => return ExtraStats::Unavailable(e.message().to_string()),
        };
        let Some(ret) = serde_json::from_str::<Value>(&reply)
            .ok()
            .and_then(|v| v.get("return").cloned())
        else {
            return ExtraStats::Unavailable(format!("unexpected monitor reply: {reply}"));
        };
        let (raw, _) = parse_guest_stats(&ret);
        let extra: Vec<(String, u64)> = raw
            .into_iter()
            .filter(|(k, _)| !tags::QMP_STATS.iter().any(|(q, _, _)| q == k))
            .collect();
        let mut all = std::mem::take(&mut vm.balloon.tags);
        all.extend(tags::qmp_to_tags(None, &extra, None, None));
        vm.balloon = tags::balloon_from_tags(all, vm.max_memory_bytes);
        ExtraStats::Read
    }

    fn pid_of(&self, name: &str) -> Option<u32> {
        std::fs::read_to_string(self.pid_dir.join(format!("{name}.pid")))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    fn flags(scope: Scope) -> u32 {
        let mut f = 0;
        if scope.live {
            f |= sys::VIR_DOMAIN_AFFECT_LIVE;
        }
        if scope.config {
            f |= sys::VIR_DOMAIN_AFFECT_CONFIG;
        }
        f
    }

    fn base(&self, name: String) -> VmSample {
        VmSample {
            name,
            backend: VmBackend::Libvirt,
            source: self.uri.clone(),
            read_at_unix_s: now_unix_s(),
            ..VmSample::default()
        }
    }
}

/// One domain from the bulk call: libvirt-form tags (bulk order), max memory, state.
#[derive(Debug, Clone)]
pub struct BulkRecord {
    pub name: String,
    pub tags: Vec<StatTag>,
    pub max_memory_bytes: Option<u64>,
    pub state: VmState,
}

fn state_from(v: u64) -> VmState {
    match v as u32 {
        sys::VIR_DOMAIN_RUNNING => VmState::Running,
        sys::VIR_DOMAIN_PAUSED => VmState::Paused,
        sys::VIR_DOMAIN_SHUTOFF | sys::VIR_DOMAIN_SHUTDOWN => VmState::Shutoff,
        sys::VIR_DOMAIN_CRASHED => VmState::Crashed,
        sys::VIR_DOMAIN_PMSUSPENDED => VmState::Suspended,
        o => VmState::Other(format!("libvirt state {o}")),
    }
}

impl Hypervisor for LibvirtBackend {
    fn list(&mut self) -> Result<Vec<VmSample>, Error> {
        let mut out = Vec::new();
        for BulkRecord {
            name,
            tags: tags_,
            max_memory_bytes: max,
            state,
        } in self.bulk_balloon()?
        {
            let d = match self.lookup(&name) {
                Ok(d) => d,
                Err(e) if e.is_gone() => continue,
                Err(e) => return Err(e),
            };
            let mut vm = self.base(name);
            vm.state = state;
            vm.max_memory_bytes = max;
            vm.balloon = tags::balloon_from_tags(tags_, max);
            match self.complete(&d, &mut vm) {
                Ok(()) => out.push(vm),
                Err(e) if e.is_gone() => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    fn sample(&mut self, name: &str) -> Result<VmSample, Error> {
        let d = self.lookup(name)?;
        let mut vm = self.base(name.to_string());
        vm.state = d
            .state()
            .map(|(s, _)| state_from(u64::from(s.to_raw())))
            .unwrap_or_default();
        vm.max_memory_bytes = d.max_memory().ok().and_then(|k| k.checked_mul(KIB));
        vm.balloon = self.memory_stats(name)?;
        self.complete(&d, &mut vm)?;
        Ok(vm)
    }

    fn memory_stats(&mut self, name: &str) -> Result<BalloonStats, Error> {
        let d = self.lookup(name)?;
        let max = d.max_memory().ok().and_then(|k| k.checked_mul(KIB));
        let stats = d
            .memory_stats(0)
            .map_err(lv("virDomainMemoryStats", Some(name)))?;
        let tags_ = stats
            .iter()
            .map(|s| tags::libvirt_tag(s.tag, s.val))
            .collect();
        Ok(tags::balloon_from_tags(tags_, max))
    }

    fn set_memory(&mut self, name: &str, bytes: u64, scope: Scope) -> Result<(), Error> {
        let d = self.lookup(name)?;
        d.set_memory_flags(bytes / KIB, Self::flags(scope))
            .map_err(lv("virDomainSetMemoryFlags", Some(name)))
    }

    fn set_stats_period(&mut self, name: &str, seconds: u32, scope: Scope) -> Result<(), Error> {
        let d = self.lookup(name)?;
        let secs = i32::try_from(seconds)
            .map_err(|_| Error::Unsupported(format!("period {seconds} s is too large")))?;
        d.set_memory_stats_period(secs, Self::flags(scope))
            .map_err(lv("virDomainSetMemoryStatsPeriod", Some(name)))
    }

    fn qemu_pid(&mut self, name: &str) -> Result<Option<u32>, Error> {
        self.lookup(name)?;
        Ok(self.pid_of(name))
    }

    fn names(&mut self) -> Result<Vec<String>, Error> {
        let ds = self
            .conn()?
            .list_all_domains(sys::VIR_CONNECT_LIST_DOMAINS_ACTIVE)
            .map_err(lv("list_all_domains", None))?;
        Ok(ds.iter().filter_map(|d| d.name().ok()).collect())
    }
}
