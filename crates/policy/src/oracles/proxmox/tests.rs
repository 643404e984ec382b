//! The published behaviour: the cases of pve-manager's own AutoBalloon test (`balloontest.pl`),
//! single cycles (`abtest`) and cycles repeated until nothing moves (`absim`), with its decimal
//! MB/GB and a 100 MB step.

use super::*;

fn mb(x: f64) -> f64 {
    x * 1e6
}
fn gb(x: f64) -> f64 {
    x * 1e9
}

fn vm(id: &str, maxmem: f64, shares: u32, balloon: f64, min: f64, free: f64) -> PveVm {
    PveVm {
        id: id.into(),
        maxmem,
        shares: Some(shares),
        balloon,
        balloon_min: min,
        freemem: free,
    }
}

fn expect(pairs: &[(&str, f64)]) -> BTreeMap<String, f64> {
    pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

/// One cycle.
fn abtest(vms: &[PveVm], goal: f64, want: &[(&str, f64)]) {
    assert_eq!(
        compute_alg1(vms, goal, mb(100.0)),
        expect(want),
        "goal {goal}"
    );
}

/// Cycles applied until nothing moves; returns the final state.
fn absim(vms: &[PveVm], mut goal: f64, want: &[(&str, f64)]) -> Vec<PveVm> {
    let mut vms = vms.to_vec();
    let mut sum = BTreeMap::new();
    loop {
        let res = compute_alg1(&vms, goal, mb(100.0));
        let (mut changes, mut abs) = (0.0, 0.0);
        for d in vms.iter_mut() {
            let Some(new) = res.get(&d.id) else { continue };
            let diff = new - d.balloon;
            if diff != 0.0 {
                d.freemem = (d.freemem + diff).max(0.0);
                d.balloon = *new;
                sum.insert(d.id.clone(), *new);
                changes += diff;
                abs += diff.abs();
            }
        }
        goal -= changes;
        if abs == 0.0 {
            break;
        }
    }
    assert_eq!(sum, expect(want));
    vms
}

#[test]
fn two_vms_share_weighted() {
    let s = [
        vm("100", gb(2.0), 2000, gb(1.0), gb(1.0), 0.0),
        vm("101", gb(2.0), 1000, gb(1.0), gb(1.0), 0.0),
    ];
    abtest(&s, 0.0, &[]);
    abtest(&s, mb(90.0), &[("100", mb(1060.0)), ("101", mb(1030.0))]);
    abtest(&s, mb(150.0), &[("100", mb(1100.0)), ("101", mb(1050.0))]);
    abtest(&s, mb(270.0), &[("100", mb(1100.0)), ("101", mb(1090.0))]);
    absim(&s, mb(180.0), &[("100", mb(1120.0)), ("101", mb(1060.0))]);
    absim(&s, mb(270.0), &[("100", mb(1180.0)), ("101", mb(1090.0))]);
    absim(&s, mb(600.0), &[("100", mb(1300.0)), ("101", mb(1300.0))]);
    absim(&s, mb(900.0), &[("100", mb(1600.0)), ("101", mb(1300.0))]);
}

#[test]
fn a_vm_at_max_is_left_out() {
    let s = [
        vm("100", gb(2.0), 2000, gb(2.0), gb(2.0), 0.0),
        vm("101", gb(2.0), 1000, gb(1.0), gb(1.0), 0.0),
    ];
    abtest(&s, 0.0, &[]);
    abtest(&s, mb(18.0), &[("101", mb(1018.0))]);
    abtest(&s, mb(500.0), &[("101", mb(1100.0))]);
}

#[test]
fn pressured_first_then_shrink_comfortable_first() {
    let s = [
        vm("100", gb(2.0), 2000, gb(2.0), gb(2.0), 0.0),
        vm("101", gb(2.0), 1000, gb(1.0) + mb(7.0), gb(1.0), 0.0),
        vm("102", gb(2.0), 1000, gb(1.0), gb(1.0), mb(512.0)),
    ];
    abtest(&s, 0.0, &[]);
    abtest(&s, mb(11.0), &[("101", mb(1018.0))]);
    abtest(&s, mb(80.0), &[("101", mb(1087.0))]);
    abtest(&s, mb(200.0), &[("101", mb(1107.0))]);
    let s = absim(&s, mb(593.0), &[("101", mb(1300.0)), ("102", mb(1300.0))]);
    absim(&s, -mb(200.0), &[("101", mb(1200.0)), ("102", mb(1200.0))]);
    absim(&s, -mb(400.0), &[("101", mb(1200.0)), ("102", gb(1.0))]);
    absim(&s, -mb(593.0), &[("101", mb(1007.0)), ("102", gb(1.0))]);
}

/// Driven from a Sample as pvestatd does: 16 GiB host at 90 % used → goal −10 % of MemTotal;
/// VMs without a floor are skipped unless `floor_share` gives one.
#[test]
fn plan_from_a_sample() {
    use crate::tests::fixtures::{guest, host_with};
    let s = host_with(0, 1638, vec![guest("a", 2048, 2048, 1500)]);
    let p = plan(&s, &History::default(), &ProxmoxConfig::default());
    assert!(p.actions.is_empty());
    assert!(
        p.skipped[0].reason.contains("no balloon floor"),
        "{:?}",
        p.skipped
    );
    let cfg = ProxmoxConfig {
        floor_share: Some(0.5),
        ..ProxmoxConfig::default()
    };
    let p = plan(&s, &History::default(), &cfg);
    assert_eq!(p.host.level, HostLevel::Pressure);
    assert_eq!(p.actions.len(), 1);
    assert_eq!(p.actions[0].target_bytes, 1948 * MIB, "one 100 MiB step");
}
