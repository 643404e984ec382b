//! Balloon scenarios nobody chose to pass: a seeded generator draws a timeline for two fresh
//! plain-QEMU lab guests (balloon device options, a touch-and-free warm-up of some size at some
//! moment around the controller's start, in anonymous memory or tmpfs, then one episode: a
//! sudden allocation of 25–150 % of the headroom the plan declares, or a gradual fill at some
//! rate, freed again later), runs it against any controller, and judges it by what the host
//! really gained (QEMU's RSS) and what each guest really suffered (OOM kills in its own dmesg,
//! a reboot seen in its own /proc/uptime, major faults).
//!
//! The seed is printed first; a failing seed is a regression test from then on
//! (`REGRESSION_SEEDS` in the test).

#![allow(dead_code)] // The test and the bench each use their own part.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use memwarden_analysis::vm::figures;
use memwarden_control::balloon::Cycle;
use memwarden_lab::{Lab, QemuGuest};
use memwarden_model::units::MIB;
use memwarden_policy::{Controller, Direction};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use crate::balloon_lab::{collector_on, qemu_guest, Backend};

/// The controller's cycle (the lab's guests push statistics every second).
pub const CYCLE: Duration = Duration::from_secs(2);

/// Kind of memory a guest fills.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// memhog: anonymous memory the OOM killer can take.
    Anon,
    /// files in the guest's tmpfs: shmem, which no OOM kill frees.
    Tmpfs,
}

/// The one episode of a guest's timeline.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Episode {
    /// Nothing: the guest idles.
    Idle,
    /// At `at_s`, allocate `share` × the headroom the last plan declared, at once.
    Sudden { at_s: f64, share: f64, kind: Kind },
    /// At `at_s`, fill `mib_per_s` for `secs` seconds (anonymous memory, 8 MiB pieces).
    Gradual {
        at_s: f64,
        mib_per_s: u64,
        secs: u64,
    },
}

/// One guest's timeline.
#[derive(Debug, Clone)]
pub struct GuestPlan {
    pub free_page_reporting: bool,
    pub deflate_on_oom: bool,
    /// Touch this much and free it...
    pub warm_mib: u64,
    pub warm_kind: Kind,
    /// ...this many seconds after the controller starts (0: just before it).
    pub warm_at_s: f64,
    pub episode: Episode,
    /// Seconds after the episode began when what it allocated is freed again.
    pub free_after_s: f64,
}

/// A whole scenario.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub seed: u64,
    pub guests: Vec<GuestPlan>,
    /// How long the controller runs.
    pub run_s: f64,
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "seed {}:", self.seed)?;
        for (i, g) in self.guests.iter().enumerate() {
            write!(
                f,
                " [g{i} fpr={} doo={} warm {} MiB {:?} at {:.0}s; {:?}, freed {:.0}s later]",
                g.free_page_reporting,
                g.deflate_on_oom,
                g.warm_mib,
                g.warm_kind,
                g.warm_at_s,
                g.episode,
                g.free_after_s
            )?;
        }
        Ok(())
    }
}

/// Draws the scenario of `seed`.
pub fn generate(seed: u64) -> Scenario {
    let mut r = StdRng::seed_from_u64(seed);
    let kind = |r: &mut StdRng| {
        if r.random_bool(0.5) {
            Kind::Anon
        } else {
            Kind::Tmpfs
        }
    };
    let guests = (0..2)
        .map(|_| {
            let warm_kind = kind(&mut r);
            let episode = match r.random_range(0..3) {
                0 => Episode::Idle,
                1 => Episode::Sudden {
                    at_s: r.random_range(40.0..60.0),
                    share: r.random_range(0.25..1.5),
                    kind: kind(&mut r),
                },
                _ => Episode::Gradual {
                    at_s: r.random_range(40.0..60.0),
                    mib_per_s: r.random_range(4..=16),
                    secs: r.random_range(10..=25),
                },
            };
            GuestPlan {
                free_page_reporting: r.random_bool(0.3),
                deflate_on_oom: r.random_bool(0.3),
                warm_mib: if r.random_bool(0.15) {
                    0
                } else {
                    r.random_range(64..=300)
                },
                warm_kind,
                // A third of warm-ups just before the controller starts, the rest in its first
                // 20 s (the case: touched while the first shrink settles).
                warm_at_s: if r.random_bool(0.33) {
                    0.0
                } else {
                    r.random_range(1.0..20.0)
                },
                episode,
                free_after_s: r.random_range(15.0..30.0),
            }
        })
        .collect();
    Scenario {
        seed,
        guests,
        run_s: 110.0,
    }
}

