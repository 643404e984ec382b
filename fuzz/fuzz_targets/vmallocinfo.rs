#![no_main]
//! /proc/vmallocinfo: never panics; at most 20 callers, largest first, symbols without offsets.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(v) = memwarden_procfs::parse_vmallocinfo(&String::from_utf8_lossy(data)) {
        assert!(v.top_callers.len() <= 20);
        assert!(v.top_callers.windows(2).all(|w| w[0].bytes >= w[1].bytes));
        assert!(v.top_callers.iter().all(|c| !c.caller.contains('+')));
        let records: u64 = v.top_callers.iter().map(|c| c.records).sum();
        assert!(records <= v.vmalloc_records);
    }
});
