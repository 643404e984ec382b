//! Samples built from captured data, shared by the tests and the bench: a host read from a
//! fixture tree (`fixtures/`) and VMs whose balloon statistics are the `virsh dommemstat` and
//! whose configuration is the Nova domain XML captured in crates/hv/tests/data.

#![allow(dead_code)] // Each test binary uses its own part of this module.

use std::path::PathBuf;

use memwarden_hv::tags;
use memwarden_libvirt::domain_xml;
use memwarden_metrics::DaemonHealth;
use memwarden_model::host::{HostSample, KsmdCpu, ProcKsm, ProcessMem, SmapsRollup};
use memwarden_model::vm::{
    BalloonDevice, ExtraStats, NovaInstance, ReadStatus, StatTag, VmConfig, VmRead, VmSample,
    VmState,
};
use memwarden_model::{Sample, SourceHealth};
use memwarden_procfs::HostReader;

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub fn host(fixture: &str) -> HostSample {
    HostReader::at_root(repo().join("fixtures").join(fixture))
        .read_host()
        .expect("fixture host reads")
}

/// The captured `virsh dommemstat` as libvirt-form tags (the hv crate's own mapping).
fn dommemstat() -> Vec<StatTag> {
    include_str!("../../../hv/tests/data/virsh-dommemstat.txt")
        .lines()
        .filter_map(|l| {
            let (name, value) = l.split_once(' ')?;
            Some(StatTag {
                name: name.to_string(),
                value: value.trim().parse().ok()?,
                unit: tags::unit_of(name),
            })
        })
        .collect()
}

fn nova() -> NovaInstance {
    let x = domain_xml::parse(include_str!(
        "../../../hv/tests/data/domain-xml/nova-instance.xml"
    ))
    .expect("captured XML parses");
    let n = x.nova.expect("the Nova fixture has Nova metadata");
    NovaInstance {
        name: n.name,
        flavor: n.flavor_name,
        project: n.project_name,
        project_uuid: n.project_uuid,
        user: n.user_name,
        user_uuid: n.user_uuid,
        creation_time: n.creation_time,
    }
}

/// What a QEMU 9.x with a Linux 6.12 guest adds through the monitor (as the libvirt backend
/// appends it), plus a statistic no release has yet: it must be shown, not dropped.
fn newer_stats() -> Vec<StatTag> {
    let raw: Vec<(String, u64)> = [
        ("stat-oom-kills", 1),
        ("stat-alloc-stalls", 12),
        ("stat-async-scans", 3400),
        ("stat-direct-scans", 120),
        ("stat-async-reclaims", 3000),
        ("stat-direct-reclaims", 100),
        ("stat-from-the-future", 7),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), *v))
    .collect();
    tags::qmp_to_tags(None, &raw, None, None)
}

/// VM number `i`: healthy and Nova-managed, except every fourth (polling off, no Nova) and
/// every seventh (timed out) so that diagnoses and read statuses show; odd ones have a newer
/// QEMU's statistics, KSM-merged pages and hugetlb-backed memory.
pub fn vm(i: usize) -> VmSample {
    let mut tags = dommemstat();
    if i % 2 == 1 {
        tags.extend(newer_stats());
    }
    let balloon = tags::balloon_from_tags(tags);
    let read_at = balloon.last_update_unix_s.unwrap_or(0) + 1;
    let mut vm = VmSample {
        name: format!("instance-{i:08x}"),
        uuid: Some(format!("6a0c4a4e-0000-4000-8000-{i:012x}")),
        source: "qemu:///system".into(),
        state: VmState::Running,
        max_memory_bytes: Some(512 << 20),
        balloon,
        device: BalloonDevice {
            present: true,
            path: Some("balloon0".into()),
            stats_period_s: Some(2),
            model: Some("virtio".into()),
            ..BalloonDevice::default()
        },
        read_at_unix_s: read_at,
        read: VmRead {
            duration_ms: 3,
            ..VmRead::default()
        },
        config: VmConfig {
            nova: Some(nova()),
            ..VmConfig::default()
        },
        qemu_pid: Some(1000 + i as u32),
        host: Some(ProcessMem {
            pid: 1000 + i as u32,
            name: "qemu-system-x86".into(),
            smaps: Some(SmapsRollup {
                rss: 240 << 20,
                pss: 239 << 20,
                ..SmapsRollup::default()
            }),
            ..ProcessMem::default()
        }),
        ..VmSample::default()
    };
    if i.is_multiple_of(2) {
        // On a cgroup v2 host, the VM's cgroup (fixtures/cgroup-v2-6.1-vm's layout).
        vm.cgroup = Some(memwarden_model::vm::VmCgroupMem {
            path: format!("/machine.slice/machine-qemu\\x2d{i}\\x2dinstance.scope"),
            sec_pagetables_bytes: Some(1 << 20),
            pagetables_bytes: Some(28672),
            kernel_bytes: Some(2 << 20),
        });
    }
    if i % 2 == 1 {
        vm.extra_stats = ExtraStats::Read;
        if let Some(p) = vm.host.as_mut() {
            p.status.hugetlb_pages = Some(0);
            p.ksm = Some(ProcKsm {
                merging_pages: Some(2048),
                process_profit: Some(8 << 20),
                ..ProcKsm::default()
            });
        }
    }
    if i % 4 == 3 {
        vm.device.stats_period_s = Some(0);
        vm.config.nova = None;
    }
    if i % 7 == 6 {
        vm.read.status = ReadStatus::TimedOut;
        vm.read.reason = Some("no reply within 2 s".into());
    }
    vm
}

/// The fixture host with `vms` VMs, sources and degraded notes filled as the collector does.
pub fn sample(fixture: &str, vms: usize) -> Sample {
    let mut host = host(fixture);
    // The captures hold no /proc/PID/stat; ksmd's CPU time as this machine's ksmd printed it.
    if host.ksm.is_some() && host.ksmd.is_none() {
        host.ksmd = Some(KsmdCpu {
            pid: 36,
            user_ms: 0,
            system_ms: 1_230,
        });
    }
    Sample {
        taken_at_unix_ms: 1_795_426_935_000,
        host,
        vms: (0..vms).map(vm).collect(),
        degraded: Vec::new(),
        sources: vec![
            SourceHealth {
                name: "host".into(),
                ok: true,
                duration_ms: 41,
                error: None,
                transport: None,
            },
            SourceHealth {
                name: "libvirt qemu:///system".into(),
                ok: true,
                duration_ms: 12,
                error: None,
                transport: Some("rpc".into()),
            },
        ],
        redaction: Default::default(),
    }
}

pub fn health() -> DaemonHealth {
    DaemonHealth {
        samples_total: 120,
        sample_errors_total: 2,
        last_sample_unix_ms: 1_795_426_935_200,
        last_sample_duration_seconds: 0.2,
        cpu_seconds_total: 3.5,
        resident_bytes: 18 << 20,
        sqlite_memory_bytes: 300 << 10,
        vms_gone_total: 1,
        store_errors_total: 0,
        store_bytes: 5 << 20,
        store_backlog_samples: 3,
        store_backlog_dropped_total: 1,
        config_last_reload_successful: true,
        config_last_reload_success_unix_ms: 1_795_426_000_000,
        balloon_enabled: true,
        balloon_dry_run: false,
        balloon_actions_total: vec![("instance-00000000".into(), "shrink".into(), 4)],
        balloon_action_errors_total: vec![("instance-00000000".into(), 1)],
        balloon_guest_harm_total: vec![("instance-00000000".into(), "reboot".into(), 1)],
    }
}
