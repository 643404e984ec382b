#![no_main]
//! /proc/modules: never panics; the footprint covers the size.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(mods) = memwarden_procfs::parse_modules(&String::from_utf8_lossy(data)) {
        for m in mods {
            assert!(memwarden_procfs::vmalloc_footprint(m.size_bytes) >= m.size_bytes);
        }
    }
});
