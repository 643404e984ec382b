//! Harm to a guest, noticed from what it and its hypervisor report: libvirt announced that it
//! crashed or was reset (lifecycle and reboot events, drained once per sample: seen before the
//! new kernel pushes anything), its kernel started again (its cumulative counters went
//! backwards: a reboot, or a panic with `panic=N`; the one check where no events are watched,
//! and never a second report of a restart an event already answered), it crashed, its kernel
//! OOM-killed (the virtio-balloon OOM statistic of Linux ≥ 6.12 guests, where QEMU passes it), or
//! it swaps or faults hard while shrunk. Each is an event the controller answers by giving the
//! guest its memory back and raising its floor's margin; whoever applies the plan logs, stores
//! and counts it.

use memwarden_model::units::format_bytes;
use memwarden_model::vm::{VmEventKind, VmSample, VmState};

use crate::config::Config;
use crate::decision::{Direction, Harm, HarmKind};
use crate::history::{key_of, History};
use crate::state::State;

/// Harm to `vm` since the previous sample, if any (the most serious kind when several).
pub fn detect(
    vm: &VmSample,
    history: &History,
    cfg: &Config,
    state: &State,
    now_unix_ms: u64,
) -> Option<Harm> {
    let rates = history.rates(vm);
    let record = state.get(&key_of(vm.uuid.as_deref(), &vm.name));
    let held = vm
        .max_memory_bytes
        .zip(vm.balloon.actual_bytes)
        .map_or(0, |(m, a)| m.saturating_sub(a));
    let shrunk_lately = record.is_some_and(|r| {
        r.last_direction == Some(Direction::Shrink)
            && r.last_action_unix_ms.is_some_and(|t| {
                now_unix_ms.saturating_sub(t) / 1000 <= cfg.min_reverse_interval_s.max(cfg.settle_s)
            })
    });
    // An update that an earlier cycle already judged brings nothing new: its OOM kills and its
    // reset were answered then (a cycle faster than the guest's pushes sees it twice).
    let news = rates.new_update;
    let crash_seen = history.points(vm).last().is_some_and(|p| p.crashed);
    // libvirt's events since the previous sample: each is delivered once.
    let events = vm.events.as_deref().unwrap_or_default();
    // A restart answered lately, with no statistics from a new kernel since, is still going
    // on: its further events are that restart again (a panicking kernel's reboot can reset the
    // machine twice; libvirt sent two reboot events a second apart on a real guest).
    let restarting = record.and_then(|r| r.restart_at_unix_ms).is_some_and(|at| {
        now_unix_ms.saturating_sub(at) / 1000 < cfg.harm_backoff_s
            && vm
                .balloon
                .last_update_unix_s
                .is_none_or(|pushed| pushed.saturating_mul(1000) <= at)
    });
    let fresh = |k: VmEventKind| events.iter().find(|e| e.kind == k).filter(|_| !restarting);
    let crash_event = fresh(VmEventKind::Crashed);
    let reset_event = fresh(VmEventKind::Reset);
    // Counters that start again after a restart already answered (from an event, or a crash
    // the hypervisor reported) are that restart seen a second time.
    let restart_answered = record
        .and_then(|r| r.restart_at_unix_ms)
        .zip(rates.counters_before_unix_s)
        .is_some_and(|(at_ms, before_s)| at_ms / 1000 >= before_s);
    let (kind, detail) = if vm.state == VmState::Crashed || crash_event.is_some() {
        if crash_seen {
            return None;
        }
        (
            HarmKind::Crash,
            crash_event.map_or_else(
                || "the hypervisor reports it crashed".to_string(),
                |e| format!("libvirt reported it {}", e.detail),
            ),
        )
    } else if let Some(e) = reset_event {
        (
            HarmKind::Reboot,
            format!(
                "libvirt reported a {}: its kernel is starting again (a reboot, or a panic \
                 that rebooted it)",
                e.detail
            ),
        )
    } else if news && rates.counters_reset && !restart_answered {
        (
            HarmKind::Reboot,
            "its fault and swap counters went back to near zero: its kernel started again \
             (a reboot, or a panic that rebooted it)"
                .to_string(),
        )
    } else if let Some(k) = rates.oom_kills.filter(|k| news && *k > 0) {
        (
            HarmKind::OomKill,
            format!("its kernel OOM-killed {k} process(es) since the previous sample"),
        )
    } else if news && held > 0 && shrunk_lately {
        let swap = rates
            .swap_in_bytes_per_s
            .filter(|s| *s >= cfg.guest_swap_in_bytes_per_s as f64);
        let faults = rates
            .major_faults_per_s
            .filter(|m| *m >= cfg.guest_major_faults_per_s);
        match (swap, faults) {
            (None, None) => return None,
            (s, m) => (
                HarmKind::Thrash,
                format!(
                    "just shrunk, it {}",
                    [
                        s.map(|s| format!("swaps in {}/s", format_bytes(s as u64))),
                        m.map(|m| format!("takes {m:.0} major faults/s"))
                    ]
                    .into_iter()
                    .flatten()
                    .collect::<Vec<_>>()
                    .join(" and ")
                ),
            ),
        }
    } else {
        return None;
    };
    let before = record.and_then(|r| {
        let dir = r.last_direction?;
        let ago = now_unix_ms.saturating_sub(r.last_action_unix_ms?) / 1000;
        Some(format!(
            "last {} {ago} s ago; its balloon holds {} of its maximum",
            match dir {
                Direction::Grow => "grown",
                Direction::Shrink => "shrunk",
            },
            format_bytes(held)
        ))
    });
    let quarter = vm.max_memory_bytes.unwrap_or(0) / 4;
    let margin_after_bytes = record
        .map_or(0, |r| r.harm_margin_bytes)
        .saturating_mul(2)
        .max(cfg.margin_bytes)
        .min(quarter.max(cfg.min_change_bytes));
    Some(Harm {
        vm: vm.name.clone(),
        uuid: vm.uuid.clone(),
        kind,
        detail,
        before,
        actual_bytes: vm.balloon.actual_bytes,
        max_bytes: vm.max_memory_bytes,
        margin_after_bytes,
    })
}

/// One balloon page: the smallest change a virtio-balloon target can make.
pub const BALLOON_PAGE_BYTES: u64 = 4096;

/// The guest's total, when its balloon size is one QEMU kept from before a restart this
/// controller answered: QEMU resets neither its `actual` nor anything the new kernel's driver
/// would correct, and a driver that finds nothing to do (the target already its maximum, set
/// while the guest was restarting) never reports its size. Seen on a real libvirt guest reset
/// by `panic=-1`: MemTotal 470 MiB while QEMU and `virsh dommemstat` said 300 MiB, so its
/// figures "did not add up" and the controller left it alone for good. Only until the next
/// action after the restart: one refresh, never a loop on a guest that lies.
pub fn stale_after_restart(vm: &VmSample, record: Option<&crate::state::VmRecord>) -> Option<u64> {
    let r = record?;
    let restart = r.restart_at_unix_ms?;
    if r.last_action_unix_ms.is_some_and(|a| a > restart) || vm.device.autodeflate == Some(true) {
        return None;
    }
    let (total, actual, max) = (
        vm.balloon.available_bytes?,
        vm.balloon.actual_bytes?,
        vm.max_memory_bytes?,
    );
    (total > actual && actual.saturating_add(BALLOON_PAGE_BYTES) < max).then_some(total)
}
