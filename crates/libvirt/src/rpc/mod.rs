//! libvirt without libvirt.so: its RPC protocol spoken directly over the daemon's local UNIX
//! socket, for `qemu:///system` (and `qemu:///session` when its daemon is already running), and
//! over ssh for `qemu+ssh://` ([`endpoint`]).
//!
//! Why: loading libvirt.so.0 maps ~55 libraries (libcrypto, gnutls, glib, libxml2, ...) and
//! more than doubles the daemon's resident memory; the dozen calls memwarden makes need none
//! of them. Other URIs (`qemu+tls://`, `test:///`, ssh URIs with parameters it does not
//! implement) keep the loaded library
//! ([`crate::ffi`]); [`crate::conn`] picks one per URI.
//!
//! - **Channels.** A [`Connect`] holds a few *channels*, each a socket with its own libvirt
//!   connection (auth, `CONNECT_OPEN`). A call takes an idle channel, or opens one, and has it
//!   alone for one exchange: no demultiplexing, and a call stuck on a wedged QEMU monitor does
//!   not hold up the next call (the backend's hedged bulk call relies on that). A channel whose
//!   exchange failed, timed out or read anything unexpected is closed, never reused, so a late
//!   reply can never be taken for another call's.
//! - **Deadline.** Every exchange (send and whole reply) must finish within the connection's
//!   timeout ([`Connect::set_timeout`]); socket timeouts are set from what is left of it.
//! - **Keepalive.** We never call `CONNECT_SUPPORTS_FEATURE(PROGRAM_KEEPALIVE)`, so libvirtd
//!   never starts pinging us (it only pings clients that said they understand it). A dead
//!   daemon is found by the deadline and by [`Connect::is_alive`], which peeks at the idle
//!   sockets for EOF. A ping that arrives anyway is answered.
//! - **Caps.** A reply larger than libvirt's `VIR_NET_MESSAGE_MAX` (32 MiB) is refused before
//!   it is read; strings and arrays are held to the `.x` files' limits ([`xdr`]).

pub mod endpoint;
pub mod events;
pub mod proto;
pub mod tls;
pub mod wire;
pub mod xdr;

use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::Child;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::conn::{sys, LvError};
pub use endpoint::Endpoint;
use proto::DomRef;
use wire::{kind, status, Header, WireError};
use xdr::XResult;

type R<T> = Result<T, LvError>;

/// libvirt's `VIR_FROM_RPC` error domain, for the errors this client makes itself.
const FROM_RPC: i32 = 7;
/// Idle channels kept for reuse; more are closed when their call ends.
const IDLE_MAX: usize = 2;
/// How long a failed ssh channel waits for ssh to exit, and how much of its stderr is kept.
const SSH_EXIT_WAIT: Duration = Duration::from_millis(500);
const SSH_STDERR_CAP: u64 = 2048;
/// How long a closing channel waits for `CONNECT_CLOSE`'s reply.
const CLOSE_WAIT: Duration = Duration::from_millis(200);

/// The daemon socket for `uri`; `None` when the URI is not one this client serves locally
/// (remote transports, other drivers, URIs with parameters), or a session daemon that is not
/// running (libvirt.so can start one; this client does not).
pub fn socket_for(uri: &str) -> Option<PathBuf> {
    let (dir, system) = match uri {
        "qemu:///system" => (PathBuf::from("/run/libvirt"), true),
        "qemu:///session" => (
            PathBuf::from(std::env::var_os("XDG_RUNTIME_DIR")?).join("libvirt"),
            false,
        ),
        _ => return None,
    };
    // libvirt's "auto" mode: the modular daemon when its socket exists, else the monolithic
    // libvirtd (whose socket virtproxyd also serves).
    let candidates = [dir.join("virtqemud-sock"), dir.join("libvirt-sock")];
    match candidates.iter().find(|p| p.exists()) {
        Some(p) => Some(p.clone()),
        // No daemon yet: connecting fails with the monolithic socket's name, as libvirt's does.
        None if system => Some(candidates[1].clone()),
        None => None,
    }
}

fn rpc_error(code: i32, message: String) -> LvError {
    LvError::new(code, FROM_RPC, message)
}

