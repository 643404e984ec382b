//! Balloon statistic names and units: libvirt's tags, QMP's `stat-*` names, and the checks on
//! the guest's numbers.
//!
//! libvirt form: sizes in KiB, counts as counts, `last_update` in Unix seconds. QMP reports
//! sizes in bytes; libvirt divides them by 1024 (`qemuMonitorJSONGetMemoryStats`), and so do we
//! when building the libvirt form. An unset statistic is 2^64−1 on the wire.

use memwarden_model::units::KIB;
use memwarden_model::vm::{BalloonStats, StatTag, TagUnit};

/// 2^64−1: QEMU's "this statistic was not reported" value.
pub const UNSET: u64 = u64::MAX;

/// libvirt's `virDomainMemoryStatTags` numbers, in enum order, with `virsh dommemstat`'s names.
pub const LIBVIRT_TAGS: [(&str, TagUnit); 13] = [
    ("swap_in", TagUnit::Kib),
    ("swap_out", TagUnit::Kib),
    ("major_fault", TagUnit::Count),
    ("minor_fault", TagUnit::Count),
    ("unused", TagUnit::Kib),
    ("available", TagUnit::Kib),
    ("actual", TagUnit::Kib),
    ("rss", TagUnit::Kib),
    ("usable", TagUnit::Kib),
    ("last_update", TagUnit::UnixSeconds),
    ("disk_caches", TagUnit::Kib),
    ("hugetlb_pgalloc", TagUnit::Count),
    ("hugetlb_pgfail", TagUnit::Count),
];

/// libvirt's tag from its number; unknown numbers become `tag_N` with the raw value kept.
pub fn libvirt_tag(number: u32, value: u64) -> StatTag {
    match LIBVIRT_TAGS.get(number as usize) {
        Some((name, unit)) => StatTag {
            name: (*name).to_string(),
            value,
            unit: *unit,
        },
        None => StatTag {
            name: format!("tag_{number}"),
            value,
            unit: TagUnit::Raw,
        },
    }
}

/// The bulk API's `balloon.*` field names (virConnectGetAllDomainStats) → libvirt tag names.
/// `balloon.current` is `actual`; `balloon.maximum` is max memory, not a memory-stat tag.
pub fn bulk_field_tag(field: &str) -> Option<&'static str> {
    let rest = field.strip_prefix("balloon.")?;
    Some(match rest {
        "current" => "actual",
        "last-update" => "last_update",
        other => LIBVIRT_TAGS.iter().find(|(n, _)| *n == other)?.0,
    })
}

/// Unit of a known libvirt tag name (`Raw` for names we do not know).
pub fn unit_of(name: &str) -> TagUnit {
    LIBVIRT_TAGS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, u)| *u)
        .or_else(|| {
            NEWER
                .iter()
                .any(|(_, n)| *n == name)
                .then_some(TagUnit::Count)
        })
        .unwrap_or(TagUnit::Raw)
}

/// QMP `guest-stats` names → libvirt names, in the order libvirt emits them, and whether the
/// value is bytes (shown as KiB in libvirt form).
pub const QMP_STATS: [(&str, &str, bool); 10] = [
    ("stat-swap-in", "swap_in", true),
    ("stat-swap-out", "swap_out", true),
    ("stat-major-faults", "major_fault", false),
    ("stat-minor-faults", "minor_fault", false),
    ("stat-free-memory", "unused", true),
    ("stat-total-memory", "available", true),
    ("stat-available-memory", "usable", true),
    ("stat-disk-caches", "disk_caches", true),
    ("stat-htlb-pgalloc", "hugetlb_pgalloc", false),
    ("stat-htlb-pgfail", "hugetlb_pgfail", false),
];

