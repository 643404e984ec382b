//! The balloon controller inside `memwarden serve`, on a real libvirt guest: with `[balloon]`
//! on (dry run, so that other tests' domains on the same libvirtd are never touched) and a host
//! target no host meets, each cycle plans a shrink of the idle guest, and the plan reaches
//! /api/v1/balloon, the audit file next to the history, the store's events and /metrics.

mod serve_support;

use std::path::Path;
use std::time::{Duration, Instant};

use memwarden_lab::{Domain, DomainOpts, Lab, URI};
use memwarden_store::Store;
use serve_support::{get, Serve};

#[test]
fn a_dry_run_controller_plans_logs_audits_and_counts() {
    let lab = Lab::new().expect("lab");
    let d = Domain::start(
        &lab,
        DomainOpts {
            name: "srvbal".into(),
            mem_mib: 512,
            stats_period: 1,
            ..DomainOpts::default()
        },
    )
    .expect("domain");
    let before = d.dommemstat().expect("dommemstat")["actual"];
    let cfg = format!(
        "interval = \"1s\"\ndeadline = \"900ms\"\n[vms]\nsource = \"libvirt\"\nconnect = \"{URI}\"\n\
         [balloon]\nenabled = true\ndry_run = true\nhost_min_available_bytes = 1152921504606846976\n"
    );
    let mut s = Serve::start_with_config(Path::new(env!("CARGO_BIN_EXE_memwarden")), &cfg, &[]);
    s.wait_samples(2, Duration::from_secs(60));
    let deadline = Instant::now() + Duration::from_secs(60);
    let action = loop {
        let v: serde_json::Value =
            serde_json::from_str(&get(s.port, "/api/v1/balloon").text()).expect("json");
        assert_eq!(v["enabled"], true);
        assert_eq!(v["dry_run"], true);
        let found = v["last_cycle"]["plan"]["actions"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|a| a["name"] == d.name())
            .cloned();
        if let Some(a) = found {
            break a;
        }
        assert!(Instant::now() < deadline, "no plan for {}: {v}", d.name());
        std::thread::sleep(Duration::from_millis(500));
    };
    assert_eq!(action["direction"], "shrink", "{action}");
    assert!(action["target_bytes"].as_u64().expect("target") < before * 1024);
    // A dry run: nothing set, nothing counted as done.
    assert_eq!(d.dommemstat().expect("dommemstat")["actual"], before);
    let metrics = get(s.port, "/metrics").text();
    assert!(
        metrics.contains("memwarden_balloon_controller_enabled 1\n")
            && metrics.contains("memwarden_balloon_controller_dry_run 1\n"),
        "{metrics}"
    );
    assert!(
        !metrics.contains("memwarden_balloon_actions_total{"),
        "{metrics}"
    );
    // The transport that ran, said on /metrics: the lab's qemu:///system through the RPC client.
    assert!(
        metrics.contains(
            "memwarden_source_info{source=\"libvirt qemu:///system\",transport=\"rpc\"} 1\n"
        ),
        "{metrics}"
    );
    let audit =
        std::fs::read_to_string(s.db.with_file_name("balloon-audit.jsonl")).expect("audit file");
    assert!(audit.lines().any(|l| l.contains(d.name())), "{audit}");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(s.db.with_file_name("balloon-audit.jsonl"))
            .expect("audit file")
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600, "the audit file is owner-only");
    let events = Store::open_read_only(&s.db)
        .expect("store")
        .events("balloon", 0, u64::MAX)
        .expect("events");
    assert!(
        events.iter().any(|(_, e)| e.to_string().contains(d.name())),
        "{events:?}"
    );
    // The controller's memory is in the store, and a second daemon on the same history
    // starts from it.
    s.signal("-TERM");
    assert!(s.wait_exit(Duration::from_secs(30)).success());
    let db = s.dir.path().join("kept.db");
    std::fs::copy(&s.db, &db).expect("copy the history");
    let state = Store::open_read_only(&db)
        .expect("store")
        .events("balloon_state", 0, u64::MAX)
        .expect("events");
    let (_, last) = state.last().expect("a stored controller state");
    let st: memwarden_policy::State = serde_json::from_value(last.clone()).expect("a State");
    assert!(!st.vms.is_empty(), "{last}");
    let mut again = Serve::start_at(
        Path::new(env!("CARGO_BIN_EXE_memwarden")),
        Some(&db),
        &cfg,
        &[],
    );
    again.wait_samples(2, Duration::from_secs(60));
    let log = again.log_text();
    assert!(
        log.contains("balloon controller state restored from the store"),
        "{log}"
    );
}
