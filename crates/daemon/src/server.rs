//! The HTTP server's accept loop, with the limits of `[http]`: a cap on connections held at
//! once, a deadline for each request head (which also ends idle keep-alive connections), a
//! deadline on connections where no byte moves, and a cap on the head's size.
//!
//! At the cap the newcomer is accepted and the oldest connection still waiting for its first
//! request head is closed to make room (a flood of half-sent requests cannot lock out a
//! client that sends its request at once); when every connection is busy with a request,
//! nothing more is accepted until one ends, and newcomers wait in the kernel's listen backlog
//! ([`listen`]: `net.core.somaxconn`, at most [`BACKLOG_CAP`]). The loop never holds more than
//! the cap plus one connection.
//!
//! With TLS (`[http] web_config_file`), the handshake happens on the connection's task and
//! counts within the header deadline: a client that opens TCP and never sends a ClientHello is
//! cut like a half-sent request head, and can be evicted at the cap like one.

use std::collections::BTreeMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use hyper::service::{service_fn, Service as _};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{watch, Notify, Semaphore};
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tracing::{debug, info, warn};

use crate::config::HttpConfig;
use crate::report::chain;
use crate::web::Active;

/// How long a stop waits for connections to finish their request.
const DRAIN: Duration = Duration::from_secs(3);

/// Open connections that make a burst: when a burst has ended (one connection or none left),
/// freed memory is handed back to the kernel.
const BURST: u64 = 32;

/// The most connections the kernel queues for us before we accept them. std, mio and tokio
/// listen with 128, and a burst past it (200 scrapes at once, a client opening connections
/// while we evict at the cap) has its SYNs dropped: each such client waits a whole second for
/// its SYN to be sent again. 4096 is Linux's default `net.core.somaxconn` since 5.4; a
/// queued connection holds a socket in the kernel, none of our fds.
pub const BACKLOG_CAP: u32 = 4096;

/// Binds `addr` and listens with a backlog of `net.core.somaxconn`, at most [`BACKLOG_CAP`]
/// (the kernel would cut a larger one to somaxconn anyway, and does when /proc cannot tell).
/// SO_REUSEADDR as tokio's `TcpListener::bind` sets it (a restart binds at once, despite
/// connections of the previous daemon in TIME_WAIT); an IPv6 address gets an IPv6 socket with
/// the system's `bindv6only`, as before. Returns the listener and its backlog.
pub fn listen(addr: SocketAddr) -> io::Result<(TcpListener, u32)> {
    let socket = match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    let backlog = somaxconn().map_or(BACKLOG_CAP, |m| m.min(BACKLOG_CAP));
    Ok((socket.listen(backlog)?, backlog))
}

/// `net.core.somaxconn`: the kernel's bound on every listen backlog.
fn somaxconn() -> Option<u32> {
    std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// The limits in force (`[http]`, with `max_connections` as lowered for the fd budget).
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_connections: usize,
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_head_bytes: usize,
}

impl Limits {
    pub fn new(cfg: &HttpConfig, max_connections: usize) -> Limits {
        Limits {
            max_connections,
            header_timeout: cfg.header_timeout,
            idle_timeout: cfg.idle_timeout,
            max_head_bytes: cfg.max_head_bytes,
        }
    }
}

/// The server's counters, for /api/v1/health.
#[derive(Debug)]
pub struct Stats {
    start: Instant,
    pub max_connections: AtomicU64,
    pub open: AtomicU64,
    pub accepted_total: AtomicU64,
    /// Closed at the cap to make room (they had not sent a whole request head).
    pub evicted_total: AtomicU64,
    /// Closed because a request head did not arrive within `header_timeout`.
    pub header_timeouts_total: AtomicU64,
    /// Closed because no byte moved for `idle_timeout`.
    pub idle_timeouts_total: AtomicU64,
    /// `accept` failures (EMFILE and the like).
    pub accept_errors_total: AtomicU64,
    /// TLS handshakes that failed (plain HTTP on the TLS port included; timeouts are
    /// `header_timeouts_total`).
    pub tls_handshake_errors_total: AtomicU64,
    /// Requests refused with 401.
    pub auth_failures_total: AtomicU64,
    /// Requests turned away with 503 because too many waited for a bcrypt.
    pub auth_busy_total: AtomicU64,
    /// The most connections open since memory was last handed back.
    peak_since_trim: AtomicU64,
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            start: Instant::now(),
            max_connections: AtomicU64::new(0),
            open: AtomicU64::new(0),
            accepted_total: AtomicU64::new(0),
            evicted_total: AtomicU64::new(0),
            header_timeouts_total: AtomicU64::new(0),
            idle_timeouts_total: AtomicU64::new(0),
            accept_errors_total: AtomicU64::new(0),
            tls_handshake_errors_total: AtomicU64::new(0),
            auth_failures_total: AtomicU64::new(0),
            auth_busy_total: AtomicU64::new(0),
            peak_since_trim: AtomicU64::new(0),
        }
    }
}

