//! `memwarden serve`'s configuration: one TOML file, every key documented here (the README's
//! configuration reference is this file's doc comments), unknown keys refused with the key and
//! the file named. Command-line flags override the file.
//!
//! Plain data and serde only (no store, no server): the config fuzz target compiles this file
//! on its own.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use memwarden_model::units::duration_str;
use serde::{Deserialize, Serialize};

/// Where `serve` looks for its configuration when `--config` is not given (absent is fine).
pub const DEFAULT_PATH: &str = "/etc/memwarden/memwarden.toml";
/// Where the history lives unless `db` says otherwise (`history` and `leaks` read it too).
pub const DEFAULT_DB: &str = "/var/lib/memwarden/history.db";
/// 9848: no exporter on Prometheus's default-port allocation list uses it.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9848";

/// What a command's flags set (ripgrep's low-level arguments): `None`, empty or `false` leaves
/// the configuration file's value, or the default. [`Config::resolve`] lays them over the file.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Flags {
    pub listen: Option<SocketAddr>,
    pub db: Option<PathBuf>,
    pub interval: Option<Duration>,
    pub deadline: Option<Duration>,
    /// A libvirt URI: the VM source becomes libvirt at this URI.
    pub connect: Option<String>,
    /// QMP sockets: the VM source becomes QMP.
    pub qmp: Vec<String>,
    pub no_vms: bool,
    pub monitor_passthrough: bool,
    pub parallelism: Option<usize>,
    pub web_config_file: Option<PathBuf>,
}

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address of the HTTP server (/metrics, /api/v1/..., the page). Loopback by default:
    /// the JSON API shows process names and VM names; bind elsewhere only behind a firewall
    /// or a reverse proxy that authenticates.
    pub listen: SocketAddr,
    /// The SQLite history file (created with its directory).
    pub db: PathBuf,
    /// How often the host, the VMs and KSM are sampled.
    #[serde(with = "duration_str")]
    pub interval: Duration,
    /// One VM's whole exchange must finish within this; a VM that does not is marked for that
    /// sample ("timed out") and never waited for.
    #[serde(with = "duration_str")]
    pub deadline: Duration,
    pub vms: VmsConfig,
    pub http: HttpConfig,
    pub record: RecordConfig,
    pub retention: RetentionConfig,
    /// `[balloon]`: the balloon controller (off by default); its keys are
    /// `memwarden_policy::Config`'s.
    pub balloon: memwarden_policy::Config,
    /// `[ksm]`: the KSM tuner, off unless `tune = true`; its keys are documented on
    /// [`memwarden_policy::ksm::KsmConfig`].
    pub ksm: memwarden_policy::ksm::KsmConfig,
}

/// `[vms]`: where VMs come from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VmsConfig {
    /// `libvirt`, `qmp` or `none`.
    pub source: VmSourceKind,
    /// libvirt URI (source = "libvirt"; a URI other than the default is refused with
    /// source = "qmp": one source is read).
    pub connect: String,
    /// QMP sockets, paths or globs (source = "qmp"; refused with source = "libvirt").
    pub qmp: Vec<String>,
    /// libvirt: also read QEMU's newer balloon stats through libvirt-qemu's monitor
    /// passthrough (libvirt then marks each domain "tainted: custom-monitor").
    pub monitor_passthrough: bool,
    /// QMP sockets read at once (default: cores × 4).
    pub parallelism: Option<usize>,
    /// How libvirt is reached (source = "libvirt"): `auto` (memwarden's own RPC client for
    /// `qemu:///system`, `qemu:///session` and `qemu+ssh://` through `virt-ssh-helper`,
    /// libvirt.so for other URIs), `rpc`
    /// (the RPC client only: other URIs are an error) or `library` (libvirt.so always).
    pub transport: TransportChoice,
}

/// `[vms] transport`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TransportChoice {
    #[default]
    Auto,
    Rpc,
    Library,
}

