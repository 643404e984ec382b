//! Is a balloon target safe? A pure check used by `memwarden setmem` (and, later, by the
//! automatic balloon policy): never above the VM's maximum, and never shrink a guest below what
//! it uses now plus a margin — judged only on statistics that are fresh and add up, because a
//! guest's numbers are untrusted input.

use std::fmt;

use memwarden_model::units::format_bytes;
use memwarden_model::vm::{BalloonStats, VmSample};

use super::{diagnose, FindingKind};

/// Why a target was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    AboveMax {
        target: u64,
        max: u64,
    },
    /// Shrinking needs trustworthy guest figures; these are missing, stale or do not add up.
    Untrusted(String),
    BelowFloor {
        target: u64,
        floor: u64,
        margin: u64,
    },
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::AboveMax { target, max } => write!(
                f,
                "{} is above the VM's maximum memory {}",
                format_bytes(*target),
                format_bytes(*max)
            ),
            Refusal::Untrusted(why) => {
                write!(
                    f,
                    "cannot shrink safely: the guest's current use cannot be trusted ({why})"
                )
            }
            Refusal::BelowFloor {
                target,
                floor,
                margin,
            } => write!(
                f,
                "{} is below the safety floor {} (the guest's current use, the memory its kernel \
                 keeps out of MemTotal, and a {} margin)",
                format_bytes(*target),
                format_bytes(*floor),
                format_bytes(*margin)
            ),
        }
    }
}

/// The smallest safe target: guest use now (MemTotal − MemAvailable, else MemTotal − MemFree),
/// plus what the guest kernel keeps out of MemTotal (actual − MemTotal), plus `margin`.
pub fn floor(stats: &BalloonStats, margin: u64) -> Option<u64> {
    let total = stats.available_bytes?;
    let avail = stats.usable_bytes.or(stats.unused_bytes)?;
    let used = total.saturating_sub(avail);
    let reserved = stats.actual_bytes.unwrap_or(total).saturating_sub(total);
    Some(used.saturating_add(reserved).saturating_add(margin))
}

/// The figures the floor is built from must add up: free ≤ total, usable ≤ total,
/// total ≤ actual ≤ max. Checked here again rather than trusting whoever built the sample.
fn implausible(vm: &VmSample) -> Option<String> {
    let b = &vm.balloon;
    let total = b.available_bytes?;
    if let Some(u) = b.unused_bytes.filter(|u| *u > total) {
        return Some(format!(
            "unused {} > available {}",
            format_bytes(u),
            format_bytes(total)
        ));
    }
    if let Some(u) = b.usable_bytes.filter(|u| *u > total) {
        return Some(format!(
            "usable {} > available {}",
            format_bytes(u),
            format_bytes(total)
        ));
    }
    if let Some(a) = b.actual_bytes.filter(|a| total > *a) {
        return Some(format!(
            "available {} > actual {}",
            format_bytes(total),
            format_bytes(a)
        ));
    }
    if let (Some(a), Some(m)) = (b.actual_bytes, vm.max_memory_bytes) {
        if a > m {
            return Some(format!(
                "actual {} > maximum {}",
                format_bytes(a),
                format_bytes(m)
            ));
        }
    }
    None
}

