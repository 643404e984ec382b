//! TLS fixtures for the `serve_tls` tests: a self-signed certificate made with the `openssl`
//! CLI, an exporter-toolkit web configuration beside it, and curl as the TLS client (the std
//! client in `super` speaks plain HTTP only).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::{wait_for, Serve};

pub const USER: &str = "prometheus";
pub const PASSWORD: &str = "scrape-me";
/// bcrypt cost of the test's hashes: exporter-toolkit's example uses 10; the daemon under test
/// is a debug build, where that costs far more than in a release build.
pub const COST: u32 = 8;

/// A certificate, its key and a web configuration file in a temporary directory.
pub struct Web {
    pub dir: tempfile::TempDir,
    pub cert: PathBuf,
    pub file: PathBuf,
}

/// `openssl ARGS` in `dir`, panicking with its stderr on failure.
pub fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("openssl (Debian package openssl)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Web {
    /// A fresh certificate (EC P-256, IP SAN 127.0.0.1) and a web configuration for USER.
    pub fn new() -> Web {
        let dir = tempfile::tempdir().expect("tempdir");
        openssl(
            dir.path(),
            &[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-days",
                "2",
                "-keyout",
                "server.key",
                "-out",
                "server.crt",
                "-subj",
                "/CN=memwarden-test",
                "-addext",
                "subjectAltName=IP:127.0.0.1",
            ],
        );
        let cert = dir.path().join("server.crt");
        let file = dir.path().join("web.yml");
        let w = Web { dir, cert, file };
        w.write(PASSWORD);
        w
    }

    /// The web configuration with `password` for USER; file names relative to its directory,
    /// as exporter-toolkit resolves them.
    pub fn write(&self, password: &str) {
        let hash = bcrypt::hash(password, COST).expect("bcrypt");
        std::fs::write(
            &self.file,
            format!(
                "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n\
                 basic_auth_users:\n  {USER}: {hash}\n"
            ),
        )
        .expect("write web.yml");
    }
}

/// A curl reply.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub head: String,
    pub body: String,
}

/// GET https://127.0.0.1:port/path with the test's CA, as `user:password` when given.
pub fn curl(w: &Web, port: u16, path: &str, auth: Option<&str>) -> Option<Reply> {
    let mut c = Command::new("curl");
    c.args(["-sS", "-i", "--http1.1", "--max-time", "20", "--cacert"])
        .arg(&w.cert)
        .arg(format!("https://127.0.0.1:{port}{path}"));
    if let Some(a) = auth {
        c.args(["-u", a]);
    }
    let out = c.output().expect("curl");
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some(Reply {
        status,
        head: head.to_string(),
        body: body.to_string(),
    })
}

pub fn good() -> String {
    format!("{USER}:{PASSWORD}")
}

/// Waits until the daemon answers /api/v1/health over TLS with the password and has sampled.
pub fn health(w: &Web, d: &mut Serve) -> serde_json::Value {
    let port = d.port;
    wait_for("memwarden serve over TLS", Duration::from_secs(60), || {
        d.proc.assert_running();
        curl(w, port, "/api/v1/health", Some(&good()))
            .filter(|r| r.status == 200)
            .map(|r| serde_json::from_str::<serde_json::Value>(&r.body).expect("JSON"))
            .filter(|h| h["samples_total"].as_u64() >= Some(1))
    })
}