/// [`Stats`] as /api/v1/health shows them.
#[derive(Debug, Serialize)]
pub struct StatsView {
    pub connections_open: u64,
    pub connections_max: u64,
    pub connections_accepted_total: u64,
    pub connections_evicted_total: u64,
    pub header_timeouts_total: u64,
    pub idle_timeouts_total: u64,
    pub accept_errors_total: u64,
    pub tls_handshake_errors_total: u64,
    pub auth_failures_total: u64,
    pub auth_busy_total: u64,
}

impl Stats {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    pub fn view(&self) -> StatsView {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        StatsView {
            connections_open: g(&self.open),
            connections_max: g(&self.max_connections),
            connections_accepted_total: g(&self.accepted_total),
            connections_evicted_total: g(&self.evicted_total),
            header_timeouts_total: g(&self.header_timeouts_total),
            idle_timeouts_total: g(&self.idle_timeouts_total),
            accept_errors_total: g(&self.accept_errors_total),
            tls_handshake_errors_total: g(&self.tls_handshake_errors_total),
            auth_failures_total: g(&self.auth_failures_total),
            auth_busy_total: g(&self.auth_busy_total),
        }
    }
}

/// One connection, as the accept loop sees it.
#[derive(Debug, Default)]
struct Conn {
    /// A whole request head has arrived on it (it is a client, not a half-sent request).
    head_seen: AtomicBool,
    evicted: AtomicBool,
    evict: Notify,
}

/// Open connections by id: the oldest first.
#[derive(Debug, Default)]
struct Registry(Mutex<BTreeMap<u64, Arc<Conn>>>);

impl Registry {
    fn insert(&self, id: u64, c: Arc<Conn>) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, c);
    }

    fn remove(&self, id: u64) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
    }

    /// Tells the oldest connection without a request head to close; whether there was one.
    fn evict_oldest_waiting(&self) -> bool {
        let map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        for c in map.values() {
            if !c.head_seen.load(Ordering::Relaxed) && !c.evicted.swap(true, Ordering::Relaxed) {
                c.evict.notify_one();
                return true;
            }
        }
        false
    }
}