/// A seed drawn afresh (time and pid), printed by the caller.
pub fn fresh_seed() -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    t ^ u64::from(std::process::id()).rotate_left(32)
}

/// What one guest went through.
#[derive(Debug, Clone, Default)]
pub struct GuestOutcome {
    pub name: String,
    /// QEMU RSS just before the warm-up, right after it, and the lowest within 30 s after it.
    pub rss_before_warm: u64,
    pub rss_after_warm: u64,
    pub rss_min_30s: u64,
    /// Seconds from the end of the warm-up until 90 % of what it touched came back.
    pub to_90_s: Option<f64>,
    /// Shrinks' balloon and what the measurements say the host got for them (conclusive ones).
    pub balloon_measured: u64,
    pub gain_measured: i64,
    pub balloon_taken: u64,
    /// The allocation of a sudden episode, and the headroom the plan declared then.
    pub sudden_mib: Option<u64>,
    pub declared_headroom: Option<u64>,
    pub declared_exposed: Option<bool>,
    /// The warm-up's allocation is one too once the controller runs (it may start at 0 s):
    /// the headroom and exposure the plan declared just before it.
    pub warm_headroom: Option<u64>,
    pub warm_exposed: Option<bool>,
    /// What the allocating commands (warm-up, sudden) reported when they failed: an allocation
    /// beyond the declared headroom may fail, an OOM kill or `mmap: Cannot allocate memory`.
    pub alloc_errors: Vec<String>,
    pub oom_kills: Option<u64>,
    /// The guest's own uptime at the end shorter than the run: it rebooted (or panicked).
    pub rebooted: Option<bool>,
    pub major_faults: Option<u64>,
    pub directions: Vec<Direction>,
    /// How many of the grows gave back the part of a shrink that was measured not to pay
    /// (memwarden's `undo:` actions): a correction the judge demands, not a change of mind.
    pub undos: usize,
    /// Each action: (s since start, direction, MiB).
    pub actions: Vec<(f64, Direction, u64)>,
    pub harm_seen: Vec<String>,
    pub errors: Vec<String>,
    /// A fixed job (see [`JOB`]) timed on the guest's console before the controller starts
    /// (the guest at its full size) and after the run (at whatever size the controller left).
    pub job_unballooned_s: Option<f64>,
    pub job_ballooned_s: Option<f64>,
    /// The balloon's size (max − actual) when the second job ran.
    pub balloon_at_job: Option<u64>,
}

/// Waldspurger's criterion: a ballooned guest should do as well as one booted at that size.
/// The job: allocate and fill 48 MiB of anonymous memory with random bytes, then free it
/// (fits any floor the controller keeps; it needs free memory, not cache), timed from the host
/// around the console command; the faster of three runs, as TCG timing is noisy.
pub const JOB: &str = "hog 48 -p random";

impl GuestOutcome {
    /// The share of the touched-and-freed memory the host got back within 30 s.
    pub fn returned_share(&self) -> Option<f64> {
        let touched = self.rss_after_warm.saturating_sub(self.rss_before_warm);
        (touched >= 32 * MIB).then(|| {
            (self.rss_after_warm.saturating_sub(self.rss_min_30s) as f64 / touched as f64).min(1.0)
        })
    }

    /// The job's time ballooned over unballooned, minus one (0.05: 5 % slower).
    pub fn job_slowdown(&self) -> Option<f64> {
        let (a, b) = (self.job_unballooned_s?, self.job_ballooned_s?);
        (a > 0.0).then(|| b / a - 1.0)
    }

    pub fn direction_changes(&self) -> usize {
        self.directions.windows(2).filter(|w| w[0] != w[1]).count()
    }
}

