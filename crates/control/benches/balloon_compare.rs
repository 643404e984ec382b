//! memwarden's balloon controller against oVirt MOM's rules and Proxmox's autoballoon, each
//! re-implemented from its published rules (`memwarden_policy::oracles`), on the same scenario
//! with fresh real guests each (see `tests/balloon_lab`): how much host memory each really
//! freed (the drop in QEMU's RSS), what it cost the guests (OOM kills, memhogs lost, major
//! faults), how fast it reacted to a fill, and how often it turned a balloon around.
//!
//! `cargo bench -p memwarden-control --bench balloon_compare` (about 8 minutes; two 512 MiB
//! guests at a time).

#[path = "../tests/balloon_lab/mod.rs"]
mod balloon_lab;

use balloon_lab::{mib, Outcome};
use memwarden_lab::Lab;
use memwarden_model::units::MIB;
use memwarden_policy::{Controller, Direction};

fn main() {
    let lab = Lab::new().expect("lab");
    let controllers: Vec<Box<dyn Controller + Send>> = vec![
        Box::new(balloon_lab::memwarden()),
        Box::new(balloon_lab::mom()),
        Box::new(balloon_lab::proxmox()),
    ];
    let mut rows = Vec::new();
    for c in controllers {
        let name = c.name();
        let (a, b, _two) = balloon_lab::guests(&lab, &format!("cmp{name}"));
        let o = balloon_lab::run(c, &a, &b);
        rows.push(row(&o, a.name(), b.name()));
        eprintln!("{name}: done");
    }
    println!(
        "| controller | host freed (QEMU RSS) | lowest balloon A / B | OOM kills A / B | memhogs alive A / B | major faults in fills A / B | first growth after the fills A / B | longest wait under 10 % usable | reversals A / B | shrinks below memwarden's floor |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for r in rows {
        println!("{r}");
    }
}

fn row(o: &Outcome, a: &str, b: &str) -> String {
    let lowest = |vm: &str| {
        o.points
            .get(vm)
            .and_then(|p| p.iter().filter_map(|p| p.actual).min())
            .map_or("?".into(), |x| format!("{} MiB", x / MIB))
    };
    let react = |vm: &str| match o.react_s.get(vm).copied().flatten() {
        Some(s) => format!("{s:.1} s"),
        None => "none".into(),
    };
    let hogs = |vm: &str| {
        o.hogs_alive
            .get(vm)
            .map_or("?".into(), |(x, n)| format!("{x}/{n}"))
    };
    let wait = o.longest_wait_s.values().fold(0.0f64, |m, w| m.max(*w));
    let below = o.actions.iter().filter(|x| x.below_floor.is_some()).count();
    let shrinks = o
        .actions
        .iter()
        .filter(|x| x.direction == Direction::Shrink)
        .count();
    format!(
        "| {} | {} MiB | {} / {} | {} / {} | {} / {} | {} / {} | {} / {} | {:.0} s | {} / {} | {below} of {shrinks} |",
        o.controller,
        mib(o.host_gain()),
        lowest(a),
        lowest(b),
        o.oom_kills.get(a).unwrap_or(&0),
        o.oom_kills.get(b).unwrap_or(&0),
        hogs(a),
        hogs(b),
        o.fill_major_faults.get(a).unwrap_or(&0),
        o.fill_major_faults.get(b).unwrap_or(&0),
        react(a),
        react(b),
        wait,
        o.reversals(a),
        o.reversals(b),
    )
}
