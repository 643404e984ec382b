//! `qemu+ssh://` through memwarden's own RPC client: a real sshd on a loopback port (keys made
//! for the test), `virt-ssh-helper` at the far end, the lab's libvirtd behind it. The domain
//! read over ssh shows what the local socket shows, a balloon target set over ssh lands, the
//! QEMU pid of a remote daemon is not guessed from local files, libvirt.so is never mapped, and
//! no ssh process outlives the backend. A wrong key is an error within the deadline.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use memwarden_hv::{Hypervisor, LibvirtBackend, Transport};
use memwarden_lab::{Domain, DomainOpts, Lab};

mod remote;

struct Sshd {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn keygen(path: &Path) {
    let st = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(path)
        .status()
        .expect("ssh-keygen (apt-get install openssh-client)");
    assert!(st.success(), "ssh-keygen {}", path.display());
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

fn sshd() -> Sshd {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    keygen(&d.join("host"));
    keygen(&d.join("client"));
    std::fs::copy(d.join("client.pub"), d.join("authorized_keys")).expect("authorized_keys");
    // sshd's privilege separation directory (the package's unit makes it at boot).
    std::fs::create_dir_all("/run/sshd").expect("/run/sshd");
    let port = free_port();
    let config = d.join("sshd_config");
    std::fs::write(
        &config,
        format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {host}\nPidFile {pid}\n\
             AuthorizedKeysFile {keys}\nStrictModes no\nPermitRootLogin prohibit-password\n\
             PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n",
            host = d.join("host").display(),
            pid = d.join("sshd.pid").display(),
            keys = d.join("authorized_keys").display(),
        ),
    )
    .expect("sshd_config");
    let child = Command::new("/usr/sbin/sshd")
        .args(["-D", "-e", "-f"])
        .arg(&config)
        .stderr(Stdio::null())
        .spawn()
        .expect("sshd (apt-get install openssh-server)");
    let until = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < until, "sshd did not listen on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
    Sshd { child, port, dir }
}

fn uri(s: &Sshd, key: &Path) -> String {
    format!(
        "qemu+ssh://root@127.0.0.1:{}/system?keyfile={}&no_verify=1",
        s.port,
        key.display()
    )
}

/// Our children named `ssh` (the channels' processes).
fn ssh_children() -> Vec<u32> {
    let me = std::process::id();
    std::fs::read_dir("/proc")
        .expect("/proc")
        .flatten()
        .filter_map(|e| {
            let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
            let (comm, rest) = stat.split_once(") ")?;
            let ppid: u32 = rest.split_whitespace().nth(1)?.parse().ok()?;
            (comm.ends_with("(ssh") && ppid == me).then(|| e.file_name().to_str()?.parse().ok())?
        })
        .collect()
}

#[test]
fn a_domain_read_and_ballooned_over_ssh_matches_the_local_socket() {
    let lab = Lab::new().expect("lab");
    let d = Domain::start(
        &lab,
        DomainOpts {
            name: "ssh".into(),
            stats_period: 1,
            ..DomainOpts::default()
        },
    )
    .expect("domain");
    let sshd = sshd();
    let key: PathBuf = sshd.dir.path().join("client");
    let mut remote = LibvirtBackend::new(&uri(&sshd, &key));
    remote.transport = Transport::Rpc;
    remote.set_timeout(Duration::from_secs(10));
    remote::reads_and_balloons_like_the_local_socket(&mut remote, &d, "ssh");

    assert!(!ssh_children().is_empty(), "the channels run through ssh");
    drop(remote);
    let until = Instant::now() + Duration::from_secs(5);
    while !ssh_children().is_empty() {
        assert!(
            Instant::now() < until,
            "ssh left behind: {:?}",
            ssh_children()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    remote::assert_libvirt_so_unmapped();
}

#[test]
fn a_key_the_server_refuses_is_an_error_within_the_deadline() {
    let sshd = sshd();
    let stranger = sshd.dir.path().join("stranger");
    keygen(&stranger);
    let msg = remote::refused_within_the_deadline(&uri(&sshd, &stranger));
    assert!(
        msg.contains("ssh: ") && msg.contains("Permission denied"),
        "ssh's own words in the error: {msg}"
    );
}
