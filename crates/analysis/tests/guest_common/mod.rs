//! What the consumer tests (zram, sockets, ZFS) share: commands on a lab guest's console and
//! the guest's sample as memwarden's reader would take it, read there.
#![allow(dead_code)] // each test binary uses a different part

use std::time::Duration;

use memwarden_analysis::accounting::decompositions;
use memwarden_lab::QemuGuest;
use memwarden_model::host::{HostSample, VirtioBalloonSysfs};

/// `cat PATH` on the guest's console.
pub fn cat(g: &QemuGuest, path: &str) -> String {
    g.console(&format!("run cat {path}"))
        .unwrap_or_else(|e| panic!("guest {path}: {e}"))
}

/// A shell line on the guest's console.
pub fn run(g: &QemuGuest, line: &str) -> String {
    g.console(&format!("run {line}"))
        .unwrap_or_else(|e| panic!("guest `{line}`: {e}"))
}

/// [`run`], given `timeout` to finish.
pub fn run_for(g: &QemuGuest, line: &str, timeout: Duration) -> String {
    g.console_timeout(&format!("run {line}"), timeout)
        .unwrap_or_else(|e| panic!("guest `{line}`: {e}"))
}

/// The guest's meminfo, vmstat, vmallocinfo, zoneinfo and balloon features as the reader takes
/// them (no processes, no consumer: each test adds its own).
pub fn base_sample(g: &QemuGuest) -> HostSample {
    let zone = memwarden_procfs::parse_zoneinfo(&cat(g, "/proc/zoneinfo")).expect("zoneinfo");
    let meminfo = memwarden_procfs::parse_meminfo(&cat(g, "/proc/meminfo")).expect("meminfo");
    let vmstat = memwarden_procfs::parse_vmstat(&cat(g, "/proc/vmstat")).expect("vmstat");
    let vmalloc =
        memwarden_procfs::parse_vmallocinfo(&cat(g, "/proc/vmallocinfo")).expect("vmallocinfo");
    let features = cat(g, "/sys/bus/virtio/drivers/virtio_balloon/virtio*/features");
    HostSample {
        meminfo,
        vmstat: Some(vmstat),
        vmalloc: Some(vmalloc),
        zoneinfo: Some(zone),
        page_size_bytes: Some(4096),
        virtio_balloon: Some(VirtioBalloonSysfs {
            features: features.trim().to_string(),
        }),
        ..Default::default()
    }
}

/// X by the LRU decomposition.
pub fn x(s: &HostSample) -> i128 {
    decompositions::by_lru(s).unaccounted_bytes.expect("X")
}
