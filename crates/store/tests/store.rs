//! The store end to end on real files: round trip, tiers, retention, read-only handles,
//! concurrent maintenance. (Crash and full-disk tests are in their own files.)

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use memwarden_model::host::{HostSample, Meminfo, MeminfoEntry, MeminfoUnit};
use memwarden_model::Sample;
use memwarden_store::{ErrorKind, Retention, Store};

/// A small sample whose MemFree is `free`: tier tests need thousands of them.
pub fn small(ts: u64, free: u64) -> Sample {
    let entry = |key: &str, value| MeminfoEntry {
        key: key.into(),
        value,
        unit: MeminfoUnit::Bytes,
    };
    Sample {
        taken_at_unix_ms: ts,
        host: HostSample {
            meminfo: Meminfo {
                entries: vec![entry("MemTotal", 1 << 30), entry("MemFree", free)],
            },
            ..HostSample::default()
        },
        ..Sample::default()
    }
}

fn json(s: &Sample) -> serde_json::Value {
    serde_json::to_value(s).expect("serialize")
}

fn free(s: &Sample) -> u64 {
    s.host.meminfo.get("MemFree").expect("MemFree")
}

const T0: u64 = 1_700_000_000_000 / 86_400_000 * 86_400_000; // a UTC midnight
const HOUR: u64 = 3_600_000;

#[test]
fn round_trip_keeps_every_field() {
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("a/b/history.db"); // directories are created
    let mut store = Store::open(&path).expect("open");
    assert!(store.latest().expect("latest").is_none());
    let mut gen = common::Generator::new(T0, 7);
    let samples: Vec<Sample> = (0..3).map(|_| gen.next_sample()).collect();
    for s in &samples {
        store.append(s).expect("append");
    }
    let latest = store.latest().expect("latest").expect("some");
    assert_eq!(json(&latest), json(&samples[2]));
    let got = store.range(0, u64::MAX).expect("range");
    assert_eq!(
        got.iter().map(json).collect::<Vec<_>>(),
        samples.iter().map(json).collect::<Vec<_>>()
    );
    // Compacted into a block, still the same samples.
    let r = store
        .maintain(T0 + 24 * HOUR, &Retention::default())
        .expect("maintain");
    assert_eq!(r.samples_compacted, 3);
    let got = store.range(0, u64::MAX).expect("range");
    assert_eq!(
        got.iter().map(json).collect::<Vec<_>>(),
        samples.iter().map(json).collect::<Vec<_>>()
    );
    assert_eq!(
        json(&store.latest().expect("latest").expect("some")),
        json(&samples[2])
    );
    assert!(store.check_integrity().expect("check").is_empty());
}

fn short_retention() -> Retention {
    Retention {
        full: Duration::from_millis(HOUR),
        minute: Duration::from_millis(3 * HOUR),
        hour: Duration::from_millis(48 * HOUR),
    }
}

/// Six hours of samples 10 s apart, MemFree = index × 1000.
fn six_hours(store: &mut Store) -> u64 {
    let n = 6 * 360;
    for i in 0..n {
        store
            .append(&small(T0 + i * 10_000, i * 1000))
            .expect("append");
    }
    T0 + (n - 1) * 10_000
}

