//! Real KSM on real guests: two lab guests booted from the same kernel and initramfs hold many
//! identical pages; the tuner (eager configuration: this host has memory to spare) turns KSM on
//! through the actuator, and each QEMU process's own ksm_merging_pages, joined to its VM by the
//! collector, must rise above 0. KSM's original settings are restored by a drop guard.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use memwarden_analysis::ksm;
use memwarden_collector::{Collector, Config, VmSource};
use memwarden_control::ksm::{apply, SYSFS_DIR};
use memwarden_lab::{GuestOpts, Lab, QemuGuest};
use memwarden_model::units::MIB;
use memwarden_policy::ksm::{ksm_plan, KsmConfig, KsmHistory, RunDecision};
use memwarden_procfs::HostReader;

#[test]
fn the_tuner_turns_ksm_on_and_identical_guests_merge() {
    // Boot first (slow, and needs no lock), then take the KSM lock for the part that writes.
    let lab = Lab::new().expect("lab");
    let boot = |name: &str| {
        QemuGuest::boot(
            &lab,
            GuestOpts {
                name: name.into(),
                mem_mib: 256,
                ..GuestOpts::default()
            },
        )
        .expect("guest boots")
    };
    let _two = lab.multi_guest().expect("multi-guest lock");
    let (a, b) = memwarden_lab::both(|| boot("ksm-a"), || boot("ksm-b"));
    let guests = [a, b];
    let guard = common::Restore::new();
    assert_eq!(
        guard.original.value(memwarden_policy::ksm::Knob::Run),
        Some("0")
    );

    let mut collector = Collector::new(
        Config {
            host: true,
            full: false,
            vms: VmSource::Qmp {
                patterns: guests
                    .iter()
                    .map(|g| g.qmp_socket().display().to_string())
                    .collect(),
            },
            ..Config::default()
        },
        HostReader::live(),
    )
    .expect("collector");
    let cfg = KsmConfig {
        threshold_share: 1.0,
        // No cost verdict within the test: a first scan of two booting guests can show a
        // negative profit and would stop KSM before the merging this test is about (the cost
        // rule has its own tests in memwarden-policy).
        cost_window_s: 3600,
        ..KsmConfig::default()
    };
    let mut history = KsmHistory::default();
    let started = Instant::now();
    let mut first = None;
    let merged = loop {
        let s = collector.collect().expect("sample");
        let plan = ksm_plan(&s, &history, &cfg);
        if first.is_none() {
            assert_eq!(plan.run, RunDecision::Start, "{}", plan.reason);
            assert!(plan.advisor, "this kernel hands the pace to the advisor");
            first = Some(s.clone());
        }
        let results = apply(&plan, Path::new(SYSFS_DIR));
        assert!(results.iter().all(|r| r.ok()), "{results:#?}");
        history.record(&s, &plan);
        if let Some(c) = &plan.cost {
            eprintln!("cost rule: pass={} {}", c.pass, c.why);
        }
        let vms = ksm::vms(&s);
        assert_eq!(vms.len(), 2, "{vms:?}");
        for (v, g) in vms.iter().zip([&guests[0], &guests[1]]) {
            assert!(
                v.qemu_pid
                    .is_some_and(|p| p == guests[0].pid() || p == guests[1].pid()),
                "{v:?} vs {}",
                g.pid()
            );
        }
        if vms.iter().all(|v| v.merging_bytes.is_some_and(|b| b > 0)) {
            break (s, vms, plan);
        }
        assert!(
            started.elapsed() < Duration::from_secs(180),
            "no merging after 180 s: {vms:?}, ksm {:?}",
            s.host
                .ksm
                .as_ref()
                .map(|k| (&k.run, &k.full_scans, &k.pages_sharing))
        );
        std::thread::sleep(Duration::from_secs(1));
    };
    let (s, vms, plan) = merged;
    let first = first.expect("first sample");
    let cpu = ksm::ksmd_cpu(
        &s.host.ksmd.expect("ksmd"),
        s.taken_at_unix_ms,
        first
            .host
            .ksmd
            .as_ref()
            .map(|k| (k, first.taken_at_unix_ms)),
    );
    let k = s.host.ksm.as_ref().expect("ksm");
    eprintln!(
        "after {:.0} s: {} ; ksmd {:.1} % of a CPU over {:.0} s; full_scans {:?}, pages_sharing {:?}, \
         general_profit {:?}; plan {:?}: {}",
        started.elapsed().as_secs_f64(),
        vms.iter()
            .map(|v| format!(
                "{} (pid {:?}) merged {} MiB, profit {:?}",
                v.domain,
                v.qemu_pid,
                v.merging_bytes.unwrap_or(0) / MIB,
                v.profit_bytes
            ))
            .collect::<Vec<_>>()
            .join(", "),
        cpu.cpu_share.unwrap_or(0.0) * 100.0,
        cpu.window_s,
        k.full_scans,
        k.pages_sharing,
        k.general_profit,
        plan.run,
        plan.reason
    );
    assert!(
        cpu.cpu_share.is_some_and(|c| c > 0.0),
        "ksmd worked: {cpu:?}"
    );
    drop(guard);
    drop(guests);
}