impl From<TransportChoice> for memwarden_hv::Transport {
    fn from(t: TransportChoice) -> Self {
        match t {
            TransportChoice::Auto => memwarden_hv::Transport::Auto,
            TransportChoice::Rpc => memwarden_hv::Transport::Rpc,
            TransportChoice::Library => memwarden_hv::Transport::Ffi,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VmSourceKind {
    Libvirt,
    Qmp,
    None,
}

/// `[http]`: limits on the HTTP side, so that no client (or many) can take what sampling needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Connections served at once. Beyond it, a connection that has not yet sent a whole
    /// request head is closed to make room for the newcomer (oldest first); when every one is
    /// busy with a request, newcomers wait in the kernel's listen backlog (no fd of ours). The
    /// daemon lowers this at start when the open-file limit leaves too few fds (see the log).
    pub max_connections: usize,
    /// A request head (request line and headers) must arrive whole within this of the
    /// connection opening or of the previous response: slow or half-sent heads are cut, and so
    /// is a keep-alive connection idle for this long.
    #[serde(with = "duration_str")]
    pub header_timeout: Duration,
    /// A connection on which no byte is read or written for this long is closed, whatever it
    /// is doing (a client that stops reading its response, a stalled request body).
    #[serde(with = "duration_str")]
    pub idle_timeout: Duration,
    /// Largest request head (request line and headers), bytes; a larger one gets 431.
    pub max_head_bytes: usize,
    /// Longest `since` that /api/v1/series and /api/v1/leaks serve; a longer one gets 400
    /// naming this cap (`memwarden history` and `memwarden leaks` on the host read any range).
    #[serde(with = "duration_str")]
    pub max_range: Duration,
    /// A Prometheus exporter web configuration file (YAML, the `--web.config.file` format of
    /// node_exporter and prometheus/exporter-toolkit): `tls_server_config` serves every route
    /// over TLS, `basic_auth_users` (user: bcrypt hash) asks for a password. A bad file stops
    /// the daemon at start; SIGHUP reads it again and keeps the running one if the new one is
    /// bad. Relative paths in it are taken from its directory. Unset: plain HTTP, no
    /// authentication (`serve --web.config.file` sets it too).
    pub web_config_file: Option<PathBuf>,
}

/// `[record]`: what goes into the history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RecordConfig {
    /// Keep every process's full command line. Off by default: arguments can hold secrets;
    /// the process name (and a QEMU's domain) is kept either way.
    pub keep_cmdlines: bool,
    /// Read every process's smaps_rollup (PSS) this often; the other samples read only each
    /// process's status (RSS, swap), which costs a tenth as much.
    #[serde(with = "duration_str")]
    pub pss_every: Duration,
    /// Run retention and downsampling this often.
    #[serde(with = "duration_str")]
    pub maintain_every: Duration,
}

/// `[retention]`: how long each resolution is kept.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    /// Every sample.
    #[serde(with = "duration_str")]
    pub full: Duration,
    /// One-minute means.
    #[serde(with = "duration_str")]
    pub minute: Duration,
    /// One-hour means.
    #[serde(with = "duration_str")]
    pub hour: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: DEFAULT_LISTEN
                .parse()
                .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 9848))),
            db: PathBuf::from(DEFAULT_DB),
            interval: Duration::from_secs(10),
            deadline: Duration::from_secs(2),
            vms: VmsConfig::default(),
            http: HttpConfig::default(),
            record: RecordConfig::default(),
            retention: RetentionConfig::default(),
            balloon: memwarden_policy::Config::default(),
            ksm: Default::default(),
        }
    }
}

impl Default for VmsConfig {
    fn default() -> Self {
        VmsConfig {
            source: VmSourceKind::Libvirt,
            connect: "qemu:///system".into(),
            qmp: Vec::new(),
            monitor_passthrough: false,
            parallelism: None,
            transport: TransportChoice::Auto,
        }
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            max_connections: 256,
            header_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(30),
            max_head_bytes: 16 * 1024,
            max_range: Duration::from_secs(7 * 86_400),
            web_config_file: None,
        }
    }
}

impl Default for RecordConfig {
    fn default() -> Self {
        RecordConfig {
            keep_cmdlines: false,
            pss_every: Duration::from_secs(60),
            maintain_every: Duration::from_secs(300),
        }
    }
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig {
            full: Duration::from_secs(2 * 86_400),
            minute: Duration::from_secs(30 * 86_400),
            hour: Duration::from_secs(365 * 86_400),
        }
    }
}

impl VmsConfig {
    /// The collector's VM source this section names: the one place `[vms]` is resolved.
    pub fn vm_source(&self) -> memwarden_collector::VmSource {
        use memwarden_collector::VmSource;
        match self.source {
            VmSourceKind::Libvirt => VmSource::Libvirt {
                uri: self.connect.clone(),
                monitor_passthrough: self.monitor_passthrough,
                transport: self.transport.into(),
            },
            VmSourceKind::Qmp => VmSource::Qmp {
                patterns: self.qmp.clone(),
            },
            VmSourceKind::None => VmSource::None,
        }
    }

    /// QMP endpoints read at once (`parallelism`, else the collector's default).
    pub fn parallelism(&self) -> usize {
        self.parallelism
            .unwrap_or_else(|| memwarden_collector::Config::default().parallelism)
    }

