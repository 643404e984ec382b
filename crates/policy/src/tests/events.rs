//! Harm from the hypervisor's own events (libvirt's lifecycle and reboot events, drained once
//! per sample): seen at the first sample after, before the guest's new kernel pushes any
//! statistics, and never reported a second time when its counters then start again.

use memwarden_model::units::MIB;
use memwarden_model::vm::{VmEvent, VmEventKind, VmSample};

use super::fixtures::{guest, host_with, plan_of, with_rss, READ_AT_S};
use crate::config::Config;
use crate::decision::HarmKind;
use crate::history::History;
use crate::state::State;

fn event(kind: VmEventKind, detail: &str) -> VmEvent {
    VmEvent {
        seen_at_unix_ms: READ_AT_S * 1000,
        kind,
        detail: detail.into(),
    }
}

/// A guest up and pushing statistics every few seconds, with events watched.
fn up() -> VmSample {
    let mut g = with_rss(guest("a", 1024, 600, 400), 600);
    g.balloon.minor_faults = Some(900_000);
    g.balloon.major_faults = Some(300);
    g.balloon.last_update_unix_s = Some(READ_AT_S - 6);
    g.events = Some(Vec::new());
    g
}

/// Runs `samples` (seconds after READ_AT_S, the VM) through plan → state → history, as the
/// daemon does; the harm kinds of each cycle, and the state after.
fn run(samples: &[(u64, VmSample)]) -> (Vec<Vec<HarmKind>>, State) {
    let cfg = Config::default();
    let mut h = History::from_samples(&[host_with((READ_AT_S - 5) * 1000, 2000, vec![up()])]);
    let mut st = State::default();
    let mut kinds = Vec::new();
    for (dt, vm) in samples {
        let at = (READ_AT_S + dt) * 1000;
        let mut vm = vm.clone();
        vm.read_at_unix_s = READ_AT_S + dt;
        let s = host_with(at, 2000, vec![vm]);
        let p = plan_of(&s, &h, &cfg, &st);
        kinds.push(p.harm.iter().map(|x| x.kind).collect());
        st = st.after(&p, at);
        h.push(&s);
    }
    (kinds, st)
}

/// The new kernel's first push: counters near zero, a fresh stamp `at_s` after READ_AT_S.
fn pushed_fresh(at_s: u64) -> VmSample {
    let mut v = up();
    v.balloon.minor_faults = Some(600);
    v.balloon.major_faults = Some(2);
    v.balloon.last_update_unix_s = Some(READ_AT_S + at_s);
    v
}

/// A reset event (`panic=-1`, a reboot from inside) is a reboot at once, while the guest has
/// pushed nothing new; the counters' reset 4 s later is that same reboot.
#[test]
fn a_reset_event_is_a_reboot_at_once_and_its_counters_are_not_a_second() {
    let mut reset = up();
    reset.events = Some(vec![event(
        VmEventKind::Reset,
        "reset (libvirt reboot event)",
    )]);
    let (kinds, st) = run(&[(0, reset), (4, pushed_fresh(3)), (8, pushed_fresh(7))]);
    assert_eq!(kinds, [vec![HarmKind::Reboot], vec![], vec![]]);
    assert_eq!(
        st.get("uuid-a").expect("remembered").harm_margin_bytes,
        Config::default().margin_bytes
    );
}

/// A crash that libvirt answered with a restart (`on_crash` restart: crashed, stopped, started
/// between two samples) is a crash, not a reboot, and once.
#[test]
fn a_crash_event_restarted_by_libvirt_is_one_crash() {
    let mut crashed = up();
    crashed.events = Some(vec![
        event(VmEventKind::Crashed, "crashed (panicked)"),
        event(VmEventKind::Crashed, "stopped (crashed)"),
        event(VmEventKind::Started, "started (booted)"),
    ]);
    let (kinds, _) = run(&[(0, crashed.clone()), (4, pushed_fresh(3))]);
    assert_eq!(kinds, [vec![HarmKind::Crash], vec![]]);
    let cfg = Config::default();
    let s = host_with(READ_AT_S * 1000, 2000, vec![crashed]);
    let h = History::from_samples(&[host_with((READ_AT_S - 5) * 1000, 2000, vec![up()])]);
    let p = plan_of(&s, &h, &cfg, &State::default());
    assert!(
        p.harm[0].detail.contains("crashed (panicked)"),
        "{}",
        p.harm[0].detail
    );
    assert_eq!(
        p.actions[0].target_bytes,
        1024 * MIB,
        "given all its memory back"
    );
}