#[test]
fn range_reads_each_period_at_the_finest_tier_kept() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut store = Store::open(&dir.path().join("h.db")).expect("open");
    let last = six_hours(&mut store);
    let now = last + 10_000; // 6 h after T0
    let r = store.maintain(now, &short_retention()).expect("maintain");
    // Hours 0-1 are older than 3 h... to hour means only when their whole day is: not yet.
    // Full kept for the last hour (5-6), minutes for hours 0-5 (the day is not due for hours).
    assert_eq!(r.samples_compacted, 2160);
    assert_eq!(r.samples_downsampled_to_minute, 5 * 360);
    assert_eq!(r.minute_samples_written, 5 * 60);
    let got = store.range(0, u64::MAX).expect("range");
    assert_eq!(got.len(), 5 * 60 + 360);
    assert!(got
        .windows(2)
        .all(|w| w[0].taken_at_unix_ms < w[1].taken_at_unix_ms));
    // Minute k holds samples 6k..6k+5: mean MemFree (6k + 2.5) × 1000, time at its middle.
    let m = &got[7];
    assert_eq!(free(m), (6 * 7) * 1000 + 2500);
    assert_eq!(m.taken_at_unix_ms, T0 + 7 * 60_000 + 25_000);
    // The last hour is every sample.
    assert_eq!(free(got.last().expect("last")), 2159 * 1000);
    assert_eq!(got[300].taken_at_unix_ms, T0 + 5 * HOUR);

    // Two days on, the day is due for hour means: one per hour, 6 of them.
    let r = store
        .maintain(T0 + 30 * HOUR, &short_retention())
        .expect("maintain");
    assert_eq!(r.hour_samples_written, 6);
    let got = store.range(0, u64::MAX).expect("range");
    assert_eq!(got.len(), 6);
    // Hour 2 is the mean of its minutes, which are means of its samples: 720..1079 → 899.5.
    assert_eq!(free(&got[2]), 899_500);
    let sub = store.range(T0 + 2 * HOUR, T0 + 4 * HOUR).expect("range");
    assert_eq!(sub.len(), 2, "hour means lie at each hour's middle");
    assert!(store.check_integrity().expect("check").is_empty());
}

#[test]
fn retention_deletes_old_data() {
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("h.db");
    let mut store = Store::open(&path).expect("open");
    six_hours(&mut store);
    store
        .maintain(T0 + 7 * HOUR, &short_retention())
        .expect("maintain");
    let before = store.stats().expect("stats");
    let r = store
        .maintain(T0 + 100 * HOUR, &short_retention())
        .expect("maintain");
    assert_eq!(r.samples_expired, 6);
    assert!(store.range(0, u64::MAX).expect("range").is_empty());
    assert!(store.latest().expect("latest").is_none());
    let after = store.stats().expect("stats");
    assert!(after.tiers.iter().all(|t| t.rows == 0), "{after:?}");
    assert_eq!(after.oldest_unix_ms, None);
    assert!(before.file_bytes > 0);
}

#[test]
fn read_only_handle_refuses_writes_clearly_and_still_reads() {
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("h.db");
    let mut w = Store::open(&path).expect("open");
    w.append(&small(T0, 1)).expect("append");
    let mut ro = Store::open_read_only(&path).expect("open ro");
    let e = ro.append(&small(T0 + 1, 2)).expect_err("read-only append");
    assert_eq!(e.kind(), ErrorKind::ReadOnly);
    let msg = e.to_string();
    assert!(msg.contains("h.db") && msg.contains("read-only"), "{msg}");
    assert_eq!(
        ro.maintain(T0, &Retention::default())
            .expect_err("ro")
            .kind(),
        ErrorKind::ReadOnly
    );
    // The writer goes on; the reader sees its commits.
    w.append(&small(T0 + 2, 3)).expect("append");
    assert_eq!(ro.range(0, u64::MAX).expect("range").len(), 2);
    assert!(Store::open_read_only(&dir.path().join("missing.db")).is_err());
}

#[test]
fn maintain_on_a_second_handle_never_fails_an_append() {
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("h.db");
    let mut writer = Store::open(&path).expect("open");
    let mut maintainer = Store::open(&path).expect("open second");
    let newest = Arc::new(AtomicU64::new(T0));
    let done = Arc::new(AtomicBool::new(false));
    let (n2, d2) = (newest.clone(), done.clone());
    let maint = std::thread::spawn(move || {
        let mut passes = 0u32;
        let mut compacted = 0u64;
        while !d2.load(Ordering::SeqCst) || passes == 0 {
            // Full resolution for 30 min only, so minute downsampling runs too.
            let ret = Retention {
                full: Duration::from_secs(1800),
                ..Retention::default()
            };
            let r = maintainer
                .maintain(n2.load(Ordering::SeqCst), &ret)
                .expect("maintain");
            compacted += r.samples_compacted;
            passes += 1;
        }
        (passes, compacted)
    });
    let mut gen = common::Generator::new(T0, 3);
    let n = 900u64;
    for _ in 0..n {
        let s = gen.next_sample();
        writer
            .append(&s)
            .expect("append while another handle maintains");
        newest.store(s.taken_at_unix_ms, Ordering::SeqCst);
    }
    done.store(true, Ordering::SeqCst);
    let (passes, compacted) = maint.join().expect("maintainer");
    assert!(
        passes > 1 && compacted > 0,
        "maintenance ran ({passes} passes, {compacted} compacted)"
    );
    let got = writer.range(0, u64::MAX).expect("range");
    // 900 samples span 2.5 h: everything older than 30 min before the last became minutes.
    let stats = writer.stats().expect("stats");
    assert!(
        stats
            .tiers
            .iter()
            .any(|t| t.name == "minute" && t.samples > 0),
        "{stats:?}"
    );
    assert!(got
        .windows(2)
        .all(|w| w[0].taken_at_unix_ms < w[1].taken_at_unix_ms));
    assert_eq!(
        got.last().map(|s| s.taken_at_unix_ms),
        Some(newest.load(Ordering::SeqCst))
    );
    assert!(writer.check_integrity().expect("check").is_empty());
}