fn wire_error(e: WireError) -> LvError {
    match &e {
        WireError::Io { source, .. }
            if matches!(
                source.kind(),
                std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
            ) =>
        {
            rpc_error(
                sys::VIR_ERR_OPERATION_TIMEOUT,
                format!("no reply from libvirtd in time: {e}"),
            )
        }
        WireError::Io { .. } | WireError::Closed { .. } => {
            rpc_error(sys::VIR_ERR_SYSTEM_ERROR, e.to_string())
        }
        WireError::Malformed(_) => rpc_error(
            sys::VIR_ERR_RPC,
            format!("unexpected reply from libvirtd: {e}"),
        ),
    }
}

/// What one packet from the server is, relative to the call we are waiting for.
#[derive(Debug, PartialEq)]
pub enum Reply<'a> {
    /// Our reply, successful: its body.
    Ok(&'a [u8]),
    /// Our reply, a failure.
    Err(proto::RemoteError),
    /// A keepalive ping to answer before reading on.
    Ping,
    /// An event or keepalive pong: not ours, read on.
    Skip,
}

/// Classifies a packet (length word excluded) against the call `want`. Pure, so that the
/// fuzz test can feed it anything.
pub fn classify<'a>(packet: &'a [u8], want: &Header) -> Result<Reply<'a>, WireError> {
    let (h, body) = wire::split(packet)?;
    if h.prog == wire::KEEPALIVE_PROGRAM {
        return Ok(if h.proc_ == proto::KEEPALIVE_PING {
            Reply::Ping
        } else {
            Reply::Skip
        });
    }
    if h.kind == kind::MESSAGE {
        return Ok(Reply::Skip);
    }
    if h.kind != kind::REPLY {
        return Err(WireError::Malformed(format!(
            "a packet of type {} where a reply was expected",
            h.kind
        )));
    }
    if h.serial != want.serial {
        return Err(WireError::Malformed(format!(
            "a reply to call #{} while waiting for call #{}",
            h.serial, want.serial
        )));
    }
    if (h.prog, h.vers, h.proc_) != (want.prog, want.vers, want.proc_) {
        return Err(WireError::Malformed(format!(
            "a reply to procedure {:#x}/{}/{} while waiting for {:#x}/{}/{}",
            h.prog, h.vers, h.proc_, want.prog, want.vers, want.proc_
        )));
    }
    match h.status {
        status::OK => Ok(Reply::Ok(body)),
        status::ERROR => Ok(Reply::Err(proto::remote_error(body)?)),
        s => Err(WireError::Malformed(format!("reply status {s}"))),
    }
}

/// One socket and its libvirt connection; used by one call at a time.
#[derive(Debug)]
struct Channel {
    sock: UnixStream,
    /// The ssh process a remote channel runs through; killed with the channel.
    child: Option<Child>,
    serial: u32,
    /// Set when an exchange did not end cleanly: the stream's position is unknown.
    broken: bool,
}

impl Channel {
    fn open(at: &Endpoint, uri: &str, deadline: Instant) -> R<Channel> {
        let dialed = at
            .dial(deadline.saturating_duration_since(Instant::now()))
            .map_err(|e| {
                rpc_error(
                    sys::VIR_ERR_SYSTEM_ERROR,
                    match at {
                        Endpoint::Socket(p) => {
                            format!("Failed to connect socket to '{}': {e}", p.display())
                        }
                        Endpoint::Ssh(_) => format!("Failed to start {}: {e}", at.describe()),
                        Endpoint::Tls(_) => format!("{}: {e}", at.describe()),
                    },
                )
            })?;
        let mut ch = Channel {
            sock: dialed.sock,
            child: dialed.child,
            serial: 0,
            broken: false,
        };
        match ch.handshake(at, uri, deadline) {
            Ok(()) => Ok(ch),
            Err(e) => Err(ch.ssh_said(e)),
        }
    }

