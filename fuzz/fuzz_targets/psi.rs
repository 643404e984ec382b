#![no_main]
//! /proc/pressure/memory: never panics; averages are finite percentages.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = memwarden_procfs::parse_psi(&String::from_utf8_lossy(data)) {
        for l in std::iter::once(p.some).chain(p.full) {
            for a in [l.avg10, l.avg60, l.avg300] {
                assert!((0.0..=100.0).contains(&a), "{a}");
            }
        }
    }
});
