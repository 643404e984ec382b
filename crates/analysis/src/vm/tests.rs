use memwarden_model::host::{ProcKsm, ProcessMem, SmapsRollup};
use memwarden_model::units::{KIB, MIB};
use memwarden_model::vm::{BalloonDevice, BalloonStats, VmSample};

use super::*;

/// The numbers of the captured `virsh dommemstat` in crates/hv/tests/data (KiB → bytes).
pub(super) fn healthy() -> VmSample {
    VmSample {
        name: "a".into(),
        max_memory_bytes: Some(512 * MIB),
        read_at_unix_s: 1_795_426_934,
        device: BalloonDevice {
            present: true,
            path: Some("balloon0".into()),
            stats_period_s: Some(2),
            model: Some("virtio".into()),
        },
        balloon: BalloonStats {
            actual_bytes: Some(524_288 * KIB),
            unused_bytes: Some(450_940 * KIB),
            available_bytes: Some(481_296 * KIB),
            usable_bytes: Some(450_652 * KIB),
            disk_caches_bytes: Some(3_044 * KIB),
            last_update_unix_s: Some(1_795_426_932),
            rss_bytes: Some(237_656 * KIB),
            ..BalloonStats::default()
        },
        ..VmSample::default()
    }
}

#[test]
fn figures_follow_their_definitions() {
    let mut vm = healthy();
    vm.max_memory_bytes = Some(1024 * MIB);
    vm.host = Some(ProcessMem {
        smaps: Some(SmapsRollup {
            rss: 240_000 * KIB,
            pss: 239_000 * KIB,
            ..SmapsRollup::default()
        }),
        ksm: Some(ProcKsm {
            merging_pages: Some(10),
            ..ProcKsm::default()
        }),
        ..ProcessMem::default()
    });
    let f = figures(&vm);
    assert_eq!(f.guest_used_bytes, Some((481_296 - 450_652) * KIB));
    assert_eq!(f.guest_used_legacy_bytes, Some((481_296 - 450_940) * KIB));
    assert_eq!(f.balloon_held_bytes, Some(512 * MIB));
    assert_eq!(
        f.host_rss_bytes,
        Some(240_000 * KIB),
        "smaps wins over libvirt rss"
    );
    assert_eq!(
        f.host_overhead_bytes,
        Some(((240_000 - (481_296 - 450_652)) * KIB) as i64)
    );
    assert_eq!(f.ksm_merged_bytes, Some(40_960));
    assert_eq!(f.stats_age_s, Some(2));
    assert!(diagnose(&vm).is_empty(), "{:?}", diagnose(&vm));
}

#[test]
fn no_balloon_device() {
    let mut vm = healthy();
    vm.device = BalloonDevice::default();
    vm.balloon = BalloonStats {
        actual_bytes: Some(512 * MIB),
        ..BalloonStats::default()
    };
    let d = diagnose(&vm);
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!(d[0].kind, FindingKind::NoBalloonDevice);
}

#[test]
fn polling_off_is_named_and_not_called_a_missing_driver() {
    let mut vm = healthy();
    vm.device.stats_period_s = Some(0);
    vm.read_at_unix_s += 600;
    let kinds: Vec<_> = diagnose(&vm).into_iter().map(|f| f.kind).collect();
    assert_eq!(kinds, [FindingKind::PollingOff]);
}

#[test]
fn stale_and_driver_absent() {
    let mut vm = healthy();
    vm.read_at_unix_s += 60;
    let kinds: Vec<_> = diagnose(&vm).into_iter().map(|f| f.kind).collect();
    assert_eq!(kinds, [FindingKind::StaleStats]);
    vm.read_at_unix_s = vm.balloon.last_update_unix_s.unwrap_or(0) + STALE_MIN_S;
    assert!(diagnose(&vm).is_empty());

    let mut nodriver = healthy();
    nodriver.balloon = BalloonStats {
        actual_bytes: Some(512 * MIB),
        ..BalloonStats::default()
    };
    let kinds: Vec<_> = diagnose(&nodriver).into_iter().map(|f| f.kind).collect();
    assert_eq!(kinds, [FindingKind::GuestDriverAbsent]);
}

#[test]
fn untrusted_numbers_windows_and_sentinels() {
    let mut vm = healthy();
    vm.guest_os = Some("windows".into());
    vm.balloon.unset = vec!["usable".into()];
    vm.balloon.usable_bytes = None;
    vm.balloon.problems = vec!["free (unused) 900 MiB exceeds the guest's total".into()];
    let kinds: Vec<_> = diagnose(&vm).into_iter().map(|f| f.kind).collect();
    assert_eq!(
        kinds,
        [
            FindingKind::NoUsable,
            FindingKind::UnsetValues,
            FindingKind::Inconsistent,
            FindingKind::WindowsGuest
        ]
    );
    // Guest used falls back to nothing (usable unset), overhead uses the legacy figure.
    let f = figures(&vm);
    assert_eq!(f.guest_used_bytes, None);
    assert_eq!(
        f.host_overhead_bytes,
        Some(((237_656 - (481_296 - 450_940)) * KIB) as i64)
    );
}

proptest::proptest! {
    #[test]
    fn any_numbers_never_panic(t in proptest::option::of(proptest::num::u64::ANY),
                               u in proptest::option::of(proptest::num::u64::ANY),
                               f in proptest::option::of(proptest::num::u64::ANY),
                               a in proptest::option::of(proptest::num::u64::ANY),
                               m in proptest::option::of(proptest::num::u64::ANY),
                               r in proptest::option::of(proptest::num::u64::ANY),
                               last in proptest::option::of(proptest::num::u64::ANY),
                               now in proptest::num::u64::ANY,
                               period in proptest::option::of(proptest::num::u64::ANY)) {
        let mut vm = healthy();
        vm.balloon = BalloonStats { available_bytes: t, usable_bytes: u, unused_bytes: f,
            actual_bytes: a, rss_bytes: r, last_update_unix_s: last, ..BalloonStats::default() };
        vm.max_memory_bytes = m;
        vm.read_at_unix_s = now;
        vm.device.stats_period_s = period;
        let fig = figures(&vm);
        if let (Some(used), Some(total)) = (fig.guest_used_bytes, t) {
            proptest::prop_assert!(used <= total);
        }
        let _ = diagnose(&vm);
    }
}
