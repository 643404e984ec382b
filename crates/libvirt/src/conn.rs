//! One libvirt connection, whichever way it talks: libvirt's RPC protocol spoken directly on
//! the local daemon's socket ([`crate::rpc`], no libvirt.so in the process) or the C
//! library loaded at run time ([`crate::ffi`]), chosen per URI by [`Transport`].
//! Both give the same [`Connect`]/[`Domain`] calls and the same [`LvError`] (libvirt's error
//! number, domain and message), so a caller (`memwarden-hv`'s libvirt backend) does not care which it has.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::{ffi, rpc};

/// libvirt's constants memwarden uses (values from libvirt's headers; stable ABI).
pub mod sys {
    pub const VIR_ERR_NO_CONNECT: i32 = 5;
    pub const VIR_ERR_SYSTEM_ERROR: i32 = 38;
    pub const VIR_ERR_RPC: i32 = 39;
    pub const VIR_ERR_NO_DOMAIN: i32 = 42;
    pub const VIR_ERR_AUTH_FAILED: i32 = 45;
    pub const VIR_ERR_OPERATION_INVALID: i32 = 55;
    pub const VIR_ERR_OPERATION_TIMEOUT: i32 = 68;

    pub const VIR_DOMAIN_STATS_STATE: u32 = 1 << 0;
    pub const VIR_DOMAIN_STATS_BALLOON: u32 = 1 << 2;
    pub const VIR_CONNECT_GET_ALL_DOMAINS_STATS_ACTIVE: u32 = 1 << 0;
    pub const VIR_CONNECT_GET_ALL_DOMAINS_STATS_NOWAIT: u32 = 1 << 29;
    pub const VIR_CONNECT_LIST_DOMAINS_ACTIVE: u32 = 1 << 0;
    pub const VIR_DOMAIN_AFFECT_LIVE: u32 = 1 << 0;
    pub const VIR_DOMAIN_AFFECT_CONFIG: u32 = 1 << 1;

    pub const VIR_DOMAIN_RUNNING: u32 = 1;
    pub const VIR_DOMAIN_PAUSED: u32 = 3;
    pub const VIR_DOMAIN_SHUTDOWN: u32 = 4;
    pub const VIR_DOMAIN_SHUTOFF: u32 = 5;
    pub const VIR_DOMAIN_CRASHED: u32 = 6;
    pub const VIR_DOMAIN_PMSUSPENDED: u32 = 7;

    /// `virTypedParameterType`: the kind of a typed parameter's value (bulk stats).
    pub const VIR_TYPED_PARAM_INT: i32 = 1;
    pub const VIR_TYPED_PARAM_UINT: i32 = 2;
    pub const VIR_TYPED_PARAM_LLONG: i32 = 3;
    pub const VIR_TYPED_PARAM_ULLONG: i32 = 4;
    pub const VIR_TYPED_PARAM_DOUBLE: i32 = 5;
    pub const VIR_TYPED_PARAM_BOOLEAN: i32 = 6;
    pub const VIR_TYPED_PARAM_STRING: i32 = 7;

    /// `(C name, value)` for each constant named: the name is written once.
    #[cfg(test)]
    macro_rules! named {
        ($($c:ident),* $(,)?) => { &[$((stringify!($c), $c as i64)),*] };
    }

    /// Every constant above by its C name, for the test that checks them against libvirt's
    /// installed headers.
    #[cfg(test)]
    pub(crate) const ALL: &[(&str, i64)] = named!(
        VIR_ERR_NO_CONNECT,
        VIR_ERR_SYSTEM_ERROR,
        VIR_ERR_RPC,
        VIR_ERR_NO_DOMAIN,
        VIR_ERR_AUTH_FAILED,
        VIR_ERR_OPERATION_INVALID,
        VIR_ERR_OPERATION_TIMEOUT,
        VIR_DOMAIN_STATS_STATE,
        VIR_DOMAIN_STATS_BALLOON,
        VIR_CONNECT_GET_ALL_DOMAINS_STATS_ACTIVE,
        VIR_CONNECT_GET_ALL_DOMAINS_STATS_NOWAIT,
        VIR_CONNECT_LIST_DOMAINS_ACTIVE,
        VIR_DOMAIN_AFFECT_LIVE,
        VIR_DOMAIN_AFFECT_CONFIG,
        VIR_DOMAIN_RUNNING,
        VIR_DOMAIN_PAUSED,
        VIR_DOMAIN_SHUTDOWN,
        VIR_DOMAIN_SHUTOFF,
        VIR_DOMAIN_CRASHED,
        VIR_DOMAIN_PMSUSPENDED,
        VIR_TYPED_PARAM_INT,
        VIR_TYPED_PARAM_UINT,
        VIR_TYPED_PARAM_LLONG,
        VIR_TYPED_PARAM_ULLONG,
        VIR_TYPED_PARAM_DOUBLE,
        VIR_TYPED_PARAM_BOOLEAN,
        VIR_TYPED_PARAM_STRING,
    );
}

