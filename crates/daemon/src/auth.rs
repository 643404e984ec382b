//! HTTP Basic authentication against the web configuration's `basic_auth_users` (bcrypt
//! hashes), as an axum middleware in front of every route.
//!
//! A bcrypt at cost 10 takes tens of milliseconds, and Prometheus sends the same credentials
//! on every scrape: a pair that bcrypt verified is remembered as an HMAC-SHA256 tag under a key
//! drawn at start (never the password itself), one per user, and checked with a constant-time
//! compare. A pair that failed is never remembered, so every wrong guess costs a bcrypt; those
//! run one at a time on a blocking thread, which keeps the HTTP thread (and the clients whose
//! credentials are remembered) answering while someone guesses.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use ring::hmac;
use tokio::sync::Semaphore;

use crate::web::Active;

/// The users of one web configuration and the pairs verified since it was loaded.
#[derive(Debug)]
pub struct Users {
    hashes: BTreeMap<String, String>,
    key: hmac::Key,
    /// User → tag of the last password bcrypt accepted for them (bounded by the users).
    good: Mutex<HashMap<String, hmac::Tag>>,
    /// One bcrypt at a time.
    bcrypt: Semaphore,
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
            bcrypt: Semaphore::new(1),
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
    pub async fn check(&self, user: &str, password: &[u8]) -> bool {
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
                return true;
            }
        }
        // An unknown user still costs a bcrypt (against another user's hash), so that timing
        // does not tell which users exist.
        let (known, hash) = match self.hashes.get(user) {
            Some(h) => (true, h.clone()),
            None => match self.hashes.values().next() {
                Some(h) => (false, h.clone()),
                None => return false,
            },
        };
        let Ok(_one) = self.bcrypt.acquire().await else {
            return false;
        };
        let pw = password.to_vec();
        let ok = tokio::task::spawn_blocking(move || bcrypt::verify(pw, &hash).unwrap_or(false))
            .await
            .unwrap_or(false);
        if ok && known {
            let tag = hmac::sign(&self.key, &msg);
            self.good
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(user.to_string(), tag);
        }
        ok && known
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
        if users.check(&user, &password).await {
            return next.run(req).await;
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

    fn cached(u: &Users) -> usize {
        u.good.lock().expect("lock").len()
    }

    #[tokio::test]
    async fn a_good_pair_is_cached_and_a_wrong_one_never() {
        let u = users();
        assert!(!u.check("alice", b"wrong").await);
        assert_eq!(cached(&u), 0, "a wrong password is not remembered");
        assert!(u.check("alice", b"secret").await);
        assert_eq!(cached(&u), 1);
        // With the good pair cached, a wrong one is still refused (and still not cached).
        assert!(!u.check("alice", b"secret2").await);
        assert!(!u.check("alice", b"").await);
        assert!(u.check("alice", b"secret").await);
        assert_eq!(cached(&u), 1);
    }

    #[tokio::test]
    async fn an_unknown_user_is_refused_even_with_another_users_password() {
        let u = users();
        assert!(!u.check("bob", b"secret").await);
        assert_eq!(cached(&u), 0);
    }

    #[test]
    fn messages_of_different_pairs_differ() {
        assert_ne!(Users::message("ab", b"c"), Users::message("a", b"bc"));
    }
}
