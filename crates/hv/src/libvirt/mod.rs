//! The libvirt backend (through [`memwarden_libvirt`]: libvirt's RPC protocol on the local
//! daemon's socket for `qemu:///system`, libvirt's C API loaded at run time for other URIs): one
//! bulk `virConnectGetAllDomainStats` call for all
//! running domains, per-domain `virDomainMemoryStats` for `dommemstat`, and optionally the newer
//! QEMU statistics through libvirt-qemu's monitor passthrough.
//!
//! libvirt's calls block, and a domain whose QEMU monitor does not answer (a QEMU stopped with
//! SIGSTOP, a wedged main loop) makes them block for as long as it lasts. So every call runs on
//! a thread of its own and we wait for it only until the sample's deadline:
//! - the bulk call takes `VIR_CONNECT_GET_ALL_DOMAINS_STATS_NOWAIT`, so a domain whose job is
//!   held (by a call still stuck on its monitor) is skipped at once and shown as busy;
//! - the first call to reach a freshly wedged monitor is the one that gets stuck (nothing
//!   holds the job yet); when the bulk call has not answered by half the deadline a second
//!   one is sent, which skips that domain, so one frozen VM never hides the others;
//! - a keepalive (5 s × 3) on a libvirt.so connection (the RPC client bounds every exchange
//!   by the timeout instead), and a connection that fails is dropped and opened again on the
//!   next sample (libvirtd restarts).
//!
//! The domain XML (parsed by [`memwarden_libvirt::domain_xml`]) is read once per domain (again when its id changes or after
//! [`XML_REFRESH`]); the QEMU pid comes from libvirt's pid file.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use memwarden_model::units::KIB;
use memwarden_model::vm::{
    BalloonStats, ExtraStats, ReadStatus, StatTag, VmBackend, VmEvent, VmRead, VmSample,
};

use memwarden_libvirt::rpc::events::{self, EventWatch};
use memwarden_libvirt::{self as libvirt_conn, sys, Connect, Domain, LvError, Transport};

use crate::{now_unix_ms, now_unix_s, tags, Error, Hypervisor, Scope};
use memwarden_libvirt::domain_xml;

mod facts;
mod records;

pub use facts::XML_REFRESH;
use facts::{facts_from, Facts};
pub use records::{bulk_fields, merge_extra, BulkFields, BulkRecord};
use records::{parse_record, state_from};

/// Bulk calls allowed in flight at once (one stuck on a wedged monitor, one hedge).
const MAX_INFLIGHT: usize = 2;
/// Re-asks for busy domains this many times, this far apart.
const BUSY_RETRIES: usize = 2;
const BUSY_RETRY_PAUSE: Duration = Duration::from_millis(50);

/// A libvirt connection.
pub struct LibvirtBackend {
    conn: Option<Arc<Connect>>,
    uri: String,
    /// Read the newer QEMU stats (`stat-oom-kills`, ...) through `virDomainQemuMonitorCommand`.
    /// Off by default: libvirt marks a domain "tainted: custom-monitor" when it is used.
    pub monitor_passthrough: bool,
    /// Where libvirt's QEMU driver writes `NAME.pid`.
    pub pid_dir: PathBuf,
    /// A whole sample (every libvirt call of it) must finish within this.
    pub timeout: Duration,
    /// How to reach libvirt: by default the built-in RPC client for `qemu:///system`, so that
    /// libvirt.so (and its ~55 libraries) is never loaded; libvirt.so for other URIs.
    pub transport: Transport,
    facts: HashMap<String, Facts>,
    inflight: Arc<AtomicUsize>,
    /// The lifecycle and reboot event watch (RPC transport only), drained every [`Hypervisor::list`].
    events: Option<EventWatch>,
}

impl std::fmt::Debug for LibvirtBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LibvirtBackend")
            .field("uri", &self.uri)
            .field("connected", &self.conn.is_some())
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

