//! `memwarden serve --web.config.file`: TLS and basic auth from a Prometheus exporter web
//! configuration, against the real binary. A self-signed certificate made here with the
//! `openssl` CLI (IP SAN 127.0.0.1), curl as the client, a real Prometheus as the scraper:
//! right password → `up` 1 and memwarden's series, wrong password → `up` 0 with the 401 in the
//! target's lastError; plain HTTP on the TLS port refused; a client that never sends a
//! ClientHello cut at the header deadline; client certificates; password guessing under a
//! bounded bcrypt queue; SIGHUP reload; a bad file stops the daemon. Fixtures: serve_support/tls.rs.

mod serve_support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serve_support::tls::{curl, good, health, openssl, Web, COST, PASSWORD, USER};
use serve_support::{get, urlencode, wait_for, Serve};

const BIN: &str = env!("CARGO_BIN_EXE_memwarden");
const HOST_ONLY: &str = "interval = \"1s\"\ndeadline = \"500ms\"\n[vms]\nsource = \"none\"\n\
[http]\nheader_timeout = \"2s\"\n";

/// `memwarden serve` host-only with `w` as its web configuration.
fn start(w: &Web) -> Serve {
    let file = w.file.display().to_string();
    Serve::start_with_config(Path::new(BIN), HOST_ONLY, &["--web.config.file", &file])
}

#[test]
fn every_route_needs_tls_and_the_password() {
    let w = Web::new();
    let mut d = start(&w);
    health(&w, &mut d);

    for path in ["/metrics", "/api/v1/health"] {
        let r = curl(&w, d.port, path, None).expect("curl without auth");
        assert_eq!(r.status, 401, "{path} without credentials");
        assert!(
            r.head
                .to_ascii_lowercase()
                .contains("www-authenticate: basic realm=\"memwarden\""),
            "{}",
            r.head
        );
        let r = curl(&w, d.port, path, Some("prometheus:wrong")).expect("curl");
        assert_eq!(r.status, 401, "{path} with a wrong password");
        let r = curl(&w, d.port, path, Some("nobody:scrape-me")).expect("curl");
        assert_eq!(r.status, 401, "{path} as an unknown user");
        let r = curl(&w, d.port, path, Some(&good())).expect("curl");
        assert_eq!(r.status, 200, "{path} with the password: {}", r.body);
    }
    let m = curl(&w, d.port, "/metrics", Some(&good())).expect("metrics");
    assert!(m.body.contains("memwarden_"), "{}", m.body);

    // The first request after a reload costs a bcrypt; the next ones are checked against the
    // cached pair.
    w.write(PASSWORD);
    d.signal("-HUP");
    wait_for("the reload", Duration::from_secs(10), || {
        Some(()).filter(|()| d.log_text().contains("web configuration reloaded"))
    });
    let t = Instant::now();
    assert_eq!(
        curl(&w, d.port, "/metrics", Some(&good())).map(|r| r.status),
        Some(200)
    );
    let first = t.elapsed();
    let t = Instant::now();
    for _ in 0..10 {
        assert_eq!(
            curl(&w, d.port, "/metrics", Some(&good())).map(|r| r.status),
            Some(200)
        );
    }
    let cached = t.elapsed() / 10;
    let t = Instant::now();
    for _ in 0..3 {
        assert_eq!(
            curl(&w, d.port, "/metrics", Some("prometheus:nope")).map(|r| r.status),
            Some(401)
        );
    }
    let wrong = t.elapsed() / 3;
    println!(
        "GET /metrics over TLS (curl, incl. process start): first with the password {first:?} \
         (bcrypt cost {COST}), then {cached:?} each (cached); a wrong password {wrong:?} each"
    );

    // Plain HTTP on the TLS port: Go's answer, and no data.
    let r = serve_support::http("GET", d.port, "/metrics", &[], None).expect("plain HTTP");
    assert_eq!(r.status, 400);
    assert!(
        r.text().contains("HTTP request to an HTTPS server"),
        "{}",
        r.text()
    );
    assert!(!r.text().contains("memwarden_"));

    let h = health(&w, &mut d);
    println!("http counters: {}", h["http"]);
    assert!(h["http"]["auth_failures_total"].as_u64() >= Some(9), "{h}");
    assert!(
        h["http"]["tls_handshake_errors_total"].as_u64() >= Some(1),
        "{h}"
    );
}

