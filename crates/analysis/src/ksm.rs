//! KSM: what merging saves, from the global sysfs counters and from each process's own count.
//!
//! The global counters in /sys/kernel/mm/ksm are only recomputed by ksmd while it runs; with
//! `run = 0` they keep their last value (even after the merged processes exit). The per-process
//! `ksm_merging_pages` (Linux 5.19+) is always current, so it is the figure memwarden trusts.
//!
//! What KSM costs is ksmd's CPU time: a counter, so a share of a CPU needs two readings
//! ([`ksmd_cpu`]). Per VM, KSM's work is its QEMU process's own merged pages ([`vms`]).

use memwarden_model::host::{HostSample, KsmdCpu};
use memwarden_model::units::{pages_to_bytes, pages_to_bytes_at, PAGE_SIZE};
use memwarden_model::vm::VmSample;
use memwarden_model::Sample;
use serde::Serialize;

/// One VM's share of KSM: its QEMU process's merged pages.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KsmVm {
    pub domain: String,
    pub uuid: Option<String>,
    pub qemu_pid: Option<u32>,
    /// ksm_merging_pages × page size: guest memory of this VM that KSM merged with a copy
    /// elsewhere. `None` when the QEMU process could not be joined or the kernel lacks the file.
    pub merging_bytes: Option<u64>,
    /// ksm_process_profit (Linux 6.1+): what merging this VM saves, less the metadata it costs.
    pub profit_bytes: Option<i64>,
}

/// Every VM of the sample with its QEMU process's KSM counters, most merged first.
pub fn vms(sample: &Sample) -> Vec<KsmVm> {
    let page = sample.host.page_size();
    let mut out: Vec<KsmVm> = sample.vms.iter().map(|v| ksm_vm(v, page)).collect();
    out.sort_by(|a, b| {
        b.merging_bytes
            .cmp(&a.merging_bytes)
            .then_with(|| a.domain.cmp(&b.domain))
    });
    out
}

fn ksm_vm(v: &VmSample, page_size: u64) -> KsmVm {
    let k = v.host.as_ref().and_then(|h| h.ksm.as_ref());
    KsmVm {
        domain: v.name.clone(),
        uuid: v.uuid.clone(),
        qemu_pid: v.qemu_pid,
        merging_bytes: k
            .and_then(|k| k.merging_pages)
            .and_then(|p| pages_to_bytes_at(p, page_size)),
        profit_bytes: k.and_then(|k| k.process_profit),
    }
}

/// ksmd's CPU time, and its share of one CPU between two readings.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct KsmdCpuUse {
    pub pid: u32,
    /// User plus system time since boot, seconds.
    pub cpu_seconds_total: f64,
    /// CPU time over wall time between the two readings (1.0 = one whole CPU). `None` from a
    /// single reading.
    pub cpu_share: Option<f64>,
    /// The wall time between the two readings, seconds (0 for a single reading).
    pub window_s: f64,
}

/// ksmd's CPU use from `now` (read at `now_ms`, Unix milliseconds) and, for a share, an earlier
/// reading. A share needs the same thread both times (ksmd is not restarted, but a capture
/// may differ) and time that moved forward.
pub fn ksmd_cpu(now: &KsmdCpu, now_ms: u64, before: Option<(&KsmdCpu, u64)>) -> KsmdCpuUse {
    let share = before.and_then(|(b, b_ms)| {
        let wall_ms = now_ms.checked_sub(b_ms).filter(|w| *w > 0)?;
        let cpu_ms = now.total_ms().checked_sub(b.total_ms())?;
        (b.pid == now.pid).then(|| (cpu_ms as f64 / wall_ms as f64, wall_ms as f64 / 1000.0))
    });
    KsmdCpuUse {
        pid: now.pid,
        cpu_seconds_total: now.total_ms() as f64 / 1000.0,
        cpu_share: share.map(|(s, _)| s),
        window_s: share.map_or(0.0, |(_, w)| w),
    }
}

/// One process that has pages merged by KSM.
#[derive(Debug, Clone, Serialize)]
pub struct KsmProcess {
    pub pid: u32,
    pub name: String,
    pub merging_bytes: u64,
    /// ksm_stat's ksm_process_profit (Linux 6.1+), may be negative.
    pub profit_bytes: Option<i64>,
}

/// KSM as the operator wants to see it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct KsmReport {
    /// `None` when /sys/kernel/mm/ksm is absent (kernel without CONFIG_KSM).
    pub available: bool,
    pub run: Option<u64>,
    /// pages_sharing × page size: memory saved by merging, per ksmd's last count.
    pub saved_bytes: Option<u64>,
    /// pages_shared × page size: the single copies kept.
    pub shared_bytes: Option<u64>,
    /// general_profit (Linux 6.1+): saved minus KSM's own metadata cost.
    pub general_profit_bytes: Option<i64>,
    /// pages_sharing / pages_shared: how many sites each kept page serves (higher is better).
    pub sharing_ratio: Option<f64>,
    /// pages_unshared / pages_sharing: scanning effort that found nothing to merge (high = wasted).
    pub unshared_ratio: Option<f64>,
    /// Σ ksm_merging_pages over every process, in bytes: always current.
    pub processes_merging_bytes: Option<u64>,
    pub processes: Vec<KsmProcess>,
    /// Plain-words notes: stale counters, ksmd off, ...
    pub notes: Vec<String>,
}

