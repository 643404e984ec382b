//! Where a channel's bytes go: the local daemon's UNIX socket, or a remote daemon through ssh
//! or over TLS ([`super::tls`]).
//!
//! For `qemu+ssh://[user@]host[:port]/system` the client does what libvirt's own ssh transport
//! does: it starts `ssh … host virt-ssh-helper qemu:///system` on one end of a socket pair and
//! speaks the same RPC protocol on the other end, so a remote host needs no libvirt.so here and
//! every deadline, cap and error path is the local one. `virt-ssh-helper` (libvirt ≥ 6.8, on
//! the remote host) relays to the daemon there, modular or monolithic. Authentication is ssh's
//! (keys or an agent: `BatchMode=yes`, never a password prompt); the remote daemon sees a local
//! client of the ssh user. URI parameters this client does not implement (`socket=`,
//! `netcat=`, `command=`, `proxy=`, ...) leave the URI to libvirt.so.

use std::io;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::tls::Tls;

/// A remote daemon reached through ssh.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ssh {
    pub host: String,
    pub user: Option<String>,
    pub port: Option<u16>,
    /// `?keyfile=PATH`: ssh's `-i`.
    pub keyfile: Option<PathBuf>,
    /// `?no_verify=1`: do not check the host key (as libvirt's parameter of that name).
    pub no_verify: bool,
    /// The URI opened at the far end (`qemu:///system`).
    pub remote_uri: String,
}

/// Where a channel connects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    Socket(PathBuf),
    Ssh(Ssh),
    Tls(Tls),
}

/// A connected channel's stream, and the ssh process behind it (killed with the channel).
#[derive(Debug)]
pub struct Dialed {
    pub sock: UnixStream,
    pub child: Option<Child>,
}

impl Endpoint {
    /// The endpoint for `uri`; `None` when this client does not serve it (another driver or
    /// transport, parameters it does not implement, a session daemon that is not running).
    pub fn for_uri(uri: &str) -> Option<Endpoint> {
        if let Some(rest) = uri.strip_prefix("qemu+ssh://") {
            return parse_ssh(rest).map(Endpoint::Ssh);
        }
        if let Some(rest) = uri.strip_prefix("qemu+tls://") {
            return Tls::parse(rest).map(Endpoint::Tls);
        }
        super::socket_for(uri).map(Endpoint::Socket)
    }

    /// The URI `CONNECT_OPEN` names on this endpoint: the daemon's own for a remote one.
    pub fn open_uri<'a>(&'a self, uri: &'a str) -> &'a str {
        match self {
            Endpoint::Socket(_) => uri,
            Endpoint::Ssh(s) => &s.remote_uri,
            Endpoint::Tls(t) => &t.remote_uri,
        }
    }

    /// Connects; an ssh endpoint starts ssh, which connects while the first call is written; a
    /// TLS endpoint completes its handshake first (within `timeout`).
    pub fn dial(&self, timeout: Duration) -> io::Result<Dialed> {
        match self {
            Endpoint::Socket(p) => Ok(Dialed {
                sock: UnixStream::connect(p)?,
                child: None,
            }),
            Endpoint::Ssh(s) => {
                let (ours, theirs) = UnixStream::pair()?;
                let child = Command::new("ssh")
                    .args(s.args(timeout))
                    .stdin(Stdio::from(std::os::fd::OwnedFd::from(theirs.try_clone()?)))
                    .stdout(Stdio::from(std::os::fd::OwnedFd::from(theirs)))
                    // ssh's complaints (refused key, host key) go into the error a failed
                    // handshake returns. Only errors are printed (LogLevel), a few lines.
                    .stderr(Stdio::piped())
                    .spawn()?;
                Ok(Dialed {
                    sock: ours,
                    child: Some(child),
                })
            }
            Endpoint::Tls(t) => Ok(Dialed {
                sock: t.dial(timeout)?,
                child: None,
            }),
        }
    }

    /// For messages: the socket's path, `ssh user@host:port` or `tls host:port`.
    pub fn describe(&self) -> String {
        match self {
            Endpoint::Socket(p) => p.display().to_string(),
            Endpoint::Ssh(s) => format!(
                "ssh {}{}{}",
                s.user
                    .as_deref()
                    .map(|u| format!("{u}@"))
                    .unwrap_or_default(),
                s.host,
                s.port.map(|p| format!(":{p}")).unwrap_or_default()
            ),
            Endpoint::Tls(t) => format!("tls {}:{}", t.host, t.port),
        }
    }
}

