//! Steady-state cost of sampling N libvirt VMs, per sample: what the daemon pays every interval.
//!
//! `cargo bench -p memwarden-collector --bench libvirt_cost` starts lab domains (N = 1 up to
//! the lab's guest slots, at most 4: `MEMWARDEN_LAB_SLOTS=4` for the full table), then for
//! each N prints the median of `ITER` rounds of:
//! - bulk: one `virConnectGetAllDomainStats` (state + balloon, NOWAIT), parsed: the floor;
//! - list: `Hypervisor::list` (bulk + cached domain XML facts + pid + stats period);
//! - collect: `Collector::collect` as `memwarden vms` runs it: list + each QEMU's status;
//! - collect+pss: the same with each QEMU's smaps_rollup;
//! - virsh domstats: one `virsh domstats --balloon` process (the peer an operator runs);
//! - virsh loop: one `virsh dommemstat` process per domain (what scripts do);
//!
//! and the ratios collect/bulk (target ≤ 1.2) and virsh/collect.

use std::process::Command;
use std::time::{Duration, Instant};

use memwarden_collector::{Collector, Config, VmSource};
use memwarden_hv::LibvirtBackend;
use memwarden_lab::{Domain, DomainOpts, Lab, URI};
use memwarden_procfs::HostReader;

const ITER: usize = 41;

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

fn collector(pss: bool) -> Collector {
    Collector::new(
        Config {
            host: false,
            full: pss,
            vms: VmSource::Libvirt {
                uri: URI.into(),
                monitor_passthrough: false,
                transport: memwarden_hv::Transport::Auto,
            },
            ..Config::default()
        },
        HostReader::live(),
    )
    .expect("collector")
}

fn virsh(args: &[&str]) {
    let ok = Command::new("virsh")
        .args(["-c", URI])
        .args(args)
        .output()
        .expect("virsh")
        .status
        .success();
    assert!(ok, "virsh {args:?}");
}

fn main() {
    let lab = Lab::new().expect("lab");
    let mut doms: Vec<Domain> = Vec::new();
    let max_n = memwarden_lab::slots().clamp(1, 4);
    println!(
        "N  bulk      list      collect   coll+pss  domstats  virsh-loop  collect/bulk  per-VM(collect)  domstats/collect"
    );
    for n in 1..=max_n {
        while doms.len() < n {
            doms.push(
                Domain::start(
                    &lab,
                    DomainOpts {
                        name: format!("cost{}", doms.len()),
                        mem_mib: 256,
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
            let r = memwarden_hv::Hypervisor::list(&mut hv).expect("list");
            assert!(r.len() >= n);
        });
        let mut c = collector(false);
        let collect = median(|| {
            let s = c.collect().expect("collect");
            assert!(s.vms.iter().filter(|v| v.host.is_some()).count() >= n);
        });
        let mut c = collector(true);
        let collect_pss = median(|| {
            let s = c.collect().expect("collect");
            assert!(s.vms.len() >= n);
        });
        let domstats = median(|| virsh(&["domstats", "--balloon"]));
        let virsh_loop = median(|| {
            for d in &names {
                virsh(&["dommemstat", d]);
            }
        });
        let ms = |d: Duration| format!("{:.2}ms", d.as_secs_f64() * 1e3);
        let r = |a: Duration, b: Duration| format!("{:.2}x", a.as_secs_f64() / b.as_secs_f64());
        println!(
            "{n}  {:<9} {:<9} {:<9} {:<9} {:<9} {:<11} {:<13} {:<16} {}",
            ms(bulk),
            ms(list),
            ms(collect),
            ms(collect_pss),
            ms(domstats),
            ms(virsh_loop),
            r(collect, bulk),
            ms(collect / n as u32),
            r(domstats, collect),
        );
    }
}
