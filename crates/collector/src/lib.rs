//! The one collector that the CLI commands and the daemon call: the host and every VM, read
//! into one [`Sample`].
//!
//! - The host (meminfo and the rest) and the VMs are read at the same time.
//! - Every VM is read on its own under one deadline for its whole exchange; a VM that misses
//!   it, closes, lies about its protocol or floods is a row with its [`ReadStatus`] and the
//!   reason, and the others are shown as usual.
//! - Each QEMU process is read once: VMs are joined to the host's process table by pid; when
//!   the host is not read (`memwarden vms`), only the QEMU processes are, status alone unless
//!   PSS is asked for.
//! - Each source's success and duration go into [`Sample::sources`].

use std::time::{Duration, Instant};

use memwarden_hv::Hypervisor;
use std::collections::HashMap;

use memwarden_model::host::{HostSample, ProcessMem, VmallocInfo};
use memwarden_model::vm::{ReadStatus, VmSample};
use memwarden_model::{Sample, SourceHealth};
use memwarden_procfs::{HostReader, ReadOptions};

pub mod source;
pub use source::VmSource;

/// What to collect and how patiently.
#[derive(Debug, Clone)]
pub struct Config {
    /// Read the host's memory files (meminfo, vmstat, ..., the process table).
    pub host: bool,
    /// Read the costly files too: every process's smaps_rollup (PSS) and /proc/vmallocinfo.
    /// Otherwise processes are read from status alone, and the host's vmallocinfo summary is
    /// the last one read, marked as carried (`VmallocInfo::carried_from_unix_ms`).
    pub full: bool,
    /// A host whose meminfo cannot be read fails the sample (the default); otherwise the
    /// sample goes on without it, saying so (`procs` and the KSM report need none).
    pub require_meminfo: bool,
    pub vms: VmSource,
    /// One VM's whole exchange (libvirt: the whole bulk read) must finish within this.
    pub deadline: Duration,
    /// How many QMP endpoints are read at once.
    pub parallelism: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            host: true,
            full: true,
            require_meminfo: true,
            vms: VmSource::None,
            deadline: memwarden_hv::qmp::DEFAULT_DEADLINE,
            parallelism: memwarden_hv::qmp::default_parallelism(),
        }
    }
}

/// Errors that stop a sample: the host's required files, or a VM source that cannot exist.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("reading host memory")]
    Host(#[source] memwarden_procfs::Error),
    #[error("the host reader stopped unexpectedly (a bug: please report it)")]
    HostReaderPanicked,
    #[error("setting up the VM source")]
    Hypervisor(#[source] memwarden_hv::Error),
}

/// Collects samples; keeps what is worth keeping between them (the libvirt connection, the
/// domain XML and QMP static facts caches).
pub struct Collector {
    cfg: Config,
    reader: HostReader,
    hv: Option<Box<dyn Hypervisor + Send>>,
    hv_name: String,
    /// The last vmallocinfo summary read, and when: carried into samples that do not read it.
    last_vmalloc: Option<(VmallocInfo, u64)>,
}

impl std::fmt::Debug for Collector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Collector")
            .field("cfg", &self.cfg)
            .field("hv", &self.hv_name)
            .finish_non_exhaustive()
    }
}

