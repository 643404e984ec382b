//! The HTTP side: /metrics (Prometheus text or OpenMetrics), a read-only JSON API, the page.
//! Everything is derived at request time from the recorder's latest sample or from the store
//! (derive on read); nothing here writes.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use memwarden_analysis::view::View;
use memwarden_analysis::{leaks, series};
use memwarden_metrics::Format;
use memwarden_model::Sample;
use memwarden_store::Store;

use crate::query::{accepts_gzip, series_filter, since_ms, RangeQuery};
use memwarden_model::clock::now_unix_ms;

use crate::recorder::Shared;

use crate::markers;

/// The most markers `/api/v1/balloon/events` returns (the newest).
const MAX_MARKERS: usize = 2000;

#[derive(Clone, Debug)]
pub struct AppState {
    pub shared: Arc<RwLock<Shared>>,
    pub db: PathBuf,
    /// `[http] max_range`: the longest `since` served.
    pub max_range: Duration,
    /// The server's connection counters.
    pub server: Arc<crate::server::Stats>,
    /// History reads in flight at once: each can hold a whole range decoded in memory, so
    /// clients wait their turn instead of multiplying that by the connection cap.
    pub history_reads: Arc<tokio::sync::Semaphore>,
    /// How long a request waits for a history read to end before it is told to come back
    /// (half the idle timeout: a client waiting longer would be cut with no answer at all).
    pub history_wait: Duration,
}

/// How many history reads run at once (the rest wait for one to end).
pub const HISTORY_READS: usize = 2;

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/page/app.js", get(app_js))
        .route("/vendor/uPlot.iife.min.js", get(uplot_js))
        .route("/vendor/uPlot.min.css", get(uplot_css))
        .route("/metrics", get(metrics))
        .route("/api/v1/latest", get(latest))
        .route("/api/v1/series", get(series_api))
        .route("/api/v1/leaks", get(leaks_api))
        .route("/api/v1/health", get(health))
        .route("/api/v1/balloon", get(balloon))
        .route("/api/v1/balloon/events", get(balloon_events))
        .with_state(state)
}

/// An API error: a status and a sentence.
struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Json(serde_json::json!({ "error": self.1 }));
        if self.0 == StatusCode::SERVICE_UNAVAILABLE {
            // Busy or a store that cannot be read now: both pass.
            return (self.0, [(header::RETRY_AFTER, "5")], body).into_response();
        }
        (self.0, body).into_response()
    }
}

fn latest_view(st: &AppState) -> Result<Arc<View>, ApiError> {
    st.shared
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .latest
        .clone()
        .ok_or_else(|| {
            ApiError(
                StatusCode::SERVICE_UNAVAILABLE,
                "no sample yet: the first one is being taken".into(),
            )
        })
}

async fn page() -> Html<&'static str> {
    Html(include_str!("../page/index.html"))
}

/// A file of the page, built into the binary: the page never fetches from elsewhere (the
/// daemon may run where the browser has no internet). The vendored files change only with
/// the binary, so a browser may keep them a day.
fn asset(content_type: &'static str, body: &'static str, cache: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, cache),
        ],
        body,
    )
        .into_response()
}

const JS: &str = "text/javascript; charset=utf-8";

/// The page's script; `no-cache` (revalidated each load) so a new binary's page is never
/// mixed with an old script.
async fn app_js() -> Response {
    asset(JS, include_str!("../page/app.js"), "no-cache")
}

/// uPlot 1.6.31 (MIT, `page/vendor/`, see its README there).
async fn uplot_js() -> Response {
    asset(
        JS,
        include_str!("../page/vendor/uPlot.iife.min.js"),
        "public, max-age=86400",
    )
}

async fn uplot_css() -> Response {
    asset(
        "text/css; charset=utf-8",
        include_str!("../page/vendor/uPlot.min.css"),
        "public, max-age=86400",
    )
}

