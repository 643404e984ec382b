//! The RPC client against a socket that misbehaves in ways the real libvirtd cannot be made to:
//! a reply cut off by a close, a reply to another call, an oversized length, no reply at all.
//! Each must be an error in plain words within the deadline, never a panic or a hang. (The
//! fake server answers the connection's opening calls like libvirtd, then misbehaves.)

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use memwarden_libvirt::rpc::{wire, Connect, Endpoint};

fn read_call(s: &mut UnixStream) -> wire::Header {
    let mut w = [0u8; 4];
    s.read_exact(&mut w).expect("length");
    let n = wire::packet_len(w).expect("sane length");
    let mut p = vec![0u8; n];
    s.read_exact(&mut p).expect("packet");
    wire::split(&p).expect("header").0
}

fn reply(call: &wire::Header, body: &[u8]) -> Vec<u8> {
    let h = wire::Header {
        kind: wire::kind::REPLY,
        ..*call
    };
    wire::frame(&h, body)
}

/// A server that answers AUTH_LIST ([NONE]) and CONNECT_OPEN, then lets `misbehave` answer
/// the next call.
fn fake(
    name: &str,
    misbehave: impl FnOnce(&mut UnixStream, wire::Header) + Send + 'static,
) -> PathBuf {
    let dir = tempfile::tempdir().expect("tmp").keep();
    let path = dir.join(name);
    let l = UnixListener::bind(&path).expect("bind");
    std::thread::spawn(move || {
        let (mut s, _) = l.accept().expect("accept");
        let auth = read_call(&mut s);
        s.write_all(&reply(&auth, &[0, 0, 0, 1, 0, 0, 0, 0]))
            .expect("auth");
        let open = read_call(&mut s);
        s.write_all(&reply(&open, &[])).expect("open");
        let call = read_call(&mut s);
        misbehave(&mut s, call);
        std::thread::sleep(Duration::from_secs(3));
    });
    path
}

fn lookup_error(path: PathBuf, timeout: Duration) -> String {
    let c =
        Connect::open("qemu:///system", &Endpoint::Socket(path.clone()), timeout).expect("open");
    let t = Instant::now();
    let e = c.lookup_domain_by_name("vm").expect_err("must fail");
    assert!(
        t.elapsed() < timeout + Duration::from_millis(500),
        "took {:?}",
        t.elapsed()
    );
    e.message().to_string()
}

#[test]
fn a_close_in_the_middle_of_a_reply_says_so() {
    let p = fake("cut", |s, call| {
        let full = reply(&call, &[0; 64]);
        s.write_all(&full[..40]).expect("half");
        let _ = s.shutdown(std::net::Shutdown::Both);
    });
    let m = lookup_error(p, Duration::from_secs(5));
    assert!(
        m.contains("closed the connection in the middle of a reply"),
        "{m}"
    );
}

#[test]
fn a_reply_to_another_call_is_refused() {
    let p = fake("serial", |s, call| {
        let other = wire::Header {
            serial: call.serial + 7,
            ..call
        };
        s.write_all(&reply(&other, &[])).expect("reply");
    });
    let m = lookup_error(p, Duration::from_secs(5));
    assert!(m.contains("reply to call #"), "{m}");
}

#[test]
fn an_oversized_reply_is_refused_before_it_is_read() {
    let p = fake("huge", |s, _| {
        s.write_all(&u32::MAX.to_be_bytes()).expect("length");
    });
    let m = lookup_error(p, Duration::from_secs(5));
    assert!(m.contains("larger than libvirt's maximum message"), "{m}");
}

#[test]
fn no_reply_ends_at_the_deadline() {
    let p = fake("silent", |_, _| {});
    let m = lookup_error(p, Duration::from_millis(700));
    assert!(m.contains("no reply from libvirtd in time"), "{m}");
}

#[test]
fn a_server_error_carries_libvirts_code_and_message() {
    let p = fake("error", |s, call| {
        let mut e = memwarden_libvirt::rpc::xdr::Enc::new();
        e.i32(42)
            .i32(10)
            .opt_str(Some("Domain not found: no domain with matching name 'vm'"));
        e.i32(2)
            .u32(0)
            .opt_str(None)
            .opt_str(None)
            .opt_str(None)
            .i32(0)
            .i32(0)
            .u32(0);
        let h = wire::Header {
            status: wire::status::ERROR,
            ..call
        };
        s.write_all(&reply(&h, &e.buf)).expect("reply");
    });
    let c = Connect::open(
        "qemu:///system",
        &Endpoint::Socket(p.clone()),
        Duration::from_secs(5),
    )
    .expect("open");
    let e = c.lookup_domain_by_name("vm").expect_err("no such domain");
    assert_eq!((e.code(), e.domain()), (42, 10));
    assert!(e.message().contains("no domain with matching name"), "{e}");
}
