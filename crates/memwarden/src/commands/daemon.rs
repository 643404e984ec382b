//! `serve`, `history` and `leaks`: the daemon and the two readers of what it recorded.

use std::fmt::Write as _;
use std::time::Duration;

use anyhow::{Context, Result};
use memwarden_analysis::{leaks as leak_finder, series};
use memwarden_model::clock::now_unix_ms;
use memwarden_model::units::format_bytes;
use memwarden_model::Sample;
use memwarden_store::Store;

use super::{print, print_json};
use crate::cli::{DbArgs, HistoryArgs, LeaksArgs, ServeArgs};

pub fn serve(a: &ServeArgs) -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("MEMWARDEN_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let (cfg, path) = super::settings::serve(a)?;
    memwarden_daemon::serve(cfg, path)
}

/// What a history command read: how many samples, their first and last times, and the series
/// `filter` selects (folded one sample at a time: a week of whole samples would take GiBs).
struct Read {
    samples: usize,
    first_ms: Option<u64>,
    last_ms: Option<u64>,
    series: Vec<series::Series>,
}

fn read(db: &DbArgs, default_since: Duration, filter: series::Filter) -> Result<Read> {
    let since = db.since.unwrap_or(default_since);
    let from = now_unix_ms().saturating_sub(u64::try_from(since.as_millis()).unwrap_or(u64::MAX));
    let store = Store::open_read_only(&db.db)
        .with_context(|| format!("opening the history {}", db.db.display()))?;
    let mut b = series::SeriesBuilder::new(filter);
    let (mut first_ms, mut last_ms) = (None::<u64>, None::<u64>);
    let samples = store
        .range_each(
            from,
            u64::MAX,
            |s: &Sample| s.taken_at_unix_ms,
            |s| {
                let t = s.taken_at_unix_ms;
                first_ms = Some(first_ms.map_or(t, |f| f.min(t)));
                last_ms = Some(last_ms.map_or(t, |l| l.max(t)));
                b.push(&s);
            },
        )
        .with_context(|| format!("reading the history {}", db.db.display()))?;
    Ok(Read {
        samples,
        first_ms,
        last_ms,
        series: b.finish(),
    })
}

pub(crate) fn iso(ms: u64) -> String {
    // UTC, seconds: enough for series and free of a time-zone database.
    let s = ms / 1000;
    let (days, rem) = (s / 86_400, s % 86_400);
    // Civil-from-days (Howard Hinnant's algorithm), for 1970-01-01 onwards.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

pub fn history(a: &HistoryArgs) -> Result<()> {
    let filter = series::Filter {
        fields: a.field.clone(),
        vm: a.vm.clone(),
    };
    let read = read(&a.db, Duration::from_secs(6 * 3600), filter)?;
    let all = read.series;
    if a.json {
        return print_json(&all);
    }
    let mut out = String::new();
    if a.csv {
        out.push_str("time,series,value\n");
        for s in &all {
            let key = s.key.to_string().replace('"', "\"\"");
            for (t, v) in &s.points {
                let _ = writeln!(out, "{},\"{key}\",{v}", iso(*t));
            }
        }
        return print(&out);
    }
    if a.field.is_empty() {
        let _ = writeln!(
            out,
            "{} samples from {}; {} series (pick with --field NAME_OR_PREFIX):",
            read.samples,
            a.db.db.display(),
            all.len()
        );
        for s in &all {
            let _ = writeln!(out, "  {}", s.key);
        }
        return print(&out);
    }
    for s in &all {
        let _ = writeln!(out, "{} ({} points)", s.key, s.points.len());
        for (t, v) in &s.points {
            let shown = if s.key.name.starts_with("psi.") || s.key.name.ends_with("faults") {
                format!("{v}")
            } else {
                format_bytes(v.max(0.0) as u64)
            };
            let _ = writeln!(out, "  {}  {shown}", iso(*t));
        }
    }
    if all.is_empty() {
        let _ = writeln!(
            out,
            "no series matches {:?} in {} samples",
            a.field, read.samples
        );
    }
    print(&out)
}

pub fn leaks(a: &LeaksArgs) -> Result<()> {
    let read = read(&a.db, Duration::from_secs(24 * 3600), leak_finder::filter())?;
    let cfg = leak_finder::LeakConfig {
        min_span_ms: u64::try_from(a.min_span.as_millis()).unwrap_or(u64::MAX),
        ..leak_finder::LeakConfig::default()
    };
    let found = leak_finder::find_in(read.series, &cfg);
    if a.json {
        return print_json(&found);
    }
    let mut out = String::new();
    let span = match (read.first_ms, read.last_ms) {
        (Some(f), Some(l)) => format!("{} to {}", iso(f), iso(l)),
        _ => "nothing recorded".into(),
    };
    let _ = writeln!(out, "{} samples, {span}", read.samples);
    if found.is_empty() {
        out.push_str("nothing grew steadily.\n");
    }
    for (i, l) in found.iter().enumerate() {
        let _ = writeln!(
            out,
            "{:>2}. {}  +{} ({}/h, fit r² {:.2})\n    look next: {}",
            i + 1,
            l.what,
            format_bytes(l.growth_bytes.max(0) as u64),
            format_bytes(l.slope_bytes_per_hour.max(0.0) as u64),
            l.r2,
            l.look_next
        );
    }
    print(&out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn iso_dates() {
        assert_eq!(super::iso(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::iso(951_782_400_000), "2000-02-29T00:00:00Z");
        assert_eq!(super::iso(1_795_000_000_000), "2026-11-18T11:06:40Z");
    }
}
