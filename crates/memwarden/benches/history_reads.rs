//! What concurrent 7-day history reads cost the daemon: `cargo bench -p memwarden --bench
//! history_reads`.
//!
//! A store holding 7 days of one sample every 10 s (a captured host padded to 100 processes,
//! 4 VMs; maintained as the daemon would: older than 2 days downsampled to minutes) is served
//! by the release daemon. One client reads `/api/v1/series?since=7d` (every series) alone, then
//! `CLIENTS` clients read it at once. Printed for each: the wall time until every answer was
//! in, the bytes answered, and the daemon's peak RSS during the reads (VmHWM after writing 5 to
//! /proc/PID/clear_refs) and its RSS 5 s after. The daemon decodes at most HISTORY_READS (2)
//! ranges at once, so the peak with many clients should stay near twice the peak of one, not
//! `CLIENTS` times it: the ratio is printed. Clients that find no read slot within half the
//! idle timeout (15 s) are answered 503 with Retry-After: they are counted, not failures. `MEMWARDEN_BENCH_DAYS` (default 7) and
//! `MEMWARDEN_BENCH_CLIENTS` (default 32) change the size.

#[path = "../../store/tests/common/mod.rs"]
mod common;
#[path = "../tests/serve_support/mod.rs"]
mod serve_support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use memwarden_store::{Retention, Store};
use serve_support::Serve;

const T: Duration = Duration::from_secs(120);

fn env_or(key: &str, default: u64) -> u64 {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn status_kib(pid: u32, key: &str) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// One GET with `Connection: close`; the status line and the bytes of the whole answer (read
/// and dropped as they come: the bench must not hold `CLIENTS` answers itself).
fn get(port: u16, path: &str) -> (String, u64) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(600)))
        .expect("timeout");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .expect("send");
    let mut buf = vec![0u8; 256 * 1024];
    let (mut first, mut total) = (Vec::new(), 0u64);
    loop {
        let n = s.read(&mut buf).expect("read the answer");
        if n == 0 {
            break;
        }
        if first.len() < 64 {
            first.extend_from_slice(&buf[..n.min(64)]);
        }
        total += n as u64;
    }
    let status = String::from_utf8_lossy(&first)
        .lines()
        .next()
        .unwrap_or("")
        .to_string();
    (status, total)
}

/// `clients` reads at once; the wall time, the bytes of each whole answer (200), how many were
/// told to come back (503: no read slot within half the idle timeout), the daemon's peak RSS.
fn round(d: &Serve, clients: usize, path: &str) -> (Duration, Vec<u64>, usize, u64) {
    let pid = d.proc.pid();
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").expect("reset the peak RSS");
    let t = Instant::now();
    let port = d.port;
    let handles: Vec<_> = (0..clients)
        .map(|_| {
            let path = path.to_string();
            std::thread::spawn(move || get(port, &path))
        })
        .collect();
    let (mut bytes, mut busy) = (Vec::new(), 0);
    for h in handles {
        let (status, n) = h.join().expect("client");
        if status.contains(" 503 ") {
            busy += 1;
            continue;
        }
        assert!(status.contains(" 200 "), "answer: {status:?}");
        bytes.push(n);
    }
    (t.elapsed(), bytes, busy, status_kib(pid, "VmHWM:"))
}

fn main() {
    let days = env_or("MEMWARDEN_BENCH_DAYS", 7);
    let clients = env_or("MEMWARDEN_BENCH_CLIENTS", 32) as usize;
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("history.db");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_millis() as u64;
    let n = days * 8640;
    let t = Instant::now();
    {
        let mut store = Store::open(&db).expect("store");
        let mut gen = common::Generator::new(now - n * 10_000, 1);
        for i in 0..n {
            let mut s = gen.next_sample();
            s.redact(false);
            store.append(&s).expect("append");
            if i % 60 == 59 {
                store
                    .maintain(s.taken_at_unix_ms, &Retention::default())
                    .expect("maintain");
            }
        }
        store
            .maintain(now, &Retention::default())
            .expect("maintain");
    }
    let size = std::fs::metadata(&db).map_or(0, |m| m.len());
    println!(
        "store: {days} days, {n} samples written and maintained in {:.0} s, {:.1} MiB",
        t.elapsed().as_secs_f64(),
        size as f64 / 1048576.0
    );

    let cfg = "interval = \"2s\"\ndeadline = \"1s\"\n[vms]\nsource = \"none\"\n";
    let mut d = Serve::start_at(
        Path::new(env!("CARGO_BIN_EXE_memwarden")),
        Some(&db),
        cfg,
        &[],
    );
    d.wait_samples(3, T);
    let pid = d.proc.pid();
    let idle = status_kib(pid, "VmRSS:");
    println!("daemon RSS before any read: {:.1} MiB", mib(idle));
    let path = format!("/api/v1/series?since={days}d");
    println!(
        "{:<10} {:>8} {:>6} {:>6} {:>12} {:>10} {:>12}",
        "clients", "wall", "200", "503", "answer", "peak RSS", "RSS 5 s on"
    );
    let mut peaks = Vec::new();
    for c in [1, clients] {
        let (wall, bytes, busy, peak) = round(&d, c, &path);
        std::thread::sleep(Duration::from_secs(5));
        let after = status_kib(pid, "VmRSS:");
        let mean = bytes.iter().sum::<u64>() / bytes.len().max(1) as u64;
        println!(
            "{c:<10} {:>7.1}s {:>6} {busy:>6} {:>8.1} MiB {:>6.1} MiB {:>8.1} MiB",
            wall.as_secs_f64(),
            bytes.len(),
            mean as f64 / 1048576.0,
            mib(peak),
            mib(after)
        );
        peaks.push(peak.saturating_sub(idle));
    }
    println!(
        "peak above idle: {:.1} MiB for 1 client, {:.1} MiB for {clients} ({:.2}x; {clients}x without a limit on reads at once)",
        mib(peaks[0]),
        mib(peaks[1]),
        peaks[1] as f64 / peaks[0].max(1) as f64
    );
}
