//! `qemu+tls://host[:port]/system`: libvirtd's TLS listener (port 16514), reached by the same
//! RPC client as the local socket.
//!
//! As libvirt's own client does: a TCP connection, a TLS handshake in which the server's
//! certificate is checked against the CA and the host name, and the client's certificate is
//! shown; then one byte, `\1`, by which the daemon says it accepted that certificate (and the
//! client's address), before the first call. The certificates are where libvirt looks for them:
//! `?pkipath=DIR` (`cacert.pem`, `clientcert.pem`, `clientkey.pem`), else, for root,
//! `/etc/pki/CA/cacert.pem`, `/etc/pki/libvirt/clientcert.pem` and
//! `/etc/pki/libvirt/private/clientkey.pem`, and for another user `~/.pki/libvirt/` when its
//! `cacert.pem` exists. Other parameters (`no_verify=`, `no_tty=`, ...) leave the URI to
//! libvirt.so.
//!
//! The TLS session runs on a relay thread between the TCP socket and one end of a socket pair;
//! the channel speaks on the other end, as it does to ssh: every deadline, cap and error path is
//! the local one. The relay ends when either side closes.

use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustix::event::{poll, PollFd, PollFlags};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

/// libvirtd's TLS port (`tls_port`).
pub const DEFAULT_PORT: u16 = 16514;

/// The byte by which libvirtd accepts the client's certificate after the handshake
/// (`virNetServerClient`'s TLS confirmation; `virNetClientSetTLSSession` waits for it).
const ACCEPTED: u8 = 1;

/// A remote daemon reached over TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tls {
    pub host: String,
    pub port: u16,
    /// `?pkipath=DIR`; `None`: libvirt's default places.
    pub pki_path: Option<PathBuf>,
    /// The URI opened at the far end (`qemu:///system`).
    pub remote_uri: String,
}

/// The three files a TLS client needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pki {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Tls {
    /// `host[:port]/path[?pkipath=DIR]` after `qemu+tls://`; `None` for anything else.
    pub fn parse(rest: &str) -> Option<Tls> {
        let (authority, tail) = rest.split_once('/')?;
        let (path, query) = match tail.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (tail, None),
        };
        let remote_uri = super::endpoint::remote_uri(path)?;
        // A user part means nothing to TLS; libvirt.so would ignore it, this client refuses.
        if authority.contains('@') {
            return None;
        }
        let (host, port) = super::endpoint::split_port(authority)?;
        if host.is_empty() || host.starts_with('-') {
            return None;
        }
        let mut tls = Tls {
            host,
            port: port.unwrap_or(DEFAULT_PORT),
            pki_path: None,
            remote_uri,
        };
        for param in query.into_iter().flat_map(|q| q.split('&')) {
            match param.split_once('=') {
                Some(("pkipath", p)) if !p.is_empty() => tls.pki_path = Some(PathBuf::from(p)),
                _ => return None,
            }
        }
        Some(tls)
    }

    /// Where the CA, the client certificate and its key are read from.
    pub fn pki(&self) -> Pki {
        if let Some(dir) = &self.pki_path {
            return Pki::in_dir(dir);
        }
        let root = rustix::process::geteuid().is_root();
        let home = std::env::var_os("HOME").map(|h| Path::new(&h).join(".pki/libvirt"));
        match home.filter(|h| !root && h.join("cacert.pem").exists()) {
            Some(dir) => Pki::in_dir(&dir),
            None => Pki {
                ca: "/etc/pki/CA/cacert.pem".into(),
                cert: "/etc/pki/libvirt/clientcert.pem".into(),
                key: "/etc/pki/libvirt/private/clientkey.pem".into(),
            },
        }
    }

    /// Connects, completes the handshake and waits for the daemon's acceptance, all within
    /// `timeout`; then relays on a thread. The error says which step failed, in the words of
    /// the TLS library or the system.
    pub fn dial(&self, timeout: Duration) -> io::Result<UnixStream> {
        let deadline = Instant::now() + timeout;
        let config = self.client_config()?;
        let name = ServerName::try_from(self.host.clone()).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{}: not a host name: {e}", self.host),
            )
        })?;
        let tcp = connect(&self.host, self.port, deadline)?;
        let left = || {
            deadline
                .saturating_duration_since(Instant::now())
                .max(Duration::from_millis(1))
        };
        tcp.set_read_timeout(Some(left()))?;
        tcp.set_write_timeout(Some(left()))?;
        let conn = ClientConnection::new(Arc::new(config), name).map_err(io::Error::other)?;
        let mut tls = StreamOwned::new(conn, tcp);
        while tls.conn.is_handshaking() {
            tls.conn
                .complete_io(&mut tls.sock)
                .map_err(|e| context(e, "TLS handshake"))?;
            tls.sock.set_read_timeout(Some(left()))?;
        }
        let mut byte = [0u8; 1];
        let refused = || {
            io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!(
                    "the daemon did not accept our certificate {} (signed by a CA it does not \
                     trust, or not in its tls_allowed_dn_list): it closed the connection after \
                     the handshake",
                    self.pki().cert.display()
                ),
            )
        };
        match tls.read(&mut byte) {
            Ok(1) if byte[0] == ACCEPTED => {}
            Ok(_) => return Err(refused()),
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Err(refused()),
            Err(e) => {
                return Err(context(
                    e,
                    "waiting for the daemon to accept our certificate",
                ))
            }
        }
        tls.sock.set_read_timeout(None)?;
        tls.sock.set_write_timeout(None)?;
        let (ours, theirs) = UnixStream::pair()?;
        std::thread::Builder::new()
            .name("libvirt-tls".into())
            .spawn(move || relay(tls, theirs))?;
        Ok(ours)
    }

    fn client_config(&self) -> io::Result<ClientConfig> {
        let pki = self.pki();
        let mut roots = RootCertStore::empty();
        for c in certs(&pki.ca)? {
            roots.add(c).map_err(|e| bad_file(&pki.ca, e))?;
        }
        let chain = certs(&pki.cert)?;
        let key = PrivateKeyDer::from_pem_file(&pki.key).map_err(|e| bad_file(&pki.key, e))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(io::Error::other)?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .map_err(|e| bad_file(&pki.cert, e))
    }
}

