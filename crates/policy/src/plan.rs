//! `plan`: one cycle of the balloon controller, as a pure function of the sample's view, its
//! recent history, the configuration and the controller's state.
//!
//! Three passes, in order of urgency:
//! 1. grow every guest under pressure, at once (up to the high watermark, within the grow step
//!    and its maximum), even while the host is under pressure — the reason says what was traded;
//! 2. when the host is under pressure, shrink idle guests (ranked by [`crate::rank`]) until the
//!    expected host gain covers what the host wants plus what pass 1 granted; each down to its
//!    floor at most, within the shrink step, never against hysteresis;
//! 3. when the host is comfortable, give balloon memory back, within the surplus above target +
//!    dead band (so that even if guests use all of it the host stays out of pressure).

use std::collections::BTreeSet;

use memwarden_analysis::view::View;
use memwarden_analysis::vm::target::check_target;
use memwarden_analysis::vm::VmReport;
use memwarden_model::units::{format_bytes, format_signed_bytes};
use memwarden_model::vm::VmSample;

use crate::config::Config;
use crate::decision::{
    Action, Direction, Exposure, Harm, HarmKind, Measured, Plan, Skip, UNDO_REASON,
};
use crate::guest::{judge_with, step_limit, GuestView};
use crate::harm::{detect, stale_after_restart, BALLOON_PAGE_BYTES};
use crate::history::{key_of, History};
use crate::host::{host_view, HostLevel};
use crate::measure::measure;
use crate::rank::{order, Candidate};
use crate::state::{spare, State};

/// One cycle: see the module documentation.
pub fn plan(view: &View, history: &History, cfg: &Config, state: &State) -> Plan {
    let now = view.sample().taken_at_unix_ms;
    let host = host_view(view.sample(), cfg);
    let mut p = Plan {
        taken_at_unix_ms: now,
        actions: Vec::new(),
        skipped: Vec::new(),
        host,
        measured: Vec::new(),
        unmet_need_bytes: 0,
        harm: Vec::new(),
        exposure: Vec::new(),
    };
    let mut views: Vec<(&VmSample, GuestView)> = Vec::new();
    for r in view.vms() {
        let vm = r.vm;
        if let Some(h) = detect(vm, history, cfg, state, now) {
            answer_harm(&mut p, &r, &h);
            p.harm.push(h);
            continue;
        }
        if let Some(m) = measure(&r, state, cfg, now) {
            p.measured.push(m);
        }
        let record = state.get(&key_of(vm.uuid.as_deref(), &vm.name));
        match judge_with(&r, history, cfg, record) {
            Ok(v) => views.push((vm, v)),
            Err(reason) => match stale_after_restart(vm, record) {
                Some(total) => refresh_after_restart(&mut p, &r, total),
                None => p.skipped.push(skip(vm, reason)),
            },
        }
    }
    undo_unpaid(&mut p, &views, cfg);
    let granted = grow_pressured(&mut p, &views, cfg);
    let moved: BTreeSet<String> = p.actions.iter().map(|a| a.vm.clone()).collect();
    let rest: Vec<_> = views
        .iter()
        .filter(|(_, v)| !moved.contains(&v.name))
        .collect();
    match p.host.level {
        HostLevel::Pressure => {
            let need = p.host.need_bytes.saturating_add(granted);
            shrink_idle(&mut p, &rest, cfg, state, need);
        }
        HostLevel::Comfortable => give_back(&mut p, &rest, cfg, state),
        HostLevel::DeadBand | HostLevel::Unknown => {}
    }
    p.exposure = views.iter().map(|(_, v)| exposure(v, &p.actions)).collect();
    p
}

