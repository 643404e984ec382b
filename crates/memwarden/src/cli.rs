//! Command-line arguments, parsed plainly; resolution into runtime settings happens in commands.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "memwarden",
    version,
    about = "Where a KVM host's memory goes, and what each VM really uses"
)]
pub struct Cli {
    /// Read a captured tree (DIR/proc, DIR/sys) instead of the live system.
    #[arg(long, global = true, value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// Language of explanations.
    #[arg(long, global = true, value_enum, default_value_t = Lang::En)]
    pub lang: Lang,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Lang {
    En,
    Zh,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Where host memory goes: breakdown, identities, black hole, top processes.
    Host(HostArgs),
    /// Explain a /proc/meminfo field (or list all fields this host prints).
    Explain(ExplainArgs),
    /// Per-process memory by PSS, like smem.
    Procs(ProcsArgs),
    /// KSM state, settings and savings, per VM, ksmd's CPU; --tune plans KSM's settings.
    Ksm(KsmArgs),
    /// One raw sample of the host and every VM, as JSON: what a recorder stores and every
    /// analysis reads.
    Sample(SampleArgs),
    /// Each VM's memory as the hypervisor and the guest report it.
    Vms(VmsArgs),
    /// A live terminal view: host summary, VMs, processes by PSS (keys: s sort, / filter, q quit).
    Top(TopArgs),
    /// Print a domain's balloon statistics exactly as `virsh dommemstat` does.
    Dommemstat(DommemstatArgs),
    /// Set the balloon statistics polling period (Nova's mem_stats_period_seconds).
    StatsPeriod(StatsPeriodArgs),
    /// Set a VM's balloon target, refusing unsafe targets unless --force.
    Setmem(SetmemArgs),
    /// Run the daemon: record host + VMs every interval, serve /metrics, a JSON API and a page.
    Serve(ServeArgs),
    /// Print recorded series from the history store.
    History(HistoryArgs),
    /// What grew in the recorded history (meminfo components, processes, VMs), ranked.
    Leaks(LeaksArgs),
    /// The balloon controller's plan for now (a dry run unless --apply), or with --reclaim
    /// SIZE which guests would give SIZE of host memory, safest first.
    Balance(BalanceArgs),
    /// The RAM allocation ratio (Nova's ram_allocation_ratio) this host could carry, from its
    /// recorded history or, with --prometheus, each host's and the fleet's.
    ///
    /// For each sample, over the VMs that reported balloon statistics: promised = Σ max memory;
    /// demand = Σ guest used (MemTotal − MemAvailable in the guest) + Σ QEMU overhead (QEMU RSS
    /// − the guest-resident part, taken as the guest's MemTotal − MemFree capped at the RSS)
    /// − KSM saved (only when every VM of the sample is counted). The ratio is 1 / the
    /// --percentile (time-weighted) of demand/promised over the window: filled to it, guests
    /// like these would have needed all of MemTotal − the host's own use at that percentile.
    /// The host's own use (QEMU excluded, its --percentile) is what reserved_host_memory_mb
    /// should cover. Too short a history, or no VM statistics, gives no number and says why.
    #[command(verbatim_doc_comment)]
    Plan(PlanArgs),
}

#[derive(Debug, Args)]
pub struct BalanceArgs {
    #[command(flatten)]
    pub hv: HvArgs,
    /// Configuration file whose [balloon] section sets the policy (default
    /// /etc/memwarden/memwarden.toml when it exists; `enabled` is serve's and is ignored here).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// History written by `memwarden serve`, for guests' fault and swap-in rates and for the
    /// controller's hysteresis; without it those are unknown and only usable shares are judged.
    #[arg(long, value_name = "PATH", default_value = memwarden_daemon::config::DEFAULT_DB)]
    pub db: PathBuf,
    /// Print the plan and change nothing (the default).
    #[arg(long, conflicts_with = "apply")]
    pub dry_run: bool,
    /// Apply the plan's balloon changes (live only), one cycle.
    #[arg(long)]
    pub apply: bool,
    #[arg(long)]
    pub json: bool,
    /// Which guests would give SIZE of host memory (`2G`, `512M`), how much the host would
    /// really get back, or how much could be had safely.
    #[arg(long, value_name = "SIZE", conflicts_with = "apply")]
    pub reclaim: Option<String>,
    /// Only these VMs (by name; repeatable): the others are neither planned for nor touched.
    #[arg(long = "vm", value_name = "NAME")]
    pub vms: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Configuration file (default /etc/memwarden/memwarden.toml when it exists).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// HTTP address (default 127.0.0.1:9848).
    #[arg(long, value_name = "ADDR:PORT")]
    pub listen: Option<std::net::SocketAddr>,
    /// History file (default /var/lib/memwarden/history.db).
    #[arg(long, value_name = "PATH")]
    pub db: Option<PathBuf>,
    /// Sampling interval (default 10s).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub interval: Option<std::time::Duration>,
    /// libvirt URI (sets [vms] source = "libvirt"). serve reads one VM source: not with --qmp.
    #[arg(long, value_name = "URI", conflicts_with = "qmp")]
    pub connect: Option<String>,
    /// QMP sockets, paths or globs, repeatable (sets [vms] source = "qmp"; not with --connect).
    #[arg(long, value_name = "PATH_OR_GLOB")]
    pub qmp: Vec<String>,
    /// Do not read VMs (host only).
    #[arg(long, conflicts_with_all = ["connect", "qmp"])]
    pub no_vms: bool,
    /// Prometheus exporter web configuration (TLS, basic auth), as node_exporter's flag of
    /// the same name (sets [http] web_config_file).
    #[arg(long = "web.config.file", value_name = "FILE")]
    pub web_config_file: Option<PathBuf>,
}

/// The history file, shared by `history` and `leaks`.
#[derive(Debug, Clone, Args)]
pub struct DbArgs {
    /// History file written by `memwarden serve`.
    #[arg(
        long,
        value_name = "PATH",
        default_value = memwarden_daemon::config::DEFAULT_DB
    )]
    pub db: PathBuf,
    /// How far back (`30m`, `6h`, `7d`).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub since: Option<std::time::Duration>,
}

