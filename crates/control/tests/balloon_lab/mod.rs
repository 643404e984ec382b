//! One balloon scenario on real lab guests, under libvirt or plain QEMU (QMP), run with any
//! controller (memwarden's policy or an oracle), so that the tests and the comparison bench see
//! the same thing:
//!
//! 1. two 512 MiB guests boot (stats every 1 s); each touches 200 MiB and frees it, so that
//!    QEMU holds memory the guest does not use (what ballooning can really give back);
//! 2. the controller runs every [`CYCLE`] on a host told it is under pressure (each controller's
//!    own knob, set so that it acts), only on these two domains; after [`SQUEEZE`] the drop in
//!    each QEMU's RSS is the host's real gain;
//! 3. guest A fills 100 MiB at once and guest B 8 MiB a second for 30 s, in anonymous memory
//!    the OOM killer can take, while the controller keeps running; [`AFTER_FILL`] later the
//!    guests' own kernels say whether anything was killed, and every memhog is counted;
//! 4. optionally ([`Phases::hold_after_drop`]) every memhog is killed and the controller runs on
//!    for a while: the long run in which direction changes are counted.
//!
//! Everything is read from the real thing: QEMU's RSS from the host's /proc (through the
//! collector), balloon sizes and guest figures from libvirt or QMP, OOM kills from the guest's
//! dmesg.

#![allow(dead_code)] // The test and the bench each use their own part.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use memwarden_analysis::vm::figures;
use memwarden_analysis::vm::target::check_target;
use memwarden_collector::{Collector, Config as CollectorConfig, VmSource};
use memwarden_control::balloon::{self, Cycle};
use memwarden_lab::{both, Domain, DomainOpts, GuestOpts, Lab, MultiGuest, QemuGuest, URI};
use memwarden_model::units::MIB;
use memwarden_policy::{Controller, Direction};
use memwarden_procfs::HostReader;

pub const CYCLE: Duration = Duration::from_secs(2);
pub const SQUEEZE: Duration = Duration::from_secs(80);
pub const AFTER_FILL: Duration = Duration::from_secs(20);
pub const SUDDEN_MIB: u64 = 100;
pub const GRADUAL: (u64, u64) = (30, 8); // 30 memhogs of 8 MiB, one a second

/// memwarden's policy with a host target no host meets: it is under pressure all along.
pub fn memwarden() -> memwarden_policy::Config {
    memwarden_policy::Config {
        host_min_available_bytes: u64::MAX / 4,
        ..memwarden_policy::Config::default()
    }
}

/// MOM's stock rules with the pressure threshold raised so that it acts (as in the issue's
/// measurement of MOM 0.6.5).
pub fn mom() -> memwarden_policy::oracles::mom::MomRules {
    memwarden_policy::oracles::mom::MomRules {
        pressure_threshold: 0.99,
        ..Default::default()
    }
}

/// Proxmox aiming the host at 1 % used, each guest's floor a quarter of its maximum (what a
/// `balloon: 128` on a 512 MiB VM says).
pub fn proxmox() -> memwarden_policy::oracles::proxmox::ProxmoxConfig {
    memwarden_policy::oracles::proxmox::ProxmoxConfig {
        target_pct: 1.0,
        floor_share: Some(0.25),
        ..Default::default()
    }
}

/// A lab guest under either backend: what the scenario needs of it.
pub trait Guest: Sync {
    fn name(&self) -> String;
    fn console_timeout(&self, cmd: &str, timeout: Duration) -> memwarden_lab::Result<String>;
    fn console(&self, cmd: &str) -> memwarden_lab::Result<String> {
        self.console_timeout(cmd, memwarden_lab::CONSOLE_TIMEOUT)
    }
}

impl Guest for Domain {
    fn name(&self) -> String {
        Domain::name(self).to_string()
    }
    fn console_timeout(&self, cmd: &str, timeout: Duration) -> memwarden_lab::Result<String> {
        Domain::console_timeout(self, cmd, timeout)
    }
}

impl Guest for QemuGuest {
    fn name(&self) -> String {
        QemuGuest::name(self)
    }
    fn console_timeout(&self, cmd: &str, timeout: Duration) -> memwarden_lab::Result<String> {
        QemuGuest::console_timeout(self, cmd, timeout)
    }
}

