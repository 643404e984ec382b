//! `memwarden balance --reclaim 2G`: the question an operator asks before starting one more VM.
//! Which guests would give how much, safest first (the same order the controller shrinks in),
//! how much the host would really get back (QEMU-resident memory only), or that it cannot be
//! done safely and how much could. No step limit applies to the total; the controller would
//! take it over several cycles, and `cycles` says how many.

use memwarden_analysis::view::View;
use memwarden_analysis::vm::target::check_target;
use memwarden_model::units::format_bytes;
use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::decision::Skip;
use crate::guest::{judge, step_limit};
use crate::history::History;
use crate::rank::{order, Candidate};

/// One guest's part.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReclaimPart {
    pub vm: String,
    pub uuid: Option<String>,
    pub from_bytes: u64,
    pub target_bytes: u64,
    /// Expected host gain, bytes.
    pub host_gain_bytes: u64,
    /// Cycles of the controller's shrink step this takes.
    pub cycles: u64,
    pub reason: String,
}

/// The answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReclaimPlan {
    pub want_bytes: u64,
    pub parts: Vec<ReclaimPart>,
    /// Σ expected host gain of `parts`.
    pub host_gain_bytes: u64,
    /// True when `host_gain_bytes` ≥ `want_bytes`.
    pub feasible: bool,
    pub skipped: Vec<Skip>,
    /// One sentence: done how, or how much could be.
    pub summary: String,
}

/// Which guests would give `want_bytes` of host memory, safely. Uses no history: guests
/// under pressure by their usable share are left out (rates need the daemon's history).
pub fn reclaim(view: &View, cfg: &Config, want_bytes: u64) -> ReclaimPlan {
    let history = History::default();
    let mut skipped = Vec::new();
    let mut views = Vec::new();
    for r in view.vms() {
        let vm = r.vm;
        match judge(&r, &history, cfg) {
            Ok(v) => views.push((vm, v)),
            Err(reason) => skipped.push(Skip {
                vm: vm.name.clone(),
                uuid: vm.uuid.clone(),
                reason,
            }),
        }
    }
    let mut cands = Vec::new();
    for (vm, v) in &views {
        let why_not = if let Some(p) = &v.pressure {
            Some(format!("under pressure itself ({p})"))
        } else if v.host_rss_bytes.is_none() {
            Some("QEMU's RSS unknown: its host gain cannot be told".into())
        } else {
            None
        };
        if let Some(reason) = why_not {
            skipped.push(Skip {
                vm: v.name.clone(),
                uuid: v.uuid.clone(),
                reason,
            });
            continue;
        }
        let give = v
            .idle_bytes
            .min(v.actual_bytes.saturating_sub(v.floor_bytes));
        let c = Candidate::new(v, give, cfg, None);
        if give >= cfg.min_change_bytes && c.gain(give) > 0 {
            cands.push((*vm, c));
        }
    }
    cands.sort_by(|a, b| order(a.1.view, b.1.view));
    let mut parts = Vec::new();
    let mut got = 0u64;
    for (vm, c) in cands {
        if got >= want_bytes {
            break;
        }
        let v = c.view;
        let bytes = c
            .bytes_for(want_bytes - got)
            .max(cfg.min_change_bytes)
            .min(c.give_bytes);
        let target = v.actual_bytes - bytes;
        if let Err(refusal) = check_target(vm, target, cfg.margin_bytes) {
            skipped.push(Skip {
                vm: v.name.clone(),
                uuid: v.uuid.clone(),
                reason: refusal.to_string(),
            });
            continue;
        }
        let gain = c.gain(bytes);
        got += gain;
        let step = step_limit(cfg, v.max_bytes, false).max(1);
        parts.push(ReclaimPart {
            vm: v.name.clone(),
            uuid: v.uuid.clone(),
            from_bytes: v.actual_bytes,
            target_bytes: target,
            host_gain_bytes: gain,
            cycles: bytes.div_ceil(step),
            reason: format!(
                "{} → {} (−{}), host gain {}: {} idle, floor {}{}",
                format_bytes(v.actual_bytes),
                format_bytes(target),
                format_bytes(bytes),
                format_bytes(gain),
                format_bytes(v.idle_bytes),
                format_bytes(v.floor_bytes),
                if v.free_page_reporting {
                    "; free page reporting on: only its cache counts"
                } else {
                    ""
                }
            ),
        });
    }
    let feasible = got >= want_bytes;
    let summary = if feasible {
        format!(
            "{} can be reclaimed safely from {} guest(s): expected host gain {}",
            format_bytes(want_bytes),
            parts.len(),
            format_bytes(got)
        )
    } else {
        format!(
            "cannot reclaim {} safely: at most {} of host memory (guests kept at their floors \
             and {:.0}% usable; untouched guest memory gives the host nothing)",
            format_bytes(want_bytes),
            format_bytes(got),
            cfg.guest_usable_high_share * 100.0
        )
    };
    ReclaimPlan {
        want_bytes,
        parts,
        host_gain_bytes: got,
        feasible,
        skipped,
        summary,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::fixtures::{guest, host_sample, with_rss};
    use memwarden_model::units::{GIB, MIB};

    #[test]
    fn safest_first_and_only_resident_memory_counts() {
        // a: 1800 MiB usable, all touched; b: 1000 MiB usable; c: never touched (RSS 180).
        let s = host_sample(
            0,
            vec![
                guest("b", 2048, 2048, 1000),
                guest("a", 2048, 2048, 1800),
                with_rss(guest("c", 2048, 2048, 1900), 180),
            ],
        );
        let r = reclaim(&View::of(s), &Config::default(), GIB);
        assert!(r.feasible, "{}", r.summary);
        assert_eq!(r.parts[0].vm, "a");
        assert_eq!(
            r.host_gain_bytes,
            r.parts.iter().map(|p| p.host_gain_bytes).sum::<u64>()
        );
        assert!(r.parts.iter().all(|p| p.vm != "c"), "{:?}", r.parts);
    }

    #[test]
    fn too_much_says_how_much_could_be_had() {
        let s = host_sample(0, vec![guest("a", 2048, 2048, 1800)]);
        let r = reclaim(&View::of(s), &Config::default(), 64 * GIB);
        assert!(!r.feasible);
        assert!(r.host_gain_bytes > 0 && r.host_gain_bytes < 2048 * MIB);
        assert!(r.summary.contains("at most"), "{}", r.summary);
        // Never below the floor.
        assert!(r.parts.iter().all(|p| p.target_bytes >= 128 * MIB));
    }
}
