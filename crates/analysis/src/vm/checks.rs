//! The checks on a guest's balloon statistics, which are untrusted input (a guest can lie, a
//! driver can leave a value unset). They live here, once, and run on read: a recorded sample is
//! judged by today's rules.
//!
//! The rules differ with deflate-on-oom (libvirt `autodeflate='on'`): such a guest does not
//! lower its MemTotal when the balloon inflates (the balloon's pages stay inside it, allocated),
//! so `available ≤ actual` does not hold for it; `available ≤ max` does.

use memwarden_model::units::{format_bytes, KIB};
use memwarden_model::vm::{TagUnit, VmSample};

/// Does this guest keep its MemTotal while the balloon inflates? Known from the device
/// (libvirt XML or the QOM property) when the backend read it.
pub fn deflate_on_oom(vm: &VmSample) -> bool {
    vm.device.autodeflate == Some(true)
}

/// Tags the guest left unset (2^64−1, or its KiB form).
pub fn unset(vm: &VmSample) -> Vec<String> {
    vm.balloon
        .tags
        .iter()
        .filter(|t| t.is_unset())
        .map(|t| t.name.clone())
        .collect()
}

/// What does not add up in the guest's figures, in plain words. Empty when all hold:
/// free ≤ total, usable ≤ total, cache ≤ total, actual ≤ max, total ≤ max, and total ≤ actual
/// unless the guest deflates on OOM.
pub fn problems(vm: &VmSample) -> Vec<String> {
    let b = &vm.balloon;
    let mut p = Vec::new();
    for t in &b.tags {
        if t.unit == TagUnit::Kib && !t.is_unset() && t.value.checked_mul(KIB).is_none() {
            p.push(format!(
                "{} = {} KiB overflows 64-bit bytes",
                t.name, t.value
            ));
        }
    }
    let total = b.available_bytes;
    if let Some(t) = total {
        for (name, v) in [
            ("free (unused)", b.unused_bytes),
            ("usable", b.usable_bytes),
            ("disk_caches", b.disk_caches_bytes),
        ] {
            if let Some(v) = v.filter(|v| *v > t) {
                p.push(format!(
                    "{name} {} exceeds the guest's total (available) {}",
                    format_bytes(v),
                    format_bytes(t)
                ));
            }
        }
        if !deflate_on_oom(vm) {
            if let Some(a) = b.actual_bytes.filter(|a| t > *a) {
                p.push(format!(
                    "guest total (available) {} exceeds the balloon's actual {} (and the \
                     balloon does not deflate on OOM, so the guest should have shrunk)",
                    format_bytes(t),
                    format_bytes(a)
                ));
            }
        }
    }
    if let Some(max) = vm.max_memory_bytes {
        for (name, v) in [("actual", b.actual_bytes), ("available", total)] {
            if let Some(v) = v.filter(|v| *v > max) {
                p.push(format!(
                    "{name} {} exceeds the VM's maximum memory {}",
                    format_bytes(v),
                    format_bytes(max)
                ));
            }
        }
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;
    use memwarden_model::units::MIB;
    use memwarden_model::vm::StatTag;

    fn vm() -> VmSample {
        super::super::tests::healthy()
    }

    #[test]
    fn a_healthy_guest_has_no_problems() {
        assert_eq!(problems(&vm()), Vec::<String>::new());
        assert!(unset(&vm()).is_empty());
    }

    #[test]
    fn each_lie_is_named() {
        let mut v = vm();
        v.balloon.unused_bytes = Some(900 * MIB);
        v.balloon.actual_bytes = Some(400 * MIB);
        v.max_memory_bytes = Some(350 * MIB);
        v.balloon.tags.push(StatTag {
            name: "rss".into(),
            value: u64::MAX - 1,
            unit: TagUnit::Kib,
        });
        let all = problems(&v).join("\n");
        assert!(all.contains("free (unused)"), "{all}");
        assert!(all.contains("exceeds the balloon's actual"), "{all}");
        assert!(all.contains("maximum memory"), "{all}");
        assert!(all.contains("overflows"), "{all}");
    }

    /// A deflate-on-oom guest ballooned from 512 to 384 MiB keeps MemTotal: not a lie.
    #[test]
    fn deflate_on_oom_guest_keeps_its_total() {
        let mut v = vm();
        v.balloon.actual_bytes = Some(384 * MIB);
        assert!(
            !problems(&v).is_empty(),
            "without autodeflate it does not add up"
        );
        v.device.autodeflate = Some(true);
        assert_eq!(problems(&v), Vec::<String>::new());
        v.balloon.available_bytes = Some(600 * MIB);
        assert!(
            !problems(&v).is_empty(),
            "total above max is a lie for any guest"
        );
    }

    #[test]
    fn unset_tags_are_listed() {
        let mut v = vm();
        v.balloon.tags.push(StatTag {
            name: "usable".into(),
            value: u64::MAX / 1024,
            unit: TagUnit::Kib,
        });
        assert_eq!(unset(&v), ["usable"]);
    }
}