/// Where the controller reads and acts.
#[derive(Debug, Clone)]
pub enum Backend {
    /// The lab's libvirtd (`qemu:///system`).
    Libvirt,
    /// Plain QEMU: these QMP sockets.
    Qmp(Vec<String>),
}

/// How long each phase lasts.
#[derive(Debug, Clone, Copy)]
pub struct Phases {
    pub squeeze: Duration,
    pub after_fill: Duration,
    /// Kill every memhog after the fill and run on this long (`None`: stop after the fill).
    pub hold_after_drop: Option<Duration>,
}

impl Default for Phases {
    fn default() -> Self {
        Phases {
            squeeze: SQUEEZE,
            after_fill: AFTER_FILL,
            hold_after_drop: None,
        }
    }
}

/// One VM at one cycle.
#[derive(Debug, Clone)]
pub struct Point {
    pub at_s: f64,
    pub actual: Option<u64>,
    pub usable_share: Option<f64>,
    pub rss: Option<u64>,
    pub major_faults: Option<u64>,
}

/// One action, when and whether it passed memwarden's floor rule at the time.
#[derive(Debug, Clone)]
pub struct Done {
    pub at_s: f64,
    pub vm: String,
    pub direction: Direction,
    pub from: u64,
    pub target: u64,
    pub below_floor: Option<String>,
    pub refused: Option<String>,
}

/// What a run gives.
#[derive(Debug, Default)]
pub struct Outcome {
    pub controller: String,
    /// Per VM (A, B): points every cycle.
    pub points: BTreeMap<String, Vec<Point>>,
    pub actions: Vec<Done>,
    /// Per VM: QEMU RSS when the controller started and when the squeeze ended.
    pub rss_start: BTreeMap<String, u64>,
    pub rss_squeezed: BTreeMap<String, u64>,
    /// Seconds from the start when the fills began, and when the memhogs were killed.
    pub fill_at_s: f64,
    pub drop_at_s: Option<f64>,
    /// Seconds from the start to the end of the run.
    pub end_s: f64,
    /// Per VM: OOM kills its kernel logged, memhogs alive of those started.
    pub oom_kills: BTreeMap<String, u64>,
    pub hogs_alive: BTreeMap<String, (u64, u64)>,
    /// Per VM: the guest's major faults during the fill phase (balloon stats).
    pub fill_major_faults: BTreeMap<String, u64>,
    /// Per VM: the longest stretch its usable share stayed under 10 % before a growth (s).
    pub longest_wait_s: BTreeMap<String, f64>,
    /// Per VM: the first growth after the fills began, seconds after them.
    pub react_s: BTreeMap<String, Option<f64>>,
    pub console_errors: Vec<String>,
    /// Why the controller left a VM alone, each time the reason changed: (s, VM, reason).
    pub skips: Vec<(f64, String, String)>,
}

impl Outcome {
    pub fn host_gain(&self) -> i64 {
        self.rss_start
            .iter()
            .map(|(vm, s)| *s as i64 - *self.rss_squeezed.get(vm).unwrap_or(s) as i64)
            .sum()
    }

    /// Direction changes per VM over the whole run.
    pub fn reversals(&self, vm: &str) -> usize {
        self.reversals_between(vm, 0.0, f64::INFINITY)
    }

    /// Direction changes per VM among the actions taken in `[from_s, to_s)`.
    pub fn reversals_between(&self, vm: &str, from_s: f64, to_s: f64) -> usize {
        let dirs: Vec<Direction> = self
            .actions
            .iter()
            .filter(|a| a.vm == vm && a.refused.is_none())
            .filter(|a| (from_s..to_s).contains(&a.at_s))
            .map(|a| a.direction)
            .collect();
        dirs.windows(2).filter(|w| w[0] != w[1]).count()
    }
}

/// A 512 MiB libvirt domain with stats every second and these `<memballoon>` attributes.
pub fn domain(lab: &Lab, name: &str, balloon_attrs: &str) -> Domain {
    Domain::start(
        lab,
        DomainOpts {
            name: name.into(),
            mem_mib: 512,
            stats_period: 1,
            balloon_attrs: balloon_attrs.into(),
            ..DomainOpts::default()
        },
    )
    .expect("lab domain")
}