fn lv(op: &'static str, domain: Option<&str>) -> impl FnOnce(LvError) -> Error {
    let domain = domain.map(str::to_string);
    move |source| Error::Libvirt { op, domain, source }
}

/// Runs `f` on a thread of its own and waits for it until `deadline`; `None` when it has not
/// finished by then (the thread finishes in its own time and its result is dropped).
fn by_deadline<T: Send + 'static>(
    deadline: Instant,
    f: impl FnOnce() -> T + Send + 'static,
) -> Option<T> {
    let (tx, rx) = mpsc::channel();
    std::thread::Builder::new()
        .name("libvirt-call".into())
        .spawn(move || {
            let _ = tx.send(f());
        })
        .ok()?;
    rx.recv_timeout(deadline.saturating_duration_since(Instant::now()))
        .ok()
}

/// Errors that mean the connection itself is broken (libvirtd restarted or gone).
fn connection_lost(e: &LvError) -> bool {
    [
        sys::VIR_ERR_SYSTEM_ERROR,
        sys::VIR_ERR_NO_CONNECT,
        sys::VIR_ERR_RPC,
        sys::VIR_ERR_AUTH_FAILED,
    ]
    .contains(&e.code())
        || e.message().contains("client socket is closed")
        || e.message().contains("connection closed")
}

impl LibvirtBackend {
    /// A backend for `uri` (`qemu:///system`, `test:///default`...) that connects on first use
    /// and again after the connection is lost.
    pub fn new(uri: &str) -> Self {
        LibvirtBackend {
            conn: None,
            uri: uri.to_string(),
            monitor_passthrough: false,
            pid_dir: PathBuf::from("/run/libvirt/qemu"),
            timeout: crate::qmp::DEFAULT_DEADLINE,
            transport: Transport::Auto,
            facts: HashMap::new(),
            inflight: Arc::new(AtomicUsize::new(0)),
            events: None,
        }
    }

    /// Opens `uri` now; an error if libvirtd cannot be reached.
    pub fn connect(uri: &str) -> Result<Self, Error> {
        let mut b = Self::new(uri);
        b.connect_by(Instant::now() + Duration::from_secs(10))?;
        Ok(b)
    }

    /// Connects now (with the transport set), by `deadline`: an unreachable libvirtd is an
    /// error at once instead of at the first call.
    pub fn connect_by(&mut self, deadline: Instant) -> Result<(), Error> {
        self.conn(deadline).map(|_| ())
    }

    pub fn uri(&self) -> &str {
        &self.uri
    }

    /// The open connection, opening it (under `deadline`) when there is none.
    fn conn(&mut self, deadline: Instant) -> Result<Arc<Connect>, Error> {
        if let Some(c) = &self.conn {
            if c.is_alive().unwrap_or(false) {
                return Ok(c.clone());
            }
            self.conn = None;
        }
        let (uri, transport, timeout) = (self.uri.clone(), self.transport, self.timeout);
        let opened = by_deadline(deadline, move || {
            Connect::open(&uri, transport, timeout).map(Arc::new)
        })
        .ok_or_else(|| self.timed_out("connect", deadline))?
        .map_err(|e| Error::LibvirtUnreachable {
            uri: self.uri.clone(),
            reason: e.message().to_string(),
        })?;
        self.conn = Some(opened.clone());
        Ok(opened)
    }

    fn timed_out(&self, op: &'static str, deadline: Instant) -> Error {
        let started = deadline.checked_sub(self.timeout).unwrap_or(deadline);
        Error::LibvirtTimeout {
            uri: self.uri.clone(),
            op,
            ms: deadline.saturating_duration_since(started).as_millis(),
        }
    }

    /// Forget the connection after a failure that broke it; the next call opens a new one.
    fn check_lost(&mut self, e: &Error) {
        if let Error::Libvirt { source, .. } = e {
            if connection_lost(source) {
                self.conn = None;
            }
        }
    }

