//! Each misbehaviour, seen from a raw client: what a collector's reader will really face.

use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use memwarden_qmpsim::{Endpoint, Simulator, DRIP_INTERVAL, HUGE_REPLY_BYTES, KINDS};

const CAPS: &[u8] = b"{\"execute\": \"qmp_capabilities\", \"id\": 1}\n";

/// A client of a simulator serving one endpoint of `kind`; the simulator and its directory
/// go away with the client.
struct Client {
    s: UnixStream,
    _sim: Simulator,
    _dir: tempfile::TempDir,
}

impl std::ops::Deref for Client {
    type Target = UnixStream;
    fn deref(&self) -> &UnixStream {
        &self.s
    }
}

impl std::ops::DerefMut for Client {
    fn deref_mut(&mut self) -> &mut UnixStream {
        &mut self.s
    }
}

fn connect(kind: &str, timeout: Duration) -> Client {
    let dir = tempfile::tempdir().expect("tempdir");
    let ep = Endpoint::parse_misbehave(&format!("{kind}:{kind}")).expect("kind");
    let sim = Simulator::start(dir.path(), &[ep]).expect("simulator");
    let s = UnixStream::connect(&sim.socket_paths()[0]).expect("connect");
    s.set_read_timeout(Some(timeout)).expect("timeout");
    Client {
        s,
        _sim: sim,
        _dir: dir,
    }
}

/// Bytes up to and including the next newline (byte at a time: no read-ahead).
fn line(s: &mut Client) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut b = [0u8; 1];
    loop {
        if s.read(&mut b)? == 0 {
            return Err(ErrorKind::UnexpectedEof.into());
        }
        out.push(b[0]);
        if b[0] == b'\n' {
            return Ok(out);
        }
    }
}

fn json(l: &[u8]) -> serde_json::Value {
    serde_json::from_slice(l).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(l)))
}

fn greeted(kind: &str, timeout: Duration) -> Client {
    let mut s = connect(kind, timeout);
    let g = json(&line(&mut s).expect("greeting"));
    assert_eq!(g["QMP"]["version"]["qemu"]["major"], 7, "{kind}");
    s
}

fn timed_out(e: &std::io::Error) -> bool {
    matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)
}

#[test]
fn kinds_parse_and_name_themselves() {
    for k in KINDS {
        let e = Endpoint::parse_misbehave(&format!("{k}:x")).expect("kind");
        assert_eq!(e.behaviour.kind(), *k);
        assert_eq!(e.name, "x");
    }
    assert!(Endpoint::parse_misbehave("sulk:x").is_err());
    assert!(Endpoint::parse_misbehave("drip").is_err());
}

#[test]
fn hang_after_greeting_never_answers() {
    let mut s = greeted("hang-after-greeting", Duration::from_millis(800));
    s.write_all(CAPS).expect("send");
    let e = line(&mut s).expect_err("no reply");
    assert!(timed_out(&e), "{e}");
}

#[test]
fn no_greeting_says_nothing() {
    let mut s = connect("no-greeting", Duration::from_millis(800));
    let e = line(&mut s).expect_err("no greeting");
    assert!(timed_out(&e), "{e}");
}

#[test]
fn garbage_answers_with_invalid_utf8_then_recovers() {
    let mut s = greeted("garbage", Duration::from_secs(5));
    s.write_all(CAPS).expect("send");
    let l = line(&mut s).expect("garbage line");
    assert!(std::str::from_utf8(&l).is_err(), "{l:?}");
    assert!(serde_json::from_slice::<serde_json::Value>(&l).is_err());
    s.write_all(b"{\"execute\": \"query-name\", \"id\": 2}\n")
        .expect("send");
    let r = json(&line(&mut s).expect("reply"));
    assert_eq!(r["return"]["name"], "garbage");
    assert_eq!(r["id"], 2);
}