/// A 512 MiB plain-QEMU guest with stats every second and these balloon device properties.
pub fn qemu_guest(lab: &Lab, name: &str, balloon_opts: &str) -> QemuGuest {
    QemuGuest::boot(
        lab,
        GuestOpts {
            name: name.into(),
            mem_mib: 512,
            stats_polling: Some(1),
            balloon_opts: balloon_opts.into(),
            ..GuestOpts::default()
        },
    )
    .expect("lab guest")
}

/// Touches 200 MiB in each guest and frees it (the guests side by side), then waits for fresh
/// balloon stats.
pub fn warm(guests: &[&dyn Guest]) {
    std::thread::scope(|s| {
        let warming: Vec<_> = guests
            .iter()
            .map(|g| {
                s.spawn(move || {
                    g.console_timeout("fill 200", Duration::from_secs(120))
                        .expect("fill");
                    g.console("drop").expect("drop");
                })
            })
            .collect();
        for w in warming {
            w.join().unwrap_or_else(|p| std::panic::resume_unwind(p));
        }
    });
    std::thread::sleep(Duration::from_secs(3));
}

/// The two libvirt guests, booted and warmed side by side, and the lab's multi-guest lock, to
/// be held while they run.
pub fn guests(lab: &Lab, tag: &str) -> (Domain, Domain, MultiGuest) {
    let two = lab.multi_guest().expect("multi-guest lock");
    let (a, b) = both(
        || domain(lab, &format!("{tag}-a"), ""),
        || domain(lab, &format!("{tag}-b"), ""),
    );
    warm(&[&a, &b]);
    (a, b, two)
}

/// The same under plain QEMU, and the backend that reads them over QMP.
pub fn qemu_guests(lab: &Lab, tag: &str) -> (QemuGuest, QemuGuest, MultiGuest, Backend) {
    let two = lab.multi_guest().expect("multi-guest lock");
    let (a, b) = both(
        || qemu_guest(lab, &format!("{tag}-a"), ""),
        || qemu_guest(lab, &format!("{tag}-b"), ""),
    );
    warm(&[&a, &b]);
    let qmp = [&a, &b]
        .iter()
        .map(|g| g.qmp_socket().display().to_string())
        .collect();
    (a, b, two, Backend::Qmp(qmp))
}

/// A count the guest prints; a console that does not answer is an error of the run (noted in
/// `errors`), never a count of 0.
fn ask_count(g: &dyn Guest, cmd: &str, errors: &mut Vec<String>) -> Option<u64> {
    match g.console(cmd) {
        Ok(out) => {
            let n = out.lines().rev().find_map(|l| l.trim().parse().ok());
            if n.is_none() {
                errors.push(format!("{}: `{cmd}` printed no count", g.name()));
            }
            n
        }
        Err(e) => {
            errors.push(format!("{}: `{cmd}`: {e}", g.name()));
            None
        }
    }
}

/// Runs the scenario on two libvirt guests with `controller`.
pub fn run(controller: Box<dyn Controller + Send>, a: &Domain, b: &Domain) -> Outcome {
    run_on(controller, a, b, &Backend::Libvirt, Phases::default())
}