    /// Runs `f(conn)` on its own thread under this backend's timeout.
    fn call<T: Send + 'static>(
        &mut self,
        op: &'static str,
        f: impl FnOnce(&Connect) -> Result<T, Error> + Send + 'static,
    ) -> Result<T, Error> {
        let deadline = Instant::now() + self.timeout;
        let conn = self.conn(deadline)?;
        let r = by_deadline(deadline, move || f(&conn))
            .unwrap_or_else(|| Err(self.timed_out(op, deadline)));
        if let Err(e) = &r {
            self.check_lost(e);
        }
        r
    }

    /// The bulk call with NOWAIT, hedged: a second call at half the deadline when the first
    /// is stuck on a wedged monitor.
    fn bulk_records(&mut self, deadline: Instant) -> Result<Vec<libvirt_conn::Record>, Error> {
        let conn = self.conn(deadline)?;
        let (tx, rx) = mpsc::channel();
        let send = |conn: Arc<Connect>, inflight: Arc<AtomicUsize>| {
            let tx = tx.clone();
            inflight.fetch_add(1, Ordering::SeqCst);
            let done = inflight.clone();
            let spawned = std::thread::Builder::new()
                .name("libvirt-bulk".into())
                .spawn(move || {
                    let r = libvirt_conn::all_domain_stats(
                        &conn,
                        sys::VIR_DOMAIN_STATS_STATE | sys::VIR_DOMAIN_STATS_BALLOON,
                        sys::VIR_CONNECT_GET_ALL_DOMAINS_STATS_ACTIVE
                            | sys::VIR_CONNECT_GET_ALL_DOMAINS_STATS_NOWAIT,
                    );
                    done.fetch_sub(1, Ordering::SeqCst);
                    let _ = tx.send(r);
                });
            if spawned.is_err() {
                inflight.fetch_sub(1, Ordering::SeqCst);
            }
        };
        let mut sent = 0;
        if self.inflight.load(Ordering::SeqCst) < MAX_INFLIGHT {
            send(conn.clone(), self.inflight.clone());
            sent += 1;
        }
        let hedge_at = deadline
            .checked_sub(self.timeout / 2)
            .unwrap_or_else(Instant::now);
        let first = rx.recv_timeout(hedge_at.saturating_duration_since(Instant::now()));
        let r = match first {
            Ok(r) => Some(r),
            Err(_) => {
                if self.inflight.load(Ordering::SeqCst) < MAX_INFLIGHT {
                    send(conn, self.inflight.clone());
                    sent += 1;
                }
                if sent == 0 {
                    // Earlier calls still wait on libvirtd: a new one would only queue behind
                    // them. Say so now instead of waiting out the deadline for nothing.
                    return Err(Error::LibvirtBusy {
                        uri: self.uri.clone(),
                        pending: MAX_INFLIGHT,
                    });
                }
                rx.recv_timeout(deadline.saturating_duration_since(Instant::now()))
                    .ok()
            }
        };
        let r = r
            .ok_or_else(|| self.timed_out("virConnectGetAllDomainStats", deadline))?
            .map_err(lv("virConnectGetAllDomainStats", None));
        if let Err(e) = &r {
            self.check_lost(e);
        }
        r
    }

    /// Only the bulk call, parsed. For the benchmark and for callers that need no host view.
    pub fn bulk_balloon(&mut self) -> Result<Vec<BulkRecord>, Error> {
        let deadline = Instant::now() + self.timeout;
        let recs = self.bulk_records(deadline)?;
        Ok(recs.into_iter().filter_map(|r| parse_record(&r)).collect())
    }

    /// The cached XML facts of `d`, read again when missing, stale, or its id changed.
    fn facts_for(
        &mut self,
        key: &str,
        d: &Domain,
        name: &str,
        deadline: Instant,
    ) -> Result<Facts, Error> {
        let id = d.id();
        if let Some(f) = self.facts.get(key) {
            if f.id == id && f.read_at.elapsed() < XML_REFRESH {
                return Ok(f.clone());
            }
        }
        let d2 = d.clone();
        let xml = by_deadline(deadline, move || d2.xml_desc(0))
            .ok_or_else(|| self.timed_out("virDomainGetXMLDesc", deadline))?
            .map_err(lv("virDomainGetXMLDesc", Some(name)))?;
        let parsed = domain_xml::parse(&xml).map_err(|e| Error::DomainXml {
            name: name.to_string(),
            why: e.to_string(),
        })?;
        let f = facts_from(&parsed, id, self.pid_of(name));
        self.facts.insert(key.to_string(), f.clone());
        Ok(f)
    }

    /// Newer stats through libvirt-qemu, for every domain at once under the deadline.
    fn extra_stats_all(&self, vms: &mut [VmSample], doms: &[Option<Domain>], deadline: Instant) {
        let mut waiting = Vec::new();
        for (i, (vm, d)) in vms.iter().zip(doms).enumerate() {
            let Some(d) = d.clone() else { continue };
            if !vm.device.present || vm.read.status != ReadStatus::Ok {
                continue;
            }
            let alias = vm.device.path.clone().unwrap_or_else(|| "balloon0".into());
            let cmd = serde_json::json!({"execute": "qom-get", "arguments": {
                "path": format!("/machine/peripheral/{alias}"), "property": "guest-stats"}});
            let (tx, rx) = mpsc::channel();
            let spawned = std::thread::Builder::new()
                .name("libvirt-monitor".into())
                .spawn(move || {
                    let _ = tx.send(d.qemu_monitor_command(&cmd.to_string(), 0));
                });
            if spawned.is_ok() {
                waiting.push((i, rx));
            }
        }
        for (i, rx) in waiting {
            let vm = &mut vms[i];
            vm.extra_stats =
                match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                    Err(_) => ExtraStats::Unavailable("the monitor did not answer in time".into()),
                    Ok(Err(e)) => ExtraStats::Unavailable(crate::qmp::clip(e.message())),
                    Ok(Ok(reply)) => merge_extra(vm, &reply),
                };
        }
    }

    fn pid_of(&self, name: &str) -> Option<u32> {
        // A remote daemon's QEMU (qemu+ssh://host/...) runs on that host: a pid file here, if
        // any, is another process's.
        let remote = self
            .uri
            .split_once("://")
            .is_some_and(|(_, rest)| !rest.starts_with('/'));
        if remote {
            return None;
        }
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

    /// The events libvirtd announced since the previous call, by domain UUID; `None` when they
    /// are not known for that whole interval (the watch was just opened, or is not possible on
    /// this transport), so that "no event" is never claimed for time nobody listened.
    fn drain_events(&mut self, deadline: Instant) -> Option<HashMap<String, Vec<VmEvent>>> {
        if let Some(w) = &mut self.events {
            match w.drain(deadline) {
                Ok(d) => {
                    let now_ms = now_unix_ms();
                    let mut by_vm: HashMap<String, Vec<VmEvent>> = HashMap::new();
                    for ev in d.events {
                        let (kind, detail) = events::classify(ev.lifecycle);
                        by_vm
                            .entry(ev.dom.uuid_string())
                            .or_default()
                            .push(VmEvent {
                                seen_at_unix_ms: now_ms,
                                kind,
                                detail,
                            });
                    }
                    return Some(by_vm);
                }
                // libvirtd restarted or the channel broke: what happened since is unknown.
                Err(_) => self.events = None,
            }
        }
        let conn = self.conn.clone()?;
        self.events = by_deadline(deadline, move || conn.watch_events(deadline))
            .flatten()
            .and_then(Result::ok);
        None
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

impl Hypervisor for LibvirtBackend {
    /// The open connection's transport ("rpc" or "libvirt.so"), `None` before connecting.
    fn transport(&self) -> Option<&'static str> {
        self.conn.as_ref().map(|c| c.transport())
    }

    fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
        if let Some(c) = &self.conn {
            c.set_timeout(timeout);
        }
    }

    /// Every running domain, one row each, all under one deadline: busy domains (another job
    /// holds them) are rows with [`ReadStatus::Busy`], never waited for.
    fn list(&mut self) -> Result<Vec<VmSample>, Error> {
        let deadline = Instant::now() + self.timeout;
        // Before the states are read, so that an event is never newer than the state beside it.
        self.conn(deadline)?;
        let mut events = self.drain_events(deadline);
        let mut records: Vec<BulkRecord> = self
            .bulk_records(deadline)?
            .iter()
            .filter_map(parse_record)
            .collect();
        // Another client's query (virsh domstats, a second memwarden) holds a domain's job for
        // a few milliseconds: NOWAIT then skips it too. Ask again for those, briefly; a domain
        // whose monitor is really stuck stays busy.
        for _ in 0..BUSY_RETRIES {
            if !records.iter().any(|r| r.busy)
                || deadline.saturating_duration_since(Instant::now()) < BUSY_RETRY_PAUSE * 4
            {
                break;
            }
            std::thread::sleep(BUSY_RETRY_PAUSE);
            let Ok(again) = self.bulk_records(deadline) else {
                break;
            };
            for fresh in again.iter().filter_map(parse_record) {
                if let Some(old) = records
                    .iter_mut()
                    .find(|r| r.busy && !fresh.busy && r.name == fresh.name)
                {
                    *old = fresh;
                }
            }
        }
        let mut vms = Vec::with_capacity(records.len());
        let mut doms = Vec::with_capacity(records.len());
        for rec in records {
            let mut vm = self.base(rec.name.clone());
            vm.uuid = rec.uuid.clone();
            vm.state = rec.state;
            vm.max_memory_bytes = rec.max_memory_bytes;
            vm.balloon = tags::balloon_from_tags(rec.tags);
            vm.events = events.as_mut().map(|by_vm| {
                rec.uuid
                    .as_ref()
                    .and_then(|u| by_vm.remove(u))
                    .unwrap_or_default()
            });
            if rec.busy {
                vm.read = VmRead {
                    status: ReadStatus::Busy,
                    reason: Some(
                        "not answering: libvirt skipped it because another job holds the \
                         domain (its QEMU monitor is not answering, or a long operation is \
                         running); only the balloon size is known"
                            .into(),
                    ),
                    duration_ms: 0,
                };
            }
            let key = rec.uuid.unwrap_or_else(|| rec.name.clone());
            match self.facts_for(&key, &rec.domain, &rec.name, deadline) {
                Ok(f) => {
                    vm.device = f.device;
                    vm.guest_os = f.guest_os;
                    vm.config = f.config;
                    vm.qemu_pid = f.pid;
                }
                Err(e) if e.is_gone() => continue,
                Err(e) => {
                    self.check_lost(&e);
                    vm.degraded
                        .push(format!("domain XML not read: {}", e.plain()));
                    vm.qemu_pid = self.pid_of(&rec.name);
                }
            }
            vms.push(vm);
            doms.push(Some(rec.domain.clone()));
        }
        if self.monitor_passthrough {
            self.extra_stats_all(&mut vms, &doms, deadline);
        }
        let live: std::collections::HashSet<String> = vms
            .iter()
            .map(|v| v.uuid.clone().unwrap_or_else(|| v.name.clone()))
            .collect();
        self.facts.retain(|k, _| live.contains(k));
        Ok(vms)
    }

    /// One domain through the per-domain calls, which wait for the domain's job (another
    /// client's short job is not "busy" here) but not past this backend's timeout. Other
    /// domains are not touched.
    fn sample(&mut self, name: &str) -> Result<VmSample, Error> {
        let n = name.to_string();
        let uri = self.uri.clone();
        let (d, state, max, tags_, xml) = self.call("virDomainMemoryStats", move |c| {
            let d = lookup(c, &n, &uri)?;
            let state = d
                .state()
                .map(|(s, _)| state_from(u64::from(s)))
                .unwrap_or_default();
            let max = d.max_memory().ok().and_then(|k| k.checked_mul(KIB));
            let stats = d
                .memory_stats(0)
                .map_err(lv("virDomainMemoryStats", Some(&n)))?;
            let tags_: Vec<StatTag> = stats
                .iter()
                .map(|&(tag, val)| tags::libvirt_tag(tag, val))
                .collect();
            let xml = d.xml_desc(0).map_err(lv("virDomainGetXMLDesc", Some(&n)))?;
            Ok((d, state, max, tags_, xml))
        })?;
        let parsed = domain_xml::parse(&xml).map_err(|e| Error::DomainXml {
            name: name.to_string(),
            why: e.to_string(),
        })?;
        let f = facts_from(&parsed, d.id(), self.pid_of(name));
        let mut vm = self.base(name.to_string());
        vm.uuid = d.uuid_string().ok();
        vm.state = state;
        vm.max_memory_bytes = max;
        vm.balloon = tags::balloon_from_tags(tags_);
        vm.device = f.device;
        vm.guest_os = f.guest_os;
        vm.config = f.config;
        vm.qemu_pid = f.pid;
        Ok(vm)
    }

    fn memory_stats(&mut self, name: &str) -> Result<BalloonStats, Error> {
        let n = name.to_string();
        let uri = self.uri.clone();
        self.call("virDomainMemoryStats", move |c| {
            let d = lookup(c, &n, &uri)?;
            let stats = d
                .memory_stats(0)
                .map_err(lv("virDomainMemoryStats", Some(&n)))?;
            let tags_ = stats
                .iter()
                .map(|&(tag, val)| tags::libvirt_tag(tag, val))
                .collect();
            Ok(tags::balloon_from_tags(tags_))
        })
    }

    fn set_memory(&mut self, name: &str, bytes: u64, scope: Scope) -> Result<(), Error> {
        let n = name.to_string();
        let uri = self.uri.clone();
        self.call("virDomainSetMemoryFlags", move |c| {
            lookup(c, &n, &uri)?
                .set_memory_flags(bytes / KIB, LibvirtBackend::flags(scope))
                .map_err(lv("virDomainSetMemoryFlags", Some(&n)))
        })
    }

    fn set_stats_period(&mut self, name: &str, seconds: u32, scope: Scope) -> Result<(), Error> {
        let secs = i32::try_from(seconds)
            .map_err(|_| Error::BadArgument(format!("period {seconds} s is too large")))?;
        let n = name.to_string();
        let uri = self.uri.clone();
        let r = self.call("virDomainSetMemoryStatsPeriod", move |c| {
            lookup(c, &n, &uri)?
                .set_memory_stats_period(secs, LibvirtBackend::flags(scope))
                .map_err(lv("virDomainSetMemoryStatsPeriod", Some(&n)))
        });
        // The period lives in the XML we cache: read it again next time.
        self.facts.clear();
        r
    }

    fn qemu_pid(&mut self, name: &str) -> Result<Option<u32>, Error> {
        let n = name.to_string();
        let uri = self.uri.clone();
        self.call("virDomainLookupByName", move |c| {
            lookup(c, &n, &uri).map(drop)
        })?;
        Ok(self.pid_of(name))
    }

    fn names(&mut self) -> Result<Vec<String>, Error> {
        self.call("virConnectListAllDomains", |c| {
            let ds = c
                .list_all_domains(sys::VIR_CONNECT_LIST_DOMAINS_ACTIVE)
                .map_err(lv("list_all_domains", None))?;
            Ok(ds.iter().filter_map(|d| d.name().ok()).collect())
        })
    }
}

fn lookup(c: &Connect, name: &str, uri: &str) -> Result<Domain, Error> {
    c.lookup_domain_by_name(name).map_err(|e| {
        if e.code() == sys::VIR_ERR_NO_DOMAIN {
            Error::NoSuchVm {
                name: crate::qmp::clip(name),
                where_: uri.to_string(),
            }
        } else {
            lv("lookup", Some(name))(e)
        }
    })
}