impl Ssh {
    /// ssh's arguments: no terminal, no escape character, never a prompt, the connection
    /// itself bounded by the call's timeout (at least a second: ssh counts whole seconds).
    fn args(&self, timeout: Duration) -> Vec<String> {
        let mut a: Vec<String> = [
            "-T",
            "-e",
            "none",
            "-o",
            "BatchMode=yes",
            "-o",
            "LogLevel=ERROR",
        ]
        .map(String::from)
        .to_vec();
        a.push("-o".into());
        a.push(format!("ConnectTimeout={}", timeout.as_secs().max(1)));
        if let Some(p) = self.port {
            a.extend(["-p".into(), p.to_string()]);
        }
        if let Some(u) = &self.user {
            a.extend(["-l".into(), u.clone()]);
        }
        if let Some(k) = &self.keyfile {
            a.extend(["-i".into(), k.display().to_string()]);
        }
        if self.no_verify {
            a.extend(
                [
                    "-o",
                    "StrictHostKeyChecking=no",
                    "-o",
                    "UserKnownHostsFile=/dev/null",
                ]
                .map(String::from),
            );
        }
        a.push("--".into());
        a.push(self.host.clone());
        // The remote shell reads this line: the URI is one word of [a-z:/] (parse_ssh checks).
        a.push(format!("virt-ssh-helper {}", self.remote_uri));
        a
    }
}

/// `[user@]host[:port]/path[?params]` after `qemu+ssh://`.
fn parse_ssh(rest: &str) -> Option<Ssh> {
    let (authority, tail) = rest.split_once('/')?;
    let (path, query) = match tail.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (tail, None),
    };
    let remote_uri = remote_uri(path)?;
    let (user, hostport) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u.to_string()), h),
        None => (None, authority),
    };
    let (host, port) = split_port(hostport)?;
    let ok_word = |s: &str| {
        !s.is_empty()
            && !s.starts_with('-')
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-:[]".contains(c))
    };
    if !ok_word(&host) || !user.as_deref().is_none_or(ok_word) {
        return None;
    }
    let mut ssh = Ssh {
        host,
        user,
        port,
        keyfile: None,
        no_verify: false,
        remote_uri,
    };
    for param in query.into_iter().flat_map(|q| q.split('&')) {
        match param.split_once('=') {
            Some(("keyfile", k)) if !k.is_empty() => ssh.keyfile = Some(PathBuf::from(k)),
            Some(("no_verify", v)) => ssh.no_verify = v == "1",
            _ => return None,
        }
    }
    Some(ssh)
}

/// The URI a remote URI's path names at the far end: `system` or `session` of QEMU.
pub(super) fn remote_uri(path: &str) -> Option<String> {
    match path {
        "system" => Some("qemu:///system".into()),
        "session" => Some("qemu:///session".into()),
        _ => None,
    }
}

/// `host`, `host:port`, `[v6]`, `[v6]:port`.
pub(super) fn split_port(s: &str) -> Option<(String, Option<u16>)> {
    if let Some(v6) = s.strip_prefix('[') {
        let (addr, after) = v6.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p.parse().ok()?),
            None if after.is_empty() => None,
            None => return None,
        };
        return Some((addr.to_string(), port));
    }
    match s.split_once(':') {
        Some((h, p)) => Some((h.to_string(), Some(p.parse().ok()?))),
        None => Some((s.to_string(), None)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssh_uris_are_parsed_as_libvirt_writes_them() {
        let e = Endpoint::for_uri("qemu+ssh://root@kvm01:2222/system?keyfile=/k/id&no_verify=1");
        let Some(Endpoint::Ssh(s)) = e else {
            panic!("{e:?}")
        };
        assert_eq!(s.host, "kvm01");
        assert_eq!(s.user.as_deref(), Some("root"));
        assert_eq!(s.port, Some(2222));
        assert_eq!(s.keyfile.as_deref(), Some(std::path::Path::new("/k/id")));
        assert!(s.no_verify);
        assert_eq!(s.remote_uri, "qemu:///system");
        let a = s.args(Duration::from_millis(300));
        assert!(a.contains(&"ConnectTimeout=1".to_string()), "{a:?}");
        assert_eq!(
            a[a.len() - 3..],
            ["--", "kvm01", "virt-ssh-helper qemu:///system"]
        );

        let Some(Endpoint::Ssh(s)) = Endpoint::for_uri("qemu+ssh://[::1]/session") else {
            panic!("v6")
        };
        assert_eq!((s.host.as_str(), s.port), ("::1", None));
        assert_eq!(s.remote_uri, "qemu:///session");
    }

    #[test]
    fn what_this_client_does_not_implement_is_left_to_libvirt_so() {
        for uri in [
            "qemu+ssh://kvm01/system?socket=/x",
            "qemu+ssh://kvm01/system?proxy=netcat",
            "qemu+ssh://kvm01/other",
            "qemu+ssh://-oProxyCommand=x/system",
            "qemu+ssh://kvm01:notaport/system",
            "qemu+tls://kvm01/system?no_verify=1",
            "test:///default",
        ] {
            assert_eq!(Endpoint::for_uri(uri), None, "{uri}");
        }
    }
}