/// Newer QEMU stats (QEMU 9.x, Linux 6.12 guests): counts. libvirt has no tag for them; we name
/// them without the `stat-` prefix and with underscores.
pub const NEWER: [(&str, &str); 6] = [
    ("stat-oom-kills", "oom_kills"),
    ("stat-alloc-stalls", "alloc_stalls"),
    ("stat-async-scans", "async_scans"),
    ("stat-direct-scans", "direct_scans"),
    ("stat-async-reclaims", "async_reclaims"),
    ("stat-direct-reclaims", "direct_reclaims"),
];

/// Converts QMP `guest-stats` (name → raw u64, as QEMU sends them) into libvirt-form tags, in
/// libvirt's order: known stats first, then the newer ones, then unknown names kept verbatim.
/// `actual_bytes` comes from `query-balloon`; `last_update` from guest-stats' `last-update`;
/// `rss_kib` from the QEMU process (libvirt appends it after the guest's stats).
pub fn qmp_to_tags(
    actual_bytes: Option<u64>,
    stats: &[(String, u64)],
    last_update: Option<u64>,
    rss_kib: Option<u64>,
) -> Vec<StatTag> {
    let mut out = Vec::new();
    if let Some(a) = actual_bytes {
        out.push(tag("actual", a / KIB, TagUnit::Kib));
    }
    let get = |n: &str| stats.iter().find(|(k, _)| k == n).map(|(_, v)| *v);
    for (qmp, lv, bytes) in QMP_STATS {
        if let Some(v) = get(qmp) {
            let (val, unit) = if bytes && v != UNSET {
                (v / KIB, TagUnit::Kib)
            } else if bytes {
                (v, TagUnit::Kib)
            } else {
                (v, TagUnit::Count)
            };
            out.push(tag(lv, val, unit));
        }
        // libvirt emits last_update between usable and disk_caches.
        if lv == "usable" {
            if let Some(t) = last_update {
                out.push(tag("last_update", t, TagUnit::UnixSeconds));
            }
        }
    }
    if let Some(r) = rss_kib {
        // libvirt: after usable/last_update/disk_caches/hugetlb come from the monitor, rss last.
        out.push(tag("rss", r, TagUnit::Kib));
    }
    for (qmp, name) in NEWER {
        if let Some(v) = get(qmp) {
            out.push(tag(name, v, TagUnit::Count));
        }
    }
    for (k, v) in stats {
        let known = QMP_STATS.iter().any(|(q, _, _)| q == k) || NEWER.iter().any(|(q, _)| q == k);
        if !known {
            out.push(tag(k, *v, TagUnit::Raw));
        }
    }
    out
}

fn tag(name: &str, value: u64, unit: TagUnit) -> StatTag {
    StatTag {
        name: name.to_string(),
        value,
        unit,
    }
}

