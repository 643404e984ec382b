//! Harm noticed through libvirt's own events, on a real libvirtd and a real lab guest (Linux
//! 6.1, 512 MiB, balloon statistics every second, `panic=-1`), ballooned down by hand to
//! 300 MiB and then crashed with sysrq `c`:
//!
//! 1. with a pvpanic device (`<panic model='isa'/>`) and `<on_crash>preserve</on_crash>`,
//!    libvirt keeps the domain as crashed (`VIR_DOMAIN_CRASHED`) and announces
//!    `crashed (panicked)`: the controller must report `HarmKind::Crash` once, not once per
//!    cycle while it stays crashed, and give the guest its memory back;
//! 2. without one, the guest's kernel reboots it (`panic=-1`): libvirt announces a reset (its
//!    reboot event), and the controller must report `HarmKind::Reboot` at the first cycle after
//!    it, before the new kernel pushes any statistics, and not a second time when the new
//!    kernel's counters then start again from zero. QEMU keeps its balloon size from before the
//!    reset (300 MiB) while the new kernel has all 512 MiB, so the controller must put that
//!    right (one refresh) instead of leaving a guest whose figures "do not add up" for good.
//!
//! The controller is memwarden's policy left to answer harm alone (as in balloon_harm.rs); the
//! timeline is printed as it happens.

mod balloon_lab;
mod harm_run;

use std::time::{Duration, Instant};

use memwarden_control::balloon::Cycle;
use memwarden_lab::{Domain, DomainOpts, Lab};
use memwarden_model::units::MIB;
use memwarden_model::vm::{VmEventKind, VmState};
use memwarden_policy::HarmKind;

use balloon_lab::{collector_on, Backend};
use harm_run::{boots, policy, Balloon, Run, MAX, SHRUNK};

/// A domain with `devices` and `on_crash`, the controller over it, its statistics flowing and
/// its balloon set by hand to [`SHRUNK`].
fn shrunk_domain(name: &str, devices: &str, on_crash: &str) -> (Domain, Run) {
    let lab = Lab::new().expect("lab");
    let d = Domain::start(
        &lab,
        DomainOpts {
            name: name.into(),
            mem_mib: MAX / MIB,
            stats_period: 1,
            devices: devices.into(),
            on_crash: on_crash.into(),
            ..DomainOpts::default()
        },
    )
    .expect("domain starts");
    let mut run = Run {
        t0: Instant::now(),
        collector: collector_on(&Backend::Libvirt),
        cycle: Cycle::new(Box::new(policy())),
        name: d.name().to_string(),
        balloon: Balloon::Libvirt,
        cycles: Vec::new(),
    };
    run.note(&format!(
        "{} domain {} ({}, on_crash {on_crash}), booted in {:.1} s",
        lab.kernel_release(),
        run.name,
        if devices.is_empty() {
            "no pvpanic device"
        } else {
            devices
        },
        d.boot_time().as_secs_f64()
    ));
    run.until("statistics and events", Duration::from_secs(30), |r| {
        r.cycles.last().and_then(|c| c.1.as_ref()).is_some_and(|v| {
            v.balloon.last_update_unix_s.is_some_and(|t| t > 0) && v.events.is_some()
        })
    });
    run.set_balloon(SHRUNK);
    run.until("the balloon at 300 MiB", Duration::from_secs(30), |r| {
        r.query_balloon() == SHRUNK
    });
    (d, run)
}

fn crash(d: &Domain, run: &Run) -> usize {
    run.note("crash: sysrq c");
    d.console("run echo 1 > /proc/sys/kernel/sysrq; (sleep 1; echo c > /proc/sysrq-trigger) &")
        .expect("sysrq");
    run.cycles.len()
}

/// Every event libvirt announced for the guest in cycles `from..`, with its cycle.
fn events_since(run: &Run, from: usize) -> Vec<(usize, VmEventKind, String)> {
    (from..run.cycles.len())
        .flat_map(|i| {
            run.cycles[i]
                .1
                .iter()
                .flat_map(|v| v.events.iter().flatten())
                .map(move |e| (i, e.kind, e.detail.clone()))
        })
        .collect()
}

fn harm_count(run: &Run, from: usize, kind: HarmKind) -> usize {
    run.cycles[from..]
        .iter()
        .flat_map(|c| c.2.plan.harm.iter())
        .filter(|h| h.kind == kind)
        .count()
}

