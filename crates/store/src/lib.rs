//! The daemon's history: raw samples in one SQLite file, compacted and downsampled with age.
//!
//! # On-disk format
//!
//! One SQLite database in WAL mode (readers never block the writer; a commit is durable when
//! `append` returns: `synchronous=FULL`). `PRAGMA user_version` is the schema version
//! ([`SCHEMA_VERSION`]); `open` creates or migrates, and refuses a newer file.
//!
//! * `recent(id, ts, fmt, data)`: one row per appended [`Sample`], committed on its own. `ts` is
//!   `taken_at_unix_ms`; `data` is the blob in format `fmt` (see `codec`: zstd JSON).
//! * `blocks(id, tier, win_start, win_end, first_ts, last_ts, samples, fmt, data)`: many samples
//!   in one compressed blob, for the time window `[win_start, win_end)` (ms). Tier 0 (full
//!   resolution) blocks cover 10 minutes and are made by [`Store::maintain`] from closed windows
//!   of `recent`; consecutive samples are nearly identical, so a block costs a small fraction of
//!   its rows. Tier 1 (minute) blocks cover an hour, one mean sample per minute; tier 2 (hour)
//!   blocks cover a UTC day, one mean sample per hour (see `downsample` for what "mean" means).
//!
//! What is stored is what was read: samples, never derived figures, so old history is judged
//! again by today's analyses. Downsampled samples are still `Sample`s, averaged field by field.

mod codec;
mod downsample;
mod error;
mod maintain;
mod read;
mod schema;

use std::path::{Path, PathBuf};
use std::time::Duration;

use memwarden_model::Sample;
use rusqlite::{params, Connection, OpenFlags};
use serde::{Deserialize, Serialize};

pub use error::{Error, ErrorKind};
pub use maintain::MaintainReport;
pub use read::{StoreStats, TierStats};
pub use schema::SCHEMA_VERSION;

/// How long another handle may hold the write lock before an operation gives up with
/// [`ErrorKind::Busy`]. Maintenance writes take milliseconds, so this is only reached when
/// something is wrong.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Resolution tiers, finest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    Full = 0,
    Minute = 1,
    Hour = 2,
}

impl Tier {
    pub const ALL: [Tier; 3] = [Tier::Full, Tier::Minute, Tier::Hour];

    /// The time window one block of this tier covers, in ms.
    fn block_window_ms(self) -> u64 {
        match self {
            Tier::Full => 10 * 60_000,
            Tier::Minute => 3_600_000,
            Tier::Hour => 86_400_000,
        }
    }

    /// The period one sample of this tier stands for, in ms (1 for full resolution).
    fn bucket_ms(self) -> u64 {
        match self {
            Tier::Full => 1,
            Tier::Minute => 60_000,
            Tier::Hour => 3_600_000,
        }
    }

    fn from_i64(v: i64) -> Option<Tier> {
        Tier::ALL.into_iter().find(|t| *t as i64 == v)
    }
}

/// How long each resolution is kept, counted back from `now`.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq)]
pub struct Retention {
    /// Every sample (default 2 days).
    pub full: Duration,
    /// One mean sample per minute (default 30 days).
    pub minute: Duration,
    /// One mean sample per hour (default 365 days).
    pub hour: Duration,
}

impl Default for Retention {
    fn default() -> Self {
        const DAY: u64 = 86_400;
        Retention {
            full: Duration::from_secs(2 * DAY),
            minute: Duration::from_secs(30 * DAY),
            hour: Duration::from_secs(365 * DAY),
        }
    }
}

/// A handle's page cache, KiB (SQLite's negative form of `cache_size`).
const PAGE_CACHE_PRAGMA: &str = "PRAGMA cache_size = -256;";

/// Bytes SQLite holds from the allocator right now, all handles together (page caches,
/// prepared statements, schemas): what the store adds to the process's RSS.
#[allow(unsafe_code)]
pub fn sqlite_memory_bytes() -> u64 {
    // SAFETY: sqlite3_memory_used takes no arguments and only reads SQLite's own counter, which
    // it guards itself (the bundled library is built thread-safe).
    let used = unsafe { rusqlite::ffi::sqlite3_memory_used() };
    u64::try_from(used).unwrap_or(0)
}

/// One history file. `Store` is `Send`; use one handle per thread.
#[derive(Debug)]
pub struct Store {
    conn: Connection,
    path: PathBuf,
    read_only: bool,
}

