#![no_main]
//! The HTTP API's request parsing: the query string of `/api/v1/series` and `/api/v1/leaks`
//! (deserialized as axum's `Query` does, with `serde_urlencoded`, then `since_ms` and
//! `series_filter` of crates/daemon/src/query.rs, compiled in here, which the handlers call)
//! and the `Accept-Encoding` value of a scrape (`accepts_gzip`). Never a panic; a range that is served starts at most
//! `[http] max_range` before now and never after it; filter names are trimmed, never empty.
//!
//! Input: the query string, then optionally a NUL and an `Accept-Encoding` value.

use std::time::Duration;

use libfuzzer_sys::fuzz_target;

#[allow(dead_code)]
#[path = "../../crates/daemon/src/query.rs"]
mod query;

use query::{accepts_gzip, series_filter, since_ms, RangeQuery};

/// A clock in 2026 and `[http] max_range`'s default (7 days).
const NOW_MS: u64 = 1_795_000_000_000;
const MAX: Duration = Duration::from_secs(7 * 86_400);

fuzz_target!(|data: &[u8]| {
    let (query, accept) = match data.iter().position(|b| *b == 0) {
        Some(i) => (&data[..i], Some(&data[i + 1..])),
        None => (data, None),
    };
    if let Some(a) = accept.and_then(|a| std::str::from_utf8(a).ok()) {
        let _ = accepts_gzip(Some(a));
    }
    let Ok(query) = std::str::from_utf8(query) else {
        return;
    };
    let Ok(q) = serde_urlencoded::from_str::<RangeQuery>(query) else {
        return;
    };
    let max_ms = u64::try_from(MAX.as_millis()).expect("fits");
    for (default, now) in [(Duration::from_secs(6 * 3600), NOW_MS), (MAX, 1)] {
        match since_ms(q.since.as_deref(), default, MAX, now) {
            Ok(since) => {
                assert!(since <= now, "range starts after now: {since} > {now}");
                assert!(
                    now - since <= max_ms,
                    "range longer than max_range: {since}..{now}"
                );
            }
            Err(e) => assert!(!e.is_empty()),
        }
    }
    let f = series_filter(&q);
    for name in &f.fields {
        assert!(
            !name.is_empty() && name.trim() == name,
            "filter name {name:?}"
        );
    }
    assert_eq!(f.vm, q.vm);
});