async fn metrics(State(st): State<AppState>, headers: HeaderMap) -> Response {
    let format = Format::from_accept(headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()));
    let (view, health) = {
        let s = st.shared.read().unwrap_or_else(|p| p.into_inner());
        (s.latest.clone(), s.health.clone())
    };
    let Some(view) = view else {
        return ApiError(StatusCode::SERVICE_UNAVAILABLE, "no sample yet".into()).into_response();
    };
    let body = memwarden_metrics::render(&view, &health, format);
    let accept = headers
        .get(header::ACCEPT_ENCODING)
        .and_then(|v| v.to_str().ok());
    if accepts_gzip(accept) {
        if let Some(gz) = gzip(body.as_bytes()) {
            return (
                [
                    (header::CONTENT_TYPE, format.content_type()),
                    (header::CONTENT_ENCODING, "gzip"),
                    (header::VARY, "accept-encoding"),
                ],
                gz,
            )
                .into_response();
        }
    }
    (
        [
            (header::CONTENT_TYPE, format.content_type()),
            (header::VARY, "accept-encoding"),
        ],
        body,
    )
        .into_response()
}

/// `body` gzipped at the fastest level (the text compresses ~10× even so); `None` on a write
/// error, when the plain body is sent instead.
fn gzip(body: &[u8]) -> Option<Vec<u8>> {
    use std::io::Write as _;
    let mut enc = flate2::write::GzEncoder::new(
        Vec::with_capacity(body.len() / 8),
        flate2::Compression::fast(),
    );
    enc.write_all(body).ok()?;
    enc.finish().ok()
}

async fn latest(State(st): State<AppState>) -> Result<Response, ApiError> {
    Ok(Json(&*latest_view(&st)?).into_response())
}

fn since_now(q: &RangeQuery, default: Duration, max: Duration) -> Result<u64, ApiError> {
    since_ms(q.since.as_deref(), default, max, now_unix_ms())
        .map_err(|e| ApiError(StatusCode::BAD_REQUEST, e))
}

/// Reads `[since, now]` from the store on a blocking thread.
/// The series `filter` selects since `since`, folded one sample at a time as the store
/// decodes them (a range's whole samples are never held: a day of them is ~100 times its
/// series), then `answer` made of them and the sample count, serialized on the same blocking
/// thread: a read holds its series and its JSON, and at most HISTORY_READS run at once.
async fn history_json(
    st: &AppState,
    since: u64,
    filter: series::Filter,
    answer: impl FnOnce(usize, Vec<series::Series>) -> serde_json::Result<Vec<u8>> + Send + 'static,
) -> Result<Response, ApiError> {
    let body = read_store(st, move |s| {
        let mut b = series::SeriesBuilder::new(filter);
        let n = s.range_each(
            since,
            u64::MAX,
            |x: &Sample| x.taken_at_unix_ms,
            |x| b.push(&x),
        )?;
        Ok(answer(n, b.finish()))
    })
    .await?
    .map_err(|e| {
        ApiError(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("encoding the answer: {e}"),
        )
    })?;
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

/// Runs `read` on the history, opened read-only on a blocking thread: a store that cannot be
/// read is 503 with its cause chain.
async fn read_store<T: Send + 'static>(
    st: &AppState,
    read: impl FnOnce(&Store) -> Result<T, memwarden_store::Error> + Send + 'static,
) -> Result<T, ApiError> {
    let db = st.db.clone();
    // The permit moves into the blocking task: a client that goes away does not free the
    // slot while its read still runs.
    let wait = tokio::time::timeout(st.history_wait, st.history_reads.clone().acquire_owned());
    let permit = match wait.await {
        Ok(Ok(p)) => p,
        Ok(Err(_)) => {
            return Err(ApiError(
                StatusCode::SERVICE_UNAVAILABLE,
                "history reader: shutting down".into(),
            ))
        }
        Err(_) => {
            return Err(ApiError(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "history reader busy: {HISTORY_READS} reads were running for all of {} s; try again",
                    st.history_wait.as_secs()
                ),
            ))
        }
    };
    tokio::task::spawn_blocking(move || {
        let _permit = permit;
        let out = Store::open_read_only(&db)
            .and_then(|s| read(&s))
            .map_err(|e| {
                let e = crate::report::chain(&e);
                ApiError(StatusCode::SERVICE_UNAVAILABLE, format!("history: {e}"))
            });
        // A read decodes megabytes in small pieces: the allocator would keep them in its free
        // lists after the answer is gone; give them back now.
        crate::process::release_free_memory();
        out
    })
    .await
    .map_err(|e| {
        ApiError(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("history reader: {e}"),
        )
    })?
}

