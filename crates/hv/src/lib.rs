//! Hypervisor backends (libvirt, QMP) behind one trait.
//!
//! Each backend fills [`memwarden_model::vm::VmSample`]s: balloon statistics in libvirt's tag
//! form and as typed bytes, the balloon device's facts, the VM's configuration and the QEMU
//! pid, exactly as reported (the checks on guest numbers live in `memwarden-analysis`; the
//! QEMU process is read by `memwarden-collector`, joined by pid). `list` gives every VM a row:
//! one that could not be read carries its [`ReadStatus`] and why.
//!
//! Every exchange runs under a deadline (QMP: one per VM session; libvirt: calls on threads of
//! their own, and the built-in RPC client's own socket deadline), so no call blocks past it.

pub mod host;
pub mod libvirt;
pub mod qmp;
pub mod tags;

use std::path::PathBuf;

use memwarden_model::vm::{BalloonStats, ReadStatus, VmSample};

pub use libvirt::LibvirtBackend;
/// How the libvirt backend reaches libvirt (memwarden-libvirt's RPC client or libvirt.so).
pub use memwarden_libvirt::Transport;
pub use qmp::QmpBackend;

/// Where a change applies, as libvirt's `--live` / `--config`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scope {
    pub live: bool,
    pub config: bool,
}

impl Scope {
    pub const LIVE: Scope = Scope {
        live: true,
        config: false,
    };
}

/// One backend: libvirt or a set of QMP sockets.
pub trait Hypervisor {
    /// Every running VM with its statistics, in as few calls as the backend allows (libvirt:
    /// one bulk `virConnectGetAllDomainStats`). VMs that vanish mid-sample are left out.
    fn list(&mut self) -> Result<Vec<VmSample>, Error>;
    /// One VM, fully read.
    fn sample(&mut self, name: &str) -> Result<VmSample, Error>;
    /// One VM's balloon statistics through the per-domain call (`virDomainMemoryStats`), tags in
    /// the order `virsh dommemstat` prints them.
    fn memory_stats(&mut self, name: &str) -> Result<BalloonStats, Error>;
    /// Sets the balloon target in bytes (libvirt rounds to KiB).
    fn set_memory(&mut self, name: &str, bytes: u64, scope: Scope) -> Result<(), Error>;
    /// Sets the guest statistics polling period in seconds (0 = off).
    fn set_stats_period(&mut self, name: &str, seconds: u32, scope: Scope) -> Result<(), Error>;
    /// The QEMU process id on the host, when it can be known.
    fn qemu_pid(&mut self, name: &str) -> Result<Option<u32>, Error>;
    /// Names of the running VMs.
    fn names(&mut self) -> Result<Vec<String>, Error>;
    /// One VM's whole exchange (libvirt: every call of a sample) must finish within this.
    fn set_timeout(&mut self, timeout: std::time::Duration);
    /// How the hypervisor is reached now (`rpc`, `libvirt.so`, `qmp`); `None` before the
    /// first connection.
    fn transport(&self) -> Option<&'static str>;
}

/// What a failed connection to a local daemon most often means; a remote URI's reason (ssh's
/// words, a certificate refused) says it better alone.
fn local_hint(uri: &str) -> &'static str {
    let local = uri
        .split_once("://")
        .is_none_or(|(_, rest)| rest.starts_with('/'));
    if local {
        " (is libvirtd running?)"
    } else {
        ""
    }
}

/// Errors from the hypervisor backends. [`Error::is_gone`] tells "the VM went away" apart;
/// [`Error::read_status`] says what a failed read of one VM amounts to.
///
/// `Display` never repeats the source: callers print the chain (`{:#}` in anyhow).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("libvirt {op} failed{}", on(.domain))]
    Libvirt {
        op: &'static str,
        domain: Option<String>,
        #[source]
        source: memwarden_libvirt::LvError,
    },
    /// Opening the connection failed: libvirtd is down, restarting, or the URI is wrong (for a
    /// remote URI also: the network, ssh or the certificates, as the reason says).
    #[error("cannot reach libvirt at {uri}{}: {reason}", local_hint(.uri))]
    LibvirtUnreachable { uri: String, reason: String },
    #[error("libvirt at {uri} did not answer {op} within {ms} ms")]
    LibvirtTimeout {
        uri: String,
        op: &'static str,
        ms: u128,
    },
    #[error("no running VM named {name:?} ({where_})")]
    NoSuchVm { name: String, where_: String },
    #[error("QMP {command} on {}: {class}: {desc}", .socket.display())]
    QmpCommand {
        socket: PathBuf,
        command: String,
        class: String,
        desc: String,
    },
    #[error("QMP {}: {why}", .socket.display())]
    QmpProtocol { socket: PathBuf, why: String },
    #[error("QMP {}: no answer in time: still waiting for {waiting_for} at the deadline", .socket.display())]
    Timeout {
        socket: PathBuf,
        waiting_for: String,
    },
    #[error("QMP {}: QEMU closed the connection during {during}", .socket.display())]
    Closed { socket: PathBuf, during: String },
    #[error("{}", .path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("VM {name:?} has no balloon device: {what} is impossible (add <memballoon model='virtio'/> or -device virtio-balloon)")]
    NoBalloon { name: String, what: &'static str },
    #[error("reading QEMU process {pid}")]
    Procfs {
        pid: u32,
        #[source]
        source: memwarden_procfs::Error,
    },
    /// libvirtd has not answered the calls still waiting: a new one would only queue behind
    /// them. Retry on the next sample.
    #[error(
        "libvirt at {uri} has not answered the last {pending} calls yet (a domain being started \
         or destroyed holds libvirtd, or libvirtd is stuck); trying again on the next sample"
    )]
    LibvirtBusy { uri: String, pending: usize },
    /// The domain XML libvirt returned is not one we can read.
    #[error("domain XML of {}: {why}", qmp::quote(.name))]
    DomainXml { name: String, why: String },
    /// What the caller asked for is malformed or out of range: change the argument.
    #[error("{0}")]
    BadArgument(String),
    /// This backend cannot do it at all (plain QEMU has no persistent configuration).
    #[error("{0}")]
    NotSupported(&'static str),
}

