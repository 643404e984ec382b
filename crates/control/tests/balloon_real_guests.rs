//! memwarden's balloon controller on real lab guests under libvirt and plain QEMU (see
//! `balloon_lab` for the scenario): idle guests are shrunk toward their floors and no further, with the host's gain
//! measured as the drop in QEMU's RSS; a guest that fills suddenly or gradually is grown back
//! and its kernel kills nothing; no VM's balloon turns direction back and forth; a VM whose
//! stats went stale, that is paused, or that stops answering is left alone.

mod balloon_lab;

use std::time::Duration;

use balloon_lab::{mib, Outcome, Phases};
use memwarden_control::balloon::Cycle;
use memwarden_lab::{virsh, Domain, DomainOpts, Frozen, Lab};
use memwarden_model::units::MIB;
use memwarden_model::vm::ReadStatus;
use memwarden_policy::Direction;

fn print(o: &Outcome) {
    eprintln!(
        "controller {}: host gain {} MiB",
        o.controller,
        mib(o.host_gain())
    );
    for a in &o.actions {
        eprintln!(
            "  {:6.1}s {} {:?} {} → {} MiB{}{}",
            a.at_s,
            a.vm,
            a.direction,
            a.from / MIB,
            a.target / MIB,
            a.refused
                .as_deref()
                .map(|e| format!(" REFUSED {e}"))
                .unwrap_or_default(),
            a.below_floor
                .as_deref()
                .map(|e| format!(" BELOW FLOOR {e}"))
                .unwrap_or_default(),
        );
    }
    for (at, vm, why) in &o.skips {
        eprintln!("  {at:6.1}s {vm} left alone: {why}");
    }
    eprintln!(
        "  rss start {:?} squeezed {:?}; oom {:?}; hogs {:?}; react {:?}; longest wait {:?}; errors {:?}",
        o.rss_start, o.rss_squeezed, o.oom_kills, o.hogs_alive, o.react_s, o.longest_wait_s, o.console_errors
    );
}

#[test]
fn shrinks_idle_guests_to_their_floors_and_grows_filling_guests_before_they_oom() {
    let lab = Lab::new().expect("lab");
    let (a, b, _two) = balloon_lab::guests(&lab, "bal");
    let phases = Phases {
        // memwarden reaches both floors within 20 s (two steps, 10 s apart: `settle_s`) and
        // then says "nothing to give" every cycle: 50 s shows that and 15 cycles of no further.
        // (The plain-QEMU run below keeps the full 80 s, and its minutes after the drop.)
        squeeze: Duration::from_secs(50),
        ..Phases::default()
    };
    let o = balloon_lab::run_on(
        Box::new(balloon_lab::memwarden()),
        &a,
        &b,
        &balloon_lab::Backend::Libvirt,
        phases,
    );
    print(&o);
    check(&o, a.name(), b.name());
    for vm in [a.name(), b.name()] {
        assert!(
            o.reversals(vm) <= 2,
            "{vm} oscillated: {} reversals",
            o.reversals(vm)
        );
    }
}

/// The same scenario under plain QEMU, read and ballooned over QMP, then run on for minutes
/// after the guests free what they filled: the direction changes a VM may make are the ones the
/// workload asked for (grow for the fill, shrink after the drop), and none while it is steady.
#[test]
fn plain_qemu_guests_over_several_minutes_without_oscillation() {
    let lab = Lab::new().expect("lab");
    let (a, b, _two, backend) = balloon_lab::qemu_guests(&lab, "balq");
    let phases = Phases {
        // Long enough that the whole run lasts five minutes (squeeze 80 s, fills ~30 s, 20 s after).
        hold_after_drop: Some(Duration::from_secs(180)),
        ..Phases::default()
    };
    let o = balloon_lab::run_on(Box::new(balloon_lab::memwarden()), &a, &b, &backend, phases);
    print(&o);
    let (an, bn) = (a.name(), b.name());
    check(&o, &an, &bn);
    let drop_at = o.drop_at_s.expect("a drop phase");
    assert!(
        o.end_s >= 300.0,
        "a run of several minutes: {:.0} s",
        o.end_s
    );
    for vm in [an.as_str(), bn.as_str()] {
        let (whole, steady) = (
            o.reversals(vm),
            o.reversals_between(vm, drop_at + 60.0, f64::INFINITY),
        );
        eprintln!(
            "{vm}: {whole} reversals over {:.0} s, {steady} in the last {:.0} s",
            o.end_s,
            o.end_s - drop_at - 60.0
        );
        assert!(whole <= 2, "{vm} oscillated: {whole} reversals");
        assert_eq!(steady, 0, "{vm} changed direction while steady");
    }
    // After the drop, B's memory is idle again: it is shrunk back (the host wants it).
    let shrunk_again = o
        .actions
        .iter()
        .any(|x| x.vm == bn && x.at_s > drop_at && x.direction == Direction::Shrink);
    assert!(shrunk_again, "B was not shrunk after it freed its fill");
}