/// When (since `t`) the server closed `s` (EOF or reset), if it did within `limit` of now.
fn closed_within(s: &mut TcpStream, t: Instant, limit: Duration) -> Option<Duration> {
    s.set_read_timeout(Some(limit)).expect("timeout");
    let mut buf = [0u8; 512];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return Some(t.elapsed()),
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return Some(t.elapsed()),
            Err(_) => return None,
        }
    }
}

#[test]
fn a_client_that_never_finishes_its_handshake_is_cut_at_the_header_deadline() {
    let w = Web::new();
    let mut d = start(&w);
    health(&w, &mut d);
    let before = health(&w, &mut d)["http"]["header_timeouts_total"]
        .as_u64()
        .unwrap_or(0);

    // Silent after connect, and silent after the first 3 bytes of a TLS record.
    let t = Instant::now();
    let mut silent = TcpStream::connect(("127.0.0.1", d.port)).expect("connect");
    let mut half = TcpStream::connect(("127.0.0.1", d.port)).expect("connect");
    half.write_all(&[0x16, 0x03, 0x01]).expect("write");
    let limit = Duration::from_secs(6);
    let a = closed_within(&mut silent, t, limit).expect("the silent client was not closed");
    let b = closed_within(&mut half, t, limit).expect("the half-hello client was not closed");
    println!("header_timeout 2s: silent client closed after {a:?}, half ClientHello after {b:?}");
    for t in [a, b] {
        assert!(
            t >= Duration::from_millis(1500) && t < Duration::from_secs(4),
            "{t:?}"
        );
    }
    // A whole handshake, then no request: the deadline counts from the accept, handshake
    // included. `openssl s_client` waits on its stdin (held open, never written) and exits
    // when the server closes.
    let t = Instant::now();
    let mut client = Command::new("openssl")
        .args(["s_client", "-connect", &format!("127.0.0.1:{}", d.port)])
        .arg("-CAfile")
        .arg(&w.cert)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("openssl s_client");
    let st = wait_for("s_client to be closed", Duration::from_secs(10), || {
        client.try_wait().expect("try_wait")
    });
    let c = t.elapsed();
    let out = client.wait_with_output().expect("output");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("Verify return code: 0 (ok)"), "{said}");
    println!("handshake done, no request: closed after {c:?} (s_client {st})");
    assert!(
        c >= Duration::from_millis(1500) && c < Duration::from_secs(4),
        "{c:?}"
    );
    let after = health(&w, &mut d)["http"]["header_timeouts_total"]
        .as_u64()
        .unwrap_or(0);
    assert!(
        after >= before + 3,
        "header_timeouts_total {before} -> {after}"
    );
}

