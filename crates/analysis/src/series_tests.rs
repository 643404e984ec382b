use std::path::Path;

use memwarden_model::host::HostSample;
use memwarden_model::vm::{BalloonStats, VmSample};
use memwarden_model::Sample;

use super::*;

fn fixture(name: &str) -> HostSample {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures")
        .join(name);
    memwarden_procfs::HostReader::at_root(root)
        .read_host()
        .expect("read fixture")
}

fn value(points: &[Point], key: &str) -> Option<f64> {
    points
        .iter()
        .find(|p| p.key.to_string() == key)
        .map(|p| p.value)
}

fn sample_with_vm() -> Sample {
    let host = fixture("guest-6.1-swap");
    // Make the largest process this sample's QEMU, joined by pid.
    let qemu = host
        .processes
        .iter()
        .max_by_key(|p| p.smaps.as_ref().map_or(0, |s| s.rss))
        .cloned()
        .expect("a process");
    let vm = VmSample {
        name: "web1".into(),
        qemu_pid: Some(qemu.pid),
        host: Some(qemu),
        max_memory_bytes: Some(4 << 30),
        balloon: BalloonStats {
            actual_bytes: Some(4 << 30),
            available_bytes: Some(4 << 30),
            usable_bytes: Some(3 << 30),
            unused_bytes: Some(2 << 30),
            disk_caches_bytes: Some(1 << 29),
            swap_in_bytes: Some(10),
            major_faults: Some(7),
            ..BalloonStats::default()
        },
        ..VmSample::default()
    };
    Sample {
        taken_at_unix_ms: 1000,
        host,
        vms: vec![vm],
        ..Sample::default()
    }
}

#[test]
fn every_meminfo_line_is_a_series() {
    let s = sample_with_vm();
    let pts = points(&s);
    for e in &s.host.meminfo.entries {
        assert_eq!(
            value(&pts, &format!("meminfo.{}", e.key)),
            Some(e.value as f64),
            "{}",
            e.key
        );
    }
}

#[test]
fn black_hole_and_lru_parts_match_the_accounting() {
    let s = sample_with_vm();
    let pts = points(&s);
    let acc = accounting::analyse(&s.host);
    let x = acc
        .black_hole_bytes
        .expect("black hole computed on this fixture");
    assert_eq!(value(&pts, "host.black_hole"), Some(x as f64));
    assert_eq!(
        value(&pts, "host.lru.Slab"),
        s.host.meminfo.get("Slab").map(|v| v as f64)
    );
    assert!(value(&pts, "host.lru.vmalloc").is_some());
    // Parts plus the black hole are MemTotal.
    let parts: f64 = pts
        .iter()
        .filter(|p| p.key.name.starts_with("host.lru."))
        .map(|p| p.value)
        .sum();
    let total = s.host.meminfo.get("MemTotal").expect("MemTotal") as f64;
    assert_eq!(parts + x as f64, total);
}

#[test]
fn vm_and_process_series_carry_labels() {
    let s = sample_with_vm();
    let pts = points(&s);
    let gib = (1u64 << 30) as f64;
    assert_eq!(value(&pts, "vm.guest_used{vm=\"web1\"}"), Some(gib));
    assert_eq!(value(&pts, "vm.guest_cache{vm=\"web1\"}"), Some(gib / 2.0));
    assert_eq!(value(&pts, "vm.usable{vm=\"web1\"}"), Some(3.0 * gib));
    assert_eq!(
        value(&pts, "vm.balloon_actual{vm=\"web1\"}"),
        Some(4.0 * gib)
    );
    assert_eq!(value(&pts, "vm.major_faults{vm=\"web1\"}"), Some(7.0));
    let qemu = s.vms[0].host.as_ref().expect("qemu");
    let qemu_rss = qemu.smaps.as_ref().expect("smaps").rss as f64;
    assert_eq!(value(&pts, "vm.qemu_rss{vm=\"web1\"}"), Some(qemu_rss));
    // The QEMU process is named after its VM, and counted once.
    assert_eq!(value(&pts, "process.rss{process=\"web1\"}"), Some(qemu_rss));
    let all_rss: f64 = pts
        .iter()
        .filter(|p| p.key.name == "process.rss")
        .map(|p| p.value)
        .sum();
    let want: u64 = s.host.processes.iter().filter_map(super::rss).sum();
    assert_eq!(all_rss, want as f64);
}

