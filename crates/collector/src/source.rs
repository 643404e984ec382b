//! Where VMs come from, and the one place a source becomes a [`Hypervisor`]: the collector's
//! samples and the CLI's actions (dommemstat, setmem, stats-period) open their backend here.

use std::time::{Duration, Instant};

use memwarden_hv::{Hypervisor, LibvirtBackend, QmpBackend, Transport};
use memwarden_procfs::HostReader;

/// Where VMs come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VmSource {
    /// No VMs (a captured tree, or `--no-vms`).
    None,
    /// A libvirt URI (`qemu:///system`).
    Libvirt {
        uri: String,
        monitor_passthrough: bool,
        /// How libvirt is reached (`Auto`: the RPC client where it serves the URI).
        transport: Transport,
    },
    /// QMP sockets, paths or globs.
    Qmp { patterns: Vec<String> },
}

impl VmSource {
    /// Sockets a sample may hold open at once for this source: libvirt's connection and its
    /// event channel, or one per QMP endpoint read in parallel.
    pub fn sockets(&self, parallelism: usize) -> u64 {
        match self {
            VmSource::None => 0,
            VmSource::Libvirt { .. } => 2,
            VmSource::Qmp { .. } => u64::try_from(parallelism).unwrap_or(u64::MAX),
        }
    }
}

/// How a backend is opened.
#[derive(Debug, Clone)]
pub struct Open {
    /// One VM's whole exchange (libvirt: every call of a sample) must finish within this.
    pub deadline: Duration,
    /// How many QMP endpoints are read at once.
    pub parallelism: usize,
    /// Reads each QEMU's /proc files (QMP: pid, RSS).
    pub reader: HostReader,
    /// Connect to libvirt now, within this, so that an action fails at once with the reason;
    /// `None` connects on the first call (and again after the connection is lost).
    pub connect_now: Option<Duration>,
}

/// An opened backend and the name it is shown by (`libvirt URI`, `qmp`).
pub struct Backend {
    pub hv: Box<dyn Hypervisor + Send>,
    pub name: String,
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backend")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// The backend `source` names; `None` for [`VmSource::None`]. A QMP path that does not
/// exist or a bad glob is an error naming it; so is libvirt when `connect_now` fails.
pub fn open(source: &VmSource, how: &Open) -> Result<Option<Backend>, memwarden_hv::Error> {
    Ok(match source {
        VmSource::None => None,
        VmSource::Libvirt {
            uri,
            monitor_passthrough,
            transport,
        } => {
            let mut b = LibvirtBackend::new(uri);
            b.transport = *transport;
            b.monitor_passthrough = *monitor_passthrough;
            b.timeout = how.deadline;
            // Set up first: the connection is opened with the transport and deadline above.
            if let Some(within) = how.connect_now {
                b.connect_by(Instant::now() + within)?;
            }
            Some(Backend {
                hv: Box::new(b),
                name: format!("libvirt {uri}"),
            })
        }
        VmSource::Qmp { patterns } => {
            let mut b = QmpBackend::new(patterns)?;
            b.timeout = how.deadline;
            b.parallelism = how.parallelism.max(1);
            b.reader = how.reader.clone();
            Some(Backend {
                hv: Box::new(b),
                name: "qmp".to_string(),
            })
        }
    })
}
