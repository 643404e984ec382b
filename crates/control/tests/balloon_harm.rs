//! Harm noticed and answered on a real guest: a Linux 6.12 guest under QEMU 10 (plain QEMU, QMP;
//! 512 MiB, balloon statistics every second, no deflate-on-oom, `panic=-1` from boot-qemu.sh)
//! is ballooned down by hand, then
//!
//! 1. allocates more anonymous memory than it has: its kernel OOM-kills memhog, the balloon's
//!    OOM statistic says so, and the controller must report `HarmKind::OomKill` with the
//!    guest's own /proc/vmstat count and give the guest all its memory back;
//! 2. ballooned down again, reboots (sysrq `b`): its counters start again, and the controller
//!    must report `HarmKind::Reboot` and give it its memory back once more.
//!
//! A second test gives a guest a pvpanic device with QEMU's `-action panic=pause` and crashes it
//! (sysrq `c`) while ballooned: QEMU says `guest-panicked`, and the controller must report
//! `HarmKind::Crash` once (not once per cycle while it stays crashed) and give its memory back.
//!
//! The controller is memwarden's policy with a host dead band no host leaves (nothing is shrunk,
//! nothing given back: with the defaults a comfortable host gives the hand-set balloon back in
//! the first cycle). It does not run while memhog fills: its pressure pass outran memhog (TCG
//! fills at 40–60 MiB/s) in two of three tries, growing the guest 300 → 380–478 MiB in 3–4 cycles
//! so that memhog was never killed, even with the guest watermarks at 0 (the fill projection
//! adds the statistics' age). It runs again as soon as memhog has returned: the OOM kill is then
//! in the guest's next statistics push. Harm is answered before any other pass; this test sees
//! that answer alone. The timeline is printed as it happens.

mod balloon_lab;
mod harm_run;

use std::time::{Duration, Instant};

use memwarden_control::balloon::Cycle;
use memwarden_hv::qmp::QmpClient;
use memwarden_lab::{GuestOpts, Kernel, Lab, QemuGuest};
use memwarden_model::units::MIB;
use memwarden_model::vm::VmState;
use memwarden_policy::{Direction, HarmKind};

use balloon_lab::{collector_on, Backend};
use harm_run::{boots, policy, Balloon, Run, MAX, SHRUNK};

