//! What a request to the API asks for, parsed: the range and filter of `/api/v1/series` and
//! `/api/v1/leaks`, and whether a scrape accepts gzip. Pure functions of the request's text
//! (and the clock, passed in), called by the handlers in [`crate::http`]; the http_query fuzz
//! target compiles this file on its own.

use std::time::Duration;

use memwarden_analysis::series;
use memwarden_model::units::{format_duration, parse_duration};
use serde::Deserialize;

/// The query string of `/api/v1/series` and `/api/v1/leaks`, as axum's `Query` extractor
/// deserializes it (`serde_urlencoded`).
#[derive(Debug, Default, Deserialize)]
pub struct RangeQuery {
    /// How far back: `6h`, `30d` (default 6h).
    pub since: Option<String>,
    /// Series name prefixes or exact names, comma-separated (default: all).
    pub field: Option<String>,
    pub vm: Option<String>,
}

/// The start of the range `since` asks for, at `now_unix_ms`: `default` when absent, refused
/// (a 400's sentence) when it is not a duration or is longer than `max`.
pub fn since_ms(
    since: Option<&str>,
    default: Duration,
    max: Duration,
    now_unix_ms: u64,
) -> Result<u64, String> {
    let d = match since {
        Some(s) => parse_duration(s)?,
        None => default,
    };
    if d > max {
        return Err(format!(
            "since={} is longer than this daemon serves ({}, [http] max_range); \
             `memwarden history --since` and `memwarden leaks --since` read any range",
            since.unwrap_or_default(),
            format_duration(max)
        ));
    }
    Ok(now_unix_ms.saturating_sub(u64::try_from(d.as_millis()).unwrap_or(u64::MAX)))
}

/// The series filter `field` and `vm` ask for (empty names dropped).
pub fn series_filter(q: &RangeQuery) -> series::Filter {
    series::Filter {
        fields: q
            .field
            .as_deref()
            .map(|f| {
                f.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default(),
        vm: q.vm.clone(),
    }
}

/// Whether an `Accept-Encoding` value admits gzip (`gzip` or `*`, not at `q=0`), as
/// Prometheus sends it.
pub fn accepts_gzip(value: Option<&str>) -> bool {
    value.into_iter().flat_map(|v| v.split(',')).any(|item| {
        let mut parts = item.split(';').map(str::trim);
        let coding = parts.next().unwrap_or_default();
        let refused = parts.any(|p| {
            p.strip_prefix("q=")
                .and_then(|q| q.trim().parse::<f32>().ok())
                .is_some_and(|q| q <= 0.0)
        });
        (coding.eq_ignore_ascii_case("gzip") || coding == "*") && !refused
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gzip_is_sent_only_when_accepted() {
        assert!(accepts_gzip(Some("gzip")));
        assert!(accepts_gzip(Some("deflate, GZIP;q=0.5")));
        assert!(accepts_gzip(Some("*")));
        assert!(!accepts_gzip(Some("gzip;q=0")));
        assert!(!accepts_gzip(Some("identity, br")));
        assert!(!accepts_gzip(None));
    }
}