    /// Authentication and `CONNECT_OPEN`.
    fn handshake(&mut self, at: &Endpoint, uri: &str, deadline: Instant) -> R<()> {
        let ch = self;
        let uri = at.open_uri(uri);
        let path = at.describe();
        // As libvirt's client: ask which authentication the socket wants. libvirtd answers
        // "none" to root on the read-write socket even when polkit is configured.
        let types = ch.call(
            wire::REMOTE_PROGRAM,
            proto::remote::AUTH_LIST,
            &[],
            deadline,
            proto::auth_list,
        )?;
        if !types.contains(&proto::auth::NONE) {
            if types.contains(&proto::auth::POLKIT) {
                let complete = ch.call(
                    wire::REMOTE_PROGRAM,
                    proto::remote::AUTH_POLKIT,
                    &[],
                    deadline,
                    |b| proto::int(b, "auth_polkit"),
                )?;
                if complete == 0 {
                    return Err(rpc_error(
                        sys::VIR_ERR_AUTH_FAILED,
                        format!("polkit did not authorise this process on {path}"),
                    ));
                }
            } else {
                return Err(rpc_error(
                    sys::VIR_ERR_AUTH_FAILED,
                    format!(
                        "{path} asks for authentication types {types:?} (1 = SASL), which \
                         memwarden's built-in client does not speak; run as root or give a URI \
                         with parameters (e.g. {uri}?mode=legacy) to use libvirt.so"
                    ),
                ));
            }
        }
        ch.call(
            wire::REMOTE_PROGRAM,
            proto::remote::CONNECT_OPEN,
            &proto::open_args(uri),
            deadline,
            proto::void,
        )
    }

    /// `e` with what ssh printed before it exited (`Permission denied (publickey).`, `Host
    /// key verification failed.`, `virt-ssh-helper: not found`): the cause, where the protocol
    /// only saw the stream close.
    fn ssh_said(&mut self, e: LvError) -> LvError {
        use std::io::Read as _;
        let Some(child) = self.child.as_mut() else {
            return e;
        };
        self.broken = true;
        let until = Instant::now() + SSH_EXIT_WAIT;
        while child.try_wait().ok().flatten().is_none() && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(10));
        }
        let mut said = String::new();
        if let Some(err) = child.stderr.as_mut() {
            let _ = err.take(SSH_STDERR_CAP).read_to_string(&mut said);
        }
        let said = said.split_whitespace().collect::<Vec<_>>().join(" ");
        if said.is_empty() {
            return e;
        }
        LvError::new(
            e.code(),
            e.domain(),
            format!("ssh: {said}; {}", e.message()),
        )
    }

    /// Sends one call and returns its reply's packet (length word excluded).
    fn exchange(&mut self, want: &Header, args: &[u8], deadline: Instant) -> R<Vec<u8>> {
        self.broken = true; // until the reply is fully read
        wire::write_all(&mut self.sock, &wire::frame(want, args), deadline).map_err(wire_error)?;
        loop {
            let packet = wire::read_packet(&mut self.sock, deadline).map_err(wire_error)?;
            match classify(&packet, want).map_err(wire_error)? {
                Reply::Skip => continue,
                Reply::Ping => self.pong(deadline)?,
                Reply::Ok(_) | Reply::Err(_) => {
                    self.broken = false;
                    return Ok(packet);
                }
            }
        }
    }

    /// Answers a keepalive ping.
    fn pong(&mut self, deadline: Instant) -> R<()> {
        let pong = Header {
            prog: wire::KEEPALIVE_PROGRAM,
            vers: wire::PROTOCOL_VERSION,
            proc_: proto::KEEPALIVE_PONG,
            kind: kind::MESSAGE,
            serial: 0,
            status: status::OK,
        };
        wire::write_all(&mut self.sock, &wire::frame(&pong, &[]), deadline).map_err(wire_error)
    }

    /// One call, its reply decoded by `decode`; a server error becomes libvirt's own error.
    fn call<T>(
        &mut self,
        prog: u32,
        proc_: i32,
        args: &[u8],
        deadline: Instant,
        decode: impl FnOnce(&[u8]) -> XResult<T>,
    ) -> R<T> {
        self.serial = self.serial.wrapping_add(1);
        let want = Header::call(prog, proc_, self.serial);
        let packet = self.exchange(&want, args, deadline)?;
        match classify(&packet, &want).map_err(wire_error)? {
            Reply::Ok(body) => decode(body).map_err(|e| {
                self.broken = true;
                wire_error(WireError::from(e))
            }),
            Reply::Err(e) => Err(LvError::new(
                e.code,
                e.domain,
                e.message
                    .unwrap_or_else(|| format!("libvirt error {}", e.code)),
            )),
            Reply::Ping | Reply::Skip => unreachable!("exchange returns only replies"),
        }
    }

    /// True while the server has not closed this socket (nothing is read or consumed).
    fn open_at_peer(&self) -> bool {
        use rustix::net::{recv, RecvFlags};
        let mut b = [0u8; 1];
        match recv(&self.sock, &mut b, RecvFlags::PEEK | RecvFlags::DONTWAIT) {
            Ok((0, _)) => false,
            Ok(_) => true, // unread bytes: an event; the next exchange skips it
            Err(e) => e == rustix::io::Errno::AGAIN,
        }
    }
}

