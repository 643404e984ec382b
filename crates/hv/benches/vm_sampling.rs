//! Cost of sampling N VMs: libvirt's bulk call vs a `virsh dommemstat` loop (what scripts do).
//!
//! `cargo bench -p memwarden-hv --bench vm_sampling` — starts lab domains (N = 1, 2: the lab's
//! two guest slots), then for each N times, median of `ITER` rounds:
//! - bulk: one `virConnectGetAllDomainStats` (state + balloon), parsed;
//! - list: `Hypervisor::list` (bulk + XML + pid + /proc of each QEMU);
//! - api loop: `virDomainMemoryStats` per domain on one connection;
//! - virsh loop: one `virsh dommemstat` process per domain.

use std::process::Command;
use std::time::{Duration, Instant};

use memwarden_hv::{Hypervisor, LibvirtBackend};
use memwarden_lab::{Domain, DomainOpts, Lab, URI};

const ITER: usize = 30;

fn median(mut f: impl FnMut()) -> Duration {
    let mut v: Vec<Duration> = (0..ITER)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .collect();
    v.sort();
    v[ITER / 2]
}

fn main() {
    let lab = Lab::new().expect("lab");
    let mut doms: Vec<Domain> = Vec::new();
    let max_n = memwarden_lab::slots().clamp(1, 2);
    println!("N  bulk      list      api-loop  virsh-loop  virsh/bulk  virsh/list  api/bulk");
    for n in 1..=max_n {
        while doms.len() < n {
            doms.push(
                Domain::start(
                    &lab,
                    DomainOpts {
                        name: format!("bench{}", doms.len()),
                        ..DomainOpts::default()
                    },
                )
                .expect("domain"),
            );
        }
        let names: Vec<String> = doms.iter().map(|d| d.name().to_string()).collect();
        let mut hv = LibvirtBackend::connect(URI).expect("connect");
        let bulk = median(|| {
            let r = hv.bulk_balloon().expect("bulk");
            assert!(r.len() >= n);
        });
        let list = median(|| {
            let r = hv.list().expect("list");
            assert!(r.len() >= n);
        });
        let api = median(|| {
            for d in &names {
                hv.memory_stats(d).expect("stats");
            }
        });
        let virsh = median(|| {
            for d in &names {
                let ok = Command::new("virsh")
                    .args(["-c", URI, "dommemstat", d])
                    .output()
                    .expect("virsh")
                    .status
                    .success();
                assert!(ok);
            }
        });
        let ms = |d: Duration| format!("{:.2}ms", d.as_secs_f64() * 1e3);
        let r = |a: Duration, b: Duration| format!("{:.1}x", a.as_secs_f64() / b.as_secs_f64());
        println!(
            "{n}  {:<9} {:<9} {:<9} {:<11} {:<11} {:<11} {}",
            ms(bulk),
            ms(list),
            ms(api),
            ms(virsh),
            r(virsh, bulk),
            r(virsh, list),
            r(api, bulk)
        );
    }
}
