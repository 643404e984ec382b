//! `kill -9` at random moments: every timestamp the child printed (printed only after `append`
//! returned) must be in the file afterwards, and the file must pass `PRAGMA integrity_check`.
//! The child is this test binary run again with `--ignored child_appends_until_killed`.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use memwarden_store::{Retention, Store};

const CHILD_ENV: &str = "MEMWARDEN_STORE_KILL9_CHILD";

/// The child: appends forever (maintaining now and then, so kills also land mid-compaction),
/// printing each timestamp once its append has committed.
#[test]
#[ignore = "run by kill9_keeps_every_committed_sample as its child"]
fn child_appends_until_killed() {
    let (Ok(path), Ok(start)) = (std::env::var(CHILD_ENV), std::env::var("START_MS")) else {
        panic!("{CHILD_ENV} and START_MS must be set: this is the child of another test");
    };
    let start: u64 = start.parse().expect("START_MS");
    let mut store = Store::open(path.as_ref()).expect("open");
    let mut gen = common::Generator::new(start, start);
    // Default retention: samples stay at full resolution, so each printed timestamp can be
    // looked up exactly; kills land in compaction (rows -> block) transactions too.
    let keep_full = Retention::default();
    for i in 0u64.. {
        let mut s = gen.next_sample();
        // Mostly small samples so each round sees many commits; every 5th a realistic one.
        if i % 5 != 0 {
            s.host.processes.truncate(2);
            s.host.vmstat = None;
        }
        store.append(&s).expect("append");
        println!("committed {}", s.taken_at_unix_ms);
        if i % 40 == 39 {
            store
                .maintain(s.taken_at_unix_ms, &keep_full)
                .expect("maintain");
        }
    }
}

#[test]
fn kill9_keeps_every_committed_sample() {
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("h.db");
    let exe = std::env::current_exe().expect("own path");
    let mut rng = common::Rng::new(42);
    let mut committed: Vec<u64> = Vec::new();
    let mut start = 1_700_000_000_000u64;
    for round in 0..6 {
        let mut child = Command::new(&exe)
            .args([
                "--ignored",
                "--exact",
                "child_appends_until_killed",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, &path)
            .env("START_MS", start.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn child");
        let stdout = child.stdout.take().expect("stdout");
        let reader = std::thread::spawn(move || {
            BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
                .filter_map(|l| {
                    l.strip_prefix("committed ")
                        .and_then(|t| t.parse::<u64>().ok())
                })
                .collect::<Vec<u64>>()
        });
        // Random moments: from start-up to well into the append/maintain loop.
        std::thread::sleep(Duration::from_millis(200 + rng.below(1500)));
        child.kill().expect("SIGKILL"); // Child::kill sends SIGKILL on Unix
        child.wait().expect("reap");
        let printed = reader.join().expect("reader");
        if let Some(last) = printed.last() {
            start = last + 10_000; // the next round carries on, no overlap
        }
        committed.extend(&printed);

        let store = Store::open(&path).expect("reopen after kill -9");
        assert_eq!(
            store.check_integrity().expect("integrity_check"),
            Vec::<String>::new()
        );
        let held: std::collections::BTreeSet<u64> = store
            .range(0, u64::MAX)
            .expect("range")
            .iter()
            .map(|s| s.taken_at_unix_ms)
            .collect();
        let lost: Vec<&u64> = committed.iter().filter(|t| !held.contains(t)).collect();
        assert!(
            lost.is_empty(),
            "round {round}: committed but lost: {lost:?}"
        );
        println!(
            "round {round}: {} committed so far, all held",
            committed.len()
        );
    }
    assert!(
        committed.len() > 50,
        "the child committed too little to test anything"
    );
}
