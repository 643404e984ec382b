//! The schema and its version (`PRAGMA user_version`). A migration is a function from version
//! N to N+1 run in one transaction; version 0 is an empty file.

use std::path::Path;

use rusqlite::{Connection, TransactionBehavior};

use crate::{sql, Error};

/// The schema version this build writes and understands.
pub const SCHEMA_VERSION: i64 = 2;

const V1: &str = "
CREATE TABLE recent (
    id   INTEGER PRIMARY KEY,
    ts   INTEGER NOT NULL,
    fmt  INTEGER NOT NULL,
    data BLOB NOT NULL
);
CREATE INDEX recent_ts ON recent (ts);
CREATE TABLE blocks (
    id        INTEGER PRIMARY KEY,
    tier      INTEGER NOT NULL,
    win_start INTEGER NOT NULL,
    win_end   INTEGER NOT NULL,
    first_ts  INTEGER NOT NULL,
    last_ts   INTEGER NOT NULL,
    samples   INTEGER NOT NULL,
    fmt       INTEGER NOT NULL,
    data      BLOB NOT NULL
);
CREATE INDEX blocks_tier_window ON blocks (tier, win_start);
CREATE INDEX blocks_last ON blocks (last_ts);
";

/// Version 2: what memwarden did, next to what it read (the balloon controller's cycles).
/// Plain JSON text: events are few and an operator may want to read them with `sqlite3`.
const V2: &str = "
CREATE TABLE events (
    id   INTEGER PRIMARY KEY,
    ts   INTEGER NOT NULL,
    kind TEXT NOT NULL,
    data TEXT NOT NULL
);
CREATE INDEX events_ts ON events (ts);
";

/// Migrations, indexed by the version they start from.
const MIGRATIONS: &[&str] = &[V1, V2];

pub fn create_or_migrate(conn: &mut Connection, path: &Path) -> Result<(), Error> {
    // Immediate: two processes opening a new file at once must not both create the tables.
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(sql(path, "lock the store to check its schema"))?;
    let mut version = user_version(&tx, path)?;
    too_new(version, path)?;
    while version < SCHEMA_VERSION {
        let step = MIGRATIONS[usize::try_from(version).unwrap_or(0)];
        tx.execute_batch(step)
            .map_err(sql(path, "create or migrate the schema"))?;
        version += 1;
        tx.pragma_update(None, "user_version", version)
            .map_err(sql(path, "record the schema version"))?;
    }
    tx.commit().map_err(sql(path, "commit the schema"))
}

pub fn check_readable(conn: &Connection, path: &Path) -> Result<(), Error> {
    let version = user_version(conn, path)?;
    too_new(version, path)?;
    if version < SCHEMA_VERSION {
        // A read-only handle cannot migrate; an older file is read once the daemon (or any
        // writer) has opened it with this version.
        return Err(Error::Decode {
            path: path.to_owned(),
            doing: "check the schema",
            what: "schema".into(),
            why: format!(
                "version {version} is older than {SCHEMA_VERSION} (or the file is empty): open it for writing once to migrate"
            ),
        });
    }
    Ok(())
}

fn user_version(conn: &Connection, path: &Path) -> Result<i64, Error> {
    conn.query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(sql(path, "read the schema version"))
}

fn too_new(version: i64, path: &Path) -> Result<(), Error> {
    if !(0..=SCHEMA_VERSION).contains(&version) {
        return Err(Error::TooNew {
            path: path.to_owned(),
            found: version,
            known: SCHEMA_VERSION,
        });
    }
    Ok(())
}