async fn series_api(
    State(st): State<AppState>,
    Query(q): Query<RangeQuery>,
) -> Result<Response, ApiError> {
    let since = since_now(&q, Duration::from_secs(6 * 3600), st.max_range)?;
    history_json(&st, since, series_filter(&q), |n, series| {
        #[derive(serde::Serialize)]
        struct Answer {
            samples: usize,
            series: Vec<series::Series>,
        }
        serde_json::to_vec(&Answer { samples: n, series })
    })
    .await
}

async fn leaks_api(
    State(st): State<AppState>,
    Query(q): Query<RangeQuery>,
) -> Result<Response, ApiError> {
    let since = since_now(&q, Duration::from_secs(24 * 3600), st.max_range)?;
    history_json(&st, since, leaks::filter(), |n, series| {
        #[derive(serde::Serialize)]
        struct Answer {
            samples: usize,
            leaks: Vec<leaks::Leak>,
        }
        let leaks = leaks::find_in(series, &leaks::LeakConfig::default());
        serde_json::to_vec(&Answer { samples: n, leaks })
    })
    .await
}

async fn health(State(st): State<AppState>) -> Response {
    let s = st.shared.read().unwrap_or_else(|p| p.into_inner());
    Json(serde_json::json!({
        "samples_total": s.health.samples_total,
        "sample_errors_total": s.health.sample_errors_total,
        "last_sample_unix_ms": s.health.last_sample_unix_ms,
        "last_sample_duration_seconds": s.health.last_sample_duration_seconds,
        "cpu_seconds_total": s.health.cpu_seconds_total,
        "resident_bytes": s.health.resident_bytes,
        "sqlite_memory_bytes": s.health.sqlite_memory_bytes,
        "peak_resident_bytes": s.peak_resident_bytes,
        "vms_gone_total": s.health.vms_gone_total,
        "store_errors_total": s.health.store_errors_total,
        "store_bytes": s.health.store_bytes,
        "store_backlog_samples": s.health.store_backlog_samples,
        "store_backlog_dropped_total": s.health.store_backlog_dropped_total,
        "store_error": s.store_error,
        "sources": s.latest.as_ref().map(|l| l.sample().sources.clone()).unwrap_or_default(),
        "balloon": balloon_json(&s),
        "http": st.server.view(),
    }))
    .into_response()
}

fn balloon_json(s: &Shared) -> serde_json::Value {
    let h = &s.health;
    serde_json::json!({
        "enabled": h.balloon_enabled,
        "dry_run": h.balloon_dry_run,
        "actions_total": h.balloon_actions_total.iter()
            .map(|(vm, dir, n)| serde_json::json!({"name": vm, "direction": dir, "count": n}))
            .collect::<Vec<_>>(),
        "action_errors_total": h.balloon_action_errors_total.iter()
            .map(|(vm, n)| serde_json::json!({"name": vm, "count": n}))
            .collect::<Vec<_>>(),
    })
}

/// The balloon controller: counters and its last cycle (plan, what applying it did).
async fn balloon(State(st): State<AppState>) -> Response {
    let s = st.shared.read().unwrap_or_else(|p| p.into_inner());
    let mut v = balloon_json(&s);
    v["last_cycle"] = s
        .last_balloon_cycle
        .clone()
        .unwrap_or(serde_json::Value::Null);
    Json(v).into_response()
}

