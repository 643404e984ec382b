//! The one table of metrics: every family `render` can write, with its type, unit and help.
//!
//! Names follow node_exporter and the libvirt exporters: `memwarden_` prefix, base units in the
//! name (`_bytes`, `_seconds`), `_total` on counters and only on counters, `_info` on info
//! gauges (value 1, metadata in labels). Balloon statistics keep libvirt's tag names
//! (`major_fault`, `disk_caches`), so `libvirt_domain_memory_stats_*` users find them. The
//! daemon's own CPU and RSS use the standard `process_*` names every client library exports.
//! Labels are listed in `labels`, in the order they are written.

/// A metric family's type. OpenMetrics writes `Info` as `info`; the text format as `gauge`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricType {
    Gauge,
    Counter,
    Info,
}

/// One declared metric family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricDef {
    /// The sample name as the text format writes it (counters end in `_total`).
    pub name: &'static str,
    pub kind: MetricType,
    /// OpenMetrics unit (`bytes`, `seconds`), empty when the value has none; the name ends with
    /// it (before `_total`).
    pub unit: &'static str,
    pub labels: &'static [&'static str],
    pub help: &'static str,
}

impl MetricDef {
    /// The OpenMetrics family name: the sample name without the type's suffix.
    pub fn family(&self) -> &'static str {
        let suffix = match self.kind {
            MetricType::Counter => "_total",
            MetricType::Info => "_info",
            MetricType::Gauge => "",
        };
        self.name.strip_suffix(suffix).unwrap_or(self.name)
    }
}

use MetricType::{Counter, Gauge, Info};

const fn def(
    name: &'static str,
    kind: MetricType,
    unit: &'static str,
    labels: &'static [&'static str],
    help: &'static str,
) -> MetricDef {
    MetricDef {
        name,
        kind,
        unit,
        labels,
        help,
    }
}

/// Labels of every per-VM series: the libvirt domain name and, when known, its UUID.
pub(crate) const VM: &[&str] = &["domain", "uuid"];

