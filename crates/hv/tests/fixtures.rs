//! The QMP → libvirt mapping checked on outputs captured from a real libvirt 9.0 / QEMU 7.2
//! domain (tests/data/README.md): same tag names, same order as `virsh dommemstat`.

use memwarden_hv::qmp::{parse_guest_stats, reply_return};
use memwarden_hv::tags::{balloon_from_tags, qmp_to_tags};
use memwarden_model::units::KIB;

#[test]
fn qmp_guest_stats_map_to_virsh_dommemstat_keys_in_order() {
    let stats = reply_return(include_str!("data/qmp-guest-stats.json")).expect("return");
    let balloon = reply_return(include_str!("data/qmp-query-balloon.json")).expect("return");
    let (raw, last) = parse_guest_stats(&stats);
    let actual = balloon["actual"].as_u64();
    let tags = qmp_to_tags(actual, &raw, last, Some(1));
    let ours: Vec<&str> = tags.iter().map(|t| t.name.as_str()).collect();
    let virsh: Vec<&str> = include_str!("data/virsh-dommemstat.txt")
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(ours, virsh);
    let b = balloon_from_tags(tags);
    assert_eq!(
        b.available_bytes,
        raw.iter()
            .find(|(k, _)| k == "stat-total-memory")
            .map(|(_, v)| v / KIB * KIB)
    );
}