/// The controller's actions and the harm it saw over `since` (default 6h), of `vm` when given:
/// the page's markers. At most [`MAX_MARKERS`], the newest; `truncated` says when more were.
async fn balloon_events(
    State(st): State<AppState>,
    Query(q): Query<RangeQuery>,
) -> Result<Response, ApiError> {
    let since = since_now(&q, Duration::from_secs(6 * 3600), st.max_range)?;
    // The newest cycles only: each holds a whole plan, and a dry run records every cycle.
    let events = read_store(&st, move |s| {
        s.newest_events("balloon", since, u64::MAX, MAX_MARKERS)
    })
    .await?;
    let cut_in_store = events.len() >= MAX_MARKERS;
    let (markers, cut) = markers::markers(&events, q.vm.as_deref(), MAX_MARKERS);
    let truncated = cut || cut_in_store;
    Ok(Json(serde_json::json!({ "events": markers, "truncated": truncated })).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// The API's state over an empty store of its own (kept while the TempDir lives).
    fn state(history_wait: Duration) -> (tempfile::TempDir, AppState) {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("history.db");
        drop(Store::open(&db).expect("create the store"));
        let st = AppState {
            shared: Arc::default(),
            db,
            max_range: Duration::from_secs(3600),
            server: Arc::default(),
            history_reads: Arc::new(tokio::sync::Semaphore::new(HISTORY_READS)),
            history_wait,
        };
        (dir, st)
    }

    /// Eight clients ask for history at once: never more than HISTORY_READS (2) decode at the same
    /// time, and every one is answered in its turn (none refused, none lost).
    #[test]
    fn history_reads_run_at_most_history_reads_at_a_time_and_the_rest_wait() {
        let (_dir, st) = state(Duration::from_secs(30));
        let running = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let rt = tokio::runtime::Builder::new_current_thread()
            .max_blocking_threads(16)
            .enable_all()
            .build()
            .expect("runtime");
        let answered = rt.block_on(async {
            let reads = (0..8).map(|i| {
                let (st, running, most) = (st.clone(), running.clone(), most.clone());
                tokio::spawn(async move {
                    read_store(&st, move |_| {
                        let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(now, Ordering::SeqCst);
                        std::thread::sleep(Duration::from_millis(100));
                        running.fetch_sub(1, Ordering::SeqCst);
                        Ok(i)
                    })
                    .await
                    .map_err(|e| e.1)
                })
            });
            let mut out = Vec::new();
            for r in reads.collect::<Vec<_>>() {
                out.push(r.await.expect("task"));
            }
            out
        });
        let answered: Vec<usize> = answered.into_iter().map(|r| r.expect("read")).collect();
        assert_eq!(
            answered,
            (0..8).collect::<Vec<_>>(),
            "every client answered"
        );
        assert_eq!(most.load(Ordering::SeqCst), HISTORY_READS, "reads at once");
    }

    /// A request that cannot get a history read within `history_wait` is told so with a 503
    /// (and Retry-After), instead of waiting until the idle timeout cuts it with no answer.
    #[test]
    fn a_request_that_waits_too_long_for_a_history_read_gets_a_503() {
        let (_dir, st) = state(Duration::from_millis(200));
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let held = rt.block_on(
            st.history_reads
                .clone()
                .acquire_many_owned(HISTORY_READS as u32),
        );
        let err = rt
            .block_on(read_store(&st, |_| Ok(())))
            .expect_err("no read slot was free");
        assert_eq!(err.0, StatusCode::SERVICE_UNAVAILABLE);
        assert!(err.1.contains("busy"), "{}", err.1);
        let r = err.into_response();
        assert_eq!(
            r.headers().get(header::RETRY_AFTER).map(|v| v.as_bytes()),
            Some(&b"5"[..])
        );
        drop(held);
        rt.block_on(read_store(&st, |_| Ok(())))
            .map_err(|e| e.1)
            .expect("a slot is free again");
    }
}