/// A harmed guest gets all its memory back at once (the grow step does not apply), whatever
/// the host's state: the guest comes first.
fn answer_harm(p: &mut Plan, r: &VmReport, h: &Harm) {
    let vm = r.vm;
    let (Some(actual), Some(max)) = (h.actual_bytes, h.max_bytes) else {
        p.skipped.push(skip(
            vm,
            format!(
                "harmed ({}: {}), but its balloon size or maximum is unknown: nothing to give back",
                h.kind.as_str(),
                h.detail
            ),
        ));
        return;
    };
    // QEMU keeps a balloon target across a guest reboot: the new kernel inflates back to it.
    // A rebooted guest's target is set to its maximum even when it reads as there now.
    if actual >= max && h.kind != HarmKind::Reboot {
        p.skipped.push(skip(
            vm,
            format!(
                "harmed ({}: {}) at its maximum {}: not the balloon's doing; its margin is raised",
                h.kind.as_str(),
                h.detail,
                format_bytes(max)
            ),
        ));
        return;
    }
    let f = &r.figures;
    p.actions.push(Action {
        vm: vm.name.clone(),
        uuid: vm.uuid.clone(),
        from_bytes: actual,
        target_bytes: max,
        direction: Direction::Grow,
        reason: format!(
            "harm ({}): {}{}: given back all its memory ({} → {}); its floor keeps {} more from \
             now on and it is not shrunk for a while",
            h.kind.as_str(),
            h.detail,
            h.before
                .as_deref()
                .map(|b| format!(" ({b})"))
                .unwrap_or_default(),
            format_bytes(actual),
            format_bytes(max),
            format_bytes(h.margin_after_bytes)
        ),
        expected_host_gain_bytes: -((max - actual).min(i64::MAX as u64) as i64),
        host_rss_bytes: f.host_rss_bytes,
        guest_used_bytes: f.guest_used_bytes,
        guest_cache_bytes: f.guest_cache_bytes,
    });
}

/// A target one page short of the guest's maximum: its balloon driver inflates that page and
/// reports its size, which puts QEMU's stale `actual` right (see [`stale_after_restart`]). A
/// growth as far as the figures memwarden holds can tell.
fn refresh_after_restart(p: &mut Plan, r: &VmReport, total: u64) {
    let vm = r.vm;
    let (Some(actual), Some(max)) = (vm.balloon.actual_bytes, vm.max_memory_bytes) else {
        return;
    };
    let f = &r.figures;
    let target = max - BALLOON_PAGE_BYTES;
    p.actions.push(Action {
        vm: vm.name.clone(),
        uuid: vm.uuid.clone(),
        from_bytes: actual,
        target_bytes: target,
        direction: Direction::Grow,
        reason: format!(
            "restarted: its balloon reads {} while the guest has {} (QEMU kept the size from \
             before the restart, and the new balloon driver had nothing to report): target one \
             page short of its maximum ({}), so that the driver reports its real size",
            format_bytes(actual),
            format_bytes(total),
            format_bytes(target)
        ),
        expected_host_gain_bytes: -((target - actual).min(i64::MAX as u64) as i64),
        host_rss_bytes: f.host_rss_bytes,
        guest_used_bytes: f.guest_used_bytes,
        guest_cache_bytes: f.guest_cache_bytes,
    });
}

/// A shrink measured (conclusively) to give the host less than `min_host_gain_share` is undone
/// by the part that did not pay: the guest's headroom is its safety, and that part bought
/// nothing, while what stays taken gave at least the share.
fn undo_unpaid(p: &mut Plan, views: &[(&VmSample, GuestView)], cfg: &Config) {
    let undo: Vec<Action> = p
        .measured
        .iter()
        .filter(|m| m.undo_bytes > 0)
        .filter_map(|m| {
            let (_, v) = views
                .iter()
                .find(|(_, v)| v.name == m.vm && v.uuid == m.uuid)?;
            let back = m.undo_bytes.min(v.max_bytes.saturating_sub(v.actual_bytes));
            (back > 0).then(|| Action {
                vm: v.name.clone(),
                uuid: v.uuid.clone(),
                from_bytes: v.actual_bytes,
                target_bytes: v.actual_bytes + back,
                direction: Direction::Grow,
                reason: format!(
                    "{UNDO_REASON} its shrink of {} {} s ago gave the host {} ({:.0}%, under the {:.0}% \
                     of min_host_gain_share): the {} that did not pay goes back to the guest; \
                     the pages the balloon reaches are ones QEMU never backed",
                    format_bytes(m.balloon_bytes),
                    m.after_s,
                    format_signed_bytes(m.host_gain_bytes.into()),
                    m.efficiency() * 100.0,
                    cfg.min_host_gain_share * 100.0,
                    format_bytes(back)
                ),
                expected_host_gain_bytes: -(back.min(i64::MAX as u64) as i64),
                host_rss_bytes: v.host_rss_bytes,
                guest_used_bytes: Some(v.used_bytes),
                guest_cache_bytes: Some(v.cache_bytes),
            })
        })
        .collect();
    p.actions.extend(undo);
}

