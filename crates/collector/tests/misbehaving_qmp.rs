//! Every misbehaviour of a QMP endpoint that the issue tracker recorded, against the QMP
//! simulator (`crates/qmpsim`), with healthy endpoints beside them: each bad one becomes a row
//! with its status and a reason, the healthy ones are read as usual, and the whole sample
//! finishes within about one deadline.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use memwarden_analysis::vm::checks;
use memwarden_collector::{unread_vms, Collector, Config, VmSource};
use memwarden_model::vm::{ReadStatus, VmSample};
use memwarden_procfs::HostReader;
use memwarden_qmpsim::{Behaviour, Endpoint, Simulator, KINDS};

const DEADLINE: Duration = Duration::from_millis(1500);

fn collector(patterns: Vec<String>) -> Collector {
    Collector::new(
        Config {
            host: false,
            full: false,
            require_meminfo: true,
            vms: VmSource::Qmp { patterns },
            deadline: DEADLINE,
            parallelism: 16,
        },
        HostReader::live(),
    )
    .expect("collector")
}

#[test]
fn each_misbehaviour_is_a_row_and_the_healthy_vms_are_read() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut endpoints = vec![Endpoint::healthy("good1"), Endpoint::healthy("good2")];
    for kind in KINDS {
        endpoints.push(Endpoint {
            name: format!("bad-{kind}"),
            behaviour: Behaviour::from_kind(kind).expect("kind"),
        });
    }
    let _sim = Simulator::start(dir.path(), &endpoints).expect("simulator");
    let mut c = collector(vec![format!("{}/*.qmp", dir.path().display())]);

    let t = Instant::now();
    let s = c.collect().expect("sample");
    let took = t.elapsed();

    let rows: BTreeMap<&str, &VmSample> = s.vms.iter().map(|v| (v.name.as_str(), v)).collect();
    assert_eq!(rows.len(), endpoints.len(), "one row per socket: {rows:#?}");
    for good in ["good1", "good2"] {
        let v = rows[good];
        assert_eq!(v.read.status, ReadStatus::Ok, "{v:#?}");
        assert!(v.balloon.available_bytes.is_some(), "{v:#?}");
        assert!(v.device.present);
    }
    let expect = [
        ("bad-hang-after-greeting", ReadStatus::TimedOut),
        ("bad-no-greeting", ReadStatus::TimedOut),
        ("bad-garbage", ReadStatus::ProtocolError),
        ("bad-drip", ReadStatus::TimedOut),
        ("bad-flood", ReadStatus::ProtocolError),
        ("bad-close-after-greeting", ReadStatus::Gone),
        ("bad-huge", ReadStatus::ProtocolError),
    ];
    for (name, status) in expect {
        let v = rows.get(name).unwrap_or_else(|| panic!("no row {name}"));
        assert_eq!(v.read.status, status, "{name}: {:?}", v.read);
        let reason = v.read.reason.as_deref().unwrap_or("");
        assert!(!reason.is_empty(), "{name} has no reason");
        assert!(reason.len() < 400, "{name}: reason too long: {reason}");
        eprintln!("{name}: {} ms: {reason}", v.read.duration_ms);
    }
    assert!(rows["bad-flood"]
        .read
        .reason
        .as_deref()
        .unwrap_or("")
        .contains("1024 KiB"));
    // A liar speaks QMP fine; its numbers are what analysis refuses.
    let liar = rows["bad-liar"];
    assert_eq!(liar.read.status, ReadStatus::Ok);
    assert!(!checks::problems(liar).is_empty(), "{liar:#?}");
    assert_eq!(unread_vms(&s), 7);
    // Every VM is read at once: the whole sample takes one deadline, not one per bad VM.
    assert!(
        took < DEADLINE + Duration::from_millis(1500),
        "sample took {took:?} with a {DEADLINE:?} deadline"
    );
}

#[test]
fn a_path_that_does_not_exist_is_an_error_naming_it() {
    let e = Collector::new(
        Config {
            vms: VmSource::Qmp {
                patterns: vec!["/nonexistent/vm.sock".into()],
            },
            ..Config::default()
        },
        HostReader::live(),
    )
    .expect_err("a typo is not 'no VMs'");
    let chain = format!("{:?}", anyhow_chain(&e));
    assert!(chain.contains("/nonexistent/vm.sock"), "{chain}");
}

#[test]
fn a_socket_with_nothing_listening_is_unreachable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("dead.qmp");
    // A socket file whose listener is gone (QEMU killed): connection refused.
    drop(std::os::unix::net::UnixListener::bind(&path).expect("bind"));
    let mut c = collector(vec![path.display().to_string()]);
    let s = c.collect().expect("sample");
    assert_eq!(s.vms.len(), 1);
    assert_eq!(
        s.vms[0].read.status,
        ReadStatus::Unreachable,
        "{:?}",
        s.vms[0].read
    );
    let reason = s.vms[0].read.reason.as_deref().unwrap_or_default();
    assert!(
        reason.contains("nothing listens on this socket") && reason.contains("stale socket"),
        "the operator is told the file is stale: {reason}"
    );
}

fn anyhow_chain(e: &dyn std::error::Error) -> Vec<String> {
    let mut out = vec![e.to_string()];
    let mut src = e.source();
    while let Some(s) = src {
        out.push(s.to_string());
        src = s.source();
    }
    out
}
