//! A `memwarden serve` child for tests: started on a free port with its own store, asked over
//! HTTP, stopped (SIGTERM, or SIGKILL) on purpose or killed on drop.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

pub struct Daemon {
    pub child: Child,
    pub port: u16,
    pub db: PathBuf,
    pub log: PathBuf,
}

/// A port nothing listens on now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl Daemon {
    /// `memwarden serve --listen 127.0.0.1:PORT --db DB ARGS...`, logs in `dir/serve.log`.
    pub fn start(dir: &Path, db: &Path, args: &[&str]) -> Daemon {
        let port = free_port();
        let log = dir.join("serve.log");
        let out = std::fs::File::create(&log).expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_memwarden"))
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .arg("--db")
            .arg(db)
            .args(args)
            .env("MEMWARDEN_LOG", "debug")
            .stdout(Stdio::null())
            .stderr(out)
            .spawn()
            .expect("memwarden serve starts");
        Daemon {
            child,
            port,
            db: db.to_path_buf(),
            log,
        }
    }

    /// GET `path`: (status, body); `None` while nothing answers.
    pub fn get(&self, path: &str) -> Option<(u16, String)> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
        )
        .ok()?;
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).ok()?;
        let text = String::from_utf8_lossy(&raw).into_owned();
        let status = text.split_whitespace().nth(1)?.parse().ok()?;
        let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string())?;
        // axum answers HTTP/1.1 with a length, not chunks, for these bodies.
        Some((status, body))
    }

    /// /api/v1/health as JSON.
    pub fn health(&self) -> Option<serde_json::Value> {
        let (code, body) = self.get("/api/v1/health")?;
        (code == 200).then(|| serde_json::from_str(&body).ok())?
    }

    /// Waits until the daemon reports at least `n` samples; the health then.
    pub fn wait_samples(&self, n: u64, timeout: Duration) -> serde_json::Value {
        let t = Instant::now();
        loop {
            if let Some(h) = self.health() {
                if h["samples_total"].as_u64().unwrap_or(0) >= n {
                    return h;
                }
            }
            assert!(
                t.elapsed() < timeout,
                "fewer than {n} samples after {timeout:?}; log:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill {sig}");
    }

    /// Waits for the daemon to exit (up to `timeout`).
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let t = Instant::now();
        loop {
            if let Some(st) = self.child.try_wait().expect("try_wait") {
                return st;
            }
            assert!(
                t.elapsed() < timeout,
                "still running after {timeout:?}; log:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
