#![no_main]
//! /sys/devices/system/node/nodeN/meminfo.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = memwarden_procfs::parse_node_meminfo(&String::from_utf8_lossy(data));
});