/// A libvirt error: its number (`virErrorNumber`), domain and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LvError {
    code: i32,
    domain: i32,
    message: String,
}

impl LvError {
    pub fn new(code: i32, domain: i32, message: String) -> LvError {
        LvError {
            code,
            domain,
            message,
        }
    }
    pub fn code(&self) -> i32 {
        self.code
    }
    /// libvirt's `virErrorDomain`: which part of libvirt raised it.
    pub fn domain(&self) -> i32 {
        self.domain
    }
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl std::fmt::Display for LvError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for LvError {}

type R<T> = Result<T, LvError>;

/// A typed parameter's value, owned.
#[derive(Debug, Clone, PartialEq)]
pub enum Param {
    Int(i64),
    Uint(u64),
    Double(f64),
    Bool(bool),
    Str(String),
}

/// How a backend reaches libvirt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Transport {
    /// The built-in RPC client for the URIs it serves (local sockets, `qemu+ssh://`),
    /// libvirt.so for the rest.
    #[default]
    Auto,
    /// The built-in RPC client only (an error for URIs it does not serve).
    Rpc,
    /// libvirt.so, loaded at run time.
    Ffi,
}

/// libvirt's default event loop, run on a thread of its own: the FFI keepalive needs it.
fn event_loop() -> bool {
    static STARTED: OnceLock<bool> = OnceLock::new();
    *STARTED.get_or_init(|| {
        if ffi::event_register_default_impl().is_err() {
            return false;
        }
        std::thread::Builder::new()
            .name("libvirt-events".into())
            .spawn(|| loop {
                if ffi::event_run_default_impl().is_err() {
                    std::thread::sleep(Duration::from_millis(100));
                }
            })
            .is_ok()
    })
}

/// An open connection.
#[derive(Debug)]
pub enum Connect {
    Rpc(rpc::Connect),
    Ffi(ffi::Connect),
}

/// A domain reference of either kind.
#[derive(Debug, Clone)]
pub enum Domain {
    Rpc(rpc::Domain),
    Ffi(ffi::Domain),
}

/// One domain's record from the bulk stats call, owned.
#[derive(Debug)]
pub struct Record {
    pub domain: Domain,
    pub params: Vec<(String, Param)>,
}

impl Connect {
    /// Opens `uri` the way `transport` says; `timeout` bounds each RPC exchange (the FFI path
    /// has no such bound of its own: callers wait for it on another thread).
    pub fn open(uri: &str, transport: Transport, timeout: Duration) -> R<Connect> {
        let endpoint = match transport {
            Transport::Ffi => None,
            Transport::Auto => rpc::Endpoint::for_uri(uri),
            Transport::Rpc => Some(rpc::Endpoint::for_uri(uri).ok_or_else(|| {
                LvError::new(
                    sys::VIR_ERR_NO_CONNECT,
                    0,
                    format!(
                        "{uri} is not a URI the built-in libvirt client serves (qemu:///system, \
                         qemu:///session, qemu+ssh://[user@]host[:port]/system with at most \
                         keyfile= and no_verify=, qemu+tls://host[:port]/system with at most \
                         pkipath=)"
                    ),
                )
            })?),
        };
        if let Some(at) = endpoint {
            return rpc::Connect::open(uri, &at, timeout).map(Connect::Rpc);
        }
        let keepalive = event_loop();
        let c = ffi::Connect::open(uri)?;
        if keepalive {
            // Fails harmlessly on drivers without keepalive (test:///, qemu:///session).
            let _ = c.set_keep_alive(5, 3);
        }
        Ok(Connect::Ffi(c))
    }

    /// Which transport this connection uses: "rpc" or "libvirt.so".
    pub fn transport(&self) -> &'static str {
        match self {
            Connect::Rpc(_) => "rpc",
            Connect::Ffi(_) => "libvirt.so",
        }
    }

    pub fn set_timeout(&self, timeout: Duration) {
        if let Connect::Rpc(c) = self {
            c.set_timeout(timeout);
        }
    }

    pub fn is_alive(&self) -> R<bool> {
        match self {
            Connect::Rpc(c) => Ok(c.is_alive()),
            Connect::Ffi(c) => c.is_alive(),
        }
    }

    /// A watch on every domain's lifecycle and reboot events; `None` on libvirt.so, whose
    /// callbacks memwarden does not register (its connections are for other URIs).
    pub fn watch_events(&self, deadline: Instant) -> Option<R<rpc::events::EventWatch>> {
        match self {
            Connect::Rpc(c) => Some(c.watch_events(deadline)),
            Connect::Ffi(_) => None,
        }
    }

    pub fn lookup_domain_by_name(&self, name: &str) -> R<Domain> {
        match self {
            Connect::Rpc(c) => c.lookup_domain_by_name(name).map(Domain::Rpc),
            Connect::Ffi(c) => c.lookup_domain_by_name(name).map(Domain::Ffi),
        }
    }

    pub fn list_all_domains(&self, flags: u32) -> R<Vec<Domain>> {
        Ok(match self {
            Connect::Rpc(c) => c
                .list_all_domains(flags)?
                .into_iter()
                .map(Domain::Rpc)
                .collect(),
            Connect::Ffi(c) => c
                .list_all_domains(flags)?
                .into_iter()
                .map(Domain::Ffi)
                .collect(),
        })
    }
}

