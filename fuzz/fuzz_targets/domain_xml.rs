#![no_main]
//! A libvirt domain XML (`virsh dumpxml`, `DOMAIN_GET_XML_DESC`'s reply): `domain_xml::parse`
//! never panics, and every size it returns is a byte count of 64 bits expressed in KiB
//! (its `Overflow` error refuses the rest); a balloon has a period exactly when present.

use libfuzzer_sys::fuzz_target;
use memwarden_libvirt::domain_xml;

fuzz_target!(|data: &[u8]| {
    let Ok(xml) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(d) = domain_xml::parse(xml) else {
        return;
    };
    let max_kib = u64::MAX.div_ceil(1024);
    for (what, kib) in [
        ("memory", d.memory_kib),
        ("currentMemory", d.current_memory_kib),
        ("maxMemory", d.max_memory_kib),
        ("min_guarantee", d.min_guarantee_kib),
        ("hard_limit", d.hard_limit_kib),
        ("soft_limit", d.soft_limit_kib),
    ] {
        if let Some(k) = kib {
            assert!(k <= max_kib, "<{what}> {k} KiB is more than 2^64 bytes");
        }
    }
    // Balloon::stats_period_s: `None` without a balloon, a number with one.
    assert_eq!(d.balloon.stats_period_s.is_some(), d.balloon.present);
});