fn ratio(a: Option<u64>, b: Option<u64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b > 0 => Some(a as f64 / b as f64),
        _ => None,
    }
}

/// Builds the KSM report from a sample.
pub fn report(s: &HostSample) -> KsmReport {
    let mut r = KsmReport::default();
    let mut procs: Vec<KsmProcess> = s
        .processes
        .iter()
        .filter_map(|p| {
            let k = p.ksm.as_ref()?;
            let pages = k.merging_pages?;
            (pages > 0).then(|| KsmProcess {
                pid: p.pid,
                name: p.name.clone(),
                merging_bytes: pages.saturating_mul(PAGE_SIZE),
                profit_bytes: k.process_profit,
            })
        })
        .collect();
    procs.sort_by(|a, b| {
        b.merging_bytes
            .cmp(&a.merging_bytes)
            .then(a.pid.cmp(&b.pid))
    });
    let any_proc_counter = s
        .processes
        .iter()
        .any(|p| p.ksm.as_ref().is_some_and(|k| k.merging_pages.is_some()));
    r.processes_merging_bytes =
        any_proc_counter.then(|| procs.iter().map(|p| p.merging_bytes).sum());
    r.processes = procs;

    let Some(k) = &s.ksm else {
        r.notes.push(
            "KSM is not available: /sys/kernel/mm/ksm is absent (kernel built without CONFIG_KSM)"
                .into(),
        );
        return r;
    };
    r.available = true;
    r.run = k.run;
    r.saved_bytes = k.pages_sharing.and_then(pages_to_bytes);
    r.shared_bytes = k.pages_shared.and_then(pages_to_bytes);
    r.general_profit_bytes = k.general_profit;
    r.sharing_ratio = ratio(k.pages_sharing, k.pages_shared);
    r.unshared_ratio = ratio(k.pages_unshared, k.pages_sharing);
    match k.run {
        Some(0) => r.notes.push(
            "ksmd is stopped (run=0): pages_shared/pages_sharing are its last count and may be \
             stale; per-process ksm_merging_pages is current"
                .into(),
        ),
        Some(2) => r
            .notes
            .push("run=2: ksmd is unmerging every merged page".into()),
        _ => {}
    }
    if let (Some(global), Some(per_proc)) = (
        k.pages_sharing
            .zip(k.pages_shared)
            .map(|(a, b)| a.saturating_add(b).saturating_mul(PAGE_SIZE)),
        r.processes_merging_bytes,
    ) {
        if k.run == Some(1)
            && global.abs_diff(per_proc) > (global / 10).saturating_add(64 * PAGE_SIZE)
        {
            r.notes.push(format!(
                "global shared+sharing ({} pages) and Σ per-process merging ({} pages) disagree by \
                 more than 10%: ksmd has not finished a scan since memory changed",
                global / PAGE_SIZE,
                per_proc / PAGE_SIZE
            ));
        }
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use memwarden_model::host::{ProcKsm, ProcessMem};

    fn ksmd(pid: u32, user_ms: u64, system_ms: u64) -> KsmdCpu {
        KsmdCpu {
            pid,
            user_ms,
            system_ms,
        }
    }

    #[test]
    fn ksmd_share_is_cpu_time_over_wall_time() {
        let a = ksmd(36, 0, 1_000);
        let b = ksmd(36, 10, 1_490);
        let u = ksmd_cpu(&b, 12_000, Some((&a, 10_000)));
        assert_eq!(u.cpu_seconds_total, 1.5);
        assert_eq!(u.cpu_share, Some(0.25));
        assert_eq!(u.window_s, 2.0);
        // One reading, another thread, or a clock that did not move: no share.
        assert_eq!(ksmd_cpu(&b, 12_000, None).cpu_share, None);
        assert_eq!(
            ksmd_cpu(&ksmd(99, 10, 1_490), 12_000, Some((&a, 10_000))).cpu_share,
            None
        );
        assert_eq!(ksmd_cpu(&b, 10_000, Some((&a, 10_000))).cpu_share, None);
        assert_eq!(ksmd_cpu(&a, 12_000, Some((&b, 10_000))).cpu_share, None);
    }

    #[test]
    fn vms_take_their_qemu_process_counters_most_merged_first() {
        let vm = |name: &str, pid: u32, pages: Option<u64>| VmSample {
            name: name.into(),
            qemu_pid: Some(pid),
            host: Some(ProcessMem {
                pid,
                ksm: pages.map(|p| ProcKsm {
                    merging_pages: Some(p),
                    process_profit: Some(-5),
                    ..ProcKsm::default()
                }),
                ..ProcessMem::default()
            }),
            ..VmSample::default()
        };
        let s = Sample {
            vms: vec![vm("a", 1, Some(2)), vm("b", 2, Some(10)), vm("c", 3, None)],
            ..Sample::default()
        };
        let r = vms(&s);
        let got: Vec<(&str, Option<u64>)> = r
            .iter()
            .map(|v| (v.domain.as_str(), v.merging_bytes))
            .collect();
        assert_eq!(got, [("b", Some(40_960)), ("a", Some(8_192)), ("c", None)]);
        assert_eq!(r[0].profit_bytes, Some(-5));
        assert_eq!(r[2].profit_bytes, None);
    }
}