/// Milliseconds, saturating.
fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Collector {
    /// A collector reading the host through `reader`. A QMP path that does not exist is an
    /// error naming it; libvirt connects on the first sample (and again after it is lost).
    pub fn new(cfg: Config, reader: HostReader) -> Result<Self, Error> {
        let opened = source::open(
            &cfg.vms,
            &source::Open {
                deadline: cfg.deadline,
                parallelism: cfg.parallelism,
                reader: reader.clone(),
                connect_now: None,
            },
        )
        .map_err(Error::Hypervisor)?;
        let (hv, hv_name) = opened.map_or((None, String::new()), |b| (Some(b.hv), b.name));
        Ok(Collector {
            cfg,
            reader,
            hv,
            hv_name,
            last_vmalloc: None,
        })
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// The deadline for every VM's exchange, from the next sample on (a reloaded config).
    /// Applies to QMP and libvirt backends created by this collector.
    pub fn set_deadline(&mut self, deadline: Duration) {
        self.cfg.deadline = deadline;
        if let Some(hv) = self.hv.as_deref_mut() {
            hv.set_timeout(deadline);
        }
    }

    /// Read the costly files (PSS, vmallocinfo: see [`Config::full`]) from the next sample on,
    /// or not: the daemon reads them on a slower cadence than the rest.
    pub fn set_full(&mut self, full: bool) {
        self.cfg.full = full;
    }

    /// The hypervisor behind this collector, for actions (setmem, stats-period).
    pub fn hypervisor(&mut self) -> Option<&mut (dyn Hypervisor + Send + 'static)> {
        self.hv.as_deref_mut()
    }

    /// One sample. Fails only when the host was asked for and meminfo cannot be read.
    pub fn collect(&mut self) -> Result<Sample, Error> {
        let taken_at_unix_ms = memwarden_model::clock::now_unix_ms();
        let opts = ReadOptions {
            smaps: self.cfg.full,
            vmallocinfo: self.cfg.full,
            require_meminfo: self.cfg.require_meminfo,
        };
        let reader = &self.reader;
        let want_host = self.cfg.host;
        let hv = self.hv.as_deref_mut();
        let hv_name = &self.hv_name;
        let (host, vms) = std::thread::scope(|s| {
            let host = want_host.then(|| {
                s.spawn(move || {
                    let t = Instant::now();
                    (
                        reader.read_host_with(opts).map_err(Error::Host),
                        t.elapsed(),
                    )
                })
            });
            let vms = hv.map(|hv| {
                let t = Instant::now();
                (hv.list(), t.elapsed())
            });
            let host = host.map(|h| {
                h.join()
                    .unwrap_or((Err(Error::HostReaderPanicked), Duration::ZERO))
            });
            (host, vms)
        });
        let mut sample = Sample {
            taken_at_unix_ms,
            ..Sample::default()
        };
        if let Some((h, took)) = host {
            let h = h?;
            sample.sources.push(SourceHealth {
                name: "host".into(),
                ok: true,
                duration_ms: ms(took),
                error: None,
                transport: None,
            });
            sample.host = h;
            carry_vmalloc(
                &mut self.last_vmalloc,
                &mut sample.host,
                opts,
                taken_at_unix_ms,
            );
        }
        if let Some((r, took)) = vms {
            let transport = self
                .hv
                .as_deref()
                .and_then(|h| h.transport())
                .map(String::from);
            match r {
                Ok(mut list) => {
                    self.join_processes(&sample.host, &mut list, opts);
                    sample.sources.push(SourceHealth {
                        name: hv_name.clone(),
                        ok: true,
                        duration_ms: ms(took),
                        error: None,
                        transport,
                    });
                    sample.vms = list;
                }
                Err(e) => {
                    let why = format!(
                        "VMs not read: {}{}",
                        e.plain(),
                        if hv_name.starts_with("libvirt") {
                            "; trying again on the next sample"
                        } else {
                            ""
                        }
                    );
                    sample.sources.push(SourceHealth {
                        name: hv_name.clone(),
                        ok: false,
                        duration_ms: ms(took),
                        error: Some(why.clone()),
                        transport,
                    });
                    sample.degraded.push(why);
                }
            }
        }
        Ok(sample)
    }

    /// Gives each VM its QEMU process (from the host's table when it was read, else read now) and
    /// its memory cgroup.
    fn join_processes(&self, host: &HostSample, vms: &mut [VmSample], opts: ReadOptions) {
        let by_pid: HashMap<u32, &ProcessMem> = host.processes.iter().map(|p| (p.pid, p)).collect();
        for vm in vms.iter_mut() {
            let Some(pid) = vm.qemu_pid else { continue };
            if vm.read.status == ReadStatus::Gone {
                continue;
            }
            // The VM's memory cgroup (its KVM page tables): absent on cgroup v1 hosts.
            match self.reader.read_vm_cgroup(pid) {
                Ok(cg) => vm.cgroup = cg,
                Err(e) if e.is_gone() => {}
                Err(e) => vm
                    .degraded
                    .push(format!("QEMU process {pid}'s cgroup: {e}")),
            }
            if self.cfg.host {
                vm.host = by_pid.get(&pid).map(|p| (*p).clone());
                if vm.host.is_none() {
                    vm.degraded
                        .push(format!("QEMU process {pid} is not in the process table"));
                }
                continue;
            }
            match self.reader.read_process_with(pid, opts) {
                Ok(p) => vm.host = Some(p),
                Err(e) => vm.degraded.push(format!("QEMU process {pid}: {e}")),
            }
        }
    }
}

/// Remembers a vmallocinfo read in `last`, or fills a sample that did not read it with the
/// last one, marked as carried.
fn carry_vmalloc(
    last: &mut Option<(VmallocInfo, u64)>,
    host: &mut HostSample,
    opts: ReadOptions,
    now_unix_ms: u64,
) {
    if opts.vmallocinfo {
        *last = host.vmalloc.clone().map(|v| (v, now_unix_ms));
    } else if let Some((v, at)) = last {
        host.vmalloc = Some(VmallocInfo {
            carried_from_unix_ms: Some(*at),
            ..v.clone()
        });
    }
}

/// How many VMs of `sample` could not be read (for exit codes).
pub fn unread_vms(sample: &Sample) -> usize {
    sample
        .vms
        .iter()
        .filter(|v| v.read.status != ReadStatus::Ok)
        .count()
}
