//! The collector against real guests: a QEMU frozen with SIGSTOP under libvirt does not hold
//! the other domains, a QEMU killed between samples becomes a row that says so, and a
//! libvirtd restarted mid-run is reconnected on the next sample.

use std::time::{Duration, Instant};

use memwarden_collector::{Collector, Config, VmSource};
use memwarden_lab::{
    signal, wait_for, Domain, DomainOpts, Frozen, GuestOpts, Lab, Libvirtd, QemuGuest, URI,
};
use memwarden_model::vm::ReadStatus;
use memwarden_procfs::HostReader;

const DEADLINE: Duration = Duration::from_secs(2);

fn libvirt_collector() -> Collector {
    libvirt_collector_with(false)
}

fn libvirt_collector_with(monitor_passthrough: bool) -> Collector {
    Collector::new(
        Config {
            host: false,
            full: false,
            require_meminfo: true,
            vms: VmSource::Libvirt {
                uri: URI.into(),
                monitor_passthrough,
                transport: memwarden_hv::Transport::Auto,
            },
            deadline: DEADLINE,
            parallelism: 8,
        },
        HostReader::live(),
    )
    .expect("collector")
}

#[test]
fn a_sigstopped_qemu_does_not_hold_the_other_domains() -> memwarden_lab::Result<()> {
    let lab = Lab::new()?;
    let opts = |name: &str| DomainOpts {
        name: name.into(),
        mem_mib: 256,
        stats_period: 1,
        ..Default::default()
    };
    let _two = lab.multi_guest()?;
    let (frozen_dom, live_dom) = memwarden_lab::both(
        || Domain::start(&lab, opts("frz")),
        || Domain::start(&lab, opts("live")),
    );
    let (frozen_dom, live_dom) = (frozen_dom?, live_dom?);
    let mut c = libvirt_collector();
    let row =
        |s: &memwarden_model::Sample, name: &str| s.vms.iter().find(|v| v.name == name).cloned();
    // Both read, with guest stats, before the freeze.
    wait_for(
        "guest stats of both domains",
        Duration::from_secs(30),
        || {
            let s = c.collect().expect("sample");
            [frozen_dom.name(), live_dom.name()].iter().all(|n| {
                row(&s, n).is_some_and(|v| {
                    v.read.status == ReadStatus::Ok && v.balloon.available_bytes.is_some()
                })
            })
        },
    );

    // Monitor passthrough (libvirt-qemu) reads guest-stats straight from QEMU: the same
    // figures, marked as read.
    let s = libvirt_collector_with(true).collect().expect("sample");
    let v = row(&s, live_dom.name()).expect("row");
    assert_eq!(
        v.extra_stats,
        memwarden_model::vm::ExtraStats::Read,
        "{:?}",
        v.extra_stats
    );
    assert!(v.balloon.available_bytes.is_some(), "{v:#?}");

    let _freeze = Frozen::new(frozen_dom.pid());
    // Three samples in which libvirtd answered. libvirtd itself may stall a bulk call while
    // another test starts or destroys a domain (it holds that domain's object lock): such a
    // sample must still end by its deadline, with a line saying why, and is not counted.
    let (mut answered, mut stalled) = (0, 0);
    let t_all = Instant::now();
    while answered < 3 {
        assert!(
            t_all.elapsed() < Duration::from_secs(60),
            "libvirtd answered only {answered} samples in 60 s ({stalled} stalled)"
        );
        let t = Instant::now();
        let s = c.collect().expect("sample");
        let took = t.elapsed();
        assert!(
            took < DEADLINE + Duration::from_secs(2),
            "a sample took {took:?}: the frozen VM held it"
        );
        if !s.degraded.is_empty() {
            eprintln!("stalled sample ({took:?}): {:?}", s.degraded);
            stalled += 1;
            continue;
        }
        let f = row(&s, frozen_dom.name()).expect("frozen domain has a row");
        let l = row(&s, live_dom.name()).expect("live domain has a row");
        eprintln!(
            "round {answered}: {took:?}; frozen: {:?} {:?}; live: {:?}",
            f.read.status, f.read.reason, l.read.status
        );
        assert_ne!(f.read.status, ReadStatus::Ok, "a frozen QEMU cannot answer");
        assert_eq!(l.read.status, ReadStatus::Ok, "{:?}", l.read);
        assert!(l.balloon.available_bytes.is_some(), "{l:#?}");
        answered += 1;
    }
    Ok(())
}