/// What `v` can take at once after this cycle's actions.
fn exposure(v: &GuestView, actions: &[Action]) -> Exposure {
    let after = actions
        .iter()
        .find(|a| a.vm == v.name && a.uuid == v.uuid)
        .map_or(v.actual_bytes, |a| a.target_bytes);
    let headroom = (i128::from(v.usable_bytes) + i128::from(after) - i128::from(v.actual_bytes))
        .clamp(0, i128::from(u64::MAX)) as u64;
    Exposure {
        vm: v.name.clone(),
        uuid: v.uuid.clone(),
        balloon_bytes: after,
        max_bytes: v.max_bytes,
        headroom_bytes: headroom,
        margin_bytes: v.margin_bytes,
        burst_seen_bytes: v.burst_seen_bytes,
        deflate_on_oom: v.deflate_on_oom,
        host_rss_bytes: v.host_rss_bytes,
        guest_used_bytes: Some(v.used_bytes),
        exposed: after < v.max_bytes && !v.deflate_on_oom,
    }
}

fn skip(vm: &VmSample, reason: String) -> Skip {
    Skip {
        vm: vm.name.clone(),
        uuid: vm.uuid.clone(),
        reason,
    }
}

fn pct(x: f64) -> String {
    format!("{:.0}%", x * 100.0)
}

/// Seconds since the VM's last action, and its direction.
fn last_action(state: &State, v: &GuestView, now: u64) -> Option<(Direction, u64)> {
    let r = state.get(&key_of(v.uuid.as_deref(), &v.name))?;
    Some((
        r.last_direction?,
        now.saturating_sub(r.last_action_unix_ms?) / 1000,
    ))
}

/// Pass 1. Returns the bytes granted.
fn grow_pressured(p: &mut Plan, views: &[(&VmSample, GuestView)], cfg: &Config) -> u64 {
    let mut granted = 0u64;
    for (vm, v) in views {
        let Some(why) = &v.pressure else { continue };
        if v.actual_bytes >= v.max_bytes {
            p.skipped.push(skip(
                vm,
                format!(
                    "under pressure ({why}) but already at its maximum {}: only the guest can \
                     free memory now",
                    format_bytes(v.max_bytes)
                ),
            ));
            continue;
        }
        let grow = v
            .grow_wanted(cfg)
            .min(step_limit(cfg, v.max_bytes, true))
            .min(v.max_bytes - v.actual_bytes);
        let target = v.actual_bytes + grow;
        let mut reason = format!(
            "under pressure ({why}): grow {} → {} (+{}), toward {} usable",
            format_bytes(v.actual_bytes),
            format_bytes(target),
            format_bytes(grow),
            pct(cfg.guest_usable_high_share)
        );
        if p.host.level == HostLevel::Pressure {
            reason.push_str(&format!(
                "; the host is under pressure too ({}), the guest comes first: traded up to {} \
                 more host memory, asked back from idle guests this cycle",
                p.host.why,
                format_bytes(grow)
            ));
        }
        granted = granted.saturating_add(grow);
        p.actions.push(Action {
            vm: v.name.clone(),
            uuid: v.uuid.clone(),
            from_bytes: v.actual_bytes,
            target_bytes: target,
            direction: Direction::Grow,
            reason,
            expected_host_gain_bytes: -(grow.min(i64::MAX as u64) as i64),
            host_rss_bytes: v.host_rss_bytes,
            guest_used_bytes: Some(v.used_bytes),
            guest_cache_bytes: Some(v.cache_bytes),
        });
    }
    granted
}

