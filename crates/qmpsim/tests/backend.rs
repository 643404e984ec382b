//! memwarden's own QMP backend (`memwarden_hv::QmpBackend`) reads the simulator's healthy
//! endpoints as it reads a real QEMU: names, UUIDs, memory size, the balloon found by type
//! (named or anonymous, or absent), statistics in bytes, and `balloon`/`qom-set` that stick.

use memwarden_hv::{Hypervisor, QmpBackend, Scope};
use memwarden_qmpsim::{Behaviour, Endpoint, GuestState, Simulator};

const MIB: u64 = 1 << 20;

fn backend(dir: &std::path::Path) -> QmpBackend {
    QmpBackend::new(&[format!("{}/*.qmp", dir.display())]).expect("backend")
}

#[test]
fn qmp_backend_reads_a_simulated_fleet() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut endpoints = Endpoint::fleet(4);
    let mut anon = GuestState::new("anon");
    if let Some(b) = anon.balloon.as_mut() {
        b.id = None;
        b.polling_interval_s = 0;
    }
    let mut bare = GuestState::new("bare");
    bare.balloon = None;
    for g in [anon, bare] {
        endpoints.push(Endpoint {
            name: g.name.clone().expect("name"),
            behaviour: Behaviour::Healthy(g),
        });
    }
    let sim = Simulator::start(dir.path(), &endpoints).expect("simulator");
    assert_eq!(sim.socket_paths().len(), 6);
    let mut hv = backend(dir.path());
    let vms = hv.list().expect("list");
    assert_eq!(vms.len(), 6);
    for vm in &vms {
        let Some(Endpoint {
            behaviour: Behaviour::Healthy(g),
            ..
        }) = endpoints.iter().find(|e| e.name == vm.name)
        else {
            panic!("unexpected VM {:?}", vm.name);
        };
        assert_eq!(vm.uuid, g.uuid, "{}", vm.name);
        assert_eq!(vm.max_memory_bytes, Some(g.ram_bytes), "{}", vm.name);
        assert_eq!(vm.qemu_pid, Some(std::process::id()), "SO_PEERCRED");
        match &g.balloon {
            None => {
                assert!(!vm.device.present, "{}", vm.name);
                assert_eq!(vm.balloon.actual_bytes, None);
            }
            Some(b) => {
                assert!(vm.device.present, "{}", vm.name);
                assert_eq!(vm.device.model.as_deref(), Some("virtio-balloon-pci"));
                assert_eq!(vm.device.stats_period_s, Some(b.polling_interval_s));
                let s = &vm.balloon;
                assert_eq!(s.actual_bytes, Some(b.actual_bytes), "{}", vm.name);
                assert_eq!(s.available_bytes, Some(b.stats.total_memory & !1023));
                assert_eq!(s.unused_bytes, Some(b.stats.free_memory & !1023));
                assert_eq!(s.usable_bytes, Some(b.stats.available_memory & !1023));
                assert_eq!(s.disk_caches_bytes, Some(b.stats.disk_caches & !1023));
                assert_eq!(s.minor_faults, Some(b.stats.minor_faults));
                assert!(s.last_update_unix_s.is_some_and(|t| t > 1_700_000_000));
                let p = memwarden_analysis::vm::checks::problems(vm);
                assert!(p.is_empty(), "{}: {p:?}", vm.name);
            }
        }
    }
    let anon = vms.iter().find(|v| v.name == "anon").expect("anon");
    assert_eq!(
        anon.device.path.as_deref(),
        Some("/machine/peripheral-anon/device[0]")
    );
    let sizes: Vec<u64> = (0..4)
        .filter_map(|i| vms.iter().find(|v| v.name == format!("vm{i}")))
        .filter_map(|v| v.max_memory_bytes)
        .collect();
    assert_eq!(sizes, [512 * MIB, 1024 * MIB, 1536 * MIB, 2048 * MIB]);

    // Changes stick, per endpoint, across connections.
    hv.set_memory("vm1", 768 * MIB, Scope::LIVE)
        .expect("balloon");
    hv.set_stats_period("vm1", 10, Scope::LIVE).expect("period");
    let vm1 = hv.sample("vm1").expect("sample");
    assert_eq!(vm1.balloon.actual_bytes, Some(768 * MIB));
    assert_eq!(vm1.device.stats_period_s, Some(10));
    let before = vms.iter().find(|v| v.name == "vm1").expect("vm1");
    assert_eq!(
        vm1.balloon.available_bytes.map(|t| t + 256 * MIB),
        before.balloon.available_bytes,
        "without deflate-on-oom the guest's MemTotal shrinks with the balloon"
    );
    assert_eq!(
        hv.sample("vm2").expect("vm2").balloon.actual_bytes,
        Some(1536 * MIB)
    );
    assert!(hv.set_memory("bare", 256 * MIB, Scope::LIVE).is_err());
}

#[test]
fn qmp_backend_flags_a_liar() {
    let dir = tempfile::tempdir().expect("tempdir");
    let _sim = Simulator::start(
        dir.path(),
        &[Endpoint {
            name: "fibber".into(),
            behaviour: Behaviour::Liar,
        }],
    )
    .expect("simulator");
    let vm = backend(dir.path()).sample("fibber").expect("sample");
    let p = memwarden_analysis::vm::checks::problems(&vm).join("\n");
    assert!(p.contains("free (unused)"), "{p}");
    assert!(p.contains("usable"), "{p}");
    assert!(p.contains("exceeds the balloon's actual"), "{p}");
}
