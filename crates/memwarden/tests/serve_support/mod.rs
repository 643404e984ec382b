//! Shared by the `serve_*` tests and the `scrape_cost` bench: free ports, child processes that
//! die with the test (a guard kills them on drop, panics included), a small HTTP/1.1 client
//! over std's `TcpStream` (no client crate in the workspace; Connection: close, chunked bodies
//! decoded), and a running `memwarden serve`.
#![allow(dead_code)]

pub mod tls;
pub mod webdriver;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A TCP port free on loopback now: bind :0, read the port, close. (Another process could take
/// it before our child binds it; the child then fails to start and the wait names its log.)
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local addr").port()
}

/// Polls `f` every 200 ms until it yields a value; panics naming `what` after `timeout`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let t0 = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            t0.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A child process killed (SIGKILL) and reaped on drop. Its stdout and stderr go to `log`.
#[derive(Debug)]
pub struct Proc {
    pub name: String,
    pub child: Child,
    pub log: PathBuf,
}

impl Proc {
    /// Spawns `cmd` with its output in `log`.
    pub fn spawn(name: &str, mut cmd: Command, log: &Path) -> Proc {
        let f = std::fs::File::create(log).expect("create the log");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(f.try_clone().expect("dup log"))
            .stderr(f)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name} ({cmd:?}): {e}"));
        Proc {
            name: name.into(),
            child,
            log: log.to_path_buf(),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Panics (with the log's tail) if the process has exited.
    pub fn assert_running(&mut self) {
        if let Ok(Some(st)) = self.child.try_wait() {
            panic!("{} exited ({st}):\n{}", self.name, self.log_tail());
        }
    }

    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// utime + stime of the process so far, in clock ticks (/proc/PID/stat fields 14 and 15).
    pub fn cpu_ticks(&self) -> u64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).expect("stat");
        // "pid (comm) S ...": fields after the last ')' start at field 3.
        let rest: Vec<&str> = stat
            .rsplit_once(')')
            .expect("stat format")
            .1
            .split_whitespace()
            .collect();
        rest[11].parse::<u64>().expect("utime") + rest[12].parse::<u64>().expect("stime")
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An HTTP response.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
}

/// One HTTP/1.1 request to `127.0.0.1:port` on a fresh connection.
pub fn http(
    method: &str,
    port: u16,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> std::io::Result<Response> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut req =
        format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    let body = body.unwrap_or_default();
    if !body.is_empty() || method == "POST" {
        req.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes())?;
    s.write_all(body)?;
    // Read until the response is complete: some servers (chromedriver) keep the connection
    // open despite `Connection: close`, so a Content-Length or the last chunk ends it.
    let mut raw = Vec::new();
    let mut buf = [0u8; 64 * 1024];
    loop {
        // A signal to this process (a child it ran exiting: SIGCHLD) interrupts the read; the
        // answer is still coming (the soak counted two scrapes failed for that).
        let n = match s.read(&mut buf) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            r => r?,
        };
        raw.extend_from_slice(&buf[..n]);
        if n == 0 || complete(&raw) {
            break;
        }
    }
    parse_response(&raw)
        .ok_or_else(|| std::io::Error::other(format!("bad HTTP response to {method} {path}")))
}

/// Whether `raw` holds a whole response (without a length or chunking, only EOF tells).
fn complete(raw: &[u8]) -> bool {
    let Some(r) = parse_response(raw) else {
        return false;
    };
    if r.header("transfer-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
    {
        return true; // parse_response decoded up to the last chunk
    }
    match r
        .header("content-length")
        .and_then(|v| v.parse::<usize>().ok())
    {
        Some(len) => r.body.len() >= len,
        None => false,
    }
}

fn parse_response(raw: &[u8]) -> Option<Response> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..end]).ok()?;
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split_whitespace().nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let mut body = raw[end + 4..].to_vec();
    let chunked = headers.iter().any(|(k, v)| {
        k.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
    });
    if chunked {
        body = dechunk(&body)?;
    }
    Some(Response {
        status,
        headers,
        body,
    })
}

fn dechunk(mut b: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let eol = b.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&b[..eol]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        b = &b[eol + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(b.get(..size)?);
        b = b.get(size + 2..)?;
    }
}

/// GET, panicking unless the status is 200.
pub fn get(port: u16, path: &str) -> Response {
    let r = http("GET", port, path, &[], None)
        .unwrap_or_else(|e| panic!("GET 127.0.0.1:{port}{path}: {e}"));
    assert_eq!(r.status, 200, "GET {path}: {}", r.text());
    r
}

/// Percent-encodes a query parameter value.
pub fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A running `memwarden serve` on a free port, its history and log in a temporary directory.
#[derive(Debug)]
pub struct Serve {
    pub proc: Proc,
    pub port: u16,
    pub dir: tempfile::TempDir,
    /// The history file (in `dir` unless started with [`Serve::start_at`]).
    pub db: PathBuf,
    /// The configuration file it was started with (rewrite it and send SIGHUP to reload).
    pub config: PathBuf,
}

impl Serve {
    /// Starts `bin serve --listen 127.0.0.1:<free> --db <tmp>/history.db --config <empty file>`
    /// plus `args`. An empty config file keeps a host's /etc/memwarden out of the test.
    pub fn start(bin: &Path, args: &[&str]) -> Serve {
        Serve::start_with_config(bin, "", args)
    }

    /// [`Serve::start`] with `config` as the configuration file's text.
    pub fn start_with_config(bin: &Path, config: &str, args: &[&str]) -> Serve {
        Serve::start_at(bin, None, config, args)
    }