#[test]
fn require_and_verify_client_cert_admits_only_clients_the_ca_signed() {
    let w = Web::new();
    let p = w.dir.path();
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    openssl(
        p,
        &[
            &["req", "-x509"][..],
            &ec,
            &[
                "-days",
                "2",
                "-keyout",
                "ca.key",
                "-out",
                "ca.crt",
                "-subj",
                "/CN=test-ca",
            ],
        ]
        .concat(),
    );
    openssl(
        p,
        &[
            &["req"][..],
            &ec,
            &[
                "-keyout",
                "client.key",
                "-out",
                "client.csr",
                "-subj",
                "/CN=prometheus",
            ],
        ]
        .concat(),
    );
    std::fs::write(p.join("client.ext"), "extendedKeyUsage = clientAuth\n").expect("ext");
    openssl(
        p,
        &[
            "x509",
            "-req",
            "-in",
            "client.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "client.ext",
            "-out",
            "client.crt",
        ],
    );
    std::fs::write(
        &w.file,
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  \
         client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.crt\n",
    )
    .expect("write web.yml");
    let mut d = start(&w);
    let port = d.port;
    let with_cert = |cert: Option<(&str, &str)>| {
        let mut c = Command::new("curl");
        c.args([
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "10",
            "--cacert",
        ])
        .arg(&w.cert);
        if let Some((crt, key)) = cert {
            c.arg("--cert")
                .arg(p.join(crt))
                .arg("--key")
                .arg(p.join(key));
        }
        let out = c
            .arg(format!("https://127.0.0.1:{port}/api/v1/health"))
            .output()
            .expect("curl");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    wait_for("memwarden serve with mTLS", Duration::from_secs(60), || {
        d.proc.assert_running();
        Some(()).filter(|()| with_cert(Some(("client.crt", "client.key"))).1 == "200")
    });
    let (ok, code) = with_cert(None);
    assert!(!ok && code != "200", "no client certificate: {ok} {code}");
    // The server's own certificate is not signed by the client CA.
    let (ok, code) = with_cert(Some(("server.crt", "server.key")));
    assert!(
        !ok && code != "200",
        "a certificate the CA did not sign: {ok} {code}"
    );
    println!(
        "mTLS: the CA-signed client 200; no certificate and a foreign one refused in the handshake"
    );
}

/// An instant query's result vector (empty while Prometheus is not up yet).
fn query(port: u16, q: &str) -> Vec<serde_json::Value> {
    let path = format!("/api/v1/query?query={}", urlencode(q));
    serve_support::http("GET", port, &path, &[], None)
        .ok()
        .filter(|r| r.status == 200)
        .and_then(|r| r.json()["data"]["result"].as_array().cloned())
        .unwrap_or_default()
}

#[test]
fn prometheus_scrapes_over_tls_with_the_password_and_is_refused_without() {
    let w = Web::new();
    let mut d = start(&w);
    health(&w, &mut d);
    let tmp = tempfile::tempdir().expect("tempdir");
    let job = |name: &str, password: &str| {
        format!(
            "  - job_name: {name}\n    scheme: https\n    tls_config:\n      ca_file: {}\n\
             \x20   basic_auth:\n      username: {USER}\n      password: {password}\n\
             \x20   static_configs:\n      - targets: ['127.0.0.1:{}']\n",
            w.cert.display(),
            d.port
        )
    };
    let config = format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n{}{}",
        job("right", PASSWORD),
        job("wrong", "not-the-password")
    );
    let (mut prom, pport) = serve_support::prometheus_with(tmp.path(), &config);
    let t0 = Instant::now();
    let up = |job: &str| -> Option<String> {
        query(pport, &format!("up{{job=\"{job}\"}}"))
            .first()
            .and_then(|r| r["value"][1].as_str().map(str::to_string))
    };
    wait_for(
        &format!(
            "up == 1 for the right password (log {})",
            prom.log.display()
        ),
        Duration::from_secs(60),
        || {
            prom.assert_running();
            Some(()).filter(|()| up("right").as_deref() == Some("1"))
        },
    );
    let scraped_after = t0.elapsed();
    let series = query(pport, "count({job=\"right\",__name__=~\"memwarden_.+\"})");
    let n: f64 = series
        .first()
        .and_then(|r| r["value"][1].as_str())
        .and_then(|s| s.parse().ok())
        .unwrap_or(0.0);
    assert!(n > 10.0, "memwarden series scraped over TLS: {n}");
    // Prometheus spreads the two jobs' scrapes over the interval: the wrong one may come later.
    wait_for(
        "up == 0 for the wrong password",
        Duration::from_secs(30),
        || Some(()).filter(|()| up("wrong").as_deref() == Some("0")),
    );
    let targets = get(pport, "/api/v1/targets").json();
    let wrong = targets["data"]["activeTargets"]
        .as_array()
        .expect("targets")
        .iter()
        .find(|t| t["labels"]["job"] == "wrong")
        .cloned()
        .expect("the wrong-password target");
    let err = wrong["lastError"].as_str().unwrap_or_default().to_string();
    assert!(err.contains("401"), "lastError: {err}");
    println!(
        "Prometheus: up{{job=\"right\"}} 1 after {scraped_after:?}, {n} memwarden_ series; \
         up{{job=\"wrong\"}} 0, lastError {err:?}"
    );
    let h = health(&w, &mut d);
    println!("http counters: {}", h["http"]);
    drop(prom);
}