/// Accepts `target` (bytes) for `vm`, or says why not. Growing is always allowed up to the
/// maximum; shrinking needs fresh, consistent statistics and a target at or above [`floor`].
pub fn check_target(vm: &VmSample, target: u64, margin: u64) -> Result<(), Refusal> {
    if let Some(max) = vm.max_memory_bytes.filter(|m| target > *m) {
        return Err(Refusal::AboveMax { target, max });
    }
    let current = vm.balloon.actual_bytes.unwrap_or(u64::MAX);
    if target >= current {
        return Ok(());
    }
    let doubt = diagnose(vm).into_iter().find(|f| {
        matches!(
            f.kind,
            FindingKind::NoBalloonDevice
                | FindingKind::PollingOff
                | FindingKind::StaleStats
                | FindingKind::GuestDriverAbsent
                | FindingKind::UnsetValues
                | FindingKind::Inconsistent
        )
    });
    if let Some(f) = doubt {
        return Err(Refusal::Untrusted(f.text));
    }
    if let Some(why) = implausible(vm) {
        return Err(Refusal::Untrusted(why));
    }
    let Some(floor) = floor(&vm.balloon, margin) else {
        return Err(Refusal::Untrusted(
            "the guest reports no memory statistics".into(),
        ));
    };
    if target < floor {
        return Err(Refusal::BelowFloor {
            target,
            floor,
            margin,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use memwarden_model::units::{KIB, MIB};
    use memwarden_model::vm::{BalloonStats, VmSample};

    use super::*;

    /// The captured healthy 512 MiB guest: MemTotal 481296 KiB, MemAvailable 450652 KiB.
    fn guest() -> VmSample {
        super::super::tests::healthy()
    }

    /// used (481296 − 450652) + kept out of MemTotal (524288 − 481296), in bytes.
    const USE_AND_RESERVE: u64 = (481_296 - 450_652 + 524_288 - 481_296) * KIB;

    #[test]
    fn floor_counts_use_reserve_and_margin() {
        assert_eq!(
            floor(&guest().balloon, 100 * MIB),
            Some(USE_AND_RESERVE + 100 * MIB)
        );
        assert_eq!(floor(&BalloonStats::default(), 0), None);
    }

    #[test]
    fn shrinking_stops_at_the_floor_and_growing_at_max() {
        let vm = guest();
        let floor = USE_AND_RESERVE + 100 * MIB;
        assert_eq!(check_target(&vm, floor, 100 * MIB), Ok(()));
        assert_eq!(
            check_target(&vm, floor - 1, 100 * MIB),
            Err(Refusal::BelowFloor {
                target: floor - 1,
                floor,
                margin: 100 * MIB
            })
        );
        assert_eq!(
            check_target(&vm, 513 * MIB, 0),
            Err(Refusal::AboveMax {
                target: 513 * MIB,
                max: 512 * MIB
            })
        );
    }

    #[test]
    fn growing_needs_no_guest_figures() {
        let mut vm = guest();
        vm.balloon = BalloonStats {
            actual_bytes: Some(256 * MIB),
            ..BalloonStats::default()
        };
        vm.device.stats_period_s = Some(0);
        assert_eq!(check_target(&vm, 384 * MIB, 100 * MIB), Ok(()));
    }

    /// A guest that claims more usable memory than it has must not open the way to a squeeze.
    #[test]
    fn a_lying_guest_cannot_lower_the_floor() {
        let mut vm = guest();
        vm.balloon.usable_bytes = Some(4096 * MIB);
        assert!(matches!(
            check_target(&vm, 64 * MIB, 0),
            Err(Refusal::Untrusted(_))
        ));
        let mut vm = guest();
        vm.balloon.available_bytes = Some(600 * MIB);
        assert!(matches!(
            check_target(&vm, 64 * MIB, 0),
            Err(Refusal::Untrusted(_))
        ));
    }

    #[test]
    fn stale_off_or_missing_stats_refuse_a_shrink() {
        let mut vm = guest();
        vm.balloon.last_update_unix_s = vm.balloon.last_update_unix_s.map(|t| t - 3600);
        assert!(matches!(
            check_target(&vm, 300 * MIB, 0),
            Err(Refusal::Untrusted(_))
        ));
        let mut vm = guest();
        vm.device.stats_period_s = Some(0);
        assert!(matches!(
            check_target(&vm, 300 * MIB, 0),
            Err(Refusal::Untrusted(_))
        ));
        let mut vm = guest();
        vm.device.present = false;
        assert!(matches!(
            check_target(&vm, 300 * MIB, 0),
            Err(Refusal::Untrusted(_))
        ));
        let mut vm = guest();
        vm.balloon.unset.push("usable".into());
        assert!(matches!(
            check_target(&vm, 300 * MIB, 0),
            Err(Refusal::Untrusted(_))
        ));
    }

    proptest::proptest! {
        /// Whatever the guest reports, an accepted target never passes the maximum, and an
        /// accepted shrink is never below what the reported figures say is in use.
        #[test]
        fn accepted_targets_are_safe(
            actual in 0u64..(1 << 20), avail in 0u64..(1 << 20), usable in 0u64..(1 << 20),
            unused in 0u64..(1 << 20), target in 0u64..(1 << 20), margin in 0u64..(1 << 16),
        ) {
            let mut vm = guest();
            vm.balloon.actual_bytes = Some(actual * KIB);
            vm.balloon.available_bytes = Some(avail * KIB);
            vm.balloon.usable_bytes = Some(usable * KIB);
            vm.balloon.unused_bytes = Some(unused * KIB);
            if check_target(&vm, target * KIB, margin * KIB).is_ok() {
                proptest::prop_assert!(target * KIB <= 512 * MIB);
                if target < actual {
                    let used = avail.saturating_sub(usable);
                    proptest::prop_assert!(target >= used + margin);
                    proptest::prop_assert!(usable <= avail && unused <= avail && avail <= actual);
                }
            }
        }
    }
}
