#![no_main]
//! /proc/PID/status.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = memwarden_procfs::parse_status(&String::from_utf8_lossy(data));
});
