#![no_main]
//! `memwarden serve`'s TOML configuration (`Config::parse` of crates/daemon/src/config.rs,
//! compiled in here, what `serve` and SIGHUP run on the file): never a panic; an error names the file, and a TOML
//! error (syntax, unknown key, bad value) its line; a configuration that parses serializes
//! back to TOML that deserializes to the same configuration.

use std::path::Path;

use libfuzzer_sys::fuzz_target;

#[allow(dead_code)]
#[path = "../../crates/daemon/src/config.rs"]
mod config;

use config::Config;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = Path::new("/etc/memwarden/memwarden.toml");
    match Config::parse(text, path) {
        Err(e) => {
            let msg = format!("{e:#}");
            assert!(
                msg.contains("configuration /etc/memwarden/memwarden.toml"),
                "error without the file: {msg}"
            );
            if e.chain().any(|c| c.is::<toml::de::Error>()) {
                assert!(msg.contains("line "), "TOML error without a line: {msg}");
            }
        }
        Ok(cfg) => {
            // Serialization is no product path (nothing writes the file back), so only: what
            // parsed serializes, and that text deserializes to what serializes the same (the
            // durations' sub-millisecond part is dropped once: validation is not re-run).
            let back = toml::to_string(&cfg).expect("a parsed configuration serializes");
            let again: Config = toml::from_str(&back)
                .unwrap_or_else(|e| panic!("re-serialized configuration refused: {e}\n{back}"));
            assert_eq!(
                toml::to_string(&again).expect("serializes"),
                back,
                "serialize/deserialize round trip"
            );
            let _ = cfg.restart_needed(&again);
        }
    }
});