#[test]
fn drip_sends_a_byte_every_two_seconds() {
    let mut s = greeted("drip", Duration::from_secs(5));
    s.write_all(CAPS).expect("send");
    let mut b = [0u8; 1];
    let t0 = Instant::now();
    s.read_exact(&mut b).expect("first byte");
    assert_eq!(b[0], b'{');
    let first = t0.elapsed();
    s.read_exact(&mut b).expect("second byte");
    let gap = t0.elapsed() - first;
    eprintln!("drip: first byte after {first:?}, second {gap:?} later");
    assert!(first < Duration::from_millis(500), "{first:?}");
    assert!(gap >= DRIP_INTERVAL - Duration::from_millis(50), "{gap:?}");
    assert!(gap < DRIP_INTERVAL + Duration::from_secs(1), "{gap:?}");
    assert_eq!(b[0], b'"');
}

#[test]
fn flood_sends_megabytes_without_a_newline() {
    let mut s = greeted("flood", Duration::from_secs(5));
    s.write_all(CAPS).expect("send");
    let want = 3 * HUGE_REPLY_BYTES / 2;
    let mut buf = vec![0u8; 64 << 10];
    let (mut got, t0) = (0usize, Instant::now());
    while got < want {
        let n = s.read(&mut buf).expect("read");
        assert!(n > 0, "flood ended after {got} bytes");
        assert!(!buf[..n].contains(&b'\n'), "newline after {got} bytes");
        if got == 0 {
            assert!(buf.starts_with(b"{\"return\": \""));
        }
        got += n;
    }
    let dt = t0.elapsed();
    eprintln!(
        "flood: {got} bytes, no newline, in {dt:?} ({:.0} MiB/s)",
        got as f64 / dt.as_secs_f64() / 1048576.0
    );
}

#[test]
fn close_after_greeting_hangs_up() {
    let mut s = greeted("close-after-greeting", Duration::from_secs(5));
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).expect("EOF");
    assert!(rest.is_empty());
}

#[test]
fn liar_reports_stats_that_do_not_add_up() {
    let mut s = greeted("liar", Duration::from_secs(5));
    s.write_all(CAPS).expect("send");
    json(&line(&mut s).expect("caps"));
    s.write_all(b"{\"execute\": \"query-balloon\"}\n{\"execute\": \"qom-get\", \"arguments\": {\"path\": \"/machine/peripheral/balloon0\", \"property\": \"guest-stats\"}}\n").expect("send");
    let mut replies = Vec::new();
    while replies.len() < 2 {
        let v = json(&line(&mut s).expect("reply"));
        if v.get("event").is_none() {
            replies.push(v);
        }
    }
    let actual = replies[0]["return"]["actual"].as_u64().expect("actual");
    let st = &replies[1]["return"]["stats"];
    let n = |k: &str| st[k].as_u64().expect(k);
    assert!(n("stat-free-memory") > n("stat-total-memory"));
    assert!(n("stat-available-memory") > n("stat-total-memory"));
    assert!(n("stat-total-memory") > actual);
}

#[test]
fn huge_reply_is_two_mib_of_valid_json() {
    let mut s = greeted("huge", Duration::from_secs(5));
    s.write_all(CAPS).expect("send");
    assert!(
        line(&mut s).expect("caps").len() < 100,
        "negotiation is normal"
    );
    s.write_all(b"{\"execute\": \"query-name\", \"id\": 7}\n")
        .expect("send");
    let mut all = Vec::new();
    let mut buf = vec![0u8; 64 << 10];
    while !all.ends_with(b"\n") {
        let n = s.read(&mut buf).expect("read");
        assert!(n > 0, "EOF after {} bytes", all.len());
        all.extend_from_slice(&buf[..n]);
    }
    assert_eq!(all.len(), HUGE_REPLY_BYTES + 1);
    let v = json(&all);
    assert_eq!(v["return"]["name"], "huge");
    assert_eq!(v["id"], 7);
}
