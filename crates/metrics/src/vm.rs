//! Per-VM series, labelled `domain` and `uuid`: an `_info` gauge with the Nova metadata (joined
//! in PromQL rather than copied onto every series), the read outcome, every balloon statistic
//! and the figures `memwarden_analysis::vm` derives.

use memwarden_analysis::vm::{FindingKind, VmFigures, VmReport};
use memwarden_model::vm::{ReadStatus, TagUnit, VmBackend, VmSample, VmState};

use crate::writer::Series;

pub(crate) fn write(s: &mut Series, r: &VmReport) {
    let vm = r.vm;
    let uuid = vm.uuid.as_deref().unwrap_or("");
    let l = [vm.name.as_str(), uuid];
    let nova = vm.config.nova.as_ref();
    let nova_field = |f: fn(&memwarden_model::vm::NovaInstance) -> &Option<String>| {
        nova.and_then(|n| f(n).as_deref()).unwrap_or("")
    };
    s.add(
        "memwarden_vm_info",
        &[
            &vm.name,
            uuid,
            backend(vm.backend),
            vm.guest_os.as_deref().unwrap_or(""),
            nova_field(|n| &n.name),
            nova_field(|n| &n.project),
            nova_field(|n| &n.flavor),
        ],
        1u64,
    );
    s.add(
        "memwarden_vm_state",
        &[&vm.name, uuid, &state(&vm.state)],
        1u64,
    );
    s.add(
        "memwarden_vm_read_status",
        &[&vm.name, uuid, read_status(vm.read.status)],
        1u64,
    );
    s.add(
        "memwarden_vm_read_duration_seconds",
        &l,
        vm.read.duration_ms as f64 / 1e3,
    );
    for f in &r.diagnosis {
        // Two findings of one kind are one series (the writer keeps the first).
        s.add(
            "memwarden_vm_diagnosis",
            &[&vm.name, uuid, finding(f.kind)],
            1u64,
        );
    }
    s.add_opt("memwarden_vm_max_memory_bytes", &l, vm.max_memory_bytes);
    s.add("memwarden_vm_balloon_device_present", &l, vm.device.present);
    s.add_opt(
        "memwarden_vm_balloon_stats_period_seconds",
        &l,
        vm.device.stats_period_s,
    );
    balloon(s, vm, &l);
    derived(s, &r.figures, &l);
    s.add_opt(
        "memwarden_vm_kvm_page_tables_bytes",
        &l,
        vm.cgroup.as_ref().and_then(|c| c.sec_pagetables_bytes),
    );
}

fn balloon(s: &mut Series, vm: &VmSample, l: &[&str; 2]) {
    let b = &vm.balloon;
    for (name, v) in [
        ("memwarden_vm_balloon_actual_bytes", b.actual_bytes),
        ("memwarden_vm_balloon_unused_bytes", b.unused_bytes),
        ("memwarden_vm_balloon_available_bytes", b.available_bytes),
        ("memwarden_vm_balloon_usable_bytes", b.usable_bytes),
        (
            "memwarden_vm_balloon_disk_caches_bytes",
            b.disk_caches_bytes,
        ),
        ("memwarden_vm_balloon_rss_bytes", b.rss_bytes),
        ("memwarden_vm_balloon_swap_in_bytes_total", b.swap_in_bytes),
        (
            "memwarden_vm_balloon_swap_out_bytes_total",
            b.swap_out_bytes,
        ),
        ("memwarden_vm_balloon_major_fault_total", b.major_faults),
        ("memwarden_vm_balloon_minor_fault_total", b.minor_faults),
        (
            "memwarden_vm_balloon_hugetlb_pgalloc_total",
            b.hugetlb_pgalloc,
        ),
        (
            "memwarden_vm_balloon_hugetlb_pgfail_total",
            b.hugetlb_pgfail,
        ),
        ("memwarden_vm_balloon_oom_kills_total", b.oom_kills),
        ("memwarden_vm_balloon_alloc_stalls_total", b.alloc_stalls),
        (
            "memwarden_vm_balloon_async_scanned_bytes_total",
            b.async_scanned_bytes,
        ),
        (
            "memwarden_vm_balloon_direct_scanned_bytes_total",
            b.direct_scanned_bytes,
        ),
        (
            "memwarden_vm_balloon_async_reclaimed_bytes_total",
            b.async_reclaimed_bytes,
        ),
        (
            "memwarden_vm_balloon_direct_reclaimed_bytes_total",
            b.direct_reclaimed_bytes,
        ),
        (
            "memwarden_vm_balloon_last_update_timestamp_seconds",
            b.last_update_unix_s,
        ),
    ] {
        s.add_opt(name, l, v);
    }
    // Tags the hypervisor layer did not know are kept in `tags` only; show them as sent.
    for t in b
        .tags
        .iter()
        .filter(|t| t.unit == TagUnit::Raw && !t.is_unset())
    {
        s.add(
            "memwarden_vm_balloon_unknown_stat",
            &[l[0], l[1], &t.name],
            t.value,
        );
    }
}