fn on(d: &Option<String>) -> String {
    d.as_ref()
        .map(|d| format!(" on {}", qmp::quote(d)))
        .unwrap_or_default()
}

impl Error {
    /// The VM (or its QEMU process) went away while we were reading it: skip, do not fail.
    pub fn is_gone(&self) -> bool {
        use memwarden_libvirt::sys;
        match self {
            Error::Libvirt { source, .. } => {
                [sys::VIR_ERR_NO_DOMAIN, sys::VIR_ERR_OPERATION_INVALID].contains(&source.code())
            }
            Error::NoSuchVm { .. } | Error::Closed { .. } => true,
            Error::Io { source, .. } => matches!(
                source.kind(),
                std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::BrokenPipe
                    | std::io::ErrorKind::UnexpectedEof
            ),
            Error::Procfs { source, .. } => source.is_gone(),
            _ => false,
        }
    }

    /// What this error means for the one VM being read.
    pub fn read_status(&self) -> ReadStatus {
        match self {
            Error::Timeout { .. } | Error::LibvirtTimeout { .. } | Error::LibvirtBusy { .. } => {
                ReadStatus::TimedOut
            }
            Error::QmpProtocol { .. } => ReadStatus::ProtocolError,
            Error::LibvirtUnreachable { .. } => ReadStatus::Unreachable,
            Error::Io { source, .. }
                if matches!(
                    source.kind(),
                    std::io::ErrorKind::NotFound
                        | std::io::ErrorKind::ConnectionRefused
                        | std::io::ErrorKind::PermissionDenied
                ) =>
            {
                ReadStatus::Unreachable
            }
            e if e.is_gone() => ReadStatus::Gone,
            _ => ReadStatus::ProtocolError,
        }
    }

    /// This error in plain words with its causes, on one line.
    pub fn plain(&self) -> String {
        let mut s = self.to_string();
        let mut src = std::error::Error::source(self);
        while let Some(e) = src {
            s.push_str(": ");
            s.push_str(&e.to_string());
            src = e.source();
        }
        s
    }
}

pub(crate) use memwarden_model::clock::{now_unix_ms, now_unix_s};

#[cfg(test)]
mod tests {
    use super::*;

    /// "Is libvirtd running?" helps with a local socket; over ssh or TLS the reason is ssh's or
    /// the TLS library's, and the question would send the operator the wrong way.
    #[test]
    fn only_a_local_daemon_is_asked_whether_it_runs() {
        let at = |uri: &str| {
            Error::LibvirtUnreachable {
                uri: uri.into(),
                reason: "r".into(),
            }
            .to_string()
        };
        assert!(at("qemu:///system").contains("(is libvirtd running?)"));
        assert_eq!(
            at("qemu+tls://kvm01/system"),
            "cannot reach libvirt at qemu+tls://kvm01/system: r"
        );
    }

    /// Each class of error tells the caller what to do with the VM it was reading: a busy
    /// libvirtd is a retry (timed out), never "the VM spoke a wrong protocol".
    #[test]
    fn errors_are_classed_by_what_the_caller_can_do() {
        let busy = Error::LibvirtBusy {
            uri: "qemu:///system".into(),
            pending: 4,
        };
        assert_eq!(busy.read_status(), ReadStatus::TimedOut);
        assert!(busy.to_string().contains("last 4 calls"), "{busy}");
        let xml = Error::DomainXml {
            name: "vm\n1".into(),
            why: "no <memory>".into(),
        };
        assert_eq!(xml.read_status(), ReadStatus::ProtocolError);
        assert!(
            !xml.to_string().contains('\n'),
            "a guest-chosen name is quoted: {xml}"
        );
        assert!(!Error::BadArgument("period 3000000000 s is too large".into()).is_gone());
        assert_eq!(
            Error::NotSupported("no persistent configuration").read_status(),
            ReadStatus::ProtocolError
        );
    }
}