#[test]
fn a_reload_takes_a_new_password_and_a_bad_file_keeps_the_running_one() {
    let w = Web::new();
    let mut d = start(&w);
    health(&w, &mut d);
    w.write("second");
    d.signal("-HUP");
    wait_for("the reload", Duration::from_secs(10), || {
        Some(()).filter(|()| d.log_text().contains("SIGHUP: web configuration reloaded"))
    });
    let new = format!("{USER}:second");
    assert_eq!(
        curl(&w, d.port, "/metrics", Some(&good())).map(|r| r.status),
        Some(401)
    );
    assert_eq!(
        curl(&w, d.port, "/metrics", Some(&new)).map(|r| r.status),
        Some(200)
    );

    std::fs::write(
        &w.file,
        "tls_server_config:\n  cert_file: server.crt\n  key_flie: x\n",
    )
    .expect("write");
    d.signal("-HUP");
    wait_for("the refused reload", Duration::from_secs(10), || {
        Some(()).filter(|()| d.log_text().contains("web configuration not reloaded"))
    });
    assert!(d.log_text().contains("key_flie"), "{}", d.proc.log_tail());
    assert_eq!(
        curl(&w, d.port, "/metrics", Some(&new)).map(|r| r.status),
        Some(200)
    );
}

#[test]
fn a_bad_web_configuration_stops_the_daemon_naming_the_file_and_the_key() {
    let w = Web::new();
    let cases = [
        (
            "basic_auth_users:\n  alice: plaintext\n",
            "basic_auth_users.alice",
        ),
        (
            "tls_server_config:\n  cert_file: missing.crt\n  key_file: server.key\n",
            "missing.crt",
        ),
        (
            "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  bogus: 1\n",
            "bogus",
        ),
    ];
    for (text, key) in cases {
        std::fs::write(&w.file, text).expect("write");
        let mut d = start(&w);
        let st = d.wait_exit(Duration::from_secs(20));
        assert!(!st.success(), "started with {text:?}");
        let log = d.log_text();
        assert!(log.contains(&w.file.display().to_string()), "{log}");
        assert!(log.contains(key), "{log}");
        println!(
            "refused {key}: {}",
            log.trim().lines().last().unwrap_or_default()
        );
    }
    drop(w.dir);
}

#[test]
fn password_guesses_queue_behind_one_bcrypt_and_never_hold_up_a_remembered_password() {
    let w = Web::new();
    let mut d = start(&w);
    health(&w, &mut d); // the good pair is remembered from here on
    let port = d.port;
    let w = std::sync::Arc::new(w);
    let guessers: Vec<_> = (0..24)
        .map(|i| {
            let w = w.clone();
            std::thread::spawn(move || {
                (0..3)
                    .map(|j| {
                        let auth = format!("{USER}:guess-{i}-{j}");
                        curl(&w, port, "/metrics", Some(&auth)).map_or(0, |r| r.status)
                    })
                    .collect::<Vec<u16>>()
            })
        })
        .collect();
    let mut took = Vec::new();
    for _ in 0..10 {
        let t = Instant::now();
        let r = curl(&w, port, "/metrics", Some(&good())).expect("curl");
        took.push(t.elapsed());
        assert_eq!(r.status, 200, "the remembered password during guessing");
    }
    let statuses: Vec<u16> = guessers
        .into_iter()
        .flat_map(|g| g.join().expect("guesser"))
        .collect();
    let count = |s: u16| statuses.iter().filter(|&&x| x == s).count();
    let (refused, busy) = (count(401), count(503));
    assert_eq!(
        refused + busy,
        statuses.len(),
        "only 401 or 503: {statuses:?}"
    );
    assert!(refused >= 1, "{statuses:?}");
    took.sort();
    let h = health(&w, &mut d);
    println!(
        "24 guessers × 3 wrong passwords: {refused} × 401 (bcrypt), {busy} × 503 (queue full); \
         the remembered password meanwhile: 10 × 200, median {:?}, max {:?} (curl's start \
         included); health: auth_failures_total {}, auth_busy_total {}",
        took[took.len() / 2],
        took[took.len() - 1],
        h["http"]["auth_failures_total"],
        h["http"]["auth_busy_total"]
    );
}