fn derived(s: &mut Series, f: &VmFigures, l: &[&str; 2]) {
    for (name, v) in [
        ("memwarden_vm_guest_used_bytes", f.guest_used_bytes),
        (
            "memwarden_vm_guest_used_legacy_bytes",
            f.guest_used_legacy_bytes,
        ),
        ("memwarden_vm_balloon_held_bytes", f.balloon_held_bytes),
        ("memwarden_vm_qemu_rss_bytes", f.host_rss_bytes),
        ("memwarden_vm_qemu_pss_bytes", f.host_pss_bytes),
        ("memwarden_vm_qemu_swap_bytes", f.host_swap_bytes),
        ("memwarden_vm_qemu_hugetlb_bytes", f.host_hugetlb_bytes),
        ("memwarden_vm_qemu_ksm_merged_bytes", f.ksm_merged_bytes),
        ("memwarden_vm_stats_age_seconds", f.stats_age_s),
    ] {
        s.add_opt(name, l, v);
    }
    s.add_opt("memwarden_vm_qemu_ksm_profit_bytes", l, f.ksm_profit_bytes);
    s.add_opt("memwarden_vm_host_overhead_bytes", l, f.host_overhead_bytes);
    s.add_opt(
        "memwarden_vm_host_backed_idle_bytes",
        l,
        f.host_backed_idle_bytes,
    );
}

fn backend(b: VmBackend) -> &'static str {
    match b {
        VmBackend::Libvirt => "libvirt",
        VmBackend::Qmp => "qmp",
    }
}

fn state(st: &VmState) -> String {
    match st {
        VmState::Running => "running".into(),
        VmState::Paused => "paused".into(),
        VmState::Shutoff => "shutoff".into(),
        VmState::Crashed => "crashed".into(),
        VmState::Suspended => "suspended".into(),
        VmState::Unknown => "unknown".into(),
        VmState::Other(o) => o.clone(),
    }
}

/// Snake case, as the JSON output spells it (`ReadStatus::as_str` has spaces for tables).
pub(crate) fn read_status(r: ReadStatus) -> &'static str {
    match r {
        ReadStatus::Ok => "ok",
        ReadStatus::Busy => "busy",
        ReadStatus::TimedOut => "timed_out",
        ReadStatus::Unreachable => "unreachable",
        ReadStatus::ProtocolError => "protocol_error",
        ReadStatus::Gone => "gone",
    }
}

/// The finding's stable name, as the JSON output spells it. Exhaustive on purpose: a new kind
/// does not compile until it has a label.
pub(crate) fn finding(k: FindingKind) -> &'static str {
    match k {
        FindingKind::NoBalloonDevice => "no_balloon_device",
        FindingKind::PollingOff => "polling_off",
        FindingKind::StaleStats => "stale_stats",
        FindingKind::GuestDriverAbsent => "guest_driver_absent",
        FindingKind::UnsetValues => "unset_values",
        FindingKind::Inconsistent => "inconsistent",
        FindingKind::NoUsable => "no_usable",
        FindingKind::WindowsGuest => "windows_guest",
        FindingKind::Degraded => "degraded",
        FindingKind::NotRead => "not_read",
        FindingKind::Paused => "paused",
    }
}