/// Builds typed [`BalloonStats`] from libvirt-form tags, exactly as reported. Never fails and
/// judges nothing: a tag left unset (2^64−1) or too large for bytes stays only in `tags`; the
/// checks on the guest's numbers live in `memwarden-analysis` (`vm::checks`).
pub fn balloon_from_tags(tags: Vec<StatTag>) -> BalloonStats {
    let mut b = BalloonStats::default();
    for t in &tags {
        if t.is_unset() {
            continue;
        }
        let kib = || t.value.checked_mul(KIB);
        let slot = match t.name.as_str() {
            "actual" => (&mut b.actual_bytes, kib()),
            "swap_in" => (&mut b.swap_in_bytes, kib()),
            "swap_out" => (&mut b.swap_out_bytes, kib()),
            "major_fault" => (&mut b.major_faults, Some(t.value)),
            "minor_fault" => (&mut b.minor_faults, Some(t.value)),
            "unused" => (&mut b.unused_bytes, kib()),
            "available" => (&mut b.available_bytes, kib()),
            "usable" => (&mut b.usable_bytes, kib()),
            "rss" => (&mut b.rss_bytes, kib()),
            "last_update" => (&mut b.last_update_unix_s, Some(t.value)),
            "disk_caches" => (&mut b.disk_caches_bytes, kib()),
            "hugetlb_pgalloc" => (&mut b.hugetlb_pgalloc, Some(t.value)),
            "hugetlb_pgfail" => (&mut b.hugetlb_pgfail, Some(t.value)),
            "oom_kills" => (&mut b.oom_kills, Some(t.value)),
            "alloc_stalls" => (&mut b.alloc_stalls, Some(t.value)),
            "async_scans" => (&mut b.async_scans, Some(t.value)),
            "direct_scans" => (&mut b.direct_scans, Some(t.value)),
            "async_reclaims" => (&mut b.async_reclaims, Some(t.value)),
            "direct_reclaims" => (&mut b.direct_reclaims, Some(t.value)),
            _ => continue,
        };
        *slot.0 = slot.1;
    }
    b.tags = tags;
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(v: &[(&str, u64)]) -> Vec<(String, u64)> {
        v.iter().map(|(k, v)| (k.to_string(), *v)).collect()
    }

    #[test]
    fn libvirt_numbers_map_to_virsh_names() {
        assert_eq!(libvirt_tag(4, 1).name, "unused");
        assert_eq!(libvirt_tag(6, 1).name, "actual");
        assert_eq!(libvirt_tag(9, 1).unit, TagUnit::UnixSeconds);
        assert_eq!(libvirt_tag(12, 1).name, "hugetlb_pgfail");
        let unknown = libvirt_tag(13, 77);
        assert_eq!((unknown.name.as_str(), unknown.value), ("tag_13", 77));
    }

    #[test]
    fn bulk_fields_map() {
        assert_eq!(bulk_field_tag("balloon.current"), Some("actual"));
        assert_eq!(bulk_field_tag("balloon.last-update"), Some("last_update"));
        assert_eq!(bulk_field_tag("balloon.disk_caches"), Some("disk_caches"));
        assert_eq!(bulk_field_tag("balloon.maximum"), None);
        assert_eq!(bulk_field_tag("state.state"), None);
    }

    #[test]
    fn qmp_bytes_become_kib_in_libvirt_order_and_unknowns_are_kept() {
        let s = stats(&[
            ("stat-total-memory", 491_806_720),
            ("stat-free-memory", 463_282_176),
            ("stat-available-memory", 462_995_456),
            ("stat-swap-in", 0),
            ("stat-major-faults", 12),
            ("stat-disk-caches", UNSET),
            ("stat-oom-kills", 3),
            ("stat-brand-new", 9),
        ]);
        let tags = qmp_to_tags(Some(512 << 20), &s, Some(1_700_000_000), Some(1000));
        let names: Vec<_> = tags.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "actual",
                "swap_in",
                "major_fault",
                "unused",
                "available",
                "usable",
                "last_update",
                "disk_caches",
                "rss",
                "oom_kills",
                "stat-brand-new"
            ]
        );
        assert_eq!(tags[0].value, 524_288);
        assert_eq!(tags[4].value, 480_280);
        assert_eq!(tags[2].value, 12);
        let b = balloon_from_tags(tags);
        assert_eq!(b.available_bytes, Some(480_280 * 1024));
        assert_eq!(b.disk_caches_bytes, None);
        assert!(b
            .tags
            .iter()
            .any(|t| t.name == "disk_caches" && t.is_unset()));
        assert_eq!(b.oom_kills, Some(3));
        assert_eq!(b.tags.last().map(|t| t.unit), Some(TagUnit::Raw));
    }

    #[test]
    fn unset_and_overflowing_values_stay_out_of_the_typed_fields() {
        let tags = vec![
            tag("actual", 400_000, TagUnit::Kib),
            tag("usable", u64::MAX / 1024, TagUnit::Kib),
            tag("rss", u64::MAX - 1, TagUnit::Kib),
        ];
        let b = balloon_from_tags(tags);
        assert_eq!(b.actual_bytes, Some(400_000 * 1024));
        assert_eq!(b.usable_bytes, None);
        assert_eq!(b.rss_bytes, None);
        assert_eq!(b.tags.len(), 3);
    }
}