impl Pki {
    fn in_dir(dir: &Path) -> Pki {
        Pki {
            ca: dir.join("cacert.pem"),
            cert: dir.join("clientcert.pem"),
            key: dir.join("clientkey.pem"),
        }
    }
}

fn certs(path: &Path) -> io::Result<Vec<CertificateDer<'static>>> {
    let found: Vec<_> = CertificateDer::pem_file_iter(path)
        .map_err(|e| bad_file(path, e))?
        .collect::<Result<_, _>>()
        .map_err(|e| bad_file(path, e))?;
    if found.is_empty() {
        return Err(bad_file(path, "no certificate in it"));
    }
    Ok(found)
}

fn bad_file(path: &Path, e: impl std::fmt::Display) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("{}: {e}", path.display()),
    )
}

fn context(e: io::Error, what: &str) -> io::Error {
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

/// The first address of `host:port` that accepts within the deadline.
fn connect(host: &str, port: u16, deadline: Instant) -> io::Result<TcpStream> {
    let mut last = None;
    for addr in (host, port).to_socket_addrs()? {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        match TcpStream::connect_timeout(&addr, left) {
            Ok(s) => {
                s.set_nodelay(true)?;
                return Ok(s);
            }
            Err(e) => last = Some(context(e, &format!("connecting to {addr}"))),
        }
    }
    Err(last.unwrap_or_else(|| {
        io::Error::new(
            io::ErrorKind::TimedOut,
            format!("no address of {host}:{port} answered in time"),
        )
    }))
}

/// Moves bytes between the channel's socket and the TLS session until either closes (the
/// channel dropped: a TLS close_notify is sent; the daemon hung up: the channel sees the end of
/// its stream).
fn relay(mut tls: StreamOwned<ClientConnection, TcpStream>, mut local: UnixStream) {
    let mut buf = vec![0u8; 16 * 1024];
    let _ = (|| -> io::Result<()> {
        loop {
            // Plaintext already decrypted (it came with an earlier record) goes first.
            loop {
                match tls.conn.reader().read(&mut buf) {
                    Ok(0) => return Ok(()),
                    Ok(n) => local.write_all(&buf[..n])?,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => return Err(e),
                }
            }
            while tls.conn.wants_write() {
                tls.conn.write_tls(&mut tls.sock)?;
            }
            let (local_ready, tls_ready) = {
                let mut fds = [
                    PollFd::new(&local, PollFlags::IN),
                    PollFd::new(&tls.sock, PollFlags::IN),
                ];
                match poll(&mut fds, None) {
                    Ok(_) => {}
                    Err(rustix::io::Errno::INTR) => continue,
                    Err(e) => return Err(e.into()),
                }
                (!fds[0].revents().is_empty(), !fds[1].revents().is_empty())
            };
            if local_ready {
                let n = local.read(&mut buf)?;
                if n == 0 {
                    tls.conn.send_close_notify();
                    while tls.conn.wants_write() {
                        tls.conn.write_tls(&mut tls.sock)?;
                    }
                    return Ok(());
                }
                tls.conn.writer().write_all(&buf[..n])?;
            }
            if tls_ready {
                if tls.conn.read_tls(&mut tls.sock)? == 0 {
                    return Ok(());
                }
                tls.conn.process_new_packets().map_err(io::Error::other)?;
            }
        }
    })();
    // Both ends close here: the channel reads the end of its stream.
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_uris_are_parsed_as_libvirt_writes_them() {
        let t = Tls::parse("kvm01/system").expect("plain");
        assert_eq!((t.host.as_str(), t.port), ("kvm01", DEFAULT_PORT));
        assert_eq!(t.remote_uri, "qemu:///system");
        let t = Tls::parse("127.0.0.1:16600/session?pkipath=/srv/pki").expect("params");
        assert_eq!((t.host.as_str(), t.port), ("127.0.0.1", 16600));
        assert_eq!(t.remote_uri, "qemu:///session");
        assert_eq!(t.pki().ca, PathBuf::from("/srv/pki/cacert.pem"));
        assert_eq!(t.pki().key, PathBuf::from("/srv/pki/clientkey.pem"));
        let t = Tls::parse("[::1]/system").expect("v6");
        assert_eq!(t.host, "::1");
        for rest in [
            "kvm01/system?no_verify=1",
            "kvm01/system?pkipath=",
            "root@kvm01/system",
            "kvm01/other",
            "kvm01:port/system",
            "-x/system",
        ] {
            assert_eq!(Tls::parse(rest), None, "{rest}");
        }
    }

    #[test]
    fn missing_certificates_are_named() {
        let t = Tls::parse("127.0.0.1/system?pkipath=/nonexistent/pki").expect("uri");
        let e = t.dial(Duration::from_secs(1)).expect_err("no files");
        assert!(e.to_string().contains("/nonexistent/pki/cacert.pem"), "{e}");
    }
}