    /// One source is read: a `qmp` list or a libvirt URI that the source would leave unread is
    /// refused by name, never silently dropped. `source = "none"` reads none, whatever is set.
    pub fn validate(&self) -> anyhow::Result<()> {
        let default_uri = VmsConfig::default().connect;
        match self.source {
            VmSourceKind::Qmp if self.qmp.is_empty() => {
                bail!("[vms] source = \"qmp\" needs qmp = [\"/path/or/glob\", ...]")
            }
            VmSourceKind::Qmp if self.connect != default_uri => bail!(
                "[vms] connect = {:?} is set but source = \"qmp\": memwarden reads one VM source; \
                 remove connect, or remove qmp and set source = \"libvirt\"",
                self.connect
            ),
            VmSourceKind::Qmp if self.transport != TransportChoice::Auto => bail!(
                "[vms] transport = {:?} is for libvirt, but source = \"qmp\": remove transport",
                self.transport
            ),
            VmSourceKind::Libvirt if !self.qmp.is_empty() => bail!(
                "[vms] qmp is set but source = \"libvirt\" (the default): memwarden reads one VM \
                 source; set source = \"qmp\" to read the QMP sockets, or remove qmp"
            ),
            _ => Ok(()),
        }
    }
}

impl HttpConfig {
    /// The bounds each key must keep (hyper needs at least 8 KiB of head buffer).
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.max_connections == 0 {
            bail!("[http] max_connections must be at least 1");
        }
        if self.max_head_bytes < 8192 {
            bail!(
                "[http] max_head_bytes {} is below 8192 (the least the HTTP parser accepts)",
                self.max_head_bytes
            );
        }
        if self.header_timeout.is_zero() || self.idle_timeout.is_zero() {
            bail!("[http] header_timeout and idle_timeout must be above zero");
        }
        if self.max_range.is_zero() {
            bail!("[http] max_range must be above zero");
        }
        Ok(())
    }
}

impl Config {
    /// Parses `text` (from `path`, named in every error).
    pub fn parse(text: &str, path: &Path) -> anyhow::Result<Config> {
        let cfg: Config =
            toml::from_str(text).with_context(|| format!("configuration {}", path.display()))?;
        cfg.validate()
            .with_context(|| format!("configuration {}", path.display()))?;
        Ok(cfg)
    }

    /// `explicit` must exist; without it, [`DEFAULT_PATH`] is read when present, else the
    /// defaults. Returns the file it read, if any.
    pub fn load(explicit: Option<&Path>) -> anyhow::Result<(Config, Option<PathBuf>)> {
        let path = match explicit {
            Some(p) => p.to_path_buf(),
            None if Path::new(DEFAULT_PATH).exists() => PathBuf::from(DEFAULT_PATH),
            None => return Ok((Config::default(), None)),
        };
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading configuration {}", path.display()))?;
        Ok((Config::parse(&text, &path)?, Some(path)))
    }

    /// The configuration a command runs with, resolved once: the file (`explicit`, else
    /// [`DEFAULT_PATH`] when present), then `LIBVIRT_DEFAULT_URI` when no file was read, then
    /// `flags` over both. Every command (serve, vms, sample, balance, ksm, dommemstat, setmem,
    /// stats-period) goes through here, so a host configured once is read the same way by all.
    /// The VM source is validated; `serve` validates the rest (intervals mean nothing to a
    /// one-look command).
    pub fn resolve(
        explicit: Option<&Path>,
        flags: &Flags,
    ) -> anyhow::Result<(Config, Option<PathBuf>)> {
        let (mut cfg, path) = Config::load(explicit)?;
        if path.is_none() {
            if let Some(uri) = std::env::var("LIBVIRT_DEFAULT_URI")
                .ok()
                .filter(|u| !u.is_empty())
            {
                cfg.vms.connect = uri;
            }
        }
        cfg.apply(flags);
        cfg.vms.validate().with_context(|| match &path {
            Some(p) => format!("configuration {} with the command's flags", p.display()),
            None => "the command's flags".to_string(),
        })?;
        Ok((cfg, path))
    }