/// Boots fresh guests for `s`, runs it with `controller`, and judges it.
pub fn run(
    lab: &Lab,
    s: &Scenario,
    controller: Box<dyn Controller + Send>,
    tag: &str,
) -> Vec<GuestOutcome> {
    let _two = lab.multi_guest().expect("multi-guest lock");
    // Booted side by side, each TCG guest on a host core of its own.
    let guests: Vec<QemuGuest> = std::thread::scope(|sc| {
        let booting: Vec<_> = s
            .guests
            .iter()
            .enumerate()
            .map(|(i, g)| {
                sc.spawn(move || {
                    let mut opts = Vec::new();
                    if g.free_page_reporting {
                        opts.push("free-page-reporting=on");
                    }
                    if g.deflate_on_oom {
                        opts.push("deflate-on-oom=on");
                    }
                    qemu_guest(lab, &format!("{tag}{i}"), &opts.join(","))
                })
            })
            .collect();
        booting
            .into_iter()
            .map(|b| b.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    });
    let names: Vec<String> = guests.iter().map(|g| g.name()).collect();
    let baseline: Vec<Option<f64>> = guests.iter().map(time_job).collect();
    let backend = Backend::Qmp(
        guests
            .iter()
            .map(|g| g.qmp_socket().display().to_string())
            .collect(),
    );
    let shared = Arc::new(Mutex::new(Shared::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let t0 = Instant::now();
    let worker = {
        let (shared, stop, names) = (shared.clone(), stop.clone(), names.clone());
        std::thread::spawn(move || control_loop(controller, &backend, &names, &stop, &shared, t0))
    };
    let mut outs: Vec<GuestOutcome> = names
        .iter()
        .map(|n| GuestOutcome {
            name: n.clone(),
            ..GuestOutcome::default()
        })
        .collect();
    std::thread::scope(|sc| {
        for ((g, plan), out) in guests.iter().zip(&s.guests).zip(outs.iter_mut()) {
            let shared = shared.clone();
            sc.spawn(move || drive(g, plan, out, &shared, t0));
        }
    });
    let left = s.run_s - t0.elapsed().as_secs_f64();
    if left > 0.0 {
        std::thread::sleep(Duration::from_secs_f64(left));
    }
    stop.store(true, Ordering::SeqCst);
    worker.join().expect("controller thread");
    let sh = shared.lock().expect("lock");
    for ((g, out), base) in guests.iter().zip(outs.iter_mut()).zip(baseline) {
        judge(g, out, &sh, s.run_s);
        out.job_unballooned_s = base;
        out.job_ballooned_s = time_job(g);
        out.balloon_at_job = balloon_now(g);
    }
    outs
}

/// [`JOB`]'s time on `g`, the fastest of three runs; `None` when a run failed.
fn time_job(g: &QemuGuest) -> Option<f64> {
    let mut best = f64::INFINITY;
    for _ in 0..3 {
        let t = Instant::now();
        g.console_timeout(JOB, Duration::from_secs(60)).ok()?;
        best = best.min(t.elapsed().as_secs_f64());
        g.console("killhogs").ok()?;
    }
    Some(best)
}

/// What the balloon holds now (max − actual), by QMP's `query-balloon`.
fn balloon_now(g: &QemuGuest) -> Option<u64> {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut c = memwarden_hv::qmp::QmpClient::connect(&g.qmp_socket(), deadline).ok()?;
    let actual = c.execute("query-balloon", None).ok()?["actual"].as_u64()?;
    Some((512 * MIB).saturating_sub(actual))
}

/// What the controller thread records for the guests' drivers and the judge.
#[derive(Debug, Default)]
struct Shared {
    /// Per VM: (s, RSS) each cycle.
    rss: BTreeMap<String, Vec<(f64, u64)>>,
    /// Per VM: the headroom and exposure the last plan declared.
    exposure: BTreeMap<String, (u64, bool)>,
    actions: BTreeMap<String, Vec<(f64, Direction, u64)>>,
    undos: BTreeMap<String, usize>,
    measured: BTreeMap<String, Vec<(u64, i64)>>,
    harm: BTreeMap<String, Vec<String>>,
    major_faults: BTreeMap<String, (Option<u64>, Option<u64>)>,
}

fn rss_now(sh: &Mutex<Shared>, vm: &str) -> Option<u64> {
    sh.lock().ok()?.rss.get(vm)?.last().map(|x| x.1)
}

/// Keeps a failed console command's error, saying which step it was.
fn note(errors: &mut Vec<String>, r: memwarden_lab::Result<String>, what: &str) {
    if let Err(e) = r {
        errors.push(format!("{what}: {e}"));
    }
}

/// The headroom and exposure the newest plan declared for `vm`.
fn exposure_now(sh: &Mutex<Shared>, vm: &str) -> (u64, bool) {
    sh.lock()
        .ok()
        .and_then(|s| s.exposure.get(vm).copied())
        .unwrap_or((0, false))
}

fn sleep_until(t0: Instant, at_s: f64) {
    let left = at_s - t0.elapsed().as_secs_f64();
    if left > 0.0 {
        std::thread::sleep(Duration::from_secs_f64(left));
    }
}

/// Plays one guest's timeline on its console.
fn drive(g: &QemuGuest, p: &GuestPlan, out: &mut GuestOutcome, sh: &Mutex<Shared>, t0: Instant) {
    let name = g.name();
    // Wait for the controller's first look at QEMU's RSS.
    let first = Instant::now();
    while rss_now(sh, &name).is_none() && first.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(200));
    }
    sleep_until(t0, p.warm_at_s);
    out.rss_before_warm = rss_now(sh, &name).unwrap_or(0);
    let (h, e) = exposure_now(sh, &name);
    out.warm_headroom = Some(h);
    out.warm_exposed = Some(e);

    if p.warm_mib > 0 {
        match p.warm_kind {
            Kind::Tmpfs => {
                note(
                    &mut out.alloc_errors,
                    g.console_timeout(&format!("fill {}", p.warm_mib), Duration::from_secs(120)),
                    "warm fill",
                );
                note(&mut out.alloc_errors, g.console("drop"), "warm drop");
            }
            Kind::Anon => {
                note(
                    &mut out.alloc_errors,
                    g.console_timeout(
                        &format!("hog {} -p random", p.warm_mib),
                        Duration::from_secs(120),
                    ),
                    "warm hog",
                );
                note(&mut out.alloc_errors, g.console("killhogs"), "warm free");
            }
        }
    }
    // The touched pages are resident once QEMU's RSS has been read after the warm-up.
    let warm_end = t0.elapsed().as_secs_f64();
    std::thread::sleep(CYCLE + Duration::from_millis(500));
    out.rss_after_warm = rss_now(sh, &name).unwrap_or(0).max(out.rss_before_warm);
    let started = match p.episode {
        Episode::Idle => None,
        Episode::Sudden { at_s, share, kind } => {
            sleep_until(t0, at_s);
            let (headroom, exposed) = exposure_now(sh, &name);
            // At most what the guest could take with no controller at all (a 512 MiB guest
            // with ~30 MiB in use: 400 MiB leaves its kernel room); beyond that no balloon
            // policy is to blame, and tmpfs beyond it panics the guest ("System is deadlocked
            // on memory", seed 1796512032354599029 asked 440).
            let mib = ((headroom as f64 * share) / MIB as f64).clamp(8.0, 400.0) as u64;
            out.sudden_mib = Some(mib);
            out.declared_headroom = Some(headroom);
            out.declared_exposed = Some(exposed);
            let cmd = match kind {
                Kind::Anon => format!("hog {mib} -p random"),
                Kind::Tmpfs => format!("fill {mib} random"),
            };
            note(
                &mut out.alloc_errors,
                g.console_timeout(&cmd, Duration::from_secs(120)),
                "sudden",
            );
            Some(at_s)
        }
        Episode::Gradual {
            at_s,
            mib_per_s,
            secs,
        } => {
            sleep_until(t0, at_s);
            let n = (mib_per_s * secs).div_ceil(8);
            let pause = 8.0 / mib_per_s as f64;
            note(&mut out.errors, g.console_timeout(
                    &format!("run for i in $(seq {n}); do memhog 8 -p random > /dev/null 2>&1 & sleep {pause:.2}; done"),
                    Duration::from_secs(120),
                ), "gradual");
            Some(at_s)
        }
    };
    if let Some(at) = started {
        sleep_until(t0, at + p.free_after_s);
        note(&mut out.errors, g.console("killhogs"), "free hogs");
        note(&mut out.errors, g.console("drop"), "free files");
    }
    // The share returned: the lowest RSS within 30 s of the warm-up's end.
    sleep_until(t0, warm_end + 30.0 + CYCLE.as_secs_f64());
    let sh = sh.lock().expect("lock");
    let pts = sh.rss.get(&name).map(Vec::as_slice).unwrap_or(&[]);
    let window: Vec<&(f64, u64)> = pts
        .iter()
        .filter(|(t, _)| *t >= warm_end && *t <= warm_end + 30.0)
        .collect();
    out.rss_min_30s = window
        .iter()
        .map(|x| x.1)
        .min()
        .unwrap_or(out.rss_after_warm);
    let touched = out.rss_after_warm.saturating_sub(out.rss_before_warm);
    out.to_90_s = window
        .iter()
        .find(|(_, r)| out.rss_after_warm.saturating_sub(*r) as f64 >= 0.9 * touched as f64)
        .map(|(t, _)| t - warm_end);
}

fn control_loop(
    controller: Box<dyn Controller + Send>,
    backend: &Backend,
    names: &[String],
    stop: &AtomicBool,
    sh: &Mutex<Shared>,
    t0: Instant,
) {
    let mut collector = collector_on(backend);
    let mut cycle = Cycle::new(controller);
    while !stop.load(Ordering::SeqCst) {
        let started = Instant::now();
        if let Ok(mut sample) = collector.collect() {
            sample.vms.retain(|v| names.contains(&v.name));
            let at = t0.elapsed().as_secs_f64();
            let view = memwarden_policy::View::of(sample);
            let report = cycle.step(&view, collector.hypervisor().map(|h| h as _));
            let sample = view.sample();
            let mut s = sh.lock().expect("lock");
            for vm in &sample.vms {
                let f = figures(vm);
                if let Some(r) = f.host_rss_bytes {
                    s.rss.entry(vm.name.clone()).or_default().push((at, r));
                }
                let e = s.major_faults.entry(vm.name.clone()).or_default();
                e.0 = e.0.or(vm.balloon.major_faults);
                e.1 = vm.balloon.major_faults.or(e.1);
            }
            for e in &report.plan.exposure {
                s.exposure
                    .insert(e.vm.clone(), (e.headroom_bytes, e.exposed));
            }
            for a in report.done() {
                let bytes = a.from_bytes.abs_diff(a.target_bytes);
                s.actions
                    .entry(a.vm.clone())
                    .or_default()
                    .push((at, a.direction, bytes));
                if a.is_undo() {
                    *s.undos.entry(a.vm.clone()).or_default() += 1;
                }
            }
            for m in report
                .plan
                .measured
                .iter()
                .filter(|m| m.inconclusive.is_none())
            {
                s.measured
                    .entry(m.vm.clone())
                    .or_default()
                    .push((m.balloon_bytes, m.host_gain_bytes));
            }
            for h in &report.plan.harm {
                s.harm.entry(h.vm.clone()).or_default().push(format!(
                    "{:.0}s {}: {}",
                    at,
                    h.kind.as_str(),
                    h.detail
                ));
            }
        }
        std::thread::sleep(CYCLE.saturating_sub(started.elapsed()));
    }
}

/// The guest's own account at the end: OOM kills in its dmesg, its uptime.
fn judge(g: &QemuGuest, out: &mut GuestOutcome, sh: &Shared, run_s: f64) {
    let name = g.name();
    let count = |cmd: &str, errors: &mut Vec<String>| match g.console(cmd) {
        Ok(text) => text
            .lines()
            .rev()
            .find_map(|l| l.split_whitespace().next()?.parse::<f64>().ok()),
        Err(e) => {
            errors.push(format!("`{cmd}`: {e}"));
            None
        }
    };
    out.oom_kills = count(
        "run dmesg | grep -c 'Killed process' || true",
        &mut out.errors,
    )
    .map(|n| n as u64);
    let uptime = count("run cat /proc/uptime", &mut out.errors);
    // The guest booted before the run began: an uptime shorter than the run is a reboot.
    out.rebooted = uptime.map(|u| u < run_s);
    let acts = sh.actions.get(&name).map(Vec::as_slice).unwrap_or(&[]);
    out.directions = acts.iter().map(|a| a.1).collect();
    out.undos = sh.undos.get(&name).copied().unwrap_or(0);
    out.actions = acts.iter().map(|a| (a.0, a.1, a.2 / MIB)).collect();
    out.balloon_taken = acts
        .iter()
        .filter(|a| a.1 == Direction::Shrink)
        .map(|a| a.2)
        .sum();
    for (b, gain) in sh.measured.get(&name).map(Vec::as_slice).unwrap_or(&[]) {
        out.balloon_measured += b;
        out.gain_measured += gain;
    }
    out.harm_seen = sh.harm.get(&name).cloned().unwrap_or_default();
    out.major_faults = sh
        .major_faults
        .get(&name)
        .and_then(|(a, b)| Some(b.as_ref()?.saturating_sub(*a.as_ref()?)));
}

/// Which promises a run broke, in plain words (empty: none).
pub fn broken_promises(s: &Scenario, outs: &[GuestOutcome]) -> Vec<String> {
    let mut bad = Vec::new();
    for (p, o) in s.guests.iter().zip(outs) {
        let n = &o.name;
        if !o.errors.is_empty() {
            bad.push(format!(
                "{n}: the run could not be followed: {:?}",
                o.errors
            ));
        }
        // OOM kills (and the panic of a guest whose tmpfs leaves its OOM killer nothing to
        // kill) only where one allocation exceeded the headroom the plan declared exposed.
        let sudden_beyond = o
            .sudden_mib
            .zip(o.declared_headroom)
            .is_some_and(|(mib, h)| mib * MIB > h)
            && o.declared_exposed == Some(true);
        let warm_beyond =
            o.warm_headroom.is_some_and(|h| p.warm_mib * MIB > h) && o.warm_exposed == Some(true);
        let beyond = sudden_beyond || warm_beyond;
        if !o.alloc_errors.is_empty() && !beyond {
            bad.push(format!(
                "{n}: an allocation within its declared headroom failed: {:?}",
                o.alloc_errors
            ));
        }
        if o.rebooted.is_none() || (o.rebooted == Some(true) && !beyond) {
            bad.push(format!(
                "{n}: rebooted or panicked (uptime check {:?})",
                o.rebooted
            ));
        }
        // A fill larger than all a 512 MiB guest has cannot be saved by any balloon.
        let gradual =
            matches!(p.episode, Episode::Gradual { mib_per_s, secs, .. } if mib_per_s * secs > 440);
        if o.oom_kills.unwrap_or(1) > 0 && !beyond && !gradual {
            bad.push(format!(
                "{n}: {:?} OOM kill(s) without an allocation beyond its declared headroom ({:?} MiB asked, headroom {:?})",
                o.oom_kills,
                o.sudden_mib,
                o.declared_headroom.map(|h| h / MIB)
            ));
        }
        if o.balloon_measured >= 64 * MIB
            && (o.gain_measured as f64) < 0.5 * o.balloon_measured as f64
        {
            // A probe that gave nothing is undone: what stays must have paid.
            let undone = o
                .directions
                .windows(2)
                .any(|w| w == [Direction::Shrink, Direction::Grow]);
            if !undone {
                bad.push(format!(
                    "{n}: the host got {} MiB for {} MiB of balloon, and nothing was undone",
                    o.gain_measured / MIB as i64,
                    o.balloon_measured / MIB
                ));
            }
        }
        let episodes =
            usize::from(!matches!(p.episode, Episode::Idle)) + usize::from(p.warm_mib > 0);
        // Two changes an episode (take, give back when it comes, take again when it goes),
        // and one more for the undo of a probe that did not pay, which the rule above demands:
        // only one, so a controller that probes the same dry memory again still fails.
        let allowed = 2 * episodes.max(1) + o.undos.min(1);
        if o.direction_changes() > allowed {
            bad.push(format!(
                "{n}: {} direction changes for {episodes} episode(s) and {} undo(s) of a shrink \
                 that did not pay: {:?}",
                o.direction_changes(),
                o.undos,
                o.directions
            ));
        }
    }
    bad
}

/// One line per guest, for logs and the bench.
pub fn describe(o: &GuestOutcome) -> String {
    format!(
        "{}: touched {} MiB, returned {:?} in 30 s (90 % after {:?} s); balloon taken {} MiB, measured {} MiB for {} MiB; OOM kills {:?}, rebooted {:?}, major faults {:?}; job {:?} s unballooned, {:?} s with {:?} MiB ballooned; actions {}; harm {:?}",
        o.name,
        o.rss_after_warm.saturating_sub(o.rss_before_warm) / MIB,
        o.returned_share().map(|x| format!("{:.0}%", x * 100.0)),
        o.to_90_s.map(|t| t.round()),
        o.balloon_taken / MIB,
        o.gain_measured / MIB as i64,
        o.balloon_measured / MIB,
        o.oom_kills,
        o.rebooted,
        o.major_faults,
        o.job_unballooned_s.map(|t| (t * 100.0).round() / 100.0),
        o.job_ballooned_s.map(|t| (t * 100.0).round() / 100.0),
        o.balloon_at_job.map(|b| b / MIB),
        o.actions
            .iter()
            .map(|(t, d, m)| format!("{t:.0}s {d:?} {m}"))
            .collect::<Vec<_>>()
            .join(", "),
        o.harm_seen
    )
}