#[test]
fn a_qemu_killed_between_samples_is_a_row_that_says_so() -> memwarden_lab::Result<()> {
    let lab = Lab::new()?;
    let g = QemuGuest::boot(
        &lab,
        GuestOpts {
            name: "killed".into(),
            ..Default::default()
        },
    )?;
    let socket = g.qmp_socket();
    let mut c = Collector::new(
        Config {
            host: false,
            full: false,
            require_meminfo: true,
            vms: VmSource::Qmp {
                patterns: vec![socket.display().to_string()],
            },
            deadline: DEADLINE,
            parallelism: 4,
        },
        HostReader::live(),
    )
    .expect("collector");
    let s = c.collect().expect("sample");
    assert_eq!(s.vms.len(), 1);
    assert_eq!(s.vms[0].read.status, ReadStatus::Ok, "{:?}", s.vms[0].read);
    assert_eq!(s.vms[0].qemu_pid, Some(g.pid()));
    assert!(s.vms[0].host.is_some(), "the QEMU process joined by pid");

    signal(g.pid(), "-KILL");
    wait_for("QEMU to exit", Duration::from_secs(10), || {
        !std::path::Path::new(&format!("/proc/{}/status", g.pid())).exists()
    });
    let s = c.collect().expect("sample");
    assert_eq!(s.vms.len(), 1, "the killed VM still has a row");
    let v = &s.vms[0];
    assert!(
        matches!(v.read.status, ReadStatus::Unreachable | ReadStatus::Gone),
        "{:?}",
        v.read
    );
    assert!(v.read.reason.as_deref().is_some_and(|r| !r.is_empty()));
    Ok(())
}

#[test]
fn a_restarted_libvirtd_is_reconnected_on_the_next_sample() -> memwarden_lab::Result<()> {
    let lab = Lab::new()?;
    // Exclusive: no other test's domain or connection is pulled from under it.
    let libvirtd = Libvirtd::exclusive(&lab)?;
    let dom = Domain::start_on(
        &libvirtd,
        &lab,
        DomainOpts {
            name: "rst".into(),
            mem_mib: 256,
            stats_period: 1,
            ..Default::default()
        },
    )?;
    let mut c = libvirt_collector();
    let ok_row = |s: &memwarden_model::Sample| {
        s.vms
            .iter()
            .any(|v| v.name == dom.name() && v.read.status == ReadStatus::Ok)
    };
    let first = c.collect().expect("sample");
    assert!(ok_row(&first), "read before the restart: {:?}", first.vms);

    libvirtd.stop()?;
    // While it is away: a sample still comes back, within the deadline, and says so.
    let t = Instant::now();
    let away = c.collect().expect("a sample without libvirtd");
    let took = t.elapsed();
    assert!(
        took < DEADLINE + Duration::from_secs(1),
        "sample took {took:?}"
    );
    assert!(
        away.vms.is_empty(),
        "no rows without libvirtd: {:?}",
        away.vms
    );
    let src = away
        .sources
        .iter()
        .find(|s| s.name.starts_with("libvirt"))
        .expect("libvirt source");
    assert!(!src.ok);
    let why = src.error.as_deref().unwrap_or_default();
    assert!(
        why.contains("VMs not read") && why.contains("trying again on the next sample"),
        "{why}"
    );
    eprintln!("while libvirtd was away ({took:?}): {why}");

    libvirtd.start()?;
    // The same collector, no new one: the lost connection is dropped and opened again.
    let t = Instant::now();
    wait_for("the domain read again", Duration::from_secs(30), || {
        ok_row(&c.collect().expect("sample"))
    });
    eprintln!("read again {:?} after libvirtd started", t.elapsed());
    Ok(())
}