#[test]
fn processes_of_one_name_are_summed() {
    let s = sample_with_vm();
    let pts = points(&s);
    let mut names: Vec<&str> = s.host.processes.iter().map(|p| p.name.as_str()).collect();
    names.sort();
    let dup = names.windows(2).find(|w| w[0] == w[1]).map(|w| w[0]);
    let name = dup.unwrap_or(names[0]);
    let qemu_pid = s.vms[0].qemu_pid;
    let want: u64 = s
        .host
        .processes
        .iter()
        .filter(|p| p.name == name && Some(p.pid) != qemu_pid)
        .filter_map(|p| p.smaps.as_ref().map(|m| m.pss))
        .sum();
    if want > 0 {
        assert_eq!(
            value(&pts, &format!("process.pss{{process=\"{name}\"}}")),
            Some(want as f64)
        );
    }
    assert!(pts.iter().any(|p| p.key.name == "process.pss"));
}

#[test]
fn psi_and_ksm_when_present() {
    let s = Sample {
        host: fixture("guest-6.12-ksm"),
        ..Sample::default()
    };
    let pts = points(&s);
    let psi = s.host.psi.expect("psi in fixture");
    assert_eq!(value(&pts, "psi.some.avg10"), Some(psi.some.avg10));
    let k = ksm::report(&s.host);
    assert_eq!(
        value(&pts, "host.ksm_saved"),
        k.saved_bytes.map(|v| v as f64)
    );
}

#[test]
fn ksmd_cpu_is_a_counter_in_seconds_and_absent_without_ksmd() {
    let mut s = Sample::default();
    assert_eq!(value(&points(&s), "host.ksmd_cpu_seconds"), None);
    s.host.ksmd = Some(memwarden_model::host::KsmdCpu {
        pid: 42,
        user_ms: 250,
        system_ms: 1_500,
    });
    assert_eq!(value(&points(&s), "host.ksmd_cpu_seconds"), Some(1.75));
}

#[test]
fn series_filters_by_prefix_and_vm_and_orders_points() {
    let mut a = sample_with_vm();
    let mut b = a.clone();
    a.taken_at_unix_ms = 2000;
    b.taken_at_unix_ms = 1000;
    b.vms[0].balloon.usable_bytes = Some(1 << 30);
    let all = series(&[a.clone(), b.clone()], &Filter::default());
    assert!(all.windows(2).all(|w| w[0].key < w[1].key));
    let f = Filter {
        fields: vec!["vm.guest_used".into(), "meminfo.Slab".into()],
        vm: None,
    };
    let got = series(&[a.clone(), b.clone()], &f);
    let names: Vec<String> = got.iter().map(|s| s.key.to_string()).collect();
    assert_eq!(names, ["meminfo.Slab", "vm.guest_used{vm=\"web1\"}"]);
    // Oldest first: b (usable 1 GiB: used 3 GiB), then a.
    let gib = (1u64 << 30) as f64;
    assert_eq!(got[1].points, vec![(1000, 3.0 * gib), (2000, gib)]);
    let only_vm = series(
        &[a, b],
        &Filter {
            fields: vec![],
            vm: Some("web1".into()),
        },
    );
    assert!(!only_vm.is_empty());
    assert!(only_vm
        .iter()
        .all(|s| s.key.vm.as_deref() == Some("web1") || s.key.process.as_deref() == Some("web1")));
}

#[test]
fn display_escapes_labels() {
    let k = SeriesKey {
        name: "process.rss".into(),
        vm: None,
        process: Some("a\"b".into()),
    };
    assert_eq!(k.to_string(), "process.rss{process=\"a\\\"b\"}");
}
