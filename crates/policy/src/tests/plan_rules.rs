//! The rules of `plan`, one test each, on hand-built samples. Host: 16 GiB, default target
//! 15 % (2457.6 MiB) and dead band 256 MiB; guests from `fixtures::guest` (24 MiB kept out of
//! MemTotal, RSS = actual unless set).

use memwarden_model::units::MIB;

use super::fixtures::{action, guest, host_with, plan_of, skip_reason, trusted, with_rss};
use crate::config::Config;
use crate::decision::{Action, Direction, Plan};
use crate::history::History;
use crate::host::HostLevel;
use crate::state::State;

const TARGET: f64 = 16.0 * 1024.0 * 0.15;

fn mib(x: f64) -> u64 {
    (x * MIB as f64) as u64
}

/// One cycle on VMs whose earlier shrinks all paid off (no probe first).
fn run(avail_mib: u64, vms: Vec<memwarden_model::vm::VmSample>, cfg: &Config) -> Plan {
    let s = host_with(100_000, avail_mib, vms);
    plan_of(&s, &History::default(), cfg, &trusted(&s))
}

/// A shrink step of 10 % of the maximum, so that one guest cannot cover the need alone.
fn small_steps() -> Config {
    Config {
        max_shrink_step_share: 0.1,
        ..Config::default()
    }
}

/// Need = target + band − 2400 MiB = 313.6 MiB. `a` is the most idle: it gives its full step
/// (10 % of 2 GiB = 204.8 MiB); `b` gives the rest.
#[test]
fn host_pressure_shrinks_the_most_idle_first() {
    let p = run(
        2400,
        vec![guest("b", 2048, 2048, 1000), guest("a", 2048, 2048, 1800)],
        &small_steps(),
    );
    assert_eq!(p.host.level, HostLevel::Pressure);
    let a = action(&p, "a");
    assert_eq!(
        (a.direction, a.from_bytes - a.target_bytes),
        (Direction::Shrink, mib(204.8))
    );
    assert_eq!(a.expected_host_gain_bytes, mib(204.8) as i64);
    assert!(
        a.reason.contains("MemAvailable 2.34 GiB < target"),
        "{}",
        a.reason
    );
    let b = action(&p, "b");
    assert_eq!(
        b.from_bytes - b.target_bytes,
        p.host.need_bytes - mib(204.8)
    );
    assert_eq!(
        p.actions[0].vm, "a",
        "order of the plan is the order of giving"
    );
    assert_eq!(p.unmet_need_bytes, 0);
}

/// A share ten times smaller makes `b` give first although `a` has more idle memory.
#[test]
fn shares_weight_who_gives() {
    let mut cfg = small_steps();
    cfg.shares.insert("b".into(), 100);
    let p = run(
        2400,
        vec![guest("a", 2048, 2048, 1800), guest("b", 2048, 2048, 1000)],
        &cfg,
    );
    assert_eq!(p.actions[0].vm, "b");
    assert_eq!(
        p.actions[0].from_bytes - p.actions[0].target_bytes,
        mib(204.8)
    );
}

/// A guest close to its floor gives only down to it: used 1500, floor 1500 + 24 + 192 (no
/// deflate-on-oom: 1.5 × the 128 MiB margin), or + 128 with deflate-on-oom.
#[test]
fn never_below_the_floor() {
    let cfg = Config {
        guest_usable_low_share: 0.01,
        guest_usable_high_share: 0.02,
        ..Config::default()
    };
    let g = guest("a", 2048, 1800, 276);
    let p = run(1000, vec![g.clone()], &cfg);
    let a = action(&p, "a");
    assert_eq!(a.target_bytes, (1800 - 24 - 276 + 24 + 192) * MIB);
    let mut d = g;
    d.device.autodeflate = Some(true);
    // MemTotal stays while a deflate-on-oom balloon holds memory: nothing is held yet here.
    d.max_memory_bytes = Some(1800 * MIB);
    let p = run(1000, vec![d], &cfg);
    assert_eq!(
        action(&p, "a").target_bytes,
        (1800 - 24 - 276 + 24 + 128) * MIB
    );
}

/// The MOM failure: a guest whose free memory was never touched (QEMU RSS 280 MiB for 224 MiB
/// of use, less QEMU's own 64 MiB) frees nothing on the host, so it is left alone and the need stays unmet.
#[test]
fn untouched_memory_is_not_ballooned() {
    let p = run(
        2000,
        vec![with_rss(guest("a", 2048, 2048, 1800), 280)],
        &Config::default(),
    );
    assert!(p.actions.is_empty(), "{:#?}", p.lines());
    let why = skip_reason(&p, "a");
    // HOST IDLE is 56 MiB (280 − 224): above the minimum change, so not "never touched".
    assert!(why.contains("QEMU's own memory"), "{why}");
    assert!(!why.contains("never touched"), "{why}");
    assert!(p.unmet_need_bytes > 0);
    // QEMU backing less than the minimum change of its free memory: never touched, and what
    // would help is said.
    let p = run(
        2000,
        vec![with_rss(guest("a", 2048, 2048, 1800), 230)],
        &Config::default(),
    );
    let why = skip_reason(&p, "a");
    assert!(why.contains("never touched"), "{why}");
    assert!(why.contains("free page reporting"), "{why}");
}

