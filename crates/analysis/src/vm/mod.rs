//! Derived VM figures and a plain-words diagnosis, from one [`VmSample`]. Pure functions.
//!
//! Figures (bytes unless named otherwise), each `None` when an input is missing:
//! - **guest used** = available − usable (MemTotal − MemAvailable): cache-aware, what
//!   Ceilometer reports when `usable` exists;
//! - **guest used (legacy)** = available − unused (MemTotal − MemFree): counts page cache as used;
//! - **guest cache** = disk_caches (Cached);
//! - **balloon held** = max memory − actual: what the balloon has taken back from the guest;
//! - **host overhead** = QEMU RSS − guest used: host memory beyond what the guest uses
//!   (guest page cache, freed-but-still-mapped guest pages, QEMU/TCG's own memory); signed;
//! - **stats age** = sample time − last_update, seconds.

use serde::{Deserialize, Serialize};

use memwarden_model::units::PAGE_SIZE;
use memwarden_model::vm::{ReadStatus, VmSample, VmState};

/// The figures derived from one VM sample.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmFigures {
    pub guest_used_bytes: Option<u64>,
    pub guest_used_legacy_bytes: Option<u64>,
    pub guest_cache_bytes: Option<u64>,
    pub guest_free_bytes: Option<u64>,
    pub guest_usable_bytes: Option<u64>,
    pub guest_total_bytes: Option<u64>,
    pub actual_bytes: Option<u64>,
    pub balloon_held_bytes: Option<u64>,
    /// QEMU's RSS on the host (smaps_rollup, else status, else libvirt's `rss`).
    pub host_rss_bytes: Option<u64>,
    pub host_pss_bytes: Option<u64>,
    pub host_swap_bytes: Option<u64>,
    /// hugetlbfs-backed guest memory (status HugetlbPages).
    pub host_hugetlb_bytes: Option<u64>,
    /// Pages of the QEMU process merged by KSM, in bytes (ksm_merging_pages × 4 KiB).
    pub ksm_merged_bytes: Option<u64>,
    /// KSM profit for the process (ksm_stat), bytes; may be negative.
    pub ksm_profit_bytes: Option<i64>,
    /// host RSS − guest used; negative when the guest "uses" pages the host never touched.
    pub host_overhead_bytes: Option<i64>,
    /// The part of the host overhead that is guest memory the guest holds free or as cache
    /// but the host still backs: min(host RSS − guest used, guest free + cache). What free
    /// page reporting (free part, on its own in seconds) or the balloon (free and cache) can
    /// give back; the rest of the overhead is QEMU's own. With free page reporting on, the
    /// free part has already been handed back (measured: 407 → 211 MiB of RSS 2 s after a
    /// 200 MiB drop), so only cache counts. An upper bound: QEMU's own memory is inside RSS
    /// too.
    pub host_backed_idle_bytes: Option<u64>,
    pub stats_age_s: Option<u64>,
}

/// Derives the figures of one VM.
///
/// A deflate-on-oom guest keeps the balloon's pages inside MemTotal (allocated, so outside
/// MemAvailable): there guest used = MemTotal − MemAvailable − what the balloon holds.
pub fn figures(vm: &VmSample) -> VmFigures {
    let b = &vm.balloon;
    let total = b.available_bytes;
    let held = vm
        .max_memory_bytes
        .zip(b.actual_bytes)
        .map(|(m, a)| m.saturating_sub(a));
    let in_total = |used: u64| {
        if checks::deflate_on_oom(vm) {
            used.saturating_sub(held.unwrap_or(0))
        } else {
            used
        }
    };
    let guest_used = total
        .zip(b.usable_bytes)
        .map(|(t, u)| in_total(t.saturating_sub(u)));
    let legacy = total
        .zip(b.unused_bytes)
        .map(|(t, f)| in_total(t.saturating_sub(f)));
    let smaps = vm.host.as_ref().and_then(|h| h.smaps.as_ref());
    let status = vm.host.as_ref().map(|h| &h.status);
    let host_rss = smaps
        .map(|s| s.rss)
        .or_else(|| status.and_then(|s| s.vm_rss))
        .or(b.rss_bytes);
    let used_for_overhead = guest_used.or(legacy);
    let ksm = vm.host.as_ref().and_then(|h| h.ksm.as_ref());
    VmFigures {
        guest_used_bytes: guest_used,
        guest_used_legacy_bytes: legacy,
        guest_cache_bytes: b.disk_caches_bytes,
        guest_free_bytes: b.unused_bytes,
        guest_usable_bytes: b.usable_bytes,
        guest_total_bytes: total,
        actual_bytes: b.actual_bytes,
        balloon_held_bytes: held,
        host_rss_bytes: host_rss,
        host_pss_bytes: smaps.map(|s| s.pss),
        host_swap_bytes: smaps
            .map(|s| s.swap)
            .or_else(|| status.and_then(|s| s.vm_swap)),
        host_hugetlb_bytes: status.and_then(|s| s.hugetlb_pages),
        ksm_merged_bytes: ksm
            .and_then(|k| k.merging_pages)
            .and_then(|p| p.checked_mul(PAGE_SIZE)),
        ksm_profit_bytes: ksm.and_then(|k| k.process_profit),
        host_backed_idle_bytes: host_rss.zip(used_for_overhead).map(|(r, u)| {
            let cache = b.disk_caches_bytes.unwrap_or(0);
            let idle = if vm.device.free_page_reporting == Some(true) {
                cache
            } else {
                cache.saturating_add(b.unused_bytes.unwrap_or(0))
            };
            r.saturating_sub(u).min(idle)
        }),
        host_overhead_bytes: host_rss.zip(used_for_overhead).map(|(r, u)| {
            (i128::from(r) - i128::from(u)).clamp(i64::MIN.into(), i64::MAX.into()) as i64
        }),
        stats_age_s: b
            .last_update_unix_s
            .filter(|t| *t > 0)
            .map(|t| vm.read_at_unix_s.saturating_sub(t)),
    }
}

