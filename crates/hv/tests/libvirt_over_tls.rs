//! `qemu+tls://` through memwarden's own RPC client: the lab's libvirtd listens for TLS on
//! 127.0.0.1:16514 with the lab's CA, server and client certificates
//! (`lab/libvirt-tls-pki.sh`, run by `lab/start-libvirtd.sh`). The domain read over TLS shows
//! what the local socket shows, a balloon target set over TLS lands, the QEMU pid of a remote
//! daemon is not guessed from local files, libvirt.so is never mapped, and no relay thread
//! outlives the backend. A server from another CA, and a client certificate the daemon does not
//! accept, are errors within the deadline that say which.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use memwarden_hv::{Hypervisor, LibvirtBackend, Transport};
use memwarden_lab::{Domain, DomainOpts, Lab};

mod remote;

/// Where `lab/start-libvirtd.sh` keeps the lab's PKI.
const PKI: &str = "/var/lib/memwarden-lab/libvirt-pki";

fn uri(pki: &Path) -> String {
    format!("qemu+tls://127.0.0.1/system?pkipath={}", pki.display())
}

/// The lab's libvirtd, listening for TLS (it may have been started by an older script that
/// did not: then this says so).
fn lab_with_tls() -> (Lab, Domain) {
    let lab = Lab::new().expect("lab");
    let d = Domain::start(
        &lab,
        DomainOpts {
            name: "tls".into(),
            stats_period: 1,
            ..DomainOpts::default()
        },
    )
    .expect("domain");
    assert!(
        TcpStream::connect(("127.0.0.1", 16514)).is_ok(),
        "libvirtd does not listen on 127.0.0.1:16514: it was started before \
         lab/start-libvirtd.sh listened for TLS; restart it (lab/stop-libvirtd.sh)"
    );
    (lab, d)
}

/// This process's threads named `libvirt-tls` (the channels' relays).
fn relays() -> usize {
    std::fs::read_dir("/proc/self/task")
        .expect("tasks")
        .flatten()
        .filter(|t| {
            std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.trim() == "libvirt-tls")
        })
        .count()
}

/// A PKI of another CA, made by the lab's own script into `dir`.
fn stranger_pki(dir: &Path) -> PathBuf {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../lab/libvirt-tls-pki.sh");
    let st = Command::new(script)
        .arg(dir)
        .stdout(std::process::Stdio::null())
        .status()
        .expect("lab/libvirt-tls-pki.sh (openssl)");
    assert!(st.success());
    dir.join("client")
}

#[test]
fn a_domain_read_and_ballooned_over_tls_matches_the_local_socket() {
    let (_lab, d) = lab_with_tls();
    let mut remote = LibvirtBackend::new(&uri(&Path::new(PKI).join("client")));
    remote.transport = Transport::Rpc;
    remote.set_timeout(Duration::from_secs(10));
    remote::reads_and_balloons_like_the_local_socket(&mut remote, &d, "TLS");

    assert!(relays() > 0, "the channels run through a TLS relay");
    drop(remote);
    let until = Instant::now() + Duration::from_secs(5);
    while relays() > 0 {
        assert!(Instant::now() < until, "{} TLS relay(s) left", relays());
        std::thread::sleep(Duration::from_millis(50));
    }
    remote::assert_libvirt_so_unmapped();
}

#[test]
fn a_server_of_another_ca_and_a_refused_client_are_errors_within_the_deadline() {
    let (_lab, _d) = lab_with_tls();
    let tmp = tempfile::tempdir().expect("tempdir");
    let stranger = stranger_pki(tmp.path());
    let attempt = |pki: &Path| remote::refused_within_the_deadline(&uri(pki));
    // Our CA did not sign the daemon's certificate: refused by us, in rustls's words.
    let msg = attempt(&stranger);
    assert!(
        msg.contains("tls 127.0.0.1:16514") && msg.contains("invalid peer certificate"),
        "{msg}"
    );
    // The daemon's CA, but a client certificate it did not sign: refused by the daemon.
    let mixed = tmp.path().join("mixed");
    std::fs::create_dir(&mixed).expect("mixed");
    for (from, name) in [
        (Path::new(PKI).join("client"), "cacert.pem"),
        (stranger.clone(), "clientcert.pem"),
        (stranger.clone(), "clientkey.pem"),
    ] {
        std::fs::copy(from.join(name), mixed.join(name)).expect(name);
    }
    let msg = attempt(&mixed);
    assert!(
        msg.contains("tls 127.0.0.1:16514") && msg.contains("did not accept our certificate"),
        "{msg}"
    );
}