/// A guest with free page reporting on gives only its cache, and comes after the others.
#[test]
fn free_page_reporting_guests_come_last_and_count_only_cache() {
    let mut f = guest("f", 2048, 2048, 1900);
    f.device.free_page_reporting = Some(true);
    f.balloon.disk_caches_bytes = Some(100 * MIB);
    f.balloon.unused_bytes = Some(1800 * MIB);
    let p = run(
        1500,
        vec![f, guest("a", 2048, 2048, 1000)],
        &Config::default(),
    );
    assert_eq!(p.actions[0].vm, "a");
    let f = action(&p, "f");
    assert_eq!(f.expected_host_gain_bytes, (100 * MIB) as i64);
    assert!(
        f.reason.contains("free page reporting is on"),
        "{}",
        f.reason
    );
}

/// A guest under pressure grows at once, to the high watermark, even while the host is under
/// pressure; the trade is said, and idle guests give it back.
#[test]
fn pressured_guest_grows_at_once_even_under_host_pressure() {
    let p = run(
        2400,
        vec![guest("db", 2048, 1024, 50), guest("a", 2048, 2048, 1800)],
        &small_steps(),
    );
    let db = action(&p, "db");
    assert_eq!(db.direction, Direction::Grow);
    // used = 1024 − 24 − 50 = 950; to 25 % usable: (0.25 × 1000 − 50) / 0.75.
    let grow = mib((0.25 * 1000.0 - 50.0) / 0.75);
    assert_eq!(db.target_bytes - db.from_bytes, grow);
    assert_eq!(db.expected_host_gain_bytes, -(grow as i64));
    assert!(db.reason.contains("traded up to"), "{}", db.reason);
    // The host wanted 313.6 MiB plus the 266.7 granted; `a` gives its step.
    let a = action(&p, "a");
    assert_eq!(a.from_bytes - a.target_bytes, mib(204.8));
    assert_eq!(p.host.need_bytes, mib(TARGET + 256.0 - 2400.0));
    assert_eq!(p.unmet_need_bytes, p.host.need_bytes + grow - mib(204.8));
}

#[test]
fn a_pressured_guest_at_its_maximum_is_said_so() {
    let p = run(8000, vec![guest("db", 1024, 1024, 20)], &Config::default());
    assert!(p.actions.is_empty());
    assert!(skip_reason(&p, "db").contains("already at its maximum"));
}

/// Growth is bounded by the step (here 5 % of max = 102.4 MiB) and by max.
#[test]
fn growth_within_step_and_max() {
    let cfg = Config {
        max_grow_step_share: 0.05,
        ..Config::default()
    };
    let p = run(
        8000,
        vec![guest("db", 2048, 1024, 10), guest("m", 1100, 1090, 10)],
        &cfg,
    );
    let db = action(&p, "db");
    assert_eq!(db.target_bytes - db.from_bytes, mib(102.4));
    assert_eq!(action(&p, "m").target_bytes, 1100 * MIB);
}

/// Inside the dead band nothing moves; a comfortable host gives balloon memory back within its
/// surplus, least room first.
#[test]
fn dead_band_holds_and_comfort_gives_back() {
    let vms = || vec![guest("a", 2048, 1024, 600), guest("b", 2048, 1024, 300)];
    let p = run(2600, vms(), &Config::default());
    assert_eq!(p.host.level, HostLevel::DeadBand);
    assert!(p.actions.is_empty(), "{:#?}", p.lines());
    // Surplus = 3000 − 2713.6 = 286.4 MiB: b (less room) gets 286.4 MiB, a nothing.
    let p = run(3000, vms(), &Config::default());
    assert_eq!(p.actions.len(), 1, "{:#?}", p.lines());
    let b = action(&p, "b");
    assert_eq!(b.target_bytes - b.from_bytes, p.host.surplus_bytes);
    assert_eq!(
        p.host.surplus_bytes,
        3000 * MIB - p.host.target_bytes - 256 * MIB
    );
    assert!(b.reason.contains("give back"), "{}", b.reason);
}

