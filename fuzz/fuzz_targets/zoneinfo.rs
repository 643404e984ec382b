#![no_main]
//! /proc/zoneinfo: never panics; sums saturate; a parsed file starts with a zone header, so
//! every pcp list belongs to a zone.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(z) = memwarden_procfs::parse_zoneinfo(&String::from_utf8_lossy(data)) {
        let per_zone: u64 = z
            .zones
            .iter()
            .flat_map(|zone| &zone.pcp)
            .fold(0u64, |a, p| a.saturating_add(p.count_pages));
        assert_eq!(per_zone, z.pcp_free_pages());
        let _ = z.managed_pages();
        assert!(z.zones.iter().all(|zone| !zone.name.is_empty()));
    }
});
