//! The built-in RPC client against the real libvirtd and a real lab guest, side by side with
//! libvirt.so: the same figures, the same errors, and setmem that `virsh` sees.

use std::time::Duration;

use memwarden_hv::{Error, Hypervisor, LibvirtBackend, Scope, Transport};
use memwarden_lab::{wait_for, Domain, DomainOpts, Lab, URI};
use memwarden_model::units::{KIB, MIB};
use memwarden_model::vm::BalloonStats;

fn start(name: &str) -> (Lab, Domain) {
    let lab = Lab::new().expect("lab");
    let d = Domain::start(
        &lab,
        DomainOpts {
            name: name.into(),
            mem_mib: 256,
            stats_period: 1,
            ..DomainOpts::default()
        },
    )
    .expect("domain starts");
    (lab, d)
}

fn backend(t: Transport) -> LibvirtBackend {
    let mut b = LibvirtBackend::new(URI);
    b.transport = t;
    b.set_timeout(Duration::from_secs(10));
    b
}

fn tag(s: &BalloonStats, name: &str) -> Option<u64> {
    s.tags.iter().find(|t| t.name == name).map(|t| t.value)
}

#[test]
fn rpc_and_libvirt_so_report_the_same_domain_alike() {
    let (_lab, d) = start("rpc-same");
    let (mut rpc, mut ffi) = (backend(Transport::Rpc), backend(Transport::Ffi));
    wait_for("first guest stats", Duration::from_secs(60), || {
        rpc.memory_stats(d.name())
            .map(|s| s.available_bytes.is_some())
            .unwrap_or(false)
    });
    assert_eq!(rpc.transport(), Some("rpc"));

    // Back to back, the per-domain call: same tags in the same order; the balloon size and
    // the guest's total exactly; what the guest reports within one 1 s stats push.
    let a = rpc.memory_stats(d.name()).expect("rpc stats");
    let b = ffi.memory_stats(d.name()).expect("libvirt.so stats");
    assert_eq!(ffi.transport(), Some("libvirt.so"));
    let names = |s: &BalloonStats| s.tags.iter().map(|t| t.name.clone()).collect::<Vec<_>>();
    assert_eq!(names(&a), names(&b));
    assert_eq!(tag(&a, "actual"), tag(&b, "actual"));
    assert_eq!(tag(&a, "available"), tag(&b, "available"));
    for k in ["unused", "usable"] {
        let (x, y) = (tag(&a, k).expect(k), tag(&b, k).expect(k));
        assert!(
            x.abs_diff(y) * KIB <= 16 * MIB,
            "{k}: rpc {x} KiB, libvirt.so {y} KiB"
        );
    }
    let (x, y) = (
        a.last_update_unix_s.expect("rpc"),
        b.last_update_unix_s.expect("ffi"),
    );
    assert!(x.abs_diff(y) <= 2, "last_update {x} vs {y}");

    // The bulk path (list): same rows, same facts.
    let la = rpc.list().expect("rpc list");
    let lb = ffi.list().expect("libvirt.so list");
    let row = |l: &[memwarden_model::vm::VmSample]| {
        l.iter()
            .find(|v| v.name == d.name())
            .cloned()
            .expect("our domain listed")
    };
    let (ra, rb) = (row(&la), row(&lb));
    assert_eq!(ra.uuid, rb.uuid);
    assert_eq!(ra.state, rb.state);
    assert_eq!(ra.max_memory_bytes, rb.max_memory_bytes);
    assert_eq!(ra.qemu_pid, rb.qemu_pid);
    assert_eq!(ra.device.present, rb.device.present);
    assert_eq!(ra.device.stats_period_s, rb.device.stats_period_s);
    assert_eq!(ra.read.status, rb.read.status);
    assert_eq!(ra.balloon.actual_bytes, rb.balloon.actual_bytes);
    assert_eq!(names(&ra.balloon), names(&rb.balloon));

    // One domain, fully (state, max memory, XML facts).
    let (sa, sb) = (
        rpc.sample(d.name()).expect("rpc"),
        ffi.sample(d.name()).expect("ffi"),
    );
    assert_eq!(
        (
            sa.uuid,
            sa.state,
            sa.max_memory_bytes,
            sa.config.hard_limit_bytes
        ),
        (
            sb.uuid,
            sb.state,
            sb.max_memory_bytes,
            sb.config.hard_limit_bytes
        )
    );
    assert_eq!(rpc.names().expect("rpc"), ffi.names().expect("ffi"));
}

#[test]
fn setmem_through_rpc_is_what_virsh_dommemstat_says() {
    let (_lab, d) = start("rpc-setmem");
    let mut rpc = backend(Transport::Rpc);
    rpc.set_memory(d.name(), 192 * MIB, Scope::LIVE)
        .expect("setmem");
    wait_for(
        "virsh to see the new balloon target",
        Duration::from_secs(30),
        || {
            d.dommemstat()
                .map(|m| m.get("actual") == Some(&(192 * 1024)))
                .unwrap_or(false)
        },
    );
    rpc.set_stats_period(d.name(), 3, Scope::LIVE)
        .expect("stats period");
    let s = rpc.sample(d.name()).expect("sample");
    assert_eq!(s.device.stats_period_s, Some(3));
}

#[test]
fn an_unknown_domain_is_the_same_error_either_way() {
    let lab = Lab::new().expect("lab");
    let _libvirtd = memwarden_lab::Libvirtd::ensure(&lab).expect("libvirtd");
    for t in [Transport::Rpc, Transport::Ffi] {
        let mut b = backend(t);
        for e in [
            b.memory_stats("no-such-vm").expect_err("unknown"),
            b.set_memory("no-such-vm", 128 * MIB, Scope::LIVE)
                .expect_err("unknown"),
            b.sample("no-such-vm").expect_err("unknown"),
        ] {
            assert!(matches!(e, Error::NoSuchVm { .. }), "{t:?}: {e:?}");
            assert!(e.is_gone(), "{t:?}: {e}");
        }
    }
}
