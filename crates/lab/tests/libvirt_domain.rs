//! End-to-end: a lab guest as a real libvirt domain; `virsh dommemstat`'s
//! `available` is the guest's MemTotal (virtio-balloon stats, in KiB).

use memwarden_lab::{Domain, DomainOpts, Lab};
use std::time::{Duration, Instant};

#[test]
fn domain_dommemstat_available_is_guest_memtotal() -> memwarden_lab::Result<()> {
    let lab = Lab::new()?;
    let d = Domain::start(
        &lab,
        DomainOpts {
            name: "lab-test-dom".into(),
            mem_mib: 512,
            stats_period: 1,
            ..Default::default()
        },
    )?;
    eprintln!(
        "{} ready in {:?} (pid {})",
        d.name(),
        d.boot_time(),
        d.pid()
    );
    let total = d.meminfo()?["MemTotal"];

    // The driver pushes stats once loaded, then every period: wait for them.
    let start = Instant::now();
    let stats = loop {
        let s = d.dommemstat()?;
        if s.contains_key("available") || start.elapsed() > Duration::from_secs(20) {
            break s;
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    assert_eq!(stats.get("actual"), Some(&(512 * 1024)), "{stats:?}");
    assert_eq!(
        stats.get("available"),
        Some(&total),
        "dommemstat {stats:?} vs MemTotal {total}"
    );
    Ok(())
}

#[test]
fn domain_without_balloon_has_no_guest_stats() -> memwarden_lab::Result<()> {
    let lab = Lab::new()?;
    let d = Domain::start(
        &lab,
        DomainOpts {
            name: "lab-test-noballoon".into(),
            balloon: false,
            persist: true,
            ..Default::default()
        },
    )?;
    let stats = d.dommemstat()?;
    assert!(!stats.contains_key("available"), "{stats:?}");
    assert!(stats.contains_key("rss"), "{stats:?}");
    let xml = memwarden_lab::virsh(&["dumpxml", d.name()])?;
    assert!(xml.contains("<memballoon model='none'/>"), "{xml}");
    Ok(())
}