#[derive(Debug, Args)]
pub struct HistoryArgs {
    #[command(flatten)]
    pub db: DbArgs,
    /// Only this VM's series (and its QEMU process's).
    #[arg(long, value_name = "NAME")]
    pub vm: Option<String>,
    /// A series name or prefix (`meminfo.Slab`, `vm.guest_used`, `host.lru.`); repeatable.
    /// Without it, the names recorded are listed.
    #[arg(long, value_name = "F")]
    pub field: Vec<String>,
    #[arg(long, conflicts_with = "csv")]
    pub json: bool,
    /// One row per sample and series: time, series, value.
    #[arg(long)]
    pub csv: bool,
}

#[derive(Debug, Args)]
pub struct LeaksArgs {
    #[command(flatten)]
    pub db: DbArgs,
    /// The shortest history judged: growth over less is not called a leak.
    #[arg(long, value_name = "DURATION", default_value = "30m", value_parser = parse_duration)]
    pub min_span: std::time::Duration,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct KsmArgs {
    #[command(flatten)]
    pub hv: HvArgs,
    /// Do not ask a hypervisor for VMs (no per-VM rows).
    #[arg(long)]
    pub no_vms: bool,
    /// ksmd's CPU share is measured between two readings this far apart (`0s`: one reading,
    /// CPU time since boot only).
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = parse_duration)]
    pub cpu_window: std::time::Duration,
    /// Print what the KSM tuner would set now, and why (the `[ksm]` section of --config).
    #[arg(long)]
    pub tune: bool,
    /// With --tune: write the plan to /sys/kernel/mm/ksm (under --root's sys/ when given).
    #[arg(long, requires = "tune")]
    pub apply: bool,
    /// Configuration file whose `[ksm]` section tunes (default /etc/memwarden/memwarden.toml
    /// when it exists, else the defaults).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    /// --db: the history file; --since: the window (default 7d).
    #[command(flatten)]
    pub db: DbArgs,
    /// Read every host's history from this Prometheus server (http://HOST:9090) instead of
    /// --db: one query_range per figure over --since.
    #[arg(long, value_name = "URL", conflicts_with = "db")]
    pub prometheus: Option<String>,
    /// Prometheus only: the evaluation step (default: the window / 10000, at least 10s; set
    /// it to the scrape interval for the finest answer).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, requires = "prometheus")]
    pub step: Option<std::time::Duration>,
    /// The risk: which percentile of demand/promised the ratio must carry.
    #[arg(long, value_name = "P", default_value_t = 99.0)]
    pub percentile: f64,
    /// The shortest history planned from; less gives no number.
    #[arg(long, value_name = "DURATION", default_value = "1d", value_parser = parse_duration)]
    pub min_span: std::time::Duration,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct JsonArgs {
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct HostArgs {
    #[arg(long)]
    pub json: bool,
    /// How many processes to list by PSS.
    #[arg(long, default_value_t = 10)]
    pub top: usize,
}

#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// A meminfo field such as `Active(anon)`; omit to list every field.
    pub field: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProcSort {
    Pss,
    Rss,
    Swap,
}

#[derive(Debug, Args)]
pub struct ProcsArgs {
    #[arg(long, default_value_t = 20)]
    pub top: usize,
    #[arg(long, value_enum, default_value_t = ProcSort::Pss)]
    pub sort: ProcSort,
    #[arg(long)]
    pub json: bool,
}

/// Where VMs are found; shared by every VM command.
#[derive(Debug, Clone, Args)]
pub struct HvArgs {
    /// libvirt connection URI (default: [vms] of the configuration file when there is one,
    /// else LIBVIRT_DEFAULT_URI, else qemu:///system).
    #[arg(long, value_name = "URI", conflicts_with = "qmp")]
    pub connect: Option<String>,
    /// Use QMP sockets instead of libvirt (a path or a glob; repeatable).
    #[arg(long, value_name = "PATH_OR_GLOB")]
    pub qmp: Vec<String>,
    /// One VM's whole exchange (connect, greeting, every command) must finish within this;
    /// a VM that does not is shown as "timed out" (`500ms`, `2s`; default: the configuration
    /// file's `deadline`, else 2s).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub deadline: Option<std::time::Duration>,
    /// How many QMP sockets are read at once (default: cores × 4).
    #[arg(long, value_name = "N")]
    pub parallelism: Option<usize>,
}

pub use memwarden_model::units::parse_duration;

#[derive(Debug, Args)]
pub struct VmsArgs {
    #[command(flatten)]
    pub hv: HvArgs,
    /// Configuration file whose [vms] section says where VMs are and `deadline` how long to
    /// wait (default /etc/memwarden/memwarden.toml when it exists); flags override it.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[arg(long)]
    pub json: bool,
    /// libvirt: also read QEMU's newer balloon stats (stat-oom-kills...) through libvirt-qemu's
    /// monitor passthrough. libvirt then marks each domain "tainted: custom-monitor".
    #[arg(long)]
    pub monitor_passthrough: bool,
    /// Also read each QEMU process's smaps_rollup (PSS); its status (RSS, swap) otherwise.
    #[arg(long)]
    pub pss: bool,
}

#[derive(Debug, Args)]
pub struct TopArgs {
    #[command(flatten)]
    pub hv: HvArgs,
    /// Configuration file whose [vms] section says where VMs are (as for `vms`).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Read a running daemon's /api/v1/latest (`http://127.0.0.1:9848`) instead of sampling.
    #[arg(long, value_name = "URL", conflicts_with_all = ["connect", "qmp", "config"])]
    pub from: Option<String>,
    /// Refresh interval, seconds.
    #[arg(short = 'd', value_name = "SECONDS", default_value_t = 2.0)]
    pub delay: f64,
    /// Exit after this many refreshes.
    #[arg(short = 'n', value_name = "N")]
    pub iterations: Option<u64>,
    /// Batch mode, as `top -b`: each refresh printed as text (COLUMNS × LINES, else 80 × 24).
    #[arg(short = 'b', long)]
    pub batch: bool,
}

#[derive(Debug, Args)]
pub struct DommemstatArgs {
    #[command(flatten)]
    pub hv: HvArgs,
    pub domain: String,
    /// Also print tags virsh does not know (newer QEMU stats, unknown tags), after virsh's.
    #[arg(long)]
    pub all: bool,
}

#[derive(Debug, Args)]
pub struct StatsPeriodArgs {
    #[command(flatten)]
    pub hv: HvArgs,
    /// Every running VM.
    #[arg(long)]
    pub all: bool,
    /// DOMAIN SECONDS, or SECONDS with --all.
    #[arg(num_args = 1..=2, required = true)]
    pub args: Vec<String>,
    /// Affect the running domain (default when neither flag is given).
    #[arg(long)]
    pub live: bool,
    /// Affect the persistent configuration.
    #[arg(long)]
    pub config: bool,
}

#[derive(Debug, Args)]
pub struct SetmemArgs {
    #[command(flatten)]
    pub hv: HvArgs,
    pub domain: String,
    /// Target size: a number in KiB (as virsh), or with a unit: 512M, 2G.
    pub size: String,
    /// Skip the safety checks (below guest use + margin, above max).
    #[arg(long)]
    pub force: bool,
    /// Headroom kept above the guest's current use (units as SIZE; KiB default).
    #[arg(long, default_value = "128M")]
    pub margin: String,
    /// Affect the running domain (default when neither flag is given).
    #[arg(long)]
    pub live: bool,
    /// Affect the persistent configuration (libvirt only).
    #[arg(long)]
    pub config: bool,
}

#[derive(Debug, Args)]
pub struct SampleArgs {
    #[command(flatten)]
    pub hv: HvArgs,
    /// Host only: do not ask a hypervisor.
    #[arg(long)]
    pub no_vms: bool,
}
