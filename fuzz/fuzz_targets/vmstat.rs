#![no_main]
//! /proc/vmstat: never panics; one entry per non-blank line when it parses.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(v) = memwarden_procfs::parse_vmstat(&text) {
        assert_eq!(
            v.entries.len(),
            text.lines().filter(|l| !l.trim().is_empty()).count()
        );
    }
});
