//! Events (what memwarden did: the balloon controller's cycles) sit next to the samples: kept
//! in order, read back by kind and time, expired with the coarsest history, and a store written
//! by the version before them (schema 1) gains them when the daemon opens it.

use memwarden_store::{Retention, Store};
use serde_json::json;

const T0: u64 = 1_700_000_000_000;
const HOUR: u64 = 3_600_000;

#[test]
fn events_round_trip_by_kind_and_time() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut store = Store::open(&dir.path().join("h.db")).expect("open");
    store
        .append_event(
            T0,
            "balloon",
            &json!({"actions": [{"name": "web1", "target_bytes": 1}]}),
        )
        .expect("append");
    store
        .append_event(T0 + 1000, "other", &json!({"x": 1}))
        .expect("append");
    store
        .append_event(T0 + 2000, "balloon", &json!({"actions": []}))
        .expect("append");
    let got = store.events("balloon", T0, T0 + 5000).expect("read");
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].0, T0);
    assert_eq!(got[0].1["actions"][0]["name"], "web1");
    assert_eq!(got[1].0, T0 + 2000);
    assert!(store
        .events("balloon", T0 + 1, T0 + 1999)
        .expect("read")
        .is_empty());
    // Read-only handles (balance, history) see them too.
    let ro = Store::open_read_only(&dir.path().join("h.db")).expect("ro");
    assert_eq!(ro.events("other", 0, u64::MAX).expect("read").len(), 1);
}

/// A bounded read: the newest `limit` of a kind in the range, still oldest first.
#[test]
fn newest_events_are_the_last_ones_in_order() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut store = Store::open(&dir.path().join("h.db")).expect("open");
    for i in 0..10u64 {
        store
            .append_event(T0 + i * 1000, "balloon", &json!({ "i": i }))
            .expect("append");
        store
            .append_event(T0 + i * 1000, "other", &json!({ "i": 100 + i }))
            .expect("append");
    }
    let got = store
        .newest_events("balloon", T0, T0 + 8000, 3)
        .expect("read");
    let is: Vec<u64> = got
        .iter()
        .map(|(_, v)| v["i"].as_u64().expect("i"))
        .collect();
    assert_eq!(
        is,
        vec![6, 7, 8],
        "the newest three within the range, oldest first"
    );
    assert_eq!(got[0].0, T0 + 6000);
    let all = store
        .newest_events("balloon", 0, u64::MAX, 100)
        .expect("read");
    assert_eq!(all, store.events("balloon", 0, u64::MAX).expect("read"));
}

#[test]
fn events_expire_with_the_hour_tier() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut store = Store::open(&dir.path().join("h.db")).expect("open");
    store
        .append_event(T0, "balloon", &json!({}))
        .expect("append");
    store
        .append_event(T0 + 50 * HOUR, "balloon", &json!({}))
        .expect("append");
    let r = Retention {
        full: std::time::Duration::from_secs(3600),
        minute: std::time::Duration::from_secs(2 * 3600),
        hour: std::time::Duration::from_secs(24 * 3600),
    };
    store.maintain(T0 + 60 * HOUR, &r).expect("maintain");
    let left = store.events("balloon", 0, u64::MAX).expect("read");
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(left[0].0, T0 + 50 * HOUR);
}

#[test]
fn a_schema_1_store_gains_events_and_keeps_its_samples() {
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("h.db");
    {
        // What the previous version created: schema 1, no events table.
        let mut store = Store::open(&path).expect("open");
        store
            .append(&memwarden_model::Sample {
                taken_at_unix_ms: T0,
                ..Default::default()
            })
            .expect("append");
    }
    {
        let c = rusqlite::Connection::open(&path).expect("sqlite");
        c.execute_batch("DROP TABLE events; PRAGMA user_version = 1;")
            .expect("downgrade");
    }
    let e = match Store::open_read_only(&path) {
        Ok(_) => panic!("a schema-1 file opened read-only"),
        Err(e) => e,
    };
    assert!(e.to_string().contains("older"), "{e}");
    let mut store = Store::open(&path).expect("migrates");
    store
        .append_event(T0 + 1, "balloon", &json!({}))
        .expect("events after migration");
    assert_eq!(store.range(0, u64::MAX).expect("range").len(), 1);
}