/// What both backends' scenario must show: idle guests shrunk toward their floors and no
/// further, with a real gain on the host; nothing killed in either guest; the gradually filled
/// guest grown.
fn check(o: &Outcome, a: &str, b: &str) {
    assert!(o.console_errors.is_empty(), "{:?}", o.console_errors);
    assert!(
        o.actions.iter().all(|x| x.below_floor.is_none()),
        "a shrink went below the floor"
    );
    assert!(
        o.actions.iter().all(|x| x.refused.is_none()),
        "the hypervisor refused an action"
    );
    for vm in [a, b] {
        let shrinks = o
            .actions
            .iter()
            .filter(|x| x.vm == vm && x.at_s < o.fill_at_s)
            .count();
        assert!(shrinks > 0, "{vm} was never shrunk while idle");
        // Shrunk toward the floor, measured on the host: QEMU gave memory back.
        let (start, squeezed) = (o.rss_start[vm], o.rss_squeezed[vm]);
        assert!(
            squeezed + 32 * MIB < start,
            "{vm}: QEMU RSS {start} → {squeezed}: the balloon gave the host nothing"
        );
        assert_eq!(
            o.oom_kills[vm], 0,
            "{vm}: the guest's kernel killed a process"
        );
        let (alive, started) = o.hogs_alive[vm];
        assert_eq!(alive, started, "{vm}: memhogs lost");
    }
    // The sudden 100 MiB fill fits in the margin the floor keeps (no growth needed, nothing
    // killed: checked above); the gradual 240 MiB does not, so B had to be grown as it filled.
    assert!(
        o.react_s[b].is_some(),
        "the gradually filled guest was never grown"
    );
}

/// A VM whose stats stopped (period 0) and a paused VM are left alone, with the reason.
#[test]
fn stale_and_paused_vms_are_left_alone() {
    let lab = Lab::new().expect("lab");
    let d = Domain::start(
        &lab,
        DomainOpts {
            name: "balstale".into(),
            mem_mib: 512,
            stats_period: 1,
            ..DomainOpts::default()
        },
    )
    .expect("domain");
    let mut collector = balloon_lab::collector();
    let mut cycle = Cycle::new(Box::new(balloon_lab::memwarden()));
    let mut step = |want: &str| {
        let mut s = collector.collect().expect("sample");
        s.vms.retain(|v| v.name == d.name());
        assert_eq!(s.vms.len(), 1);
        let r = cycle.step(
            &memwarden_policy::View::of(s),
            collector.hypervisor().map(|h| h as _),
        );
        (
            r.plan.actions.is_empty(),
            r.plan.skipped.iter().any(|k| k.reason.contains(want)),
            r,
        )
    };
    // Fresh stats, host under pressure: it acts.
    let (idle, _, r) = step("");
    assert!(
        !idle,
        "a fresh idle guest under host pressure was not shrunk: {:?}",
        r.plan
    );

    // Polling off: libvirt keeps returning the last stats pushed, whose last_update ages.
    // (The collector re-reads the domain XML, where the period is, once a minute: until then
    // the age is what gives it away.)
    virsh(&["dommemstat", d.name(), "--period", "0", "--live"]).expect("period 0");
    std::thread::sleep(Duration::from_secs(13));
    let (idle, _, r) = step("");
    let why = r
        .plan
        .skipped
        .first()
        .map(|k| k.reason.clone())
        .unwrap_or_default();
    assert!(
        idle && (why.contains("stale statistics") || why.contains("polling is off")),
        "stats that stopped must stop the controller, saying so: {:?}",
        r.plan
    );

    virsh(&["dommemstat", d.name(), "--period", "1", "--live"]).expect("period 1");
    virsh(&["suspend", d.name()]).expect("suspend");
    std::thread::sleep(Duration::from_secs(2));
    let (idle, said, r) = step("paused");
    assert!(idle && said, "a paused VM must be left alone: {:?}", r.plan);
    virsh(&["resume", d.name()]).expect("resume");
}

