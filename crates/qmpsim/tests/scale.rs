//! 1,000 sockets answered at once: 1,000 clients connect together and each runs the
//! commands a collector runs (negotiation, name, status, memory size, qom-list, the polling
//! interval, guest-stats, query-balloon). Prints the wall time and the simulator thread's CPU
//! time; checks every answer.

use std::time::{Duration, Instant};

use memwarden_qmpsim::{raise_fd_limit, Endpoint, Simulator};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

const N: usize = 1000;

const COMMANDS: &[&str] = &[
    r#"{"execute": "qmp_capabilities", "id": 1}"#,
    r#"{"execute": "query-name", "id": 2}"#,
    r#"{"execute": "query-status", "id": 3}"#,
    r#"{"execute": "query-memory-size-summary", "id": 4}"#,
    r#"{"execute": "qom-list", "arguments": {"path": "/machine/peripheral"}, "id": 5}"#,
    r#"{"execute": "qom-get", "arguments": {"path": "/machine/peripheral/balloon0", "property": "guest-stats-polling-interval"}, "id": 6}"#,
    r#"{"execute": "qom-get", "arguments": {"path": "/machine/peripheral/balloon0", "property": "guest-stats"}, "id": 7}"#,
    r#"{"execute": "query-balloon", "id": 8}"#,
];

/// One collector-like session; returns (name, guest-stats total) as read.
async fn session(path: std::path::PathBuf) -> std::io::Result<(String, u64)> {
    let s = UnixStream::connect(&path).await?;
    let (r, mut w) = s.into_split();
    let mut lines = BufReader::new(r).lines();
    async fn next(
        lines: &mut tokio::io::Lines<BufReader<tokio::net::unix::OwnedReadHalf>>,
    ) -> std::io::Result<serde_json::Value> {
        loop {
            let l = lines
                .next_line()
                .await?
                .ok_or(std::io::ErrorKind::UnexpectedEof)?;
            let v: serde_json::Value = serde_json::from_str(&l)?;
            if v.get("event").is_none() {
                return Ok(v);
            }
        }
    }
    let greeting = next(&mut lines).await?;
    assert!(greeting.get("QMP").is_some());
    let mut replies = Vec::new();
    for c in COMMANDS {
        w.write_all(format!("{c}\n").as_bytes()).await?;
        replies.push(next(&mut lines).await?);
    }
    for (i, r) in replies.iter().enumerate() {
        assert_eq!(r["id"], i + 1, "{r}");
        assert!(r.get("return").is_some(), "{r}");
    }
    let name = replies[1]["return"]["name"]
        .as_str()
        .unwrap_or("")
        .to_string();
    let total = replies[6]["return"]["stats"]["stat-total-memory"]
        .as_u64()
        .unwrap_or(0);
    Ok((name, total))
}

/// utime + stime of this process's `qmp-sim` threads.
fn sim_cpu() -> Duration {
    let tick = 100.0; // USER_HZ on Linux
    let mut t = 0.0;
    for task in std::fs::read_dir("/proc/self/task").into_iter().flatten() {
        let Ok(task) = task else { continue };
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if comm.trim() != "qmp-sim" {
            continue;
        }
        let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
        let after = stat.rsplit_once(") ").map(|x| x.1).unwrap_or("");
        let f: Vec<f64> = after.split(' ').filter_map(|x| x.parse().ok()).collect();
        // Fields after the command: state(skipped: not a number) ppid ... utime is 14th overall.
        if f.len() > 12 {
            t += (f[10] + f[11]) / tick;
        }
    }
    Duration::from_secs_f64(t)
}

#[test]
fn a_thousand_sockets_answered_at_once() {
    let limit = raise_fd_limit().expect("rlimit");
    assert!(limit >= 3 * N as u64 + 100, "open-file limit {limit}");
    let dir = tempfile::tempdir().expect("tempdir");
    let t0 = Instant::now();
    let sim = Simulator::start(dir.path(), &Endpoint::fleet(N)).expect("simulator");
    let started = t0.elapsed();
    let cpu0 = sim_cpu();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .expect("runtime");
    let paths = sim.socket_paths().to_vec();
    let t1 = Instant::now();
    let results = rt.block_on(async move {
        let mut set = tokio::task::JoinSet::new();
        for p in paths {
            set.spawn(session(p));
        }
        let mut out = Vec::new();
        while let Some(r) = set.join_next().await {
            out.push(r.expect("task").expect("session"));
        }
        out
    });
    let wall = t1.elapsed();
    let cpu = sim_cpu().saturating_sub(cpu0);
    let mut names: Vec<&str> = results.iter().map(|(n, _)| n.as_str()).collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), N, "every endpoint answered as itself");
    assert!(results.iter().all(|(_, t)| *t > 400 << 20));
    eprintln!(
        "scale: {N} sockets bound in {started:?}; {N} concurrent sessions × {} commands in {wall:?}; simulator thread CPU {cpu:?}",
        COMMANDS.len()
    );
    drop(sim);
    assert_eq!(
        std::fs::read_dir(dir.path()).expect("dir").count(),
        0,
        "sockets removed on drop"
    );
}