/// The guest's own /proc/vmstat `oom_kill`, read on its console.
fn vmstat_oom_kill(g: &QemuGuest) -> u64 {
    let out = g
        .console("run grep '^oom_kill ' /proc/vmstat")
        .expect("vmstat");
    out.lines()
        .find_map(|l| l.trim().strip_prefix("oom_kill ")?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no oom_kill in {out:?}"))
}

/// The count in an OOM-kill harm's detail ("its kernel OOM-killed N process(es) ...").
fn killed(detail: &str) -> u64 {
    detail
        .split_whitespace()
        .find_map(|w| w.parse().ok())
        .unwrap_or_else(|| panic!("no count in {detail:?}"))
}

#[test]
fn an_oom_kill_and_a_reboot_are_noticed_and_answered_with_all_memory_back() {
    let lab = Lab::with_kernel(Kernel::Debian6_12).expect("lab");
    let qemu = lab.qemu10().expect("QEMU 10 unpacked");
    let g = QemuGuest::boot(
        &lab,
        GuestOpts {
            name: "harm".into(),
            mem_mib: 512,
            stats_polling: Some(1),
            qemu: Some(qemu.clone()),
            ..GuestOpts::default()
        },
    )
    .expect("guest boots");
    let cmdline = g.console("run cat /proc/cmdline").expect("cmdline");
    assert!(
        cmdline.split_whitespace().any(|w| w == "panic=-1"),
        "a panic must reboot the guest: {cmdline}"
    );
    let mut run = Run {
        t0: Instant::now(),
        collector: collector_on(&Backend::Qmp(vec![g.qmp_socket().display().to_string()])),
        cycle: Cycle::new(Box::new(policy())),
        name: g.name(),
        balloon: Balloon::Qmp(g.qmp_socket()),
        cycles: Vec::new(),
    };
    run.note(&format!(
        "{} guest {} under {}, booted in {:.1} s",
        lab.kernel_release(),
        run.name,
        qemu.version,
        g.boot_time().as_secs_f64()
    ));

    // Shrunk by hand; the controller runs and leaves it there.
    run.until("the OOM statistic", Duration::from_secs(30), |r| {
        r.cycles
            .last()
            .and_then(|c| c.1.as_ref())
            .is_some_and(|v| v.balloon.oom_kills.is_some())
    });
    assert_eq!(vmstat_oom_kill(&g), 0, "no OOM kill before the test");
    run.set_balloon(SHRUNK);
    let shrunk = run.until("the balloon at 300 MiB", Duration::from_secs(30), |r| {
        r.cycles.last().and_then(|c| c.1.as_ref()).is_some_and(|v| {
            v.balloon.actual_bytes == Some(SHRUNK)
                && v.balloon.available_bytes.is_some_and(|t| t < SHRUNK)
        })
    });
    for _ in 0..3 {
        run.step();
    }
    assert!(
        run.actions_since(shrunk).is_empty()
            && run.cycles[shrunk..]
                .iter()
                .all(|c| c.2.plan.harm.is_empty()),
        "the controller left the hand-set balloon alone"
    );

    // More anonymous memory than the guest has: just under MemTotal (a larger mmap is refused
    // by the overcommit heuristic before anything is touched), well over MemAvailable.
    let mem = g.meminfo().expect("meminfo");
    let hog_mib = mem["MemTotal"] / 1024 - 8;
    run.note(&format!(
        "hog {hog_mib} MiB (guest MemTotal {} MiB, MemAvailable {} MiB)",
        mem["MemTotal"] / 1024,
        mem["MemAvailable"] / 1024
    ));
    let before_hog = run.cycles.len();
    let hog = g.console_timeout(&format!("hog {hog_mib}"), Duration::from_secs(60));
    let hog_done_s = run.s();
    run.note(&format!("hog returned: {hog:?}"));
    assert!(
        matches!(hog, Err(memwarden_lab::Error::Command { .. })),
        "memhog {hog_mib} MiB should have been OOM-killed: {hog:?}"
    );
    let noticed = run.until("an OOM-kill harm", Duration::from_secs(10), |r| {
        r.harm_at(before_hog, HarmKind::OomKill).is_some()
    });
    let guest_kills = vmstat_oom_kill(&g);
    let (noticed_s, vm, report) = &run.cycles[noticed];
    let harm = report
        .plan
        .harm
        .iter()
        .find(|h| h.kind == HarmKind::OomKill)
        .expect("OOM-kill harm");
    let reported = vm.as_ref().and_then(|v| v.balloon.oom_kills);
    run.note(&format!(
        "guest /proc/vmstat oom_kill {guest_kills}; the plan: {} (cumulative {reported:?})",
        harm.detail
    ));
    assert!(guest_kills >= 1, "the guest OOM-killed memhog");
    assert_eq!(killed(&harm.detail), guest_kills, "{}", harm.detail);
    assert_eq!(reported, Some(guest_kills));
    // Below its maximum when harmed (the pressure pass may have grown it a little first: the
    // push before the kill's showed the guest short of memory).
    assert!(
        harm.actual_bytes.is_some_and(|a| a < MAX) && harm.max_bytes == Some(MAX),
        "{harm:?}"
    );
    run.assert_grown_back(noticed);
    let noticed_s = *noticed_s;
    let back = run.until(
        "the balloon back at 512 MiB",
        Duration::from_secs(20),
        |r| r.query_balloon() == MAX,
    );
    let back_s = run.cycles[back].0;
    let oom_harms = (before_hog..run.cycles.len())
        .flat_map(|i| run.cycles[i].2.plan.harm.iter())
        .filter(|h| h.kind == HarmKind::OomKill)
        .count();
    assert_eq!(oom_harms, 1, "one OOM kill, reported once");
    run.note(&format!(
        "OOM: hog returned by {hog_done_s:.1} s, harm noticed at {noticed_s:.1} s, \
         query-balloon 512 MiB at {back_s:.1} s"
    ));

    // Shrunk again, then a reboot.
    run.set_balloon(SHRUNK);
    run.until(
        "the balloon at 300 MiB again",
        Duration::from_secs(30),
        |r| r.query_balloon() == SHRUNK,
    );
    assert_eq!(boots(&g.serial_log()), 1);
    let before_reboot = run.cycles.len();
    run.note("reboot: sysrq b");
    g.console("run echo 1 > /proc/sys/kernel/sysrq; (sleep 1; echo b > /proc/sysrq-trigger) &")
        .expect("sysrq");
    let mut ready_s = None;
    let rebooted = run.until("a reboot harm", Duration::from_secs(60), |r| {
        if ready_s.is_none() && boots(&g.serial_log()) >= 2 {
            ready_s = Some(r.s());
        }
        r.harm_at(before_reboot, HarmKind::Reboot).is_some()
    });
    let (reboot_s, _, report) = &run.cycles[rebooted];
    let reboot_s = *reboot_s;
    let harm = report
        .plan
        .harm
        .iter()
        .find(|h| h.kind == HarmKind::Reboot)
        .expect("reboot harm")
        .clone();
    run.note(&format!(
        "the plan: {} (balloon {:?} of {:?})",
        harm.detail, harm.actual_bytes, harm.max_bytes
    ));
    let back = run.until(
        "the balloon back at 512 MiB after the reboot",
        Duration::from_secs(30),
        |r| r.query_balloon() == MAX,
    );
    let back_s = run.cycles[back].0;
    let grown = run.actions_since(before_reboot).into_iter().any(|(_, a)| {
        a.action.direction == Direction::Grow && a.action.target_bytes == MAX && a.done()
    });
    assert!(grown, "a growth to 512 MiB was applied after the reboot");
    // Still there a few cycles on (the rebooted guest's driver must not inflate it again).
    for _ in 0..3 {
        run.step();
    }
    assert_eq!(run.query_balloon(), MAX, "the balloon stays at its maximum");
    let reboot_harms = (before_reboot..run.cycles.len())
        .flat_map(|i| run.cycles[i].2.plan.harm.iter())
        .filter(|h| h.kind == HarmKind::Reboot)
        .count();
    assert_eq!(reboot_harms, 1, "one reboot, reported once");
    run.note(&format!(
        "reboot: LAB-READY again by {}, harm noticed at {reboot_s:.1} s, query-balloon 512 MiB \
         at {back_s:.1} s",
        ready_s.map_or("-".into(), |s| format!("{s:.1} s"))
    ));
}

/// The guest's kernel panics and says so through its pvpanic device; QEMU pauses it.
#[test]
fn a_pvpanic_crash_is_noticed_once_and_answered_with_all_memory_back() {
    let lab = Lab::new().expect("lab");
    let g = QemuGuest::boot(
        &lab,
        GuestOpts {
            name: "crash".into(),
            mem_mib: 512,
            stats_polling: Some(1),
            pvpanic: true,
            ..GuestOpts::default()
        },
    )
    .expect("guest boots");
    let pvpanic = g
        .console("run ls /sys/bus/platform/drivers/pvpanic-mmio /sys/bus/pci/drivers/pvpanic-pci")
        .unwrap_or_default();
    let mut run = Run {
        t0: Instant::now(),
        collector: collector_on(&Backend::Qmp(vec![g.qmp_socket().display().to_string()])),
        cycle: Cycle::new(Box::new(policy())),
        name: g.name(),
        balloon: Balloon::Qmp(g.qmp_socket()),
        cycles: Vec::new(),
    };
    run.note(&format!(
        "{} guest {} under the system QEMU with -device pvpanic -action panic=pause; its \
         pvpanic driver: {}",
        lab.kernel_release(),
        run.name,
        pvpanic.split_whitespace().collect::<Vec<_>>().join(" ")
    ));
    run.until("statistics", Duration::from_secs(30), |r| {
        r.cycles
            .last()
            .and_then(|c| c.1.as_ref())
            .is_some_and(|v| v.balloon.last_update_unix_s.is_some_and(|t| t > 0))
    });
    run.set_balloon(SHRUNK);
    run.until("the balloon at 300 MiB", Duration::from_secs(30), |r| {
        r.query_balloon() == SHRUNK
    });
    let before = run.cycles.len();
    run.note("crash: sysrq c");
    g.console("run echo 1 > /proc/sys/kernel/sysrq; (sleep 1; echo c > /proc/sysrq-trigger) &")
        .expect("sysrq");
    let crashed = run.until("a crash harm", Duration::from_secs(30), |r| {
        r.harm_at(before, HarmKind::Crash).is_some()
    });
    let (crash_s, vm, report) = &run.cycles[crashed];
    let crash_s = *crash_s;
    assert_eq!(vm.as_ref().map(|v| &v.state), Some(&VmState::Crashed));
    let harm = report
        .plan
        .harm
        .iter()
        .find(|h| h.kind == HarmKind::Crash)
        .expect("crash harm")
        .clone();
    assert_eq!(
        (harm.actual_bytes, harm.max_bytes),
        (Some(SHRUNK), Some(MAX)),
        "{harm:?}"
    );
    run.assert_grown_back(crashed);
    // It stays crashed (paused by QEMU): the crash is one event, not one per cycle.
    for _ in 0..5 {
        run.step();
    }
    let mut c = QmpClient::connect(&g.qmp_socket(), Instant::now() + Duration::from_secs(5))
        .expect("QMP connect");
    let status = c.execute("query-status", None).expect("query-status");
    assert_eq!(status["status"], "guest-panicked", "{status}");
    let crashes = (before..run.cycles.len())
        .flat_map(|i| run.cycles[i].2.plan.harm.iter())
        .filter(|h| h.kind == HarmKind::Crash)
        .count();
    assert_eq!(crashes, 1, "one crash, reported once");
    assert!(
        run.cycles[before..].iter().all(|c| c
            .1
            .as_ref()
            .is_none_or(|v| v.state == VmState::Crashed)
            || c.0 < crash_s),
        "crashed from then on"
    );
    let log =
        String::from_utf8_lossy(&std::fs::read(g.serial_log()).expect("serial log")).into_owned();
    assert!(
        log.contains("Kernel panic"),
        "the guest's console shows its panic"
    );
    assert_eq!(boots(&g.serial_log()), 1, "paused by QEMU, not rebooted");
    run.note(&format!(
        "crash noticed at {crash_s:.1} s, answered with a growth to {} MiB; query-status {}",
        MAX / MIB,
        status["status"]
    ));
}
