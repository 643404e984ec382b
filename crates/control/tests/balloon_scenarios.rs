//! memwarden's controller on scenarios nobody chose to pass (see `scenario`): each run of the
//! suite draws fresh seeds (printed), and every seed that once failed is run again.

mod balloon_lab;
mod scenario;

use memwarden_lab::Lab;

/// Seeds that failed once: each is run on every test run from then on.
/// 1796407015632576: a shrink that paid under min_host_gain_share was kept whole (the host got
/// 98 MiB for 206 MiB); the part that did not pay is now given back.
/// 1796644295597144565: a guest whose last shrink paid too little began an allocation; QEMU's
/// RSS rose with it, which was taken for memory touched and freed: shrunk 5 s into its own
/// allocation, then undone (3 direction changes for 1 episode). The belief now goes by QEMU's
/// RSS beyond the guest's use.
const REGRESSION_SEEDS: &[u64] = &[1796407015632576, 1796644295597144565];

/// How many fresh seeds a test run draws (`MEMWARDEN_SCENARIO_SEEDS`, default 1: each takes
/// about two minutes of two TCG guests).
fn fresh_count() -> usize {
    std::env::var("MEMWARDEN_SCENARIO_SEEDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
}

#[test]
fn the_controller_keeps_its_promises_on_drawn_scenarios() {
    let lab = Lab::new().expect("lab");
    let seeds: Vec<u64> = REGRESSION_SEEDS
        .iter()
        .copied()
        .chain((0..fresh_count()).map(|i| scenario::fresh_seed().wrapping_add(i as u64)))
        .collect();
    let mut failed = Vec::new();
    for seed in seeds {
        let s = scenario::generate(seed);
        eprintln!("scenario {s}");
        let t = std::time::Instant::now();
        let outs = scenario::run(&lab, &s, Box::new(balloon_lab::memwarden()), "scn");
        eprintln!("  ran in {:.0} s", t.elapsed().as_secs_f64());
        for o in &outs {
            eprintln!("  {}", scenario::describe(o));
        }
        let bad = scenario::broken_promises(&s, &outs);
        for b in &bad {
            eprintln!("  BROKEN: {b}");
        }
        if !bad.is_empty() {
            failed.push((seed, bad));
        }
    }
    assert!(
        failed.is_empty(),
        "seeds that broke a promise (add them to REGRESSION_SEEDS): {failed:#?}"
    );
}
