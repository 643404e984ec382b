#![no_main]
//! /proc/meminfo: never panics; whatever parses renders back to the same entries.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(m) = memwarden_procfs::parse_meminfo(&text) {
        let again = memwarden_procfs::parse_meminfo(&memwarden_procfs::render_meminfo(&m))
            .expect("rendered meminfo parses");
        assert_eq!(again, m, "render/parse roundtrip");
    }
});