/// What kind of finding; stable names for JSON and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FindingKind {
    NoBalloonDevice,
    PollingOff,
    StaleStats,
    GuestDriverAbsent,
    UnsetValues,
    Inconsistent,
    NoUsable,
    WindowsGuest,
    Degraded,
    /// The VM could not be read this time (timed out, busy, unreachable, protocol error, gone).
    NotRead,
    /// The VM is paused: its guest cannot push statistics.
    Paused,
}

/// One diagnosis line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    pub kind: FindingKind,
    /// Plain words: what is wrong and what to do.
    pub text: String,
}

/// Stats older than this many polling periods (and at least [`STALE_MIN_S`]) are stale.
pub const STALE_PERIODS: u64 = 3;
/// Floor of the staleness threshold, seconds (a slow TCG guest may push late).
pub const STALE_MIN_S: u64 = 10;

/// One VM as every output shows it (`memwarden vms --json`, `/api/v1/latest`'s `vms`): the
/// sample as read, flattened, its derived figures, and its diagnosis. One shape for one thing.
#[derive(Debug, Clone, Serialize)]
pub struct VmReport<'a> {
    #[serde(flatten)]
    pub vm: &'a VmSample,
    pub figures: VmFigures,
    pub diagnosis: Vec<Finding>,
}

impl<'a> VmReport<'a> {
    pub fn new(vm: &'a VmSample) -> Self {
        VmReport {
            vm,
            figures: figures(vm),
            diagnosis: diagnose(vm),
        }
    }
}

/// Why the VM's statistics are missing, stale or doubtful. Empty when all is well.
pub fn diagnose(vm: &VmSample) -> Vec<Finding> {
    let mut out = Vec::new();
    let mut add = |kind, text: String| out.push(Finding { kind, text });
    let b = &vm.balloon;
    let f = figures(vm);
    if vm.read.status != ReadStatus::Ok {
        add(
            FindingKind::NotRead,
            vm.read
                .reason
                .clone()
                .unwrap_or_else(|| format!("not read: {}", vm.read.status.as_str())),
        );
        // Nothing below can be judged on figures we did not get.
        for d in &vm.degraded {
            add(FindingKind::Degraded, d.clone());
        }
        return out;
    }
    let paused = matches!(vm.state, VmState::Paused | VmState::Suspended);
    if paused {
        add(
            FindingKind::Paused,
            "paused: the guest cannot push statistics while it is paused; its figures are \
             from before the pause"
                .into(),
        );
    }
    let has_guest_stats = b.available_bytes.is_some() || b.unused_bytes.is_some();
    if !vm.device.present {
        add(
            FindingKind::NoBalloonDevice,
            "no balloon device: only actual and the host's view are known; add \
             <memballoon model='virtio'/> (or -device virtio-balloon-pci)"
                .into(),
        );
    } else {
        let period = vm.device.stats_period_s;
        if period == Some(0) {
            add(
                FindingKind::PollingOff,
                format!(
                    "stats polling is off (period 0): guest figures are the last ones it \
                     pushed before polling stopped (or when its driver loaded), not now; run \
                     `memwarden stats-period {} 10`",
                    vm.name
                ),
            );
        }
        if !has_guest_stats && period != Some(0) {
            add(
                FindingKind::GuestDriverAbsent,
                "the balloon device reports no guest statistics: the guest's virtio_balloon \
                 driver is not loaded (Linux) or the balloon service is not running (Windows)"
                    .into(),
            );
        } else if paused {
            // Not stale: paused.
        } else if let (Some(age), Some(p)) = (f.stats_age_s, period.filter(|p| *p > 0)) {
            let limit = STALE_PERIODS.saturating_mul(p).max(STALE_MIN_S);
            if age > limit {
                add(
                    FindingKind::StaleStats,
                    format!(
                        "stale statistics: last update {age} s ago with a {p} s period; the \
                         guest stopped pushing (hung, paused, or driver unloaded)"
                    ),
                );
            }
        } else if has_guest_stats && b.last_update_unix_s.unwrap_or(0) == 0 && period != Some(0) {
            add(
                FindingKind::StaleStats,
                "no last_update: the guest has not pushed statistics since polling began".into(),
            );
        }
        if has_guest_stats && b.available_bytes.is_some() && b.usable_bytes.is_none() {
            add(
                FindingKind::NoUsable,
                "no `usable` (MemAvailable, Linux ≥ 4.16 guests): guest used falls back to \
                 available − unused, which counts page cache as used"
                    .into(),
            );
        }
    }
    let unset = checks::unset(vm);
    if !unset.is_empty() {
        add(
            FindingKind::UnsetValues,
            format!(
                "guest left {} unset (2^64−1, seen with some Windows/ARM64 balloon drivers): \
                 ignored",
                unset.join(", ")
            ),
        );
    }
    for p in &checks::problems(vm) {
        add(
            FindingKind::Inconsistent,
            format!("guest numbers do not add up: {p}"),
        );
    }
    if vm.guest_os.as_deref() == Some("windows") {
        add(
            FindingKind::WindowsGuest,
            "Windows guest: `unused` includes the standby cache (it is not MemFree), and stats \
             need the balloon service (blnsvr) running"
                .into(),
        );
    }
    for d in &vm.degraded {
        add(FindingKind::Degraded, d.clone());
    }
    out
}

pub mod checks;
pub mod target;

#[cfg(test)]
mod tests;
