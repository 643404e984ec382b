//! The store's one error type: every variant names the file and what was being done, so the
//! daemon can log it and carry on (a full disk or a read-only file is never a panic).
//!
//! A variant with a cause chains it (`#[source]`) and does not print it as well: a caller
//! printing the chain (anyhow's `{:#}`, the daemon's log) shows SQLite's message once.

use std::path::PathBuf;

/// What went wrong, with the file and the operation.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// SQLite refused; [`Error::kind`] says whether it is a full disk, a read-only file, a lock
    /// held too long or damage.
    #[error("{}: {doing}{}", path.display(), hint(source))]
    Sqlite {
        path: PathBuf,
        doing: &'static str,
        #[source]
        source: rusqlite::Error,
    },
    /// Creating the directory or reading the file's size failed.
    #[error("{}: {doing}", path.display())]
    Io {
        path: PathBuf,
        doing: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// A write through a handle opened with [`crate::Store::open_read_only`].
    #[error("{}: cannot {doing}: the store was opened read-only (open it with Store::open to write)", path.display())]
    ReadOnlyHandle { path: PathBuf, doing: &'static str },
    /// The file was written by a newer memwarden.
    #[error("{}: schema version {found} is newer than this memwarden knows ({known}): upgrade memwarden", path.display())]
    TooNew {
        path: PathBuf,
        found: i64,
        known: i64,
    },
    /// A stored record could not be decoded (damage, or a format this build does not know).
    #[error("{}: {doing}: record {what} cannot be decoded: {why}", path.display())]
    Decode {
        path: PathBuf,
        doing: &'static str,
        what: String,
        why: String,
    },
}

/// Classes a caller can act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// No space left: nothing was written, earlier data is intact; retry later.
    DiskFull,
    /// The file, its directory or the handle is read-only.
    ReadOnly,
    /// Another handle held the lock longer than the busy timeout; retry.
    Busy,
    /// The file is damaged or not a memwarden store.
    Corrupt,
    /// Anything else (see the message).
    Other,
}

impl Error {
    pub fn kind(&self) -> ErrorKind {
        use rusqlite::ErrorCode as C;
        match self {
            Error::ReadOnlyHandle { .. } => ErrorKind::ReadOnly,
            Error::Decode { .. } => ErrorKind::Corrupt,
            Error::Sqlite { source, .. } => match source.sqlite_error_code() {
                Some(C::DiskFull) => ErrorKind::DiskFull,
                Some(C::ReadOnly) => ErrorKind::ReadOnly,
                Some(C::DatabaseBusy | C::DatabaseLocked) => ErrorKind::Busy,
                Some(C::DatabaseCorrupt | C::NotADatabase) => ErrorKind::Corrupt,
                _ => ErrorKind::Other,
            },
            Error::Io { source, .. } => match source.raw_os_error() {
                Some(28) => ErrorKind::DiskFull, // ENOSPC
                Some(30) => ErrorKind::ReadOnly, // EROFS
                _ => match source.kind() {
                    std::io::ErrorKind::PermissionDenied => ErrorKind::ReadOnly,
                    _ => ErrorKind::Other,
                },
            },
            Error::TooNew { .. } => ErrorKind::Other,
        }
    }
}

/// What to do about the common SQLite failures, appended to the message.
fn hint(e: &rusqlite::Error) -> &'static str {
    use rusqlite::ErrorCode as C;
    match e.sqlite_error_code() {
        Some(C::DiskFull) => " (disk full: nothing was written and earlier history is intact; free space and appends resume)",
        Some(C::ReadOnly) => " (the file or its directory is read-only)",
        Some(C::DatabaseBusy | C::DatabaseLocked) => " (another process held the store's lock too long; retry)",
        Some(C::CannotOpen) => " (check that the directory exists and is writable, or that the file exists for read-only use)",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The cause is chained, not printed as well: our line ends with the hint, and SQLite's
    /// message comes once, from the chain (rusqlite then chains its own error code).
    #[test]
    fn sqlite_cause_is_chained_not_printed() {
        let source = rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_FULL),
            Some("database or disk is full".into()),
        );
        let e = Error::Sqlite {
            path: PathBuf::from("/var/lib/memwarden/history.db"),
            doing: "appending a sample",
            source,
        };
        let line = e.to_string();
        assert!(!line.contains("database or disk is full"), "{line}");
        assert!(
            line.starts_with("/var/lib/memwarden/history.db: appending a sample (disk full"),
            "{line}"
        );
        let cause = std::error::Error::source(&e).map(ToString::to_string);
        assert_eq!(cause.as_deref(), Some("database or disk is full"));
    }
}
