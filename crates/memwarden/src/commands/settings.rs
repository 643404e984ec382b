//! One resolution of flags over the configuration file, for every command: a command's flags
//! become a [`Flags`] (ripgrep's low-level arguments) and [`Config::resolve`] lays them over
//! the file and the defaults (the high-level configuration the command runs with).

use std::path::Path;
use std::time::Duration;

use anyhow::Result;
use memwarden_collector::VmSource;
use memwarden_daemon::config::{Config, Flags, VmSourceKind};

use crate::cli::{HvArgs, ServeArgs};

/// Where a one-look command finds VMs, and how patiently.
#[derive(Debug, Clone)]
pub(crate) struct Vms {
    pub source: VmSource,
    pub deadline: Duration,
    pub parallelism: usize,
    /// The resolved configuration, for commands that read more of it ([balloon], [ksm]).
    pub config: Config,
}

/// The VM flags of a one-look command over `file` (or the default file) and the defaults.
pub(crate) fn vms(hv: &HvArgs, file: Option<&Path>, monitor_passthrough: bool) -> Result<Vms> {
    let flags = Flags {
        connect: hv.connect.clone(),
        qmp: hv.qmp.clone(),
        deadline: hv.deadline,
        parallelism: hv.parallelism,
        monitor_passthrough,
        ..Flags::default()
    };
    let (config, _) = Config::resolve(file, &flags)?;
    Ok(Vms {
        source: config.vms.vm_source(),
        deadline: config.deadline,
        parallelism: config.vms.parallelism(),
        config,
    })
}

impl Vms {
    /// The collector's configuration for these VMs (`host`: read the host too; `full`: PSS).
    pub fn collector(&self, host: bool, full: bool) -> memwarden_collector::Config {
        memwarden_collector::Config {
            host,
            full,
            require_meminfo: true,
            vms: self.source.clone(),
            deadline: self.deadline,
            parallelism: self.parallelism,
        }
    }
}

/// What the VMs are, in words: "qemu:///system", "/run/qemu/*.qmp", "no VM source".
pub(crate) fn describe(v: &Vms) -> String {
    match v.config.vms.source {
        VmSourceKind::Libvirt => v.config.vms.connect.clone(),
        VmSourceKind::Qmp => v.config.vms.qmp.join(" "),
        VmSourceKind::None => "no VM source ([vms] source = \"none\")".into(),
    }
}

/// `serve`'s flags over its configuration file.
pub(crate) fn serve(a: &ServeArgs) -> Result<(Config, Option<std::path::PathBuf>)> {
    let flags = Flags {
        listen: a.listen,
        db: a.db.clone(),
        interval: a.interval,
        connect: a.connect.clone(),
        qmp: a.qmp.clone(),
        no_vms: a.no_vms,
        web_config_file: a.web_config_file.clone(),
        ..Flags::default()
    };
    Config::resolve(a.config.as_deref(), &flags)
}