    /// [`Serve::start_with_config`] with the history at `db` (a store that outlives one
    /// daemon, or one on a special mount) instead of `<tmp>/history.db`.
    pub fn start_at(bin: &Path, db: Option<&Path>, config: &str, args: &[&str]) -> Serve {
        Serve::start_wrapped(&[], bin, db, config, args)
    }

    /// [`Serve::start_at`] run through `wrapper` (`["prlimit", "--nofile=64:64", "--"]`): the
    /// process is the wrapper's, which execs the daemon in its place.
    pub fn start_wrapped(
        wrapper: &[&str],
        bin: &Path,
        db: Option<&Path>,
        config: &str,
        args: &[&str],
    ) -> Serve {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let text = config;
        let config = dir.path().join("memwarden.toml");
        std::fs::write(&config, text).expect("write config");
        let db = db.map_or_else(|| dir.path().join("history.db"), Path::to_path_buf);
        let mut cmd = match wrapper.split_first() {
            Some((w, rest)) => {
                let mut c = Command::new(w);
                c.args(rest).arg(bin);
                c
            }
            None => Command::new(bin),
        };
        cmd.arg("serve")
            .arg("--config")
            .arg(&config)
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--db")
            .arg(&db)
            .args(args);
        let proc = Proc::spawn("memwarden serve", cmd, &dir.path().join("serve.log"));
        Serve {
            proc,
            port,
            dir,
            db,
            config,
        }
    }

    /// The whole log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.proc.log).unwrap_or_default()
    }

    /// `kill SIG PID`.
    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.proc.pid().to_string()])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill {sig} {}", self.proc.pid());
    }

    /// Waits (up to `timeout`) for the daemon to exit; its status.
    pub fn wait_exit(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let child = &mut self.proc.child;
        let log = &self.proc.log;
        wait_for(
            &format!("memwarden serve to exit (log {})", log.display()),
            timeout,
            || child.try_wait().expect("try_wait"),
        )
    }

    /// /api/v1/health, or None while the server is not up yet.
    pub fn health(&mut self) -> Option<serde_json::Value> {
        self.proc.assert_running();
        http("GET", self.port, "/api/v1/health", &[], None)
            .ok()
            .filter(|r| r.status == 200)
            .map(|r| r.json())
    }

    /// Waits until the daemon has taken `n` samples; its health then.
    pub fn wait_samples(&mut self, n: u64, timeout: Duration) -> serde_json::Value {
        let port = self.port;
        let log = self.proc.log.clone();
        wait_for(
            &format!(
                "{n} samples from memwarden serve on :{port} (log {})",
                log.display()
            ),
            timeout,
            || {
                self.health()
                    .filter(|h| h["samples_total"].as_u64().is_some_and(|s| s >= n))
            },
        )
    }
}

/// The name memwarden gives a lab guest read over QMP: QEMU's `-name`, which
/// lab/boot-qemu.sh sets to `lab-<run dir name>`.
pub fn lab_guest_name(g: &memwarden_lab::QemuGuest) -> String {
    let dir = g.run_dir().file_name().expect("run dir name");
    format!("lab-{}", dir.to_string_lossy())
}

/// A tmpfs mounted at `dir` (created) for the test's life, unmounted on drop. Root only, as the
/// suite runs.
#[derive(Debug)]
pub struct Tmpfs(pub PathBuf);

impl Tmpfs {
    pub fn mount(dir: &Path, opts: &str) -> Tmpfs {
        std::fs::create_dir_all(dir).expect("mount point");
        mount(&["-t", "tmpfs", "-o", opts, "memwarden-test"], dir);
        Tmpfs(dir.to_path_buf())
    }

    /// `mount -o remount,OPTS` (`ro`, `rw`).
    pub fn remount(&self, opts: &str) {
        mount(&["-o", &format!("remount,{opts}")], &self.0);
    }
}

fn mount(args: &[&str], dir: &Path) {
    let ok = Command::new("mount")
        .args(args)
        .arg(dir)
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "mount {args:?} {} (the suite runs as root)",
        dir.display()
    );
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// A Prometheus server (`/usr/bin/prometheus`) scraping `127.0.0.1:target` every `interval`
/// (`1s`, `500ms`), storage and log in `dir`; its port.
pub fn prometheus(dir: &Path, target: u16, interval: &str) -> (Proc, u16) {
    prometheus_with(
        dir,
        &format!(
            "global:\n  scrape_interval: {interval}\n  scrape_timeout: {interval}\n\
             scrape_configs:\n  - job_name: memwarden\n    static_configs:\n\
             \x20     - targets: ['127.0.0.1:{target}']\n"
        ),
    )
}

/// A Prometheus server with `config` as its prometheus.yml, storage and log in `dir`; its port.
pub fn prometheus_with(dir: &Path, config: &str) -> (Proc, u16) {
    let port = free_port();
    let yml = dir.join("prometheus.yml");
    std::fs::write(&yml, config).expect("write prometheus.yml");
    let mut cmd = Command::new("/usr/bin/prometheus");
    cmd.arg(format!("--config.file={}", yml.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("tsdb").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"));
    let p = Proc::spawn("prometheus", cmd, &dir.join("prometheus.log"));
    (p, port)
}

/// Waits (up to a minute) until the Prometheus on `port` has scraped its target: `up` is 1.
pub fn wait_scraped(prom: &mut Proc, port: u16) {
    let log = prom.log.display().to_string();
    wait_for(
        &format!("Prometheus to scrape memwarden (log {log})"),
        Duration::from_secs(60),
        || {
            prom.assert_running();
            http("GET", port, "/api/v1/query?query=up", &[], None)
                .ok()
                .filter(|r| r.status == 200)
                .map(|r| r.json())
                .filter(|v| v["data"]["result"][0]["value"][1] == "1")
        },
    );
}