/// A VM that stops answering (its QEMU frozen with SIGSTOP, so QMP times out) is left alone
/// with the reason, and keeps its name, while the controller goes on shrinking the VM beside
/// it; once the QEMU answers again it is read again.
#[test]
fn a_vm_that_stops_answering_is_left_alone_and_the_other_is_still_controlled() {
    let lab = Lab::new().expect("lab");
    let (a, b, _two, backend) = balloon_lab::qemu_guests(&lab, "balhang");
    let (an, bn) = (a.name(), b.name());
    let mut collector = balloon_lab::collector_on(&backend);
    let mut cycle = Cycle::new(Box::new(balloon_lab::memwarden()));
    let mut step = || {
        let mut s = collector.collect().expect("sample");
        s.vms.retain(|v| v.name == an || v.name == bn);
        let view = memwarden_policy::View::of(s);
        let r = cycle.step(&view, collector.hypervisor().map(|h| h as _));
        (view.sample().clone(), r)
    };
    let acted_on = |r: &memwarden_control::balloon::CycleReport, vm: &str| {
        r.plan.actions.iter().any(|x| x.vm == vm)
    };

    // Both answer: under host pressure, both idle guests are shrunk.
    let (_, r) = step();
    assert!(
        acted_on(&r, &an) && acted_on(&r, &bn),
        "both idle guests shrunk: {:?}",
        r.plan
    );

    let frozen = Frozen::new(a.pid());
    // Past B's settle time (a shrink waits `settle_s` for QEMU to give the pages back): B is
    // shrunk again while A hangs.
    std::thread::sleep(Duration::from_secs(balloon_lab::memwarden().settle_s + 1));
    let (s, r) = step();
    let row = s
        .vms
        .iter()
        .find(|v| v.name == an)
        .expect("A keeps its name and its row");
    assert_eq!(
        row.read.status,
        ReadStatus::TimedOut,
        "frozen QEMU: {:?}",
        row.read
    );
    assert!(
        !acted_on(&r, &an),
        "an action on a VM that does not answer: {:?}",
        r.plan
    );
    let why = r
        .plan
        .skipped
        .iter()
        .find(|k| k.vm == an)
        .map(|k| k.reason.clone())
        .unwrap_or_default();
    assert!(
        why.contains("not read (timed out)"),
        "A must be skipped, saying it did not answer: {:?}",
        r.plan
    );
    assert!(
        r.applied.iter().all(|x| x.action.vm != an),
        "applied to a frozen VM: {:?}",
        r.applied
    );
    let b = r
        .applied
        .iter()
        .find(|x| x.action.vm == bn)
        .unwrap_or_else(|| panic!("B not shrunk while A hung: {:?}", r.plan));
    assert_eq!(b.action.direction, Direction::Shrink);
    assert_eq!(
        b.outcome,
        memwarden_control::balloon::Outcome::Applied,
        "B's shrink refused"
    );
    eprintln!("frozen A: {why}; B: {}", b.action.reason);

    drop(frozen);
    std::thread::sleep(Duration::from_secs(3));
    let (s, _) = step();
    let row = s.vms.iter().find(|v| v.name == an).expect("A row");
    assert_eq!(
        row.read.status,
        ReadStatus::Ok,
        "A answers again: {:?}",
        row.read
    );
}