    fn apply(&mut self, f: &Flags) {
        if let Some(l) = f.listen {
            self.listen = l;
        }
        if let Some(d) = &f.db {
            self.db = d.clone();
        }
        if let Some(i) = f.interval {
            self.interval = i;
            // A short --interval brings the deadline down with it: a sample ends before the next.
            if self.deadline >= i {
                self.deadline = i / 2;
            }
        }
        if let Some(d) = f.deadline {
            self.deadline = d;
        }
        // A VM flag replaces the file's choice of source whole.
        if let Some(c) = &f.connect {
            self.vms.source = VmSourceKind::Libvirt;
            self.vms.connect = c.clone();
            self.vms.qmp.clear();
            self.vms.transport = TransportChoice::Auto;
        }
        if !f.qmp.is_empty() {
            self.vms.source = VmSourceKind::Qmp;
            self.vms.qmp = f.qmp.clone();
            self.vms.connect = VmsConfig::default().connect;
            self.vms.transport = TransportChoice::Auto;
        }
        if f.no_vms {
            self.vms.source = VmSourceKind::None;
        }
        self.vms.monitor_passthrough |= f.monitor_passthrough;
        if let Some(p) = f.parallelism {
            self.vms.parallelism = Some(p);
        }
        if let Some(w) = &f.web_config_file {
            self.http.web_config_file = Some(w.clone());
        }
    }

    pub fn validate(&self) -> anyhow::Result<()> {
        if self.interval < Duration::from_millis(100) {
            bail!("interval {:?} is below 100ms", self.interval);
        }
        if self.deadline >= self.interval {
            bail!(
                "deadline {:?} must be shorter than interval {:?}: a sample must end before the next begins",
                self.deadline,
                self.interval
            );
        }
        self.vms.validate()?;
        if self.record.pss_every < self.interval {
            bail!("[record] pss_every must be at least the interval");
        }
        self.http.validate()?;
        self.balloon.validate()?;
        self.ksm.validate()?;
        Ok(())
    }

    /// What `SIGHUP` cannot change in a running daemon (it needs a restart), by key.
    pub fn restart_needed(&self, new: &Config) -> Vec<&'static str> {
        let mut keys = Vec::new();
        if self.listen != new.listen {
            keys.push("listen");
        }
        if self.db != new.db {
            keys.push("db");
        }
        if self.vms != new.vms {
            keys.push("[vms]");
        }
        if self.http != new.http {
            keys.push("[http]");
        }
        keys
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_documented_in_the_example_parses_and_defaults_hold() {
        let text = include_str!("../../../deploy/memwarden.toml");
        let cfg = Config::parse(text, Path::new("deploy/memwarden.toml")).expect("example");
        assert_eq!(cfg, Config::default(), "the example shows the defaults");
    }

    #[test]
    fn an_unknown_key_is_refused_naming_the_key_and_the_file() {
        let e = Config::parse("[record]\nkeep_cmdline = true\n", Path::new("/etc/x.toml"))
            .expect_err("typo");
        let msg = format!("{e:#}");
        assert!(msg.contains("/etc/x.toml"), "{msg}");
        assert!(msg.contains("keep_cmdline"), "{msg}");
        assert!(msg.contains("line 2"), "{msg}");
    }

    #[test]
    fn durations_are_written_as_text() {
        let cfg = Config::parse("interval = \"30s\"\ndeadline = \"500ms\"\n", Path::new("c"))
            .expect("parse");
        assert_eq!(cfg.interval, Duration::from_secs(30));
        assert_eq!(cfg.deadline, Duration::from_millis(500));
        let e = Config::parse("interval = \"10 sec\"\n", Path::new("c")).expect_err("bad");
        assert!(format!("{e:#}").contains("10 sec"), "{e:#}");
    }

    #[test]
    fn http_limits_parse_and_bad_ones_are_refused() {
        let cfg = Config::parse(
            "[http]\nmax_connections = 8\nheader_timeout = \"2s\"\nmax_range = \"1d\"\n",
            Path::new("c"),
        )
        .expect("parse");
        assert_eq!(cfg.http.max_connections, 8);
        assert_eq!(cfg.http.header_timeout, Duration::from_secs(2));
        assert_eq!(cfg.http.max_range, Duration::from_secs(86_400));
        assert_eq!(
            cfg.http.idle_timeout,
            Duration::from_secs(30),
            "default kept"
        );
        let e = Config::parse("[http]\nmax_head_bytes = 100\n", Path::new("c")).expect_err("bad");
        assert!(format!("{e:#}").contains("max_head_bytes"), "{e:#}");
        let e = Config::parse("[http]\nmax_connections = 0\n", Path::new("c")).expect_err("bad");
        assert!(format!("{e:#}").contains("max_connections"), "{e:#}");
    }

