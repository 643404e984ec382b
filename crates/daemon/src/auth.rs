//! HTTP Basic authentication against the web configuration's `basic_auth_users` (bcrypt
//! hashes), as an axum middleware in front of every route.
//!
//! A bcrypt at cost 10 takes tens of milliseconds, and Prometheus sends the same credentials
//! on every scrape: a pair that bcrypt verified is remembered as an HMAC-SHA256 tag under a key
//! drawn at start (never the password itself), one per user, and checked with a constant-time
//! compare. A pair that failed is never remembered, so every wrong guess costs a bcrypt; those
//! run one at a time on a blocking thread, which keeps the HTTP thread (and the clients whose
//! credentials are remembered) answering while someone guesses. At most [`MAX_WAITING`]
//! requests wait for a bcrypt; past that a request with credentials not remembered gets 503 at
//! once, so that guesses cannot fill the connection cap with requests queued behind bcrypt.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use ring::hmac;
use tokio::sync::Semaphore;

use crate::web::Active;

/// Requests waiting for a bcrypt at once (one runs, the others queue).
const MAX_WAITING: usize = 8;

/// What a check found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Good,
    Bad,
    /// Too many requests already wait for a bcrypt: not checked.
    Busy,
}

/// The users of one web configuration and the pairs verified since it was loaded.
#[derive(Debug)]
pub struct Users {
    hashes: BTreeMap<String, String>,
    key: hmac::Key,
    /// User → tag of the last password bcrypt accepted for them (bounded by the users).
    good: Mutex<HashMap<String, hmac::Tag>>,
    /// One bcrypt at a time. The permit moves into the blocking task, so that a request
    /// dropped mid-bcrypt (its client hung up) still holds the slot until the bcrypt ends:
    /// clients that hang up cannot pile bcrypts up in the blocking pool.
    bcrypt: Arc<Semaphore>,
    /// Requests waiting for (or running) a bcrypt.
    waiting: AtomicUsize,
}

impl Users {
    /// None when `hashes` is empty (no authentication).
    pub fn new(hashes: BTreeMap<String, String>) -> anyhow::Result<Option<Users>> {
        if hashes.is_empty() {
            return Ok(None);
        }
        let rng = ring::rand::SystemRandom::new();
        let key = hmac::Key::generate(hmac::HMAC_SHA256, &rng)
            .map_err(|_| anyhow::anyhow!("no random bytes for the credential cache's key"))?;
        Ok(Some(Users {
            hashes,
            key,
            good: Mutex::new(HashMap::new()),
            bcrypt: Arc::new(Semaphore::new(1)),
            waiting: AtomicUsize::new(0),
        }))
    }

    /// How many users there are.
    pub fn len(&self) -> usize {
        self.hashes.len()
    }

    /// user and password, length-prefixed so that no two pairs share a message.
    fn message(user: &str, password: &[u8]) -> Vec<u8> {
        let mut m = Vec::with_capacity(8 + user.len() + password.len());
        m.extend_from_slice(&(user.len() as u64).to_le_bytes());
        m.extend_from_slice(user.as_bytes());
        m.extend_from_slice(password);
        m
    }

    /// Whether `password` is `user`'s.
    pub async fn check(&self, user: &str, password: &[u8]) -> Verdict {
        let msg = Users::message(user, password);
        let cached = self
            .good
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(user)
            .map(|t| t.as_ref().to_vec());
        if let Some(tag) = cached {
            // hmac::verify compares in constant time.
            if hmac::verify(&self.key, &msg, &tag).is_ok() {
                return Verdict::Good;
            }
        }
        // A guard, not a decrement after the await: a client that hangs up drops this future
        // mid-wait, and the count must still come down.
        let _waiting = Waiting::enter(&self.waiting);
        if _waiting.count > MAX_WAITING {
            return Verdict::Busy;
        }
        let ok = self.bcrypt_check(user, password, &msg).await;
        if ok {
            Verdict::Good
        } else {
            Verdict::Bad
        }
    }

    /// bcrypt (one at a time, on a blocking thread); a good pair is remembered.
    async fn bcrypt_check(&self, user: &str, password: &[u8], msg: &[u8]) -> bool {
        // An unknown user still costs a bcrypt (against another user's hash), so that timing
        // does not tell which users exist.
        let (known, hash) = match self.hashes.get(user) {
            Some(h) => (true, h.clone()),
            None => match self.hashes.values().next() {
                Some(h) => (false, h.clone()),
                None => return false,
            },
        };
        let Ok(slot) = self.bcrypt.clone().acquire_owned().await else {
            return false;
        };
        let pw = password.to_vec();
        let ok = tokio::task::spawn_blocking(move || {
            let _slot = slot;
            bcrypt::verify(pw, &hash).unwrap_or(false)
        })
        .await
        .unwrap_or(false);
        if ok && known {
            let tag = hmac::sign(&self.key, msg);
            self.good
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(user.to_string(), tag);
        }
        ok && known
    }
}

/// One request counted in [`Users::waiting`] while it lives.
struct Waiting<'a> {
    counter: &'a AtomicUsize,
    /// The count with this one in it.
    count: usize,
}