/// Every metric memwarden writes, in the order it writes them.
#[rustfmt::skip] // One declaration per entry reads as a table; rustfmt would spread each over 7 lines.
pub static METRICS: &[MetricDef] = &[
    // Host: /proc/meminfo, every line.
    def("memwarden_host_meminfo_bytes", Gauge, "bytes", &["field"],
        "Each /proc/meminfo line with a kB unit, in bytes, keyed by the kernel's own field name (known or not)."),
    def("memwarden_host_meminfo", Gauge, "", &["field"],
        "Each /proc/meminfo line without a unit (HugePages_Total, HugePages_Free...): a count."),
    def("memwarden_host_info", Info, "", &["kernel_release"],
        "The host kernel (value 1)."),
    // Host: accounting.
    def("memwarden_host_identity_residual_bytes", Gauge, "bytes", &["identity"],
        "A kernel meminfo identity's left side minus its right side (0 when it holds exactly)."),
    def("memwarden_host_identity_tolerance_bytes", Gauge, "bytes", &["identity"],
        "The residual an identity may show and still hold (reading skew, rounding)."),
    def("memwarden_host_identity_verdict", Gauge, "", &["identity", "verdict"],
        "An identity's verdict on this sample: holds, explained (by named causes), broken or not_applicable; 1 for the current one."),
    def("memwarden_host_black_hole_bytes", Gauge, "bytes", &[],
        "Host memory no counter in /proc accounts for (alloc_pages() users such as balloon drivers): MemTotal minus the by-LRU parts."),
    def("memwarden_host_decomposition_bytes", Gauge, "bytes", &["decomposition", "part"],
        "One part of MemTotal in one of three decompositions (lru, page_cache, pss); parts plus unaccounted equal MemTotal."),
    def("memwarden_host_decomposition_unaccounted_bytes", Gauge, "bytes", &["decomposition"],
        "MemTotal minus the decomposition's parts (negative when its parts count something twice)."),
    // Host: KSM.
    def("memwarden_host_ksm_run", Gauge, "", &[],
        "ksmd's run setting: 0 stopped, 1 running, 2 unmerging everything."),
    def("memwarden_host_ksm_pages_shared", Gauge, "", &[],
        "KSM pages_shared: merged pages kept (one copy each), per ksmd's last scan."),
    def("memwarden_host_ksm_pages_sharing", Gauge, "", &[],
        "KSM pages_sharing: further sites using a merged page, i.e. pages saved, per ksmd's last scan."),
    def("memwarden_host_ksm_pages_unshared", Gauge, "", &[],
        "KSM pages_unshared: pages scanned repeatedly but unique (scanning effort that saves nothing)."),
    def("memwarden_host_ksm_pages_volatile", Gauge, "", &[],
        "KSM pages_volatile: pages changing too fast to merge."),
    def("memwarden_host_ksm_full_scans_total", Counter, "", &[],
        "KSM full_scans: completed scans of all mergeable memory."),
    def("memwarden_host_ksm_saved_bytes", Gauge, "bytes", &[],
        "Memory KSM saves: pages_sharing times the page size."),
    def("memwarden_host_ksm_general_profit_bytes", Gauge, "bytes", &[],
        "KSM general_profit (Linux 6.1+): bytes saved minus KSM's own metadata; negative means KSM costs more than it saves."),
    def("memwarden_host_ksm_processes_merging_bytes", Gauge, "bytes", &[],
        "Sum of every process's ksm_merging_pages in bytes: current even while ksmd is stopped."),
    def("memwarden_host_ksmd_cpu_seconds_total", Counter, "seconds", &[],
        "CPU time (user and system) the ksmd kernel thread has used since boot: what KSM costs; rate() gives its share of one CPU."),
    // Host: PSI.
    def("memwarden_host_pressure_memory_ratio", Gauge, "ratio", &["kind", "window"],
        "/proc/pressure/memory averages as a ratio of wall time stalled (some: at least one task; full: all non-idle tasks) over 10s, 60s, 300s."),
    def("memwarden_host_pressure_memory_seconds_total", Counter, "seconds", &["kind"],
        "/proc/pressure/memory total: time stalled on memory since boot."),
    // Host: hugetlb pools.
    def("memwarden_host_hugepages_pool_pages", Gauge, "", &["size"],
        "Huge pages in the global pool of this size (nr_hugepages)."),
    def("memwarden_host_hugepages_free_pages", Gauge, "", &["size"],
        "Free huge pages of this size."),
    def("memwarden_host_hugepages_reserved_pages", Gauge, "", &["size"],
        "Huge pages of this size reserved for mappings but not yet faulted in."),
    def("memwarden_host_hugepages_surplus_pages", Gauge, "", &["size"],
        "Surplus huge pages of this size (above nr_hugepages, from overcommit)."),
    def("memwarden_host_hugepages_pool_bytes", Gauge, "bytes", &["size"],
        "Memory held by the global huge page pool of this size (pages times size), free or not."),
    // Host: consumers no meminfo field counts (raw figures; the accounting's rows are in memwarden_host_decomposition_bytes).
    def("memwarden_host_zram_mem_used_bytes", Gauge, "bytes", &["device"],
        "A zram device's mm_stat mem_used_total: zsmalloc pages holding its compressed data, counted in no meminfo field."),
    def("memwarden_host_zram_orig_data_bytes", Gauge, "bytes", &["device"],
        "A zram device's mm_stat orig_data_size: uncompressed bytes stored in it."),
    def("memwarden_host_zram_compr_data_bytes", Gauge, "bytes", &["device"],
        "A zram device's mm_stat compr_data_size: compressed bytes stored in it."),
    def("memwarden_host_socket_buffers_bytes", Gauge, "bytes", &["protocol"],
        "Socket buffer memory charged per /proc/net/sockstat (TCP and UDP mem in pages, FRAG and FRAG6 memory), in bytes: partly Slab, partly pages no meminfo field counts."),
    def("memwarden_host_dmabuf_bytes", Gauge, "bytes", &["exporter"],
        "Sum of the sizes of exported DMA-bufs per exporter (system heap pages are in no meminfo field)."),
    def("memwarden_host_dmabuf_buffers", Gauge, "", &["exporter"],
        "Exported DMA-bufs per exporter."),
    def("memwarden_host_zfs_arc_bytes", Gauge, "bytes", &["field"],
        "OpenZFS arcstats, bytes, by kstat name: size (what the ARC holds), c (its target), c_min, c_max, data_size, metadata_size, hdr_size, dbuf_size, dnode_size, bonus_size, abd_chunk_waste_size."),
    def("memwarden_host_zfs_abd_bytes", Gauge, "bytes", &["field"],
        "OpenZFS abdstats, bytes, by kstat name: scatter_data_size and scatter_chunk_waste (pages in no meminfo field), linear_data_size (kmem caches: Slab or VmallocUsed), struct_size."),
    // VMs: identity and read outcome.
    def("memwarden_vm_info", Info, "", &["domain", "uuid", "backend", "guest_os", "nova_name", "nova_project", "nova_flavor"],
        "One per VM (value 1): its backend, guest OS and OpenStack Nova instance name, project and flavor when known; join on domain."),
    def("memwarden_vm_state", Gauge, "", &["domain", "uuid", "state"],
        "The VM's run state as the hypervisor reports it; 1 for the current one."),
    def("memwarden_vm_read_status", Gauge, "", &["domain", "uuid", "status"],
        "How reading the VM went this sample (ok, busy, timed_out, unreachable, protocol_error, gone); 1 for the current one."),
    def("memwarden_vm_read_duration_seconds", Gauge, "seconds", VM,
        "How long reading this VM took."),
    def("memwarden_vm_diagnosis", Gauge, "", &["domain", "uuid", "kind"],
        "A finding about the VM's statistics (no_balloon_device, polling_off, stale_stats, not_read...); 1 while it holds."),
    def("memwarden_vm_max_memory_bytes", Gauge, "bytes", VM,
        "The VM's maximum memory (libvirt maxMemory, or RAM at boot)."),
    def("memwarden_vm_balloon_device_present", Gauge, "", VM,
        "1 when the VM has a balloon device, else 0."),
    def("memwarden_vm_balloon_stats_period_seconds", Gauge, "seconds", VM,
        "The balloon statistics polling period; 0 means polling is off and the statistics never change."),
    // VMs: balloon statistics, named after libvirt's tags.
    def("memwarden_vm_balloon_actual_bytes", Gauge, "bytes", VM,
        "Balloon actual: the memory the guest currently has (the balloon target reached)."),
    def("memwarden_vm_balloon_unused_bytes", Gauge, "bytes", VM,
        "Balloon unused: guest free memory (Linux MemFree)."),
    def("memwarden_vm_balloon_available_bytes", Gauge, "bytes", VM,
        "Balloon available: guest total memory (Linux MemTotal)."),
    def("memwarden_vm_balloon_usable_bytes", Gauge, "bytes", VM,
        "Balloon usable: memory the guest can use without swapping (Linux MemAvailable)."),
    def("memwarden_vm_balloon_disk_caches_bytes", Gauge, "bytes", VM,
        "Balloon disk_caches: the guest's page cache (Linux Cached)."),
    def("memwarden_vm_balloon_rss_bytes", Gauge, "bytes", VM,
        "Balloon rss: the QEMU process's RSS as libvirt reads it."),
    def("memwarden_vm_balloon_swap_in_bytes_total", Counter, "bytes", VM,
        "Balloon swap_in: data the guest read from its swap."),
    def("memwarden_vm_balloon_swap_out_bytes_total", Counter, "bytes", VM,
        "Balloon swap_out: data the guest wrote to its swap."),
    def("memwarden_vm_balloon_major_fault_total", Counter, "", VM,
        "Balloon major_fault: guest page faults that needed I/O."),
    def("memwarden_vm_balloon_minor_fault_total", Counter, "", VM,
        "Balloon minor_fault: guest page faults served from memory."),
    def("memwarden_vm_balloon_hugetlb_pgalloc_total", Counter, "", VM,
        "Balloon hugetlb_pgalloc: huge page allocations in the guest."),
    def("memwarden_vm_balloon_hugetlb_pgfail_total", Counter, "", VM,
        "Balloon hugetlb_pgfail: failed huge page allocations in the guest."),
    def("memwarden_vm_balloon_oom_kills_total", Counter, "", VM,
        "Guest OOM kills (vmstat oom_kill; Linux 6.12+ guests, QEMU 9.2+)."),
    def("memwarden_vm_balloon_alloc_stalls_total", Counter, "", VM,
        "Guest allocation stalls (vmstat allocstall_*; Linux 6.12+ guests, QEMU 9.2+)."),
    def("memwarden_vm_balloon_async_scanned_bytes_total", Counter, "bytes", VM,
        "Guest memory scanned by kswapd (vmstat pgscan_kswapd; Linux 6.12+ guests, QEMU 9.2+)."),
    def("memwarden_vm_balloon_direct_scanned_bytes_total", Counter, "bytes", VM,
        "Guest memory scanned by direct reclaim (vmstat pgscan_direct; Linux 6.12+ guests, QEMU 9.2+)."),
    def("memwarden_vm_balloon_async_reclaimed_bytes_total", Counter, "bytes", VM,
        "Guest memory reclaimed by kswapd (vmstat pgsteal_kswapd; Linux 6.12+ guests, QEMU 9.2+)."),
    def("memwarden_vm_balloon_direct_reclaimed_bytes_total", Counter, "bytes", VM,
        "Guest memory reclaimed by direct reclaim (vmstat pgsteal_direct; Linux 6.12+ guests, QEMU 9.2+)."),
    def("memwarden_vm_balloon_last_update_timestamp_seconds", Gauge, "seconds", VM,
        "When the guest last pushed statistics (Unix time, host clock)."),
    def("memwarden_vm_balloon_unknown_stat", Gauge, "", &["domain", "uuid", "stat"],
        "A balloon statistic memwarden does not know, value exactly as the hypervisor sent it."),
    // VMs: derived figures.
    def("memwarden_vm_guest_used_bytes", Gauge, "bytes", VM,
        "Guest used: MemTotal minus MemAvailable (cache-aware; less what a deflate-on-oom balloon holds)."),
    def("memwarden_vm_guest_used_legacy_bytes", Gauge, "bytes", VM,
        "Guest used counting page cache: MemTotal minus MemFree."),
    def("memwarden_vm_balloon_held_bytes", Gauge, "bytes", VM,
        "What the balloon has taken back from the guest: max memory minus actual."),
    def("memwarden_vm_qemu_rss_bytes", Gauge, "bytes", VM,
        "The QEMU process's RSS on the host (smaps_rollup, else status, else libvirt)."),
    def("memwarden_vm_qemu_pss_bytes", Gauge, "bytes", VM,
        "The QEMU process's PSS on the host."),
    def("memwarden_vm_qemu_swap_bytes", Gauge, "bytes", VM,
        "The QEMU process's memory in host swap."),
    def("memwarden_vm_qemu_hugetlb_bytes", Gauge, "bytes", VM,
        "Guest memory backed by host hugetlbfs."),
    def("memwarden_vm_qemu_ksm_merged_bytes", Gauge, "bytes", VM,
        "The QEMU process's pages merged by KSM."),
    def("memwarden_vm_qemu_ksm_profit_bytes", Gauge, "bytes", VM,
        "KSM's profit on the QEMU process (ksm_stat); negative when its metadata costs more."),
    def("memwarden_vm_kvm_page_tables_bytes", Gauge, "bytes", VM,
        "KVM's page tables for the guest (EPT/NPT or shadow): sec_pagetables of the VM's memory cgroup (cgroup v2; absent on cgroup v1 hosts). Their sum is part of meminfo SecPageTables."),
    def("memwarden_vm_host_overhead_bytes", Gauge, "bytes", VM,
        "QEMU RSS minus guest used: host memory beyond what the guest uses (its page cache, freed pages still mapped, QEMU itself)."),
    def("memwarden_vm_host_backed_idle_bytes", Gauge, "bytes", VM,
        "Guest memory the guest holds free or as cache that QEMU still has resident: min(QEMU RSS − guest used, guest free + cache), cache only where free page reporting is on (it has handed the free part back). What the balloon can give the host back."),
    def("memwarden_vm_stats_age_seconds", Gauge, "seconds", VM,
        "Age of the guest's statistics when the VM was read."),
    // The sample and its sources.
    def("memwarden_sample_timestamp_seconds", Gauge, "seconds", &[],
        "When the sample shown here was started (Unix time)."),
    def("memwarden_sample_degraded_notes", Gauge, "", &["scope"],
        "Optional sources missing from this sample (host) and hypervisors that could not be listed (vms), one note each."),
    def("memwarden_source_success", Gauge, "", &["source"],
        "1 when this source of the sample (host, libvirt, qmp) was read, else 0."),
    def("memwarden_source_duration_seconds", Gauge, "seconds", &["source"],
        "How long reading this source took."),
    def("memwarden_source_info", Info, "", &["source", "transport"],
        "1 for each VM source, labelled with how it was reached: rpc (memwarden's own libvirt RPC client), libvirt.so, or qmp. Absent before the first connection."),
    // The daemon itself.
    def("memwarden_samples_total", Counter, "", &[],
        "Samples taken since the daemon started."),
    def("memwarden_sample_errors_total", Counter, "", &[],
        "Samples that failed since the daemon started."),
    def("memwarden_last_sample_timestamp_seconds", Gauge, "seconds", &[],
        "When the daemon last finished a sample (Unix time)."),
    def("memwarden_last_sample_duration_seconds", Gauge, "seconds", &[],
        "How long the last sample took."),
    def("memwarden_vms_gone_total", Counter, "", &[],
        "VMs that were listed and are no longer, by a source that was read (a QEMU killed, a domain destroyed or undefined); each is logged and kept as a vm_gone event."),
    def("memwarden_store_errors_total", Counter, "", &[],
        "Failed writes to the history store."),
    def("memwarden_store_backlog_samples", Gauge, "", &[],
        "Samples the store refused (a full disk) kept in memory, appended oldest first when it takes them again."),
    def("memwarden_store_backlog_dropped_total", Counter, "", &[],
        "Samples dropped from that backlog at its cap (16 MiB): lost from history."),
    def("memwarden_store_bytes", Gauge, "bytes", &[],
        "Size of the history store on disk: the SQLite file plus its WAL, as stat gives them after the last sample."),
    // Prometheus's own names (prometheus_config_last_reload_*), so that the same alert reads both.
    def("memwarden_config_last_reload_successful", Gauge, "", &[],
        "Whether the last configuration reload (SIGHUP) was accepted: 1 at start and after one that was, 0 after one that was refused (the running configuration stays)."),
    def("memwarden_config_last_reload_success_timestamp_seconds", Gauge, "seconds", &[],
        "When the configuration was last loaded: at start, or the last SIGHUP accepted (Unix time)."),
    def("memwarden_balloon_controller_enabled", Gauge, "", &[],
        "Whether the balloon controller runs ([balloon] enabled): 1 or 0."),
    def("memwarden_balloon_controller_dry_run", Gauge, "", &[],
        "Whether the running balloon controller only plans ([balloon] dry_run): 1, nothing is set; 0 when it sets targets or is off."),
    def("memwarden_balloon_actions_total", Counter, "", &["domain", "direction"],
        "Balloon targets memwarden has set, by VM and direction (grow: balloon deflated; shrink: inflated)."),
    def("memwarden_balloon_action_errors_total", Counter, "", &["domain"],
        "Balloon targets the hypervisor refused, by VM."),
    def("memwarden_balloon_guest_harm_total", Counter, "", &["domain", "kind"],
        "Harm the balloon controller saw come to a guest (reboot, crash, oom_kill, thrash), each answered by giving the guest its memory back."),
    def("process_cpu_seconds_total", Counter, "seconds", &[],
        "CPU time (user and system) the memwarden daemon has used."),
    def("process_resident_memory_bytes", Gauge, "bytes", &[],
        "The memwarden daemon's resident memory."),
    def("memwarden_sqlite_memory_bytes", Gauge, "bytes", &[],
        "Memory SQLite holds in the daemon (page caches, statements): part of its resident memory."),
];