/// Runs the scenario on `a` and `b` through `backend` with `controller`.
pub fn run_on(
    controller: Box<dyn Controller + Send>,
    a: &dyn Guest,
    b: &dyn Guest,
    backend: &Backend,
    phases: Phases,
) -> Outcome {
    let names = [a.name(), b.name()];
    let name = controller.name().to_string();
    let stop = Arc::new(AtomicBool::new(false));
    let out = Arc::new(Mutex::new(Outcome {
        controller: name,
        ..Outcome::default()
    }));
    let t0 = Instant::now();
    let worker = {
        let (stop, out, names) = (stop.clone(), out.clone(), names.clone());
        let backend = backend.clone();
        std::thread::spawn(move || control_loop(controller, &backend, &names, &stop, &out, t0))
    };
    std::thread::sleep(phases.squeeze);
    {
        let mut o = out.lock().expect("lock");
        let last: BTreeMap<String, u64> = o
            .points
            .iter()
            .filter_map(|(vm, p)| Some((vm.clone(), p.last()?.rss?)))
            .collect();
        o.rss_squeezed = last;
        o.fill_at_s = t0.elapsed().as_secs_f64();
    }
    let mut errors = Vec::new();
    std::thread::scope(|s| {
        let ha = s.spawn(|| {
            a.console_timeout(
                &format!("hog {SUDDEN_MIB} -p random"),
                Duration::from_secs(90),
            )
        });
        let (n, mib) = GRADUAL;
        let hb = s.spawn(move || {
            b.console_timeout(
                &format!(
                    "run for i in $(seq {n}); do memhog {mib} -p random > /dev/null 2>&1 & sleep 1; done"
                ),
                Duration::from_secs(90),
            )
        });
        for (what, h) in [("sudden fill", ha), ("gradual fill", hb)] {
            if let Err(e) = h.join().expect("fill thread") {
                errors.push(format!("{what}: {e}"));
            }
        }
    });
    std::thread::sleep(phases.after_fill);
    let mut alive = BTreeMap::new();
    for (d, started) in [(a, 1), (b, GRADUAL.0)] {
        if let Some(n) = ask_count(d, "run pidof memhog | wc -w", &mut errors) {
            alive.insert(d.name(), (n, started));
        }
    }
    let mut drop_at_s = None;
    if let Some(hold) = phases.hold_after_drop {
        drop_at_s = Some(t0.elapsed().as_secs_f64());
        for d in [a, b] {
            // The guest's own `killhogs` (busybox killall; the guest has no pkill).
            if let Err(e) = d.console("killhogs") {
                errors.push(format!("{}: killhogs: {e}", d.name()));
            }
        }
        std::thread::sleep(hold);
    }
    stop.store(true, Ordering::SeqCst);
    worker.join().expect("controller thread");
    let mut o = Arc::try_unwrap(out)
        .expect("sole owner")
        .into_inner()
        .expect("lock");
    o.console_errors = errors;
    o.hogs_alive = alive;
    o.drop_at_s = drop_at_s;
    o.end_s = t0.elapsed().as_secs_f64();
    for d in [a, b] {
        // grep -c exits 1 when it counts 0: that is an answer, not a failure.
        let cmd = "run dmesg | grep -c 'Killed process' || true";
        if let Some(kills) = ask_count(d, cmd, &mut o.console_errors) {
            o.oom_kills.insert(d.name(), kills);
        }
    }
    derive(&mut o);
    o
}

/// The controller's collector: host (status only) and the lab's libvirtd, a 1.5 s deadline.
pub fn collector() -> Collector {
    collector_on(&Backend::Libvirt)
}

/// The same through `backend`.
pub fn collector_on(backend: &Backend) -> Collector {
    let vms = match backend {
        Backend::Libvirt => VmSource::Libvirt {
            uri: URI.into(),
            monitor_passthrough: false,
            transport: memwarden_hv::Transport::Auto,
        },
        Backend::Qmp(patterns) => VmSource::Qmp {
            patterns: patterns.clone(),
        },
    };
    Collector::new(
        CollectorConfig {
            host: true,
            full: false,
            vms,
            deadline: Duration::from_millis(1500),
            ..CollectorConfig::default()
        },
        HostReader::live(),
    )
    .expect("collector")
}