#[test]
fn a_crash_libvirt_preserves_is_noticed_once_and_answered_with_all_memory_back() {
    let (d, mut run) = shrunk_domain("lvcrash", "<panic model='isa'/>", "preserve");
    let before = crash(&d, &run);
    let crashed = run.until("a crash harm", Duration::from_secs(30), |r| {
        r.harm_at(before, HarmKind::Crash).is_some()
    });
    let crash_s = run.cycles[crashed].0;
    assert_eq!(
        run.cycles[crashed].1.as_ref().map(|v| &v.state),
        Some(&VmState::Crashed)
    );
    run.assert_grown_back(crashed);
    // It stays crashed: one crash, reported once; libvirt's event arrives in the crash's cycle
    // or the next (it is drained before the states are read).
    for _ in 0..5 {
        run.step();
    }
    let events = events_since(&run, before);
    run.note(&format!("events since the crash: {events:?}"));
    assert!(
        events
            .iter()
            .any(|(i, k, detail)| *k == VmEventKind::Crashed
                && detail == "crashed (panicked)"
                && *i <= crashed + 1),
        "libvirt announced the panic: {events:?}"
    );
    assert_eq!(
        harm_count(&run, before, HarmKind::Crash),
        1,
        "one crash, reported once"
    );
    assert_eq!(harm_count(&run, before, HarmKind::Reboot), 0);
    let state = memwarden_lab::virsh(&["domstate", "--reason", d.name()]).expect("domstate");
    assert!(state.contains("crashed"), "{state}");
    let log =
        String::from_utf8_lossy(&std::fs::read(d.serial_log()).expect("serial log")).into_owned();
    assert!(
        log.contains("Kernel panic"),
        "the guest's console shows its panic"
    );
    run.note(&format!(
        "crash noticed at {crash_s:.1} s, answered with a growth to {} MiB; virsh domstate: {}",
        MAX / MIB,
        state.trim()
    ));
}

#[test]
fn a_reset_libvirt_announces_is_one_reboot_before_the_guest_pushes_again() {
    let (d, mut run) = shrunk_domain("lvreset", "", "destroy");
    assert_eq!(boots(&d.serial_log()), 1);
    let mem_total = |d: &Domain| d.meminfo().expect("meminfo")["MemTotal"];
    let shrunk_total_kib = mem_total(&d);
    let before = crash(&d, &run);
    let rebooted = run.until("a reboot harm", Duration::from_secs(30), |r| {
        r.harm_at(before, HarmKind::Reboot).is_some()
    });
    let reboot_s = run.cycles[rebooted].0;
    let vm = run.cycles[rebooted]
        .1
        .clone()
        .expect("the guest in that cycle");
    assert!(
        vm.events
            .iter()
            .flatten()
            .any(|e| e.kind == VmEventKind::Reset),
        "the reboot harm came from libvirt's reset event: {:?}",
        vm.events
    );
    run.assert_grown_back(rebooted);
    // The new kernel boots and pushes statistics whose counters start again: the same reboot.
    let stamp = vm.balloon.last_update_unix_s;
    let pushed = run.until(
        "the new kernel's statistics",
        Duration::from_secs(60),
        |r| {
            r.cycles.last().and_then(|c| c.1.as_ref()).is_some_and(|v| {
                v.balloon.last_update_unix_s.is_some_and(|t| t > 0)
                    && v.balloon.last_update_unix_s != stamp
            })
        },
    );
    // QEMU keeps the balloon size from before the reset, and the new driver, finding its target
    // at the maximum, reports nothing: the controller refreshes it once, a page short.
    run.until(
        "QEMU's balloon size put right",
        Duration::from_secs(30),
        |r| r.query_balloon() + 4096 >= MAX,
    );
    for _ in 0..3 {
        run.step();
    }
    assert!(boots(&d.serial_log()) >= 2, "the guest rebooted");
    assert_eq!(
        harm_count(&run, before, HarmKind::Reboot),
        1,
        "one reboot, reported once (its counters starting again are the same reboot)"
    );
    assert_eq!(harm_count(&run, before, HarmKind::Crash), 0);
    // Its memory back, by the guest's own MemTotal (no deflate-on-oom: the driver lowers
    // MemTotal by what the balloon holds); QEMU's `actual` is printed beside it.
    let total_kib = mem_total(&d);
    run.note(&format!(
        "guest MemTotal {} MiB (shrunk: {} MiB); QEMU/libvirt actual {} MiB",
        total_kib / 1024,
        shrunk_total_kib / 1024,
        run.query_balloon() / MIB
    ));
    assert!(
        total_kib * 1024 > SHRUNK + 150 * MIB,
        "the rebooted guest has its memory back: MemTotal {total_kib} kB"
    );
    run.note(&format!(
        "reboot noticed at {reboot_s:.1} s from libvirt's event; the new kernel pushed at cycle \
         {pushed} ({:.1} s); balloon {} MiB",
        run.cycles[pushed].0,
        MAX / MIB
    ));
}