/// The declared family named `name` (its text-format sample name).
pub fn lookup(name: &str) -> Option<&'static MetricDef> {
    METRICS.iter().find(|d| d.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn names_carry_their_type_and_unit() {
        for d in METRICS {
            let valid =
                d.name.bytes().enumerate().all(|(i, c)| {
                    c.is_ascii_lowercase() || c == b'_' || (i > 0 && c.is_ascii_digit())
                });
            assert!(valid, "{}: lower case, digits and _ only", d.name);
            assert_eq!(
                d.name.ends_with("_total"),
                d.kind == Counter,
                "{}: _total if and only if a counter",
                d.name
            );
            assert_eq!(d.name.ends_with("_info"), d.kind == Info, "{}", d.name);
            if !d.unit.is_empty() {
                assert!(
                    d.family().ends_with(&format!("_{}", d.unit)),
                    "{}: OpenMetrics wants the unit {} at the end of the family name",
                    d.name,
                    d.unit
                );
            }
            for unit in ["bytes", "seconds", "ratio"] {
                if d.family().ends_with(&format!("_{unit}")) {
                    assert_eq!(d.unit, unit, "{}: declare the unit its name says", d.name);
                }
            }
            assert!(d.help.ends_with('.'), "{}: help is a sentence", d.name);
            assert!(!d.help.contains('\n'), "{}: one line of help", d.name);
        }
    }

    #[test]
    fn no_two_families_share_a_name() {
        // Text-format sample names and OpenMetrics family names must all be distinct, or one
        // family's samples read as another's.
        let mut seen = HashSet::new();
        for d in METRICS {
            assert!(seen.insert(d.name), "{} declared twice", d.name);
            if d.family() != d.name {
                assert!(seen.insert(d.family()), "{} collides", d.family());
            }
        }
    }

    #[test]
    fn lookup_finds_declared_names_only() {
        assert_eq!(
            lookup("memwarden_host_black_hole_bytes").map(|d| d.kind),
            Some(Gauge)
        );
        assert!(lookup("memwarden_host_black_hole").is_none());
    }
}