/// Why `v` may not be shrunk now (hysteresis, settling, unknown RSS), or `None`.
fn hold_back(v: &GuestView, cfg: &Config, state: &State, now: u64) -> Option<String> {
    match last_action(state, v, now) {
        Some((Direction::Grow, s)) if s < cfg.min_reverse_interval_s => {
            return Some(format!(
                "grown {s} s ago: not shrunk before {} s have passed (hysteresis)",
                cfg.min_reverse_interval_s
            ))
        }
        Some((Direction::Shrink, s)) if s < cfg.settle_s => {
            return Some(format!(
                "shrunk {s} s ago: waiting {} s for its QEMU to give the pages back",
                cfg.settle_s
            ))
        }
        _ => {}
    }
    if let Some(h) = state
        .get(&key_of(v.uuid.as_deref(), &v.name))
        .and_then(|r| r.harm_at_unix_ms)
    {
        let ago = now.saturating_sub(h) / 1000;
        if ago < cfg.harm_backoff_s {
            return Some(format!(
                "harmed {ago} s ago: not shrunk before {} s have passed (harm_backoff_s)",
                cfg.harm_backoff_s
            ));
        }
    }
    // A guest whose use jumped between its last two statistics updates is allocating now (a
    // burst in progress shows in one update, before any rate): a shrink now would take the
    // headroom the allocation is using (seed 1796407015632565: shrunk 108 MiB a second into a
    // 262 MiB allocation, its OOM killer ran). Looked at again next cycle.
    if let Some(step) = v
        .rates
        .used_step_bytes
        .filter(|s| *s >= cfg.min_change_bytes)
    {
        return Some(format!(
            "allocating now: its use rose {} between its last two statistics updates; not shrunk \
             while it does",
            format_bytes(step)
        ));
    }
    // The same seen from the host, which does not wait for the guest's next statistics push:
    // QEMU's RSS rising means the guest is touching memory now (seed 1796407015632569: a probe
    // 1 s into a sudden allocation, before its statistics showed it, then undone: 4 direction
    // changes in one episode).
    if let Some(step) = v
        .rates
        .host_rss_step_bytes
        .filter(|s| *s >= cfg.min_change_bytes)
    {
        return Some(format!(
            "allocating now: its QEMU's resident memory rose {} since the previous sample (its \
             statistics have not caught up); not shrunk while it does",
            format_bytes(step)
        ));
    }
    if v.host_rss_bytes.is_none() {
        return Some(
            "QEMU's RSS unknown: cannot tell whether shrinking it frees anything on the host"
                .into(),
        );
    }
    None
}