/// `virConnectGetAllDomainStats(conn, stats, flags)` as owned records.
pub fn all_domain_stats(conn: &Connect, stats: u32, flags: u32) -> R<Vec<Record>> {
    Ok(match conn {
        Connect::Rpc(c) => c
            .all_domain_stats(stats, flags)?
            .into_iter()
            .map(|(d, params)| Record {
                domain: Domain::Rpc(d),
                params,
            })
            .collect(),
        Connect::Ffi(c) => ffi::all_domain_stats(c, stats, flags)?
            .into_iter()
            .map(|r| Record {
                domain: Domain::Ffi(r.domain),
                params: r.params,
            })
            .collect(),
    })
}

/// Calls the same method on whichever domain this is.
macro_rules! both {
    ($self:ident, $d:ident => $e:expr) => {
        match $self {
            Domain::Rpc($d) => $e,
            Domain::Ffi($d) => $e,
        }
    };
}

impl Domain {
    pub fn name(&self) -> R<String> {
        match self {
            Domain::Rpc(d) => Ok(d.name().to_string()),
            Domain::Ffi(d) => d.name(),
        }
    }
    /// The running domain's id; `None` when it is not running.
    pub fn id(&self) -> Option<u32> {
        both!(self, d => d.id())
    }
    pub fn uuid_string(&self) -> R<String> {
        match self {
            Domain::Rpc(d) => Ok(d.uuid_string()),
            Domain::Ffi(d) => d.uuid_string(),
        }
    }
    pub fn xml_desc(&self, flags: u32) -> R<String> {
        both!(self, d => d.xml_desc(flags))
    }
    /// Maximum memory, KiB.
    pub fn max_memory(&self) -> R<u64> {
        both!(self, d => d.max_memory())
    }
    /// `(state, reason)` as libvirt numbers them.
    pub fn state(&self) -> R<(u32, i32)> {
        both!(self, d => d.state())
    }
    /// `virDomainMemoryStats`: `(tag, value)` pairs.
    pub fn memory_stats(&self, flags: u32) -> R<Vec<(u32, u64)>> {
        both!(self, d => d.memory_stats(flags))
    }
    /// Sets the balloon target, KiB.
    pub fn set_memory_flags(&self, kib: u64, flags: u32) -> R<()> {
        both!(self, d => d.set_memory_flags(kib, flags))
    }
    pub fn set_memory_stats_period(&self, secs: i32, flags: u32) -> R<()> {
        both!(self, d => d.set_memory_stats_period(secs, flags))
    }
    /// A QMP command through libvirt-qemu's monitor passthrough; the raw reply.
    pub fn qemu_monitor_command(&self, cmd: &str, flags: u32) -> R<String> {
        both!(self, d => d.qemu_monitor_command(cmd, flags))
    }
}

#[cfg(test)]
mod tests {
    use super::sys;

    /// `NAME = value` in libvirt's installed headers (libvirt-dev), where value is a number,
    /// `1 << N` (in parentheses or not) or another such name.
    fn header_value(headers: &str, name: &str) -> i64 {
        let line = headers
            .lines()
            .find_map(|l| {
                let (lhs, rhs) = l.split_once('=')?;
                (lhs.trim() == name).then_some(rhs)
            })
            .unwrap_or_else(|| panic!("{name} is not in libvirt's headers"));
        let expr = line
            .split([',', '/'])
            .next()
            .unwrap_or_default()
            .trim()
            .trim_start_matches('(')
            .trim_end_matches(')')
            .trim();
        if let Some((one, shift)) = expr.split_once("<<") {
            let one: i64 = one.trim().parse().expect("a number before <<");
            return one << shift.trim().parse::<u32>().expect("a shift");
        }
        expr.parse().unwrap_or_else(|_| header_value(headers, expr))
    }

    #[test]
    fn constants_match_libvirts_headers() {
        let dir = std::path::Path::new("/usr/include/libvirt");
        let headers: String = ["virterror.h", "libvirt-domain.h", "libvirt-common.h"]
            .iter()
            .map(|f| {
                std::fs::read_to_string(dir.join(f)).unwrap_or_else(|e| {
                    panic!("{}/{f}: {e} (apt-get install libvirt-dev)", dir.display())
                })
            })
            .collect();
        for (name, ours) in sys::ALL {
            assert_eq!(header_value(&headers, name), *ours, "{name}");
        }
    }
}