/// A guest grown moments ago is not shrunk (hysteresis); one shrunk moments ago waits to settle;
/// once measured, its real gain is reported and used.
#[test]
fn hysteresis_settling_and_measured_reclaim() {
    let cfg = Config::default();
    let g = guest("a", 2048, 2048, 1800);
    let s0 = host_with(100_000, 2000, vec![g.clone()]);
    let grown = Plan {
        actions: vec![Action {
            direction: Direction::Grow,
            ..action(
                &plan_of(&s0, &History::default(), &cfg, &State::default()),
                "a",
            )
            .clone()
        }],
        ..plan_of(&s0, &History::default(), &cfg, &State::default())
    };
    let st = State::default().after(&grown, 100_000);
    let p = plan_of(
        &host_with(110_000, 2000, vec![g.clone()]),
        &History::default(),
        &cfg,
        &st,
    );
    assert!(
        skip_reason(&p, "a").contains("hysteresis"),
        "{:#?}",
        p.lines()
    );
    // After min_reverse_interval_s (20 s) it may be shrunk.
    let p1 = plan_of(
        &host_with(160_000, 2000, vec![g.clone()]),
        &History::default(),
        &cfg,
        &st,
    );
    let shrink = action(&p1, "a").clone();
    let st = st.after(&p1, 160_000);
    let p = plan_of(
        &host_with(165_000, 2000, vec![g.clone()]),
        &History::default(),
        &cfg,
        &st,
    );
    assert!(
        skip_reason(&p, "a").contains("waiting 10 s"),
        "{:#?}",
        p.lines()
    );
    // 12 s later the QEMU RSS fell by three quarters of the balloon change only.
    let asked = shrink.from_bytes - shrink.target_bytes;
    let mut later = g.clone();
    later.balloon.actual_bytes = Some(shrink.target_bytes);
    later.balloon.available_bytes = Some(shrink.target_bytes - 24 * MIB);
    later.balloon.usable_bytes = Some(1800 * MIB - asked);
    later.balloon.unused_bytes = later.balloon.usable_bytes;
    let gave_mib = asked / MIB * 3 / 4;
    let later = with_rss(later, 2048 - gave_mib);
    let p = plan_of(
        &host_with(172_000, 2000, vec![later]),
        &History::default(),
        &cfg,
        &st,
    );
    assert_eq!(p.measured.len(), 1);
    let m = &p.measured[0];
    assert_eq!(m.host_gain_bytes, (gave_mib * MIB) as i64);
    assert!((m.efficiency() - 0.75).abs() < 0.01);
    assert_eq!((m.inconclusive.as_deref(), m.too_little), (None, false));
    let a = action(&p, "a");
    assert!(
        a.reason.contains("its last shrink gave back 75%"),
        "{}",
        a.reason
    );
    assert!(a.expected_host_gain_bytes <= (a.from_bytes - a.target_bytes) as i64 * 3 / 4 + 1);
    let st = st.after(&p, 172_000);
    let rec = st.get("uuid-a").expect("kept");
    assert!(rec.measured_efficiency.is_some() && rec.pending.is_some());
}

/// Manual VMs and VMs not read are in `skipped` with their reason; others still move.
#[test]
fn skipped_vms_do_not_stop_the_others() {
    let mut t = guest("t", 2048, 2048, 1800);
    t.read.status = memwarden_model::vm::ReadStatus::TimedOut;
    t.read.reason = Some("not answering".into());
    let cfg = Config {
        manual: vec!["m".into()],
        ..Config::default()
    };
    let p = run(
        2400,
        vec![
            t,
            guest("m", 2048, 2048, 1800),
            guest("a", 2048, 2048, 1800),
        ],
        &cfg,
    );
    assert!(skip_reason(&p, "t").contains("not answering"));
    assert!(skip_reason(&p, "m").contains("manual"));
    assert_eq!(action(&p, "a").direction, Direction::Shrink);
    assert_eq!(p.actions.len(), 1);
}

/// A shrink that gave the host nothing (pages QEMU never backed) stops further shrinks of that
/// VM only while its QEMU holds no more than it did then: once the guest has touched more (a
/// fill since freed), shrinking it gives memory back again.
#[test]
fn a_measured_zero_gain_holds_only_until_the_qemu_grows() {
    let g = guest("a", 2048, 1024, 900); // RSS 1024 MiB
    let state_at = |rss_mib: u64| {
        let mut st = State::default();
        st.vms.insert(
            "uuid-a".into(),
            crate::state::VmRecord {
                last_action_unix_ms: Some(0),
                last_direction: Some(Direction::Shrink),
                pending: None,
                measured_efficiency: Some(0.0),
                measured_at_rss_bytes: Some(rss_mib * MIB),
                measured_at_unix_ms: Some(400_000),
                fruitless_probes: 1,
                ..Default::default()
            },
        );
        st
    };
    let cfg = Config::default();
    let at = |st: &State| {
        plan_of(
            &host_with(500_000, 2000, vec![g.clone()]),
            &History::default(),
            &cfg,
            st,
        )
    };
    let p = at(&state_at(1024));
    assert!(
        skip_reason(&p, "a").contains("under the 50% of min_host_gain_share"),
        "{:#?}",
        p.lines()
    );
    let p = at(&state_at(400));
    assert_eq!(
        action(&p, "a").direction,
        Direction::Shrink,
        "{:#?}",
        p.lines()
    );
}