/// The store keeps what it is given: a redacted sample reads back redacted, saying so.
#[test]
fn a_redacted_sample_reads_back_with_its_redaction() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = Store::open(&dir.path().join("h.db")).expect("open");
    let mut gen = common::Generator::new(T0, 1);
    let mut s = gen.next_sample();
    assert!(s.host.processes.iter().any(|p| !p.cmdline.is_empty()));
    s.redact(false);
    store.append(&s).expect("append");
    let back = store.latest().expect("latest").expect("a sample");
    assert!(
        back.redaction.cmdlines && back.redaction.rules > 0,
        "{:?}",
        back.redaction
    );
    assert!(back.host.processes.iter().all(|p| p.cmdline.is_empty()));
    assert_eq!(json(&back), json(&s));
}

#[test]
fn range_as_decodes_a_readers_view_of_the_same_samples() {
    #[derive(serde::Deserialize)]
    struct View {
        taken_at_unix_ms: u64,
        host: ViewHost,
    }
    #[derive(serde::Deserialize)]
    struct ViewHost {
        meminfo: memwarden_model::host::Meminfo,
    }
    let dir = tempfile::tempdir().expect("tmp");
    let mut store = Store::open(&dir.path().join("h.db")).expect("open");
    let last = six_hours(&mut store);
    // Blocks, minute means and raw rows all decode into the view, and the tiers hide alike.
    store
        .maintain(last + 10_000, &short_retention())
        .expect("maintain");
    store.append(&small(last + 20_000, 7)).expect("append");
    let whole = store.range(T0 + HOUR, u64::MAX).expect("range");
    let view = store
        .range_as(T0 + HOUR, u64::MAX, |v: &View| v.taken_at_unix_ms)
        .expect("range_as");
    assert_eq!(view.len(), whole.len());
    assert!(view.len() > 300, "{}", view.len());
    for (v, s) in view.iter().zip(&whole) {
        assert_eq!(v.taken_at_unix_ms, s.taken_at_unix_ms);
        assert_eq!(v.host.meminfo.get("MemFree"), Some(free(s)));
    }
}

/// The streaming read hands over the same samples as the collected one (every tier, the finer
/// hiding the coarser), one at a time.
#[test]
fn range_each_streams_the_samples_range_returns() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut store = Store::open(&dir.path().join("h.db")).expect("open");
    let last = six_hours(&mut store);
    store
        .maintain(last + 10_000, &short_retention())
        .expect("maintain");
    store.append(&small(last + 20_000, 7)).expect("append");
    let whole = store.range(T0 + HOUR, u64::MAX).expect("range");
    let mut streamed: Vec<(u64, u64)> = Vec::new();
    let n = store
        .range_each(
            T0 + HOUR,
            u64::MAX,
            |s: &memwarden_model::Sample| s.taken_at_unix_ms,
            |s| streamed.push((s.taken_at_unix_ms, free(&s))),
        )
        .expect("range_each");
    streamed.sort_unstable();
    let expected: Vec<(u64, u64)> = whole
        .iter()
        .map(|s| (s.taken_at_unix_ms, free(s)))
        .collect();
    assert_eq!(n, whole.len());
    assert!(n > 300, "{n}");
    assert_eq!(streamed, expected);
}
