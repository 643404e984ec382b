#![no_main]
//! /proc/PID/smaps_rollup and the /proc/PID/smaps fallback: never panic; lifted fields agree
//! with the kept ones.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    for r in [
        memwarden_procfs::parse_smaps_rollup(&text),
        memwarden_procfs::parse_smaps(&text),
    ]
    .into_iter()
    .flatten()
    {
        let get = |k: &str| r.fields.iter().find(|(f, _)| f == k).map(|(_, v)| *v);
        assert_eq!(get("Rss").unwrap_or(0), r.rss);
        assert_eq!(get("Pss").unwrap_or(0), r.pss);
        assert_eq!(get("Pss_Anon"), r.pss_anon);
    }
});