/// What may be taken from `v` (at most `give`) so that the host really gains at least
/// `min_host_gain_share` of it, or why nothing may. Every reason agrees with the figures beside
/// it: "never touched" only where `HOST IDLE` (the guest's free and cache memory QEMU backs) is
/// under the minimum change.
fn worth_taking<'a>(
    measured: &[Measured],
    v: &'a GuestView,
    give: u64,
    cfg: &Config,
    state: &State,
    now: u64,
) -> Result<Candidate<'a>, String> {
    let record = state.get(&key_of(v.uuid.as_deref(), &v.name));
    let rss = v.host_rss_bytes;
    let just = measured
        .iter()
        .find(|m| m.vm == v.name && m.uuid == v.uuid && m.inconclusive.is_none());
    let belief = just
        .map(Measured::efficiency)
        .or_else(|| record.and_then(|r| r.belief(cfg, rss, Some(v.used_bytes), now)));
    let host_idle = v.host_idle_bytes.unwrap_or(0);
    let resident = v.resident_idle_bytes(cfg).unwrap_or(0);
    let share = cfg.min_host_gain_share;
    if let Some(eff) = belief.filter(|e| *e < share) {
        let (ago, ttl) = record.map_or((0, cfg.belief_ttl_s), |r| {
            (
                now.saturating_sub(r.measured_at_unix_ms.unwrap_or(now)) / 1000,
                r.ttl_s(cfg),
            )
        });
        return Err(format!(
            "its last shrink ({ago} s ago) gave the host {:.0}% of the balloon, under the \
             {:.0}% of min_host_gain_share: of HOST IDLE {} (free and cache memory QEMU backs), \
             what the balloon reaches was never backed; probed again {} s after that \
             measurement, or once QEMU's RSS grows",
            eff * 100.0,
            share * 100.0,
            format_bytes(host_idle),
            ttl
        ));
    }
    if host_idle < cfg.min_change_bytes {
        return Err(format!(
            "nothing to gain on the host: QEMU backs only {} of its free and cache memory \
             (HOST IDLE; QEMU RSS {} for {} of guest use): its free memory was never touched{}, \
             and ballooning it frees nothing; what would: {}",
            format_bytes(host_idle),
            format_bytes(rss.unwrap_or(0)),
            format_bytes(v.used_bytes),
            if v.free_page_reporting {
                " or free page reporting already returned it"
            } else {
                ""
            },
            if v.free_page_reporting {
                "a smaller guest (its maximum is more than it uses)"
            } else {
                "free page reporting (the guest returns what it frees by itself) or a smaller guest"
            }
        ));
    }
    if resident < cfg.min_change_bytes {
        return Err(format!(
            "nothing to gain on the host: of HOST IDLE {}, QEMU's own memory \
             (qemu_overhead_bytes {}) leaves {}, under the minimum change {}",
            format_bytes(host_idle),
            format_bytes(cfg.qemu_overhead_bytes),
            format_bytes(resident),
            format_bytes(cfg.min_change_bytes)
        ));
    }
    // Taking more than QEMU backs would spend the guest's headroom for nothing.
    let mut cap = give.min(resident);
    // Nor more than QEMU holds above the level where the last shrinks stopped paying.
    if let (Some(dry), Some(rss)) = (record.and_then(|r| r.dry_spare(cfg, now)), rss) {
        let spare_now = spare(rss, v.used_bytes);
        let above = spare_now.saturating_sub(dry);
        if above < cfg.min_change_bytes {
            return Err(format!(
                "its QEMU holds {} beyond the guest's use, no more than when a shrink last \
                 stopped paying ({}): what the balloon would reach now was never backed; taken \
                 once the guest touches and frees more",
                format_bytes(spare_now),
                format_bytes(dry)
            ));
        }
        cap = cap.min(above);
    }
    // No belief to go by: a VM never measured (or harmed since) is probed first, and so is one
    // whose last shrink gave too little unless its QEMU has grown since (the guest touched
    // memory: that is resident and, once freed, the balloon's to take).
    let probing = belief.is_none()
        && match record.filter(|r| r.measured_efficiency.is_some()) {
            None => true,
            Some(r) => {
                r.probing()
                    && rss.is_some_and(|x| !r.grew_since_measured(cfg, x, Some(v.used_bytes)))
            }
        };
    // What QEMU gained beyond the guest's use since its lowest the guest touched and freed:
    // the balloon reaches that much without a probe (a touch-and-free is taken back at once).
    let touched = record
        .and_then(|r| r.spare_low_bytes)
        .zip(rss)
        .map_or(0, |(low, rss)| spare(rss, v.used_bytes).saturating_sub(low))
        .min(host_idle);
    let probe = cfg.probe_bytes.max(cfg.min_change_bytes);
    let probing = probing && touched < probe;
    if probing {
        cap = cap.min(probe);
    } else if belief.is_none() && touched > 0 {
        cap = cap.min(touched.max(probe));
    }
    if cap < cfg.min_change_bytes {
        return Err(format!(
            "nothing to give: {} may go (idle above {} usable and above its floor {}), but QEMU \
             backs {} of it; under the minimum change {}",
            format_bytes(give),
            pct(cfg.guest_usable_high_share),
            format_bytes(v.floor_bytes),
            format_bytes(resident),
            format_bytes(cfg.min_change_bytes)
        ));
    }
    let mut c = Candidate::new(v, cap, cfg, belief);
    c.probe = probing;
    Ok(c)
}

