//! The wall clock as every sample, record and event stamps it: Unix time in milliseconds.
//!
//! One helper so that "now" means the same everywhere; a clock set before 1970 reads as 0 and
//! one past `u64::MAX` ms as `u64::MAX` (neither is an error a caller could act on).

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch, now.
pub fn now_unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Whole seconds since the Unix epoch, now.
pub fn now_unix_s() -> u64 {
    now_unix_ms() / 1000
}
