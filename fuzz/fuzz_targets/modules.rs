#![no_main]
//! /proc/modules: never panics, and every parsed module has a name.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(mods) = memwarden_procfs::parse_modules(&String::from_utf8_lossy(data)) {
        for m in mods {
            assert!(!m.name.is_empty());
        }
    }
});