/// An answered restart hides only itself: the guest rebooting again later (its counters going
/// back after it had pushed from the new kernel) is a second reboot.
#[test]
fn a_later_reboot_is_still_seen() {
    let mut reset = up();
    reset.events = Some(vec![event(
        VmEventKind::Reset,
        "reset (libvirt reboot event)",
    )]);
    let mut again = pushed_fresh(200);
    again.balloon.minor_faults = Some(100);
    let (kinds, _) = run(&[
        (0, reset),
        (4, pushed_fresh(3)),
        (100, {
            let mut v = pushed_fresh(99);
            v.balloon.minor_faults = Some(80_000);
            v
        }),
        (201, again),
    ]);
    assert_eq!(
        kinds,
        [
            vec![HarmKind::Reboot],
            vec![],
            vec![],
            vec![HarmKind::Reboot]
        ]
    );
}

/// Events that say nothing about harm (started, stopped, resumed) are not harm.
#[test]
fn other_events_are_not_harm() {
    let mut v = up();
    v.events = Some(vec![
        event(VmEventKind::Other, "resumed (detail 0)"),
        event(VmEventKind::Started, "started (booted)"),
    ]);
    let (kinds, _) = run(&[(0, v)]);
    assert_eq!(kinds, [Vec::<HarmKind>::new()]);
}

/// Regression (a real libvirt guest reset by `panic=-1`, its growth answered while it was
/// restarting): the new kernel's driver found its target at the maximum, reported nothing, and
/// QEMU kept `actual` at the old 600 MiB while the guest had all of it: "does not add up", left
/// alone for good. One refresh, one page short of the maximum, makes the driver report; a guest
/// whose figures stay wrong after it is left alone (no loop).
#[test]
fn a_balloon_size_kept_from_before_a_restart_is_refreshed_once() {
    let mut reset = up();
    reset.events = Some(vec![event(
        VmEventKind::Reset,
        "reset (libvirt reboot event)",
    )]);
    let mut stale = pushed_fresh(3);
    stale.balloon.available_bytes = Some(1000 * MIB); // MemTotal: all of it
    let cfg = Config::default();
    let (kinds, st) = run(&[(0, reset)]);
    assert_eq!(kinds, [vec![HarmKind::Reboot]]);
    let h = History::from_samples(&[host_with((READ_AT_S - 5) * 1000, 2000, vec![up()])]);
    let at = (READ_AT_S + 4) * 1000;
    let p = plan_of(&host_with(at, 2000, vec![stale.clone()]), &h, &cfg, &st);
    assert_eq!(p.actions.len(), 1, "{:#?}", p.lines());
    let a = &p.actions[0];
    assert_eq!(
        (a.from_bytes, a.target_bytes),
        (600 * MIB, 1024 * MIB - 4096)
    );
    assert!(a.reason.contains("one page short"), "{}", a.reason);
    let st = st.after(&p, at);
    let p = plan_of(&host_with(at + 2000, 2000, vec![stale]), &h, &cfg, &st);
    assert!(p.actions.is_empty(), "refreshed once: {:#?}", p.lines());
    assert!(
        p.skipped[0].reason.contains("do not add up"),
        "{}",
        p.skipped[0].reason
    );
}

/// Regression (a real libvirt guest reset by `panic=-1`): libvirt sent two reboot events a
/// second apart, one in each sample, before the new kernel pushed anything: one reboot.
#[test]
fn a_second_reset_event_before_the_new_kernel_pushes_is_the_same_reboot() {
    let mut reset = up();
    reset.events = Some(vec![event(
        VmEventKind::Reset,
        "reset (libvirt reboot event)",
    )]);
    let mut rebooting = reset.clone();
    // QEMU 10 reports no statistics while it reboots.
    rebooting.balloon.last_update_unix_s = None;
    rebooting.balloon.minor_faults = None;
    rebooting.balloon.major_faults = None;
    let (kinds, _) = run(&[
        (0, reset.clone()),
        (1, reset),
        (2, rebooting),
        (5, pushed_fresh(4)),
    ]);
    assert_eq!(kinds, [vec![HarmKind::Reboot], vec![], vec![], vec![]]);
}