impl<'a> Waiting<'a> {
    fn enter(counter: &'a AtomicUsize) -> Waiting<'a> {
        let count = counter.fetch_add(1, Ordering::AcqRel) + 1;
        Waiting { counter, count }
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.counter.fetch_sub(1, Ordering::AcqRel);
    }
}

/// `Authorization: Basic base64(user:password)`, decoded.
fn credentials(req: &Request) -> Option<(String, Vec<u8>)> {
    let v = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, b64) = v.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .ok()?;
    let colon = raw.iter().position(|&b| b == b':')?;
    let user = String::from_utf8(raw[..colon].to_vec()).ok()?;
    Some((user, raw[colon + 1..].to_vec()))
}

/// The middleware: passes the request on when no users are configured or its credentials are
/// good; else 401 with the challenge.
pub async fn require(State(active): State<Arc<Active>>, req: Request, next: Next) -> Response {
    let Some(users) = active.users() else {
        return next.run(req).await;
    };
    if let Some((user, password)) = credentials(&req) {
        match users.check(&user, &password).await {
            Verdict::Good => return next.run(req).await,
            Verdict::Bad => {}
            Verdict::Busy => {
                active.stats.auth_busy_total.fetch_add(1, Ordering::Relaxed);
                return (
                    StatusCode::SERVICE_UNAVAILABLE,
                    [(header::RETRY_AFTER, "1")],
                    "too many password checks under way; try again\n",
                )
                    .into_response();
            }
        }
    }
    active
        .stats
        .auth_failures_total
        .fetch_add(1, Ordering::Relaxed);
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Basic realm=\"memwarden\"")],
        "Unauthorized\n",
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn users() -> Users {
        let hash = bcrypt::hash("secret", 4).expect("bcrypt");
        Users::new(BTreeMap::from([("alice".to_string(), hash)]))
            .expect("users")
            .expect("some")
    }

    /// Polls `f` once: its output if it was ready.
    async fn futures_poll_once<F: std::future::Future + Unpin>(mut f: F) -> Option<F::Output> {
        std::future::poll_fn(|cx| {
            std::task::Poll::Ready(match std::pin::Pin::new(&mut f).poll(cx) {
                std::task::Poll::Ready(v) => Some(v),
                std::task::Poll::Pending => None,
            })
        })
        .await
    }

    fn cached(u: &Users) -> usize {
        u.good.lock().expect("lock").len()
    }

    #[tokio::test]
    async fn a_good_pair_is_cached_and_a_wrong_one_never() {
        let u = users();
        assert_eq!(u.check("alice", b"wrong").await, Verdict::Bad);
        assert_eq!(cached(&u), 0, "a wrong password is not remembered");
        assert_eq!(u.check("alice", b"secret").await, Verdict::Good);
        assert_eq!(cached(&u), 1);
        // With the good pair cached, a wrong one is still refused (and still not cached).
        assert_eq!(u.check("alice", b"secret2").await, Verdict::Bad);
        assert_eq!(u.check("alice", b"").await, Verdict::Bad);
        assert_eq!(u.check("alice", b"secret").await, Verdict::Good);
        assert_eq!(cached(&u), 1);
    }

    #[tokio::test]
    async fn an_unknown_user_is_refused_even_with_another_users_password() {
        let u = users();
        assert_eq!(u.check("bob", b"secret").await, Verdict::Bad);
        assert_eq!(cached(&u), 0);
    }

    #[tokio::test]
    async fn past_the_queue_a_guess_is_turned_away_and_a_remembered_pair_still_passes() {
        let u = Arc::new(users());
        assert_eq!(u.check("alice", b"secret").await, Verdict::Good);
        // Hold the bcrypt slot: guesses queue behind it.
        let held = u.bcrypt.acquire().await.expect("slot");
        // A request dropped while it waits (its client hung up) leaves the queue.
        {
            let waiting = u.check("alice", b"abandoned");
            tokio::pin!(waiting);
            let polled = futures_poll_once(waiting.as_mut()).await;
            assert!(polled.is_none(), "it waits behind the held slot");
        }
        assert_eq!(u.waiting.load(Ordering::Acquire), 0);
        let mut queued = Vec::new();
        for _ in 0..MAX_WAITING {
            let u = u.clone();
            queued.push(tokio::spawn(
                async move { u.check("alice", b"guess").await },
            ));
        }
        while u.waiting.load(Ordering::Acquire) < MAX_WAITING {
            tokio::task::yield_now().await;
        }
        assert_eq!(u.check("alice", b"one more").await, Verdict::Busy);
        assert_eq!(
            u.check("alice", b"secret").await,
            Verdict::Good,
            "remembered"
        );
        drop(held);
        for q in queued {
            assert_eq!(q.await.expect("join"), Verdict::Bad);
        }
        assert_eq!(u.waiting.load(Ordering::Acquire), 0);
    }

    #[test]
    fn messages_of_different_pairs_differ() {
        assert_ne!(Users::message("ab", b"c"), Users::message("a", b"bc"));
    }
}