/// Pass 2.
fn shrink_idle(
    p: &mut Plan,
    views: &[&(&VmSample, GuestView)],
    cfg: &Config,
    state: &State,
    need: u64,
) {
    let now = p.taken_at_unix_ms;
    let mut cands = Vec::new();
    for (vm, v) in views.iter().map(|x| (x.0, &x.1)) {
        if let Some(why) = hold_back(v, cfg, state, now) {
            p.skipped.push(skip(vm, why));
            continue;
        }
        let room = v.actual_bytes.saturating_sub(v.floor_bytes);
        let give = v
            .idle_bytes
            .min(room)
            .min(step_limit(cfg, v.max_bytes, false));
        if give < cfg.min_change_bytes {
            p.skipped.push(skip(
                vm,
                format!(
                    "nothing to give: {} idle above {} usable, {} above its floor {}",
                    format_bytes(v.idle_bytes),
                    pct(cfg.guest_usable_high_share),
                    format_bytes(room),
                    format_bytes(v.floor_bytes)
                ),
            ));
            continue;
        }
        match worth_taking(&p.measured, v, give, cfg, state, now) {
            Ok(c) => cands.push((vm, c)),
            Err(why) => p.skipped.push(skip(vm, why)),
        }
    }
    cands.sort_by(|a, b| order(a.1.view, b.1.view));
    let mut remaining = need;
    for (vm, c) in cands {
        if remaining == 0 {
            break;
        }
        let v = c.view;
        let bytes = c
            .bytes_for(remaining)
            .max(cfg.min_change_bytes)
            .min(c.give_bytes);
        let target = v.actual_bytes - bytes;
        // The same check `memwarden setmem` makes: a last guard, from the analysis crate.
        if let Err(refusal) = check_target(vm, target, cfg.margin_bytes) {
            p.skipped.push(skip(vm, refusal.to_string()));
            continue;
        }
        let gain = c.gain(bytes);
        remaining = remaining.saturating_sub(gain);
        let mut reason = format!(
            "{}: shrink {} → {} (−{}); {} idle ({} usable = {} of its memory), floor {}; \
             expected host gain {} (QEMU holds {} of guest memory beyond its use",
            p.host.why,
            format_bytes(v.actual_bytes),
            format_bytes(target),
            format_bytes(bytes),
            format_bytes(v.idle_bytes),
            format_bytes(v.usable_bytes),
            pct(v.usable_share),
            format_bytes(v.floor_bytes),
            format_bytes(gain),
            format_bytes(c.resident_idle_bytes),
        );
        if c.efficiency < 1.0 {
            reason.push_str(&format!(
                "; its last shrink gave back {} of the balloon",
                pct(c.efficiency)
            ));
        }
        if c.probe {
            reason.push_str(&format!(
                "; a probe of at most {}: no measurement of this VM is believed (none yet, or \
                 its last shrink gave too little and that belief has expired)",
                format_bytes(cfg.probe_bytes)
            ));
        }
        if v.free_page_reporting {
            reason.push_str("; free page reporting is on: only its cache is left to take");
        }
        reason.push(')');
        p.actions.push(Action {
            vm: v.name.clone(),
            uuid: v.uuid.clone(),
            from_bytes: v.actual_bytes,
            target_bytes: target,
            direction: Direction::Shrink,
            reason,
            expected_host_gain_bytes: gain.min(i64::MAX as u64) as i64,
            host_rss_bytes: v.host_rss_bytes,
            guest_used_bytes: Some(v.used_bytes),
            guest_cache_bytes: Some(v.cache_bytes),
        });
    }
    p.unmet_need_bytes = remaining;
}

/// Pass 3.
fn give_back(p: &mut Plan, views: &[&(&VmSample, GuestView)], cfg: &Config, state: &State) {
    let now = p.taken_at_unix_ms;
    let mut order: Vec<&GuestView> = views
        .iter()
        .map(|x| &x.1)
        .filter(|v| v.actual_bytes < v.max_bytes)
        .collect();
    // Least room first; ties by name so the same input gives the same plan.
    order.sort_by(|a, b| {
        a.usable_share
            .total_cmp(&b.usable_share)
            .then_with(|| a.name.cmp(&b.name))
    });
    let mut budget = p.host.surplus_bytes;
    for v in order {
        if let Some((Direction::Shrink, s)) = last_action(state, v, now) {
            if s < cfg.min_reverse_interval_s {
                continue;
            }
        }
        let held = v.max_bytes - v.actual_bytes;
        let grow = held.min(step_limit(cfg, v.max_bytes, true)).min(budget);
        if grow < cfg.min_change_bytes.min(held) || grow == 0 {
            continue;
        }
        budget -= grow;
        p.actions.push(Action {
            vm: v.name.clone(),
            uuid: v.uuid.clone(),
            from_bytes: v.actual_bytes,
            target_bytes: v.actual_bytes + grow,
            direction: Direction::Grow,
            reason: format!(
                "{}: give back {} of the {} its balloon holds ({} → {})",
                p.host.why,
                format_bytes(grow),
                format_bytes(held),
                format_bytes(v.actual_bytes),
                format_bytes(v.actual_bytes + grow)
            ),
            expected_host_gain_bytes: -(grow.min(i64::MAX as u64) as i64),
            host_rss_bytes: v.host_rss_bytes,
            guest_used_bytes: Some(v.used_bytes),
            guest_cache_bytes: Some(v.cache_bytes),
        });
    }
}