/// Serves `router` on `listener` (over TLS when `web` has a certificate) until `shutdown`
/// completes, then lets the open connections finish their request (up to [`DRAIN`]).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    stats: Arc<Stats>,
    web: Arc<Active>,
    shutdown: impl Future<Output = ()>,
) {
    let limits = Arc::new(limits);
    stats
        .max_connections
        .store(limits.max_connections as u64, Ordering::Relaxed);
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let registry = Arc::new(Registry::default());
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::pin!(shutdown);
    let mut next_id = 0u64;
    let mut last_accept_warning: Option<Instant> = None;
    loop {
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            r = listener.accept() => r,
        };
        let stream = match accepted {
            Ok((s, _)) => s,
            Err(e) => {
                stats.accept_errors_total.fetch_add(1, Ordering::Relaxed);
                if last_accept_warning.is_none_or(|t| t.elapsed() > Duration::from_secs(10)) {
                    warn!(error = %chain(&e), "accepting a connection failed (logged once per 10 s)");
                    last_accept_warning = Some(Instant::now());
                }
                // Out of fds or buffers: give the others a moment instead of spinning.
                if !is_connection_error(&e) {
                    tokio::select! {
                        () = &mut shutdown => break,
                        () = tokio::time::sleep(Duration::from_millis(100)) => {}
                    }
                }
                continue;
            }
        };
        let permit = match slots.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                if registry.evict_oldest_waiting() {
                    stats.evicted_total.fetch_add(1, Ordering::Relaxed);
                }
                tokio::select! {
                    () = &mut shutdown => break,
                    p = slots.clone().acquire_owned() => match p {
                        Ok(p) => p,
                        Err(_) => break, // the semaphore is never closed
                    },
                }
            }
        };
        stats.accepted_total.fetch_add(1, Ordering::Relaxed);
        let open = stats.open.fetch_add(1, Ordering::Relaxed) + 1;
        stats.peak_since_trim.fetch_max(open, Ordering::Relaxed);
        let _ = stream.set_nodelay(true);
        next_id += 1;
        let conn = Arc::new(Conn::default());
        registry.insert(next_id, conn.clone());
        // Taken at accept: a reload changes the certificate for later connections.
        let tls = web.tls();
        let (id, router, limits, stats, registry, stop) = (
            next_id,
            router.clone(),
            limits.clone(),
            stats.clone(),
            registry.clone(),
            stop_rx.clone(),
        );
        tokio::spawn(async move {
            connection(stream, tls, router, &limits, &conn, &stats, stop).await;
            registry.remove(id);
            let left = stats.open.fetch_sub(1, Ordering::Relaxed) - 1;
            drop(permit);
            if left <= 1 && stats.peak_since_trim.load(Ordering::Relaxed) >= BURST {
                stats.peak_since_trim.store(left, Ordering::Relaxed);
                crate::process::release_free_memory();
            }
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    let drained = tokio::time::timeout(DRAIN, slots.acquire_many(all)).await;
    match drained {
        Ok(_) => debug!("HTTP connections closed"),
        Err(_) => info!(
            open = stats.open.load(Ordering::Relaxed),
            "HTTP connections still open after {DRAIN:?}; closing them"
        ),
    }
}

/// Errors of one connection that say nothing about the listener (the next accept may succeed).
fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// How a connection ended.
enum End {
    Done,
    HeaderTimeout,
    Idle,
    Evicted,
    Error(hyper::Error),
}

async fn connection(
    stream: TcpStream,
    tls: Option<TlsAcceptor>,
    router: Router,
    limits: &Limits,
    conn: &Arc<Conn>,
    stats: &Stats,
    mut stop: watch::Receiver<bool>,
) {
    // The first request head is due this long after the accept, TLS handshake included.
    let first_head_by = Instant::now() + limits.header_timeout;
    let last = Arc::new(AtomicU64::new(stats.now_ms()));
    let tracked = Tracked {
        inner: stream,
        last: last.clone(),
        start: stats.start,
    };
    let Some(acceptor) = tls else {
        return http(
            tracked,
            router,
            limits,
            conn,
            stats,
            stop,
            first_head_by,
            last,
        )
        .await;
    };
    let shake = async {
        let mut tracked = tracked;
        if !crate::tls::starts_with_handshake(&mut tracked.inner).await {
            return Err(io::Error::other("not a TLS handshake (plain HTTP?)"));
        }
        acceptor.accept(tracked).await
    };
    let shaken = tokio::select! {
        r = tokio::time::timeout_at(first_head_by, shake) => r,
        () = conn.evict.notified() => return,
        // Stopping: a connection that has not sent a request has nothing to finish.
        _ = stop.changed() => return,
    };
    match shaken {
        Ok(Ok(stream)) => {
            http(
                stream,
                router,
                limits,
                conn,
                stats,
                stop,
                first_head_by,
                last,
            )
            .await
        }
        Ok(Err(e)) => {
            stats
                .tls_handshake_errors_total
                .fetch_add(1, Ordering::Relaxed);
            debug!(error = %chain(&e), "TLS handshake failed");
        }
        Err(_) => {
            stats.header_timeouts_total.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Serves HTTP/1.1 on `io` (TCP, or TLS over TCP) with the limits.
#[allow(clippy::too_many_arguments)]
async fn http<I>(
    io: I,
    router: Router,
    limits: &Limits,
    conn: &Arc<Conn>,
    stats: &Stats,
    mut stop: watch::Receiver<bool>,
    first_head_by: Instant,
    last: Arc<AtomicU64>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let io = TokioIo::new(io);
    let tower = TowerToHyperService::new(router);
    let seen = conn.clone();
    let svc = service_fn(move |req| {
        seen.head_seen.store(true, Ordering::Relaxed);
        tower.call(req)
    });
    let mut b = hyper::server::conn::http1::Builder::new();
    b.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_header_size(limits.max_head_bytes)
        // Read and write buffers: the head's cap plus room for hyper's reads.
        .max_buf_size((limits.max_head_bytes + 8192).max(16 * 1024));
    let served = b.serve_connection(io, svc);
    tokio::pin!(served);
    let mut stopping = false;
    let end = loop {
        if !stopping && *stop.borrow() {
            stopping = true;
            served.as_mut().graceful_shutdown();
        }
        let quiet =
            Duration::from_millis(stats.now_ms().saturating_sub(last.load(Ordering::Relaxed)));
        let Some(left) = limits
            .idle_timeout
            .checked_sub(quiet)
            .filter(|d| !d.is_zero())
        else {
            break End::Idle;
        };
        tokio::select! {
            r = served.as_mut() => break match r {
                Ok(()) => End::Done,
                Err(e) if e.is_timeout() => End::HeaderTimeout,
                Err(e) => End::Error(e),
            },
            () = conn.evict.notified() => break End::Evicted,
            _ = stop.changed(), if !stopping => {}
            () = tokio::time::sleep(left) => {}
            // hyper's own deadline starts when it first reads; this one ends the first head's
            // wait at the deadline counted from the accept (the handshake took part of it).
            () = tokio::time::sleep_until(first_head_by), if !conn.head_seen.load(Ordering::Relaxed) => {
                if !conn.head_seen.load(Ordering::Relaxed) {
                    break End::HeaderTimeout;
                }
            }
        }
    };
    match end {
        End::Done | End::Evicted => {}
        End::HeaderTimeout => {
            stats.header_timeouts_total.fetch_add(1, Ordering::Relaxed);
        }
        End::Idle => {
            stats.idle_timeouts_total.fetch_add(1, Ordering::Relaxed);
        }
        End::Error(e) => debug!(error = %chain(&e), "HTTP connection ended"),
    }
}

/// A TCP stream that notes when a byte last moved either way (for `idle_timeout`).
struct Tracked {
    inner: TcpStream,
    last: Arc<AtomicU64>,
    start: Instant,
}

impl Tracked {
    fn touch(&self) {
        let now = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last.store(now, Ordering::Relaxed);
    }
}

impl AsyncRead for Tracked {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let r = Pin::new(&mut this.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.touch();
        }
        r
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            this.touch();
        }
        r
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            this.touch();
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .expect("runtime")
    }

    #[test]
    fn listens_with_the_kernels_backlog_and_rebinds_over_time_wait() {
        rt().block_on(async {
            let (l, backlog) = listen(SocketAddr::from(([127, 0, 0, 1], 0))).expect("v4");
            let want = somaxconn().map_or(BACKLOG_CAP, |m| m.min(BACKLOG_CAP));
            assert_eq!(backlog, want);
            assert!(backlog > 128, "somaxconn {:?}", somaxconn());
            let addr = l.local_addr().expect("addr");
            // Our side closes first, so the port has a connection in TIME_WAIT: a restarted
            // daemon binds it at once only with SO_REUSEADDR.
            let client = tokio::net::TcpStream::connect(addr).await.expect("connect");
            let (server, _) = l.accept().await.expect("accept");
            drop(server);
            drop(l);
            drop(client);
            let (again, _) = listen(addr).expect("rebinds over TIME_WAIT");
            assert_eq!(again.local_addr().expect("addr"), addr);
        });
    }

    #[test]
    fn an_ipv6_address_gets_an_ipv6_listener() {
        rt().block_on(async {
            match listen("[::1]:0".parse().expect("addr")) {
                Ok((l, _)) => assert!(l.local_addr().expect("addr").is_ipv6()),
                // A host without IPv6 (ipv6.disable=1): nothing to check.
                Err(e) => assert_eq!(e.raw_os_error(), Some(libc::EAFNOSUPPORT), "{e}"),
            }
        });
    }
}