impl Store {
    /// Open (creating the directories and the file if needed) for reading and writing.
    pub fn open(path: &Path) -> Result<Store, Error> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| Error::Io {
                path: dir.to_owned(),
                doing: "create the store's directory",
                source,
            })?;
        }
        // SQLite would silently open a file it may not write read-only, and fail later (or at
        // the WAL's shared-memory file) with a vaguer message: say it now.
        if path.exists() {
            std::fs::OpenOptions::new()
                .write(true)
                .open(path)
                .map_err(|source| Error::Io {
                    path: path.to_owned(),
                    doing: "open the store for writing",
                    source,
                })?;
        }
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags).map_err(sql(path, "open the store"))?;
        let mut store = Store {
            conn,
            path: path.to_owned(),
            read_only: false,
        };
        store.configure()?;
        schema::create_or_migrate(&mut store.conn, path)?;
        Ok(store)
    }

    /// Open an existing store for reading only (`memwarden history` while the daemon writes).
    pub fn open_read_only(path: &Path) -> Result<Store, Error> {
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags)
            .map_err(sql(path, "open the store read-only"))?;
        let store = Store {
            conn,
            path: path.to_owned(),
            read_only: true,
        };
        store
            .conn
            .busy_timeout(BUSY_TIMEOUT)
            .map_err(sql(path, "set the busy timeout"))?;
        schema::check_readable(&store.conn, path)?;
        Ok(store)
    }

    fn configure(&self) -> Result<(), Error> {
        let p = &self.path;
        self.conn
            .busy_timeout(BUSY_TIMEOUT)
            .map_err(sql(p, "set the busy timeout"))?;
        // auto_vacuum must be chosen before the first table exists; on an existing file it is a
        // no-op. Incremental: `maintain` gives freed pages back to the file system in steps.
        self.conn
            .execute_batch("PRAGMA auto_vacuum = INCREMENTAL;")
            .map_err(sql(p, "set auto_vacuum"))?;
        let mode: String = self
            .conn
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .map_err(sql(p, "switch to WAL"))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(Error::Decode {
                path: p.clone(),
                doing: "switch to WAL",
                what: "journal_mode".into(),
                why: format!("SQLite kept journal mode {mode:?}"),
            });
        }
        // FULL: the WAL is synced on every commit, so an append that returned survives a power
        // cut, not only kill -9. One fsync per sample every few seconds is cheap.
        // After a checkpoint, the WAL is cut back to 4 MiB rather than keeping its high mark.
        self.conn
            .execute_batch("PRAGMA synchronous = FULL; PRAGMA journal_size_limit = 4194304;")
            .map_err(sql(p, "set synchronous"))?;
        // The writer lives as long as the daemon: SQLite's default page cache (2 MB) would
        // fill with pages of samples already written and stay, a slow RSS creep over the first
        // minutes. Appends touch only the end of the table; the kernel's cache does the rest.
        self.conn
            .execute_batch(PAGE_CACHE_PRAGMA)
            .map_err(sql(p, "set the page cache size"))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Append one sample; it is committed when this returns `Ok`. On `Err` nothing was written.
    pub fn append(&mut self, sample: &Sample) -> Result<(), Error> {
        let row = Row::encode(sample).map_err(|why| self.decode_err(APPEND, "sample", why))?;
        self.append_row(&row)
    }

    /// Append a sample encoded earlier (kept while the store could not take it); committed
    /// when this returns `Ok`. On `Err` nothing was written.
    pub fn append_row(&mut self, row: &Row) -> Result<(), Error> {
        self.writable(APPEND)?;
        self.conn
            .execute(
                "INSERT INTO recent (ts, fmt, data) VALUES (?1, ?2, ?3)",
                params![ms_to_sql(row.taken_at_unix_ms), row.fmt, row.blob],
            )
            .map_err(sql(&self.path, APPEND))?;
        Ok(())
    }

    /// Records an event (`kind`, e.g. `balloon`; `data`, any JSON) at `at_unix_ms`.
    pub fn append_event(
        &mut self,
        at_unix_ms: u64,
        kind: &str,
        data: &serde_json::Value,
    ) -> Result<(), Error> {
        const DOING: &str = "append an event";
        self.writable(DOING)?;
        self.conn
            .execute(
                "INSERT INTO events (ts, kind, data) VALUES (?1, ?2, ?3)",
                params![ms_to_sql(at_unix_ms), kind, data.to_string()],
            )
            .map_err(sql(&self.path, DOING))?;
        Ok(())
    }

    fn writable(&self, doing: &'static str) -> Result<(), Error> {
        if self.read_only {
            return Err(Error::ReadOnlyHandle {
                path: self.path.clone(),
                doing,
            });
        }
        Ok(())
    }

    fn decode_err(&self, doing: &'static str, what: &str, why: impl ToString) -> Error {
        Error::Decode {
            path: self.path.clone(),
            doing,
            what: what.to_owned(),
            why: why.to_string(),
        }
    }
}

const APPEND: &str = "append a sample";

/// One sample as the store keeps it (compressed JSON), encoded without a store: a recorder
/// can hold rows the store could not take (a full disk) and append them when it can.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub taken_at_unix_ms: u64,
    fmt: i64,
    blob: Vec<u8>,
}

impl Row {
    /// `sample` encoded; an error (in words) only if it cannot be serialized or compressed.
    pub fn encode(sample: &Sample) -> Result<Row, String> {
        let json = serde_json::to_vec(sample).map_err(|e| e.to_string())?;
        let blob = codec::compress_row(&json).map_err(|e| e.to_string())?;
        Ok(Row {
            taken_at_unix_ms: sample.taken_at_unix_ms,
            fmt: codec::FORMAT_ZSTD_JSON,
            blob,
        })
    }

    /// Bytes this row holds in memory.
    pub fn bytes(&self) -> usize {
        self.blob.len() + std::mem::size_of::<Row>()
    }
}

/// Map a SQLite error to [`Error::Sqlite`] naming the file and the operation.
fn sql<'a>(path: &'a Path, doing: &'static str) -> impl Fn(rusqlite::Error) -> Error + 'a {
    move |source| Error::Sqlite {
        path: path.to_owned(),
        doing,
        source,
    }
}

/// SQLite integers are i64; ms since 1970 stay far below 2^63, clamp anything beyond.
fn ms_to_sql(ms: u64) -> i64 {
    i64::try_from(ms).unwrap_or(i64::MAX)
}

fn ms_from_sql(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}
