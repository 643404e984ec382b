#![no_main]
//! /proc/PID/ksm_stat and ksm_merging_pages: never panic; every line kept.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(k) = memwarden_procfs::parse_ksm_stat(&text) {
        assert_eq!(
            k.fields.len(),
            text.lines().filter(|l| !l.trim().is_empty()).count()
        );
    }
    let _ = memwarden_procfs::parse_ksm_merging_pages(&text);
});