    /// `[vms] transport` reaches the backend the factory builds, and is refused where it
    /// would be ignored.
    #[test]
    fn the_libvirt_transport_is_a_key() {
        use memwarden_collector::VmSource;
        let c = Config::parse("[vms]\ntransport = \"library\"\n", Path::new("c")).expect("valid");
        assert!(
            matches!(
                c.vms.vm_source(),
                VmSource::Libvirt {
                    transport: memwarden_hv::Transport::Ffi,
                    ..
                }
            ),
            "{:?}",
            c.vms.vm_source()
        );
        let e = Config::parse(
            "[vms]\nsource = \"qmp\"\nqmp = [\"/run/a.qmp\"]\ntransport = \"rpc\"\n",
            Path::new("c"),
        )
        .expect_err("a transport with QMP");
        assert!(format!("{e:#}").contains("[vms] transport"), "{e:#}");
        let e = Config::parse("[vms]\ntransport = \"ssh\"\n", Path::new("c"))
            .expect_err("an unknown transport");
        assert!(format!("{e:#}").contains("transport"), "{e:#}");
    }

    #[test]
    fn one_vm_source_only_each_key_named() {
        let e = Config::parse("[vms]\nqmp = [\"/run/a.qmp\"]\n", Path::new("/etc/m.toml"))
            .expect_err("qmp with the default source");
        let msg = format!("{e:#}");
        assert!(
            msg.contains("[vms] qmp")
                && msg.contains("source = \"libvirt\"")
                && msg.contains("/etc/m.toml"),
            "{msg}"
        );
        let e = Config::parse(
            "[vms]\nsource = \"qmp\"\nqmp = [\"/run/a.qmp\"]\nconnect = \"qemu+ssh://h/system\"\n",
            Path::new("c"),
        )
        .expect_err("a URI left unread");
        let msg = format!("{e:#}");
        assert!(
            msg.contains("[vms] connect") && msg.contains("qemu+ssh://h/system"),
            "{msg}"
        );
        // What reads one source is accepted: the example's explicit default URI with QMP,
        // and anything with source = "none".
        for ok in [
            "[vms]\nsource = \"qmp\"\nqmp = [\"/run/a.qmp\"]\nconnect = \"qemu:///system\"\n",
            "[vms]\nsource = \"none\"\nqmp = [\"/run/a.qmp\"]\nconnect = \"qemu+ssh://h/system\"\n",
            "[vms]\nconnect = \"qemu+ssh://h/system\"\n",
        ] {
            Config::parse(ok, Path::new("c")).unwrap_or_else(|e| panic!("{ok}: {e:#}"));
        }
    }

    #[test]
    fn a_deadline_longer_than_the_interval_is_refused() {
        let e = Config::parse("interval = \"1s\"\ndeadline = \"2s\"\n", Path::new("c"))
            .expect_err("refused");
        assert!(format!("{e:#}").contains("deadline"), "{e:#}");
    }

    #[test]
    fn flags_lay_over_the_file_and_a_vm_flag_replaces_its_source_whole() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("m.toml");
        std::fs::write(
            &file,
            "interval = \"10s\"\ndeadline = \"3s\"\n[vms]\nsource = \"qmp\"\nqmp = [\"/run/q/*.qmp\"]\n",
        )
        .expect("write");
        let (cfg, path) = Config::resolve(Some(&file), &Flags::default()).expect("file alone");
        assert_eq!(path.as_deref(), Some(file.as_path()));
        assert_eq!(cfg.vms.source, VmSourceKind::Qmp);
        assert_eq!(cfg.deadline, Duration::from_secs(3));

        let flags = Flags {
            connect: Some("qemu+ssh://kvm01/system".into()),
            interval: Some(Duration::from_secs(2)),
            ..Flags::default()
        };
        let (cfg, _) = Config::resolve(Some(&file), &flags).expect("with flags");
        assert_eq!(cfg.vms.source, VmSourceKind::Libvirt);
        assert_eq!(cfg.vms.connect, "qemu+ssh://kvm01/system");
        assert!(
            cfg.vms.qmp.is_empty(),
            "the file's qmp list goes with its source"
        );
        assert_eq!(cfg.interval, Duration::from_secs(2));
        assert_eq!(
            cfg.deadline,
            Duration::from_secs(1),
            "brought below the interval"
        );
        cfg.validate().expect("valid as serve would check it");

        let flags = Flags {
            deadline: Some(Duration::from_millis(500)),
            no_vms: true,
            ..Flags::default()
        };
        let (cfg, _) = Config::resolve(Some(&file), &flags).expect("no VMs");
        assert_eq!(cfg.vms.source, VmSourceKind::None);
        assert_eq!(cfg.deadline, Duration::from_millis(500));
    }
}
