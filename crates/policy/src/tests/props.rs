//! Property tests of `plan`: whatever the guests report, an action never passes the floor or
//! the maximum, a step stays within its limit, a VM whose figures do not add up is never
//! touched, shares are respected, and the same input gives the same plan.

use memwarden_analysis::vm::checks;
use memwarden_analysis::vm::target::{check_target, floor};
use memwarden_model::units::{KIB, MIB};
use memwarden_model::vm::VmSample;
use proptest::prelude::*;

use super::fixtures::{guest, host_with, plan_of};
use crate::config::Config;
use crate::decision::{Direction, Plan};
use crate::guest::step_limit;
use crate::history::History;
use crate::state::State;

/// A guest with arbitrary (possibly lying) figures around a known maximum.
fn any_guest(i: usize) -> impl Strategy<Value = VmSample> {
    (
        256u64..4096,
        any::<[Option<u64>; 5]>(),
        0u64..1 << 22,
        0u64..1 << 22,
        0u64..1 << 22,
        0u64..1 << 22,
        any::<(bool, bool, bool)>(),
    )
        .prop_map(
            move |(max, lies, actual, avail, usable, rss, (lie, fpr, dflt))| {
                let mut vm = guest(&format!("vm{i}"), max, max, max / 2);
                let b = &mut vm.balloon;
                // KiB-sized values (as libvirt reports them), mostly plausible.
                b.actual_bytes = Some((actual * KIB).min(max * MIB));
                b.available_bytes = Some((avail * KIB).min(b.actual_bytes.unwrap_or(0)));
                b.usable_bytes = Some((usable * KIB).min(b.available_bytes.unwrap_or(0)));
                b.unused_bytes = b.usable_bytes;
                if lie {
                    // Anything at all, wraps and sentinels-that-are-not included.
                    b.actual_bytes = lies[0].or(b.actual_bytes);
                    b.available_bytes = lies[1];
                    b.usable_bytes = lies[2];
                    b.unused_bytes = lies[3];
                    b.disk_caches_bytes = lies[4];
                }
                vm.device.free_page_reporting = Some(fpr);
                vm.device.autodeflate = Some(dflt);
                super::fixtures::with_rss(vm, rss / 1024)
            },
        )
}

fn any_sample() -> impl Strategy<Value = memwarden_model::Sample> {
    (
        0u64..16 * 1024,
        proptest::collection::vec(any::<u8>(), 1..5)
            .prop_flat_map(|v| (0..v.len()).map(any_guest).collect::<Vec<_>>()),
    )
        .prop_map(|(avail, vms)| host_with(1_000_000, avail, vms))
}

fn sorted(p: &Plan) -> Vec<(String, u64)> {
    let mut a: Vec<_> = p
        .actions
        .iter()
        .map(|a| (a.vm.clone(), a.target_bytes))
        .collect();
    a.sort();
    a
}

proptest! {
    #[test]
    fn actions_are_safe_and_deterministic(s in any_sample()) {
        let cfg = Config::default();
        let p = plan_of(&s, &History::default(), &cfg, &State::default());
        for a in &p.actions {
            let vm = s.vms.iter().find(|v| v.name == a.vm).expect("acted on a VM of the sample");
            // Figures that do not add up are never acted on.
            prop_assert!(checks::problems(vm).is_empty(), "{:?}", checks::problems(vm));
            let max = vm.max_memory_bytes.expect("max known");
            prop_assert!(a.target_bytes <= max);
            let grow = a.direction == Direction::Grow;
            prop_assert_eq!(grow, a.target_bytes > a.from_bytes);
            prop_assert!(a.target_bytes.abs_diff(a.from_bytes) <= step_limit(&cfg, max, grow));
            if !grow {
                let f = floor(vm, cfg.margin_bytes).expect("a floor");
                prop_assert!(a.target_bytes >= f, "{} < floor {}", a.target_bytes, f);
                prop_assert_eq!(check_target(vm, a.target_bytes, cfg.margin_bytes), Ok(()));
                prop_assert!(a.expected_host_gain_bytes >= 0);
                prop_assert!(a.expected_host_gain_bytes as u64 <= a.from_bytes - a.target_bytes);
            }
        }
        // Same input, same plan; and the VMs' order in the sample does not matter.
        prop_assert_eq!(&p, &plan_of(&s, &History::default(), &cfg, &State::default()));
        let mut rev = s.clone();
        rev.vms.reverse();
        prop_assert_eq!(sorted(&p), sorted(&plan_of(&rev, &History::default(), &cfg, &State::default())));
    }

    /// Stale statistics are never acted on, whatever they say.
    #[test]
    fn stale_or_off_stats_never_move(s in any_sample(), age in 60u64..100_000, off in any::<bool>()) {
        let mut s = s;
        for vm in &mut s.vms {
            if off {
                vm.device.stats_period_s = Some(0);
            } else {
                vm.read_at_unix_s += age;
            }
        }
        let p = plan_of(&s, &History::default(), &Config::default(), &State::default());
        prop_assert!(p.actions.is_empty(), "{:?}", p.lines());
        prop_assert_eq!(p.skipped.len(), s.vms.len());
    }

    /// Two guests alike but for their shares: the one with the larger share gives no more.
    #[test]
    fn shares_are_respected(usable in 600u64..1900, avail in 0u64..2400, big in 1001u32..10_000) {
        let mut cfg = Config::default();
        cfg.shares.insert("big".into(), big);
        let s = host_with(1_000_000, avail, vec![guest("big", 2048, 2048, usable), guest("small", 2048, 2048, usable)]);
        let p = plan_of(&s, &History::default(), &cfg, &State::default());
        let given = |n: &str| p.actions.iter().find(|a| a.vm == n).map_or(0, |a| a.from_bytes.saturating_sub(a.target_bytes));
        prop_assert!(given("big") <= given("small"), "{:?}", p.lines());
    }

    /// Every skip reason agrees with the figures beside it: one that says the guest's free
    /// memory was "never touched" never stands next to a HOST IDLE at or above the minimum
    /// change; and every shrink is expected to give the host at least `min_host_gain_share` of
    /// the balloon it takes.
    #[test]
    fn reasons_agree_with_the_figures(s in any_sample()) {
        let cfg = Config::default();
        let p = plan_of(&s, &History::default(), &cfg, &State::default());
        for k in &p.skipped {
            if k.reason.contains("never touched") {
                let vm = s.vms.iter().find(|v| v.name == k.vm).expect("skipped a VM of the sample");
                let idle = memwarden_analysis::vm::figures(vm).host_backed_idle_bytes.unwrap_or(0);
                prop_assert!(idle < cfg.min_change_bytes, "HOST IDLE {} beside: {}", idle, k.reason);
            }
        }
        for a in p.actions.iter().filter(|a| a.direction == Direction::Shrink) {
            let taken = (a.from_bytes - a.target_bytes) as f64;
            prop_assert!(a.expected_host_gain_bytes as f64 >= cfg.min_host_gain_share * taken - 1.0,
                "{} expects {} for {}", a.vm, a.expected_host_gain_bytes, taken);
        }
    }
}
