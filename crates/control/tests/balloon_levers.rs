//! The cheaper lever, on real lab guests under libvirt: free page reporting
//! (`<memballoon freePageReporting='on'>`) hands a guest's freed pages back to the host within
//! seconds, without the balloon; without it QEMU keeps backing them. memwarden shows that part as
//! its own figure (host-backed idle), and when asked for memory the controller takes it from the
//! guest that still holds it, whose balloon then really frees host memory (measured).

mod balloon_lab;

use std::time::{Duration, Instant};

use memwarden_analysis::vm::figures;
use memwarden_hv::Scope;
use memwarden_lab::{Domain, Lab};
use memwarden_model::units::MIB;
use memwarden_policy::reclaim::reclaim;

/// QEMU's resident memory, from the host's /proc.
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("QEMU status");
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS");
    kb * 1024
}

/// QEMU RSS before a 200 MiB fill, at its peak, and the lowest within `window` after the drop
/// (with when that was).
#[derive(Debug)]
struct FillDrop {
    before: u64,
    peak: u64,
    after: u64,
    after_s: f64,
}

fn fill_and_drop(d: &Domain, window: Duration) -> FillDrop {
    let before = rss(d.pid());
    d.console_timeout("fill 200", Duration::from_secs(120))
        .expect("fill");
    let peak = rss(d.pid());
    d.console("drop").expect("drop");
    let t0 = Instant::now();
    let (mut after, mut after_s) = (peak, 0.0);
    while t0.elapsed() < window {
        std::thread::sleep(Duration::from_millis(250));
        let r = rss(d.pid());
        if r < after {
            (after, after_s) = (r, t0.elapsed().as_secs_f64());
        }
    }
    FillDrop {
        before,
        peak,
        after,
        after_s,
    }
}

fn mib(b: u64) -> u64 {
    b / MIB
}

#[test]
fn free_page_reporting_returns_freed_memory_and_the_controller_takes_from_the_other_guest() {
    let lab = Lab::new().expect("lab");
    let _two = lab.multi_guest().expect("multi-guest lock");
    let (fpr, plain) = memwarden_lab::both(
        || balloon_lab::domain(&lab, "lever-fpr", "freePageReporting='on'"),
        || balloon_lab::domain(&lab, "lever-plain", ""),
    );

    // (1) The lever itself: the same fill and drop in each guest (side by side: each QEMU's
    // RSS is its own).
    let window = Duration::from_secs(8);
    let (f, p) = memwarden_lab::both(
        || fill_and_drop(&fpr, window),
        || fill_and_drop(&plain, window),
    );
    for (what, x) in [("freePageReporting='on'", &f), ("without it", &p)] {
        eprintln!(
            "{what}: QEMU RSS {} → {} → {} MiB ({:.1} s after the drop)",
            mib(x.before),
            mib(x.peak),
            mib(x.after),
            x.after_s
        );
        assert!(
            x.peak >= x.before + 150 * MIB,
            "{what}: the fill did not reach the host: {x:?}"
        );
    }
    assert!(
        f.after + 150 * MIB <= f.peak,
        "free page reporting gave the host nothing back within {window:?}: {f:?}"
    );
    assert!(
        p.after + 32 * MIB > p.peak,
        "without free page reporting QEMU should keep backing the freed pages: {p:?}"
    );

    // (2) memwarden's view: the device setting, and the part QEMU backs that the guest does not
    // use (host-backed idle), small where the guest returned it.
    std::thread::sleep(Duration::from_secs(3)); // fresh balloon stats after the drops
    let mut collector = balloon_lab::collector();
    let mut sample = collector.collect().expect("sample");
    let names = [fpr.name(), plain.name()];
    sample.vms.retain(|v| names.contains(&v.name.as_str()));
    assert_eq!(sample.vms.len(), 2, "{:?}", sample.vms);
    let vm = |n: &str| {
        sample
            .vms
            .iter()
            .find(|v| v.name == n)
            .expect("the VM")
            .clone()
    };
    let (vf, vp) = (vm(fpr.name()), vm(plain.name()));
    assert_eq!(vf.device.free_page_reporting, Some(true), "{:?}", vf.device);
    assert_ne!(vp.device.free_page_reporting, Some(true), "{:?}", vp.device);
    let idle = |v: &memwarden_model::vm::VmSample| {
        figures(v).host_backed_idle_bytes.expect("host-backed idle")
    };
    let (idle_f, idle_p) = (idle(&vf), idle(&vp));
    eprintln!(
        "host-backed idle: {} MiB with free page reporting, {} MiB without",
        mib(idle_f),
        mib(idle_p)
    );
    assert!(idle_p >= 150 * MIB, "{idle_p}");
    // With reporting on, only the guest's cache counts (the lab guest holds little).
    assert!(idle_f + 150 * MIB <= idle_p, "{idle_f} vs {idle_p}");

    // (3) Asked for 100 MiB, the controller takes it from the guest whose QEMU still backs its
    // free memory, and ballooning it really frees that on the host.
    let cfg = memwarden_policy::Config::default();
    let want = 100 * MIB;
    let r = reclaim(&memwarden_policy::View::of(sample.clone()), &cfg, want);
    eprintln!("reclaim {}: {}", mib(want), r.summary);
    for part in &r.parts {
        eprintln!("  {}: {}", part.vm, part.reason);
    }
    assert!(r.feasible, "{r:?}");
    assert_eq!(r.parts[0].vm, plain.name(), "{r:?}");
    let from_plain = r.parts[0].host_gain_bytes;
    let before = rss(plain.pid());
    let hv = collector.hypervisor().expect("libvirt");
    hv.set_memory(plain.name(), r.parts[0].target_bytes, Scope::LIVE)
        .expect("set the balloon");
    std::thread::sleep(Duration::from_secs(8));
    let after = rss(plain.pid());
    eprintln!(
        "ballooned {} to {} MiB: QEMU RSS {} → {} MiB (expected gain {} MiB)",
        plain.name(),
        mib(r.parts[0].target_bytes),
        mib(before),
        mib(after),
        mib(from_plain)
    );
    assert!(
        before.saturating_sub(after) >= from_plain / 2,
        "the balloon gave the host {} MiB of an expected {} MiB",
        mib(before.saturating_sub(after)),
        mib(from_plain)
    );
}
