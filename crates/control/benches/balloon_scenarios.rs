//! memwarden's controller, oVirt MOM's rules and Proxmox's autoballoon over the same drawn
//! scenarios (see `tests/scenario`), fresh real guests for every run: per controller, the share
//! of the touched-and-freed memory the host got back within 30 s and the median time to 90 %,
//! host memory gained per MiB of balloon taken, guest harm (OOM kills, reboots, major faults),
//! direction changes per episode, and the slowdown of a fixed job in each guest (`scenario::JOB`,
//! timed on its console before the controller starts and after the run) where it ended ballooned.
//!
//! `cargo bench -p memwarden-control --bench balloon_scenarios` — `MEMWARDEN_SCENARIOS=N`
//! seeds (default 20; about 2 minutes per seed and controller), `MEMWARDEN_SCENARIO_SEED=S`
//! to start from S (default: drawn afresh, printed), `MEMWARDEN_CONTROLLERS=memwarden,mom,proxmox`.

#[path = "../tests/balloon_lab/mod.rs"]
mod balloon_lab;
#[path = "../tests/scenario/mod.rs"]
mod scenario;

use memwarden_lab::Lab;
use memwarden_model::units::MIB;
use memwarden_policy::Controller;
use scenario::{Episode, GuestOutcome};

fn env_or<T: std::str::FromStr>(key: &str, default: T) -> T {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn controller(name: &str) -> Box<dyn Controller + Send> {
    match name {
        "mom" => Box::new(balloon_lab::mom()),
        "proxmox" => Box::new(balloon_lab::proxmox()),
        _ => Box::new(balloon_lab::memwarden()),
    }
}

#[derive(Default)]
struct Totals {
    returned: Vec<f64>,
    to_90: Vec<f64>,
    never_90: usize,
    gain: i64,
    balloon: u64,
    oom_kills: u64,
    oom_runs: Vec<u64>,
    reboots: usize,
    major_faults: u64,
    changes: usize,
    episodes: usize,
    /// The job's slowdown in runs that ended with a balloon of at least 32 MiB, and in all.
    slowdown_ballooned: Vec<f64>,
    slowdown_all: Vec<f64>,
    broken: Vec<(u64, String)>,
}

fn median(v: &mut [f64]) -> Option<f64> {
    v.sort_by(f64::total_cmp);
    (!v.is_empty()).then(|| v[v.len() / 2])
}

fn main() {
    let lab = Lab::new().expect("lab");
    let n: u64 = env_or("MEMWARDEN_SCENARIOS", 20);
    let first: u64 = env_or("MEMWARDEN_SCENARIO_SEED", scenario::fresh_seed());
    let names: String = env_or("MEMWARDEN_CONTROLLERS", "memwarden,mom,proxmox".to_string());
    let names: Vec<&str> = names.split(',').collect();
    println!("seeds {first} .. {} ({n})", first.wrapping_add(n - 1));
    let mut totals: Vec<Totals> = names.iter().map(|_| Totals::default()).collect();
    for i in 0..n {
        let seed = first.wrapping_add(i);
        let s = scenario::generate(seed);
        println!("scenario {s}");
        for (c, t) in names.iter().zip(totals.iter_mut()) {
            let outs = scenario::run(&lab, &s, controller(c), &format!("bs{}", &c[..1]));
            for o in &outs {
                println!("  {c:9} {}", scenario::describe(o));
            }
            add(t, &s, &outs, seed);
        }
    }
    println!();
    println!("| controller | returned in 30 s (median) | time to 90 % (median; runs never reaching it) | host MiB per MiB of balloon | OOM kills (runs) | reboots | major faults | direction changes per episode | job slowdown, ballooned (median, max; runs) | job slowdown, all runs (median) | promises broken |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for (c, t) in names.iter().zip(totals.iter_mut()) {
        let ret = median(&mut t.returned).map_or("-".into(), |x| format!("{:.0} %", x * 100.0));
        let t90 = median(&mut t.to_90).map_or("-".into(), |x| format!("{x:.0} s"));
        let per = if t.balloon > 0 {
            format!("{:.2}", t.gain as f64 / t.balloon as f64)
        } else {
            "-".into()
        };
        let pct = |x: f64| format!("{:+.1} %", x * 100.0);
        let max = t
            .slowdown_ballooned
            .iter()
            .copied()
            .fold(None, |m: Option<f64>, x| Some(m.map_or(x, |m| m.max(x))));
        let n_b = t.slowdown_ballooned.len();
        let slow_b = median(&mut t.slowdown_ballooned).map_or("-".into(), |x| {
            format!("{}, {}; {n_b}", pct(x), max.map_or("-".into(), pct))
        });
        let slow_all = median(&mut t.slowdown_all).map_or("-".into(), pct);
        println!(
            "| {c} | {ret} | {t90} ({}) | {per} ({} MiB for {} MiB) | {} ({}) | {} | {} | {:.2} | {slow_b} | {slow_all} | {} |",
            t.never_90,
            t.gain / MIB as i64,
            t.balloon / MIB,
            t.oom_kills,
            t.oom_runs.len(),
            t.reboots,
            t.major_faults,
            t.changes as f64 / t.episodes.max(1) as f64,
            t.broken.len()
        );
    }
    for (c, t) in names.iter().zip(&totals) {
        for (seed, why) in &t.broken {
            println!("{c}: seed {seed}: {why}");
        }
    }
}

fn add(t: &mut Totals, s: &scenario::Scenario, outs: &[GuestOutcome], seed: u64) {
    for (p, o) in s.guests.iter().zip(outs) {
        if let Some(r) = o.returned_share() {
            t.returned.push(r);
            match o.to_90_s {
                Some(x) => t.to_90.push(x),
                None => t.never_90 += 1,
            }
        }
        t.gain += o.gain_measured;
        t.balloon += o.balloon_measured;
        if let Some(k) = o.oom_kills.filter(|k| *k > 0) {
            t.oom_kills += k;
            t.oom_runs.push(seed);
        }
        t.reboots += usize::from(o.rebooted == Some(true));
        t.major_faults += o.major_faults.unwrap_or(0);
        t.changes += o.direction_changes();
        if let Some(x) = o.job_slowdown() {
            t.slowdown_all.push(x);
            if o.balloon_at_job.is_some_and(|b| b >= 32 * MIB) {
                t.slowdown_ballooned.push(x);
            }
        }
        t.episodes +=
            usize::from(!matches!(p.episode, Episode::Idle)) + usize::from(p.warm_mib > 0);
    }
    for b in scenario::broken_promises(s, outs) {
        t.broken.push((seed, b));
    }
}