fn control_loop(
    controller: Box<dyn Controller + Send>,
    backend: &Backend,
    names: &[String],
    stop: &AtomicBool,
    out: &Mutex<Outcome>,
    t0: Instant,
) {
    let mut collector = collector_on(backend);
    let margin = memwarden_policy::Config::default().margin_bytes;
    let mut cycle = Cycle::new(controller);
    while !stop.load(Ordering::SeqCst) {
        let started = Instant::now();
        let Ok(mut sample) = collector.collect() else {
            std::thread::sleep(CYCLE);
            continue;
        };
        // Only this run's guests: other tests' domains share the libvirtd.
        sample.vms.retain(|v| names.contains(&v.name));
        let at_s = t0.elapsed().as_secs_f64();
        let view = memwarden_policy::View::of(sample);
        let report = cycle.step(&view, collector.hypervisor().map(|h| h as _));
        let sample = view.sample();
        let mut o = out.lock().expect("lock");
        for vm in &sample.vms {
            let f = figures(vm);
            let usable_share = match (f.guest_usable_bytes, f.guest_used_bytes) {
                (Some(u), Some(used)) if u + used > 0 => Some(u as f64 / (u + used) as f64),
                _ => None,
            };
            o.points.entry(vm.name.clone()).or_default().push(Point {
                at_s,
                actual: vm.balloon.actual_bytes,
                usable_share,
                rss: f.host_rss_bytes,
                major_faults: vm.balloon.major_faults,
            });
            if !o.rss_start.contains_key(&vm.name) {
                if let Some(r) = f.host_rss_bytes {
                    o.rss_start.insert(vm.name.clone(), r);
                }
            }
        }
        for k in &report.plan.skipped {
            // A new reason, not the same one with new figures ("shrunk 4 s ago").
            let words = |r: &str| r.replace(|c: char| c.is_ascii_digit() || c == '.', "");
            let last = o.skips.iter().rev().find(|(_, vm, _)| *vm == k.vm);
            if last.is_none_or(|(_, _, r)| words(r) != words(&k.reason)) {
                o.skips.push((at_s, k.vm.clone(), k.reason.clone()));
            }
        }
        for x in &report.applied {
            let a = &x.action;
            let below_floor = match a.direction {
                Direction::Shrink => sample
                    .vms
                    .iter()
                    .find(|v| v.name == a.vm)
                    .and_then(|vm| check_target(vm, a.target_bytes, margin).err())
                    .map(|r| r.to_string()),
                Direction::Grow => None,
            };
            o.actions.push(Done {
                at_s,
                vm: a.vm.clone(),
                direction: a.direction,
                from: a.from_bytes,
                target: a.target_bytes,
                below_floor,
                refused: match &x.outcome {
                    balloon::Outcome::Applied => None,
                    balloon::Outcome::Gone(e) | balloon::Outcome::Refused(e) => Some(e.clone()),
                },
            });
        }
        drop(o);
        std::thread::sleep(CYCLE.saturating_sub(started.elapsed()));
    }
}

/// Reaction times, longest waits and fill-phase faults from the points and actions.
fn derive(o: &mut Outcome) {
    let fill = o.fill_at_s;
    let vms: Vec<String> = o.points.keys().cloned().collect();
    for vm in vms {
        let grows: Vec<f64> = o
            .actions
            .iter()
            .filter(|a| a.vm == vm && a.direction == Direction::Grow && a.refused.is_none())
            .map(|a| a.at_s)
            .collect();
        o.react_s.insert(
            vm.clone(),
            grows.iter().find(|t| **t >= fill).map(|t| t - fill),
        );
        let pts = &o.points[&vm];
        let mut longest = 0.0f64;
        let mut since: Option<f64> = None;
        for p in pts {
            let low = p.usable_share.is_some_and(|s| s < 0.10);
            match (low, since) {
                (true, None) => since = Some(p.at_s),
                (false, Some(t)) => {
                    longest = longest.max(p.at_s - t);
                    since = None;
                }
                _ => {}
            }
            if let Some(t) = since {
                if grows.iter().any(|g| *g >= t && *g <= p.at_s) {
                    longest = longest.max(p.at_s - t);
                    since = None;
                }
            }
        }
        if let (Some(t), Some(last)) = (since, pts.last()) {
            longest = longest.max(last.at_s - t);
        }
        o.longest_wait_s.insert(vm.clone(), longest);
        let faults = |after: bool| {
            pts.iter()
                .filter(|p| (p.at_s >= fill) == after)
                .filter_map(|p| p.major_faults)
                .next_back()
        };
        let before = faults(false);
        let end = faults(true);
        o.fill_major_faults
            .insert(vm, end.zip(before).map_or(0, |(e, b)| e.saturating_sub(b)));
    }
}

/// MiB, for tables.
pub fn mib(b: i64) -> i64 {
    b / MIB as i64
}
