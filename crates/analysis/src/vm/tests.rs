use memwarden_model::host::{ProcKsm, ProcessMem, SmapsRollup};
use memwarden_model::units::{KIB, MIB};
use memwarden_model::vm::{
    BalloonDevice, BalloonStats, ReadStatus, StatTag, TagUnit, VmRead, VmSample, VmState,
};

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
            ..BalloonDevice::default()
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
    // RSS − used (209,356 KiB) is less than free + cache: all of it may be idle guest memory.
    assert_eq!(
        f.host_backed_idle_bytes,
        Some((240_000 - (481_296 - 450_652)) * KIB)
    );
    assert_eq!(f.ksm_merged_bytes, Some(40_960));
    assert_eq!(f.stats_age_s, Some(2));
    assert!(diagnose(&vm).is_empty(), "{:?}", diagnose(&vm));
}

/// The guest without free page reporting after filling 200 MiB and dropping it: QEMU
/// keeps ~418 MiB resident for a guest that uses ~30 MiB. The idle part is capped by what the
/// guest holds free or as cache; what exceeds it is QEMU's own.
#[test]
fn host_backed_idle_is_the_overhead_the_guest_holds_free_or_as_cache() {
    let mut vm = healthy();
    vm.balloon.rss_bytes = Some(418 * MIB);
    let f = figures(&vm);
    let used = (481_296 - 450_652) * KIB;
    assert_eq!(f.host_backed_idle_bytes, Some(418 * MIB - used));
    // A guest that holds little free: the idle part is what it holds, the rest QEMU's.
    vm.balloon.unused_bytes = Some(100 * MIB);
    vm.balloon.disk_caches_bytes = Some(20 * MIB);
    assert_eq!(figures(&vm).host_backed_idle_bytes, Some(120 * MIB));
    // Free page reporting has handed the free part back already: only cache is left.
    vm.device.free_page_reporting = Some(true);
    assert_eq!(figures(&vm).host_backed_idle_bytes, Some(20 * MIB));
    vm.device.free_page_reporting = None;
    // Never read QEMU's RSS: unknown, not zero.
    vm.balloon.rss_bytes = None;
    assert_eq!(figures(&vm).host_backed_idle_bytes, None);
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
    vm.balloon.tags.push(StatTag {
        name: "usable".into(),
        value: u64::MAX / 1024,
        unit: TagUnit::Kib,
    });
    vm.balloon.usable_bytes = None;
    vm.balloon.unused_bytes = Some(900 * MIB);
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
        f.guest_used_legacy_bytes,
        Some(0),
        "free > total clamps to 0"
    );
}

#[test]
fn a_vm_that_was_not_read_says_so_and_nothing_else() {
    let mut vm = healthy();
    vm.read = VmRead {
        status: ReadStatus::TimedOut,
        reason: Some("not answering: nothing complete within 2000 ms".into()),
        duration_ms: 2000,
    };
    vm.balloon = BalloonStats::default();
    let d = diagnose(&vm);
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!(d[0].kind, FindingKind::NotRead);
    assert!(d[0].text.contains("not answering"), "{}", d[0].text);
}

#[test]
fn a_paused_vm_is_paused_not_stale() {
    let mut vm = healthy();
    vm.state = VmState::Paused;
    vm.read_at_unix_s += 600;
    let kinds: Vec<_> = diagnose(&vm).into_iter().map(|f| f.kind).collect();
    assert_eq!(kinds, [FindingKind::Paused]);
    vm.state = VmState::Running;
    let kinds: Vec<_> = diagnose(&vm).into_iter().map(|f| f.kind).collect();
    assert_eq!(kinds, [FindingKind::StaleStats]);
}

/// The real case from the issue: a deflate-on-oom guest shrunk from 512 to 384 MiB used
/// ~27 MiB, but MemTotal − MemAvailable also held the balloon's 128 MiB.
#[test]
fn deflate_on_oom_guest_used_leaves_out_the_balloon() {
    let mut vm = healthy();
    vm.device.autodeflate = Some(true);
    vm.balloon.actual_bytes = Some(384 * MIB);
    vm.balloon.available_bytes = Some(470 * MIB);
    vm.balloon.usable_bytes = Some(470 * MIB - 155 * MIB);
    let f = figures(&vm);
    assert_eq!(f.balloon_held_bytes, Some(128 * MIB));
    assert_eq!(f.guest_used_bytes, Some(27 * MIB));
    assert!(diagnose(&vm).is_empty(), "{:?}", diagnose(&vm));
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
