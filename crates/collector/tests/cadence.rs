//! The costly reads on their own cadence: a collector that is not asked for the full read
//! skips smaps_rollup and vmallocinfo, and carries the last vmallocinfo summary forward,
//! marked, so that what it decides (vmap'd stacks, percpu chunks) does not flicker between
//! samples while the same-moment `vmalloc` identity is not judged on it.

use std::path::Path;

use memwarden_analysis::accounting::identities;
use memwarden_collector::{Collector, Config, VmSource};
use memwarden_procfs::HostReader;

fn collector(reader: HostReader) -> Collector {
    Collector::new(
        Config {
            host: true,
            full: true,
            vms: VmSource::None,
            ..Config::default()
        },
        reader,
    )
    .expect("collector")
}

fn check(reader: HostReader, what: &str) {
    let mut c = collector(reader);
    let full = c.collect().expect("full sample");
    let read = full.host.vmalloc.clone().expect("vmallocinfo read");
    assert_eq!(read.carried_from_unix_ms, None, "{what}");
    assert!(
        full.host.processes.iter().any(|p| p.smaps.is_some()),
        "{what}: a full read reads smaps_rollup"
    );
    let vmalloc_identity = |s: &memwarden_model::Sample| {
        identities::evaluate_all(&s.host)
            .into_iter()
            .find(|i| i.name == "vmalloc")
            .map(|i| i.residual_bytes.is_some())
    };
    assert_eq!(
        vmalloc_identity(&full),
        Some(true),
        "{what}: judged on a full read"
    );

    c.set_full(false);
    let light = c.collect().expect("light sample");
    assert!(
        light.host.processes.iter().all(|p| p.smaps.is_none()),
        "{what}: a light read reads status alone"
    );
    let carried = light.host.vmalloc.clone().expect("carried forward");
    assert_eq!(
        carried.carried_from_unix_ms,
        Some(full.taken_at_unix_ms),
        "{what}"
    );
    assert_eq!(
        carried.vmalloc_pages_bytes, read.vmalloc_pages_bytes,
        "{what}: the figures are the last read's"
    );
    assert!(
        !light
            .host
            .degraded
            .iter()
            .any(|d| d.contains("vmallocinfo")),
        "{what}: skipping on purpose is not a degradation: {:?}",
        light.host.degraded
    );
    assert_eq!(
        vmalloc_identity(&light),
        Some(false),
        "{what}: not judged when carried"
    );

    c.set_full(true);
    let again = c.collect().expect("full again");
    assert_eq!(
        again.host.vmalloc.expect("read").carried_from_unix_ms,
        None,
        "{what}"
    );
}

#[test]
fn vmallocinfo_is_carried_between_full_reads_of_a_captured_tree() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/guest-6.1-swap");
    check(HostReader::at_root(root), "captured 6.1 guest");
}

#[test]
fn vmallocinfo_is_carried_between_full_reads_of_the_live_host() {
    check(HostReader::live(), "this machine's /proc");
}
