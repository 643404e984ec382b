//! Is a balloon target safe? A pure check used by `memwarden setmem` (and, later, by the
//! automatic balloon policy): never above the VM's maximum, and never shrink a guest below what
//! it uses now plus a margin — judged only on statistics that are fresh and add up, because a
//! guest's numbers are untrusted input.

use std::fmt;

use memwarden_model::units::format_bytes;
use memwarden_model::vm::{ReadStatus, VmSample};

use super::{checks, diagnose, FindingKind};

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

/// The smallest safe target: guest use now (MemTotal − MemAvailable, else MemTotal − MemFree,
/// less what a deflate-on-oom balloon holds inside MemTotal), plus what the guest kernel keeps
/// out of MemTotal, plus `margin`.
pub fn floor(vm: &VmSample, margin: u64) -> Option<u64> {
    let stats = &vm.balloon;
    let total = stats.available_bytes?;
    let f = super::figures(vm);
    let used = f.guest_used_bytes.or(f.guest_used_legacy_bytes)?;
    // What the kernel keeps out of MemTotal: of the balloon's actual size, or of the VM's
    // whole RAM when the balloon's pages stay inside MemTotal (deflate-on-oom).
    let whole = if checks::deflate_on_oom(vm) {
        vm.max_memory_bytes.or(stats.actual_bytes)
    } else {
        stats.actual_bytes
    };
    let reserved = whole.unwrap_or(total).saturating_sub(total);
    Some(used.saturating_add(reserved).saturating_add(margin))
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
                | FindingKind::NotRead
                | FindingKind::Paused
        )
    });
    if let Some(f) = doubt {
        return Err(Refusal::Untrusted(f.text));
    }
    if let Some(why) = checks::problems(vm).into_iter().next() {
        return Err(Refusal::Untrusted(why));
    }
    if vm.read.status != ReadStatus::Ok {
        return Err(Refusal::Untrusted(format!(
            "not read: {}",
            vm.read.status.as_str()
        )));
    }
    let Some(floor) = floor(vm, margin) else {
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
            floor(&guest(), 100 * MIB),
            Some(USE_AND_RESERVE + 100 * MIB)
        );
        let mut empty = guest();
        empty.balloon = BalloonStats::default();
        assert_eq!(floor(&empty, 0), None);
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
        vm.balloon.tags.push(memwarden_model::vm::StatTag {
            name: "usable".into(),
            value: u64::MAX,
            unit: memwarden_model::vm::TagUnit::Kib,
        });
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