impl Drop for Channel {
    /// Says goodbye (`CONNECT_CLOSE`) so that libvirtd logs no broken pipe; a channel in an
    /// unknown state is just closed.
    fn drop(&mut self) {
        if !self.broken {
            let deadline = Instant::now() + CLOSE_WAIT;
            let _ = self.call(
                wire::REMOTE_PROGRAM,
                proto::remote::CONNECT_CLOSE,
                &[],
                deadline,
                proto::void,
            );
        }
        if let Some(mut child) = self.child.take() {
            // Reaped here, not left a zombie; SIGKILL after the goodbye, which ssh has sent on.
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[derive(Debug)]
struct Inner {
    uri: String,
    endpoint: Endpoint,
    timeout_ms: AtomicU64,
    idle: Mutex<Vec<Channel>>,
}

impl Inner {
    /// Runs one exchange on a channel of its own under the connection's timeout.
    fn call<T>(
        &self,
        prog: u32,
        proc_: i32,
        args: &[u8],
        decode: impl FnOnce(&[u8]) -> XResult<T>,
    ) -> R<T> {
        let deadline =
            Instant::now() + Duration::from_millis(self.timeout_ms.load(Ordering::Relaxed));
        let idle = self.idle.lock().map(|mut v| v.pop()).unwrap_or(None);
        let mut ch = match idle {
            Some(ch) => ch,
            None => Channel::open(&self.endpoint, &self.uri, deadline)?,
        };
        let r = ch.call(prog, proc_, args, deadline, decode);
        if !ch.broken {
            if let Ok(mut v) = self.idle.lock() {
                if v.len() < IDLE_MAX {
                    v.push(ch);
                }
            }
        }
        r
    }
}

/// A connection to a libvirt daemon over its RPC protocol (local socket or ssh).
#[derive(Debug, Clone)]
pub struct Connect {
    inner: Arc<Inner>,
}

impl Connect {
    /// Connects to `endpoint` and opens `uri` on it, within `timeout`.
    pub fn open(uri: &str, endpoint: &Endpoint, timeout: Duration) -> R<Connect> {
        let ch = Channel::open(endpoint, uri, Instant::now() + timeout)?;
        Ok(Connect {
            inner: Arc::new(Inner {
                uri: uri.to_string(),
                endpoint: endpoint.clone(),
                timeout_ms: AtomicU64::new(timeout.as_millis().try_into().unwrap_or(u64::MAX)),
                idle: Mutex::new(vec![ch]),
            }),
        })
    }

    /// Every later exchange must finish within `timeout`.
    pub fn set_timeout(&self, timeout: Duration) {
        let ms = timeout.as_millis().try_into().unwrap_or(u64::MAX);
        self.inner.timeout_ms.store(ms, Ordering::Relaxed);
    }

    /// False once libvirtd has closed an idle socket (it restarted or stopped); such
    /// channels are dropped.
    pub fn is_alive(&self) -> bool {
        let Ok(mut idle) = self.inner.idle.lock() else {
            return false;
        };
        let before = idle.len();
        idle.retain_mut(|c| {
            let open = c.open_at_peer();
            // Closed by the server: drop it without a goodbye.
            c.broken |= !open;
            open
        });
        before == 0 || !idle.is_empty()
    }

    /// One call with a raw reply: the whole packet (length word excluded), for capturing
    /// fixtures. A server error is still returned as the packet.
    pub fn raw_call(&self, prog: u32, proc_: i32, args: &[u8]) -> R<Vec<u8>> {
        let deadline =
            Instant::now() + Duration::from_millis(self.inner.timeout_ms.load(Ordering::Relaxed));
        let mut ch = Channel::open(&self.inner.endpoint, &self.inner.uri, deadline)?;
        ch.serial += 1;
        ch.exchange(&Header::call(prog, proc_, ch.serial), args, deadline)
    }

    /// A channel of its own registered for every domain's lifecycle and reboot events.
    pub fn watch_events(&self, deadline: Instant) -> R<events::EventWatch> {
        events::EventWatch::open(&self.inner.uri, &self.inner.endpoint, deadline)
    }

    pub fn lookup_domain_by_name(&self, name: &str) -> R<Domain> {
        let dom = self.inner.call(
            wire::REMOTE_PROGRAM,
            proto::remote::DOMAIN_LOOKUP_BY_NAME,
            &proto::lookup_by_name_args(name),
            proto::domain,
        )?;
        Ok(self.domain(dom))
    }

    pub fn list_all_domains(&self, flags: u32) -> R<Vec<Domain>> {
        let doms = self.inner.call(
            wire::REMOTE_PROGRAM,
            proto::remote::CONNECT_LIST_ALL_DOMAINS,
            &proto::list_all_domains_args(flags),
            proto::list_all_domains,
        )?;
        Ok(doms.into_iter().map(|d| self.domain(d)).collect())
    }

    /// `virConnectGetAllDomainStats` for every domain `flags` selects.
    pub fn all_domain_stats(&self, stats: u32, flags: u32) -> R<Vec<(Domain, proto::Params)>> {
        let recs = self.inner.call(
            wire::REMOTE_PROGRAM,
            proto::remote::CONNECT_GET_ALL_DOMAIN_STATS,
            &proto::all_domain_stats_args(stats, flags),
            proto::all_domain_stats,
        )?;
        Ok(recs.into_iter().map(|(d, p)| (self.domain(d), p)).collect())
    }

    fn domain(&self, dom: DomRef) -> Domain {
        Domain {
            conn: self.inner.clone(),
            dom,
        }
    }
}

/// A domain as the server named it: name, UUID and id travel with every call.
#[derive(Debug, Clone)]
pub struct Domain {
    conn: Arc<Inner>,
    dom: DomRef,
}

impl Domain {
    fn call<T>(&self, proc_: i32, args: &[u8], decode: impl FnOnce(&[u8]) -> XResult<T>) -> R<T> {
        self.conn.call(wire::REMOTE_PROGRAM, proc_, args, decode)
    }

    pub fn name(&self) -> &str {
        &self.dom.name
    }

    /// The id the server gave when this reference was made, as libvirt's client does.
    pub fn id(&self) -> Option<u32> {
        u32::try_from(self.dom.id).ok()
    }

    /// The UUID in its usual 8-4-4-4-12 lowercase form.
    pub fn uuid_string(&self) -> String {
        self.dom.uuid_string()
    }

    pub fn xml_desc(&self, flags: u32) -> R<String> {
        self.call(
            proto::remote::DOMAIN_GET_XML_DESC,
            &proto::dom_args(&self.dom, &[flags]),
            |b| proto::string(b, "domain XML"),
        )
    }

    /// Maximum memory, KiB.
    pub fn max_memory(&self) -> R<u64> {
        self.call(
            proto::remote::DOMAIN_GET_MAX_MEMORY,
            &proto::dom_args(&self.dom, &[]),
            |b| proto::u64_ret(b, "max memory"),
        )
    }

    pub fn state(&self) -> R<(u32, i32)> {
        let (st, reason) = self.call(
            proto::remote::DOMAIN_GET_STATE,
            &proto::dom_args(&self.dom, &[0]),
            proto::state,
        )?;
        Ok((u32::try_from(st).unwrap_or(0), reason))
    }

    /// `(tag, value)` pairs, at most 32, as the FFI path asks for.
    pub fn memory_stats(&self, flags: u32) -> R<Vec<(u32, u64)>> {
        let v = self.call(
            proto::remote::DOMAIN_MEMORY_STATS,
            &proto::dom_args(&self.dom, &[32, flags]),
            proto::memory_stats,
        )?;
        Ok(v.into_iter()
            .map(|(t, v)| (u32::try_from(t).unwrap_or(u32::MAX), v))
            .collect())
    }

    pub fn set_memory_flags(&self, kib: u64, flags: u32) -> R<()> {
        self.call(
            proto::remote::DOMAIN_SET_MEMORY_FLAGS,
            &proto::set_memory_flags_args(&self.dom, kib, flags),
            proto::void,
        )
    }

    pub fn set_memory_stats_period(&self, secs: i32, flags: u32) -> R<()> {
        self.call(
            proto::remote::DOMAIN_SET_MEMORY_STATS_PERIOD,
            &proto::dom_args(&self.dom, &[secs as u32, flags]),
            proto::void,
        )
    }

    pub fn qemu_monitor_command(&self, cmd: &str, flags: u32) -> R<String> {
        self.conn.call(
            wire::QEMU_PROGRAM,
            proto::QEMU_MONITOR_COMMAND,
            &proto::monitor_command_args(&self.dom, cmd, flags),
            |b| proto::string(b, "monitor reply"),
        )
    }
}
