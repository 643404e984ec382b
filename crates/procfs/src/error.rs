//! The crate's one error type: an I/O failure on a path, or a line that does not parse.
//!
//! Pure parsers know which kernel file they parse and fill `path` with its usual location
//! (`/proc/meminfo`); the reader replaces it with the path it really opened ([`Error::at`]).

use std::io;
use std::path::{Path, PathBuf};

/// Longest excerpt of an offending line kept in [`Error::Parse`].
const MAX_GOT: usize = 80;

/// `ESRCH`: a process exited while one of its /proc files was being read.
const ESRCH: i32 = 3;

/// Everything that can go wrong reading or parsing a kernel file.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Opening or reading `path` failed. See [`Error::is_not_found`],
    /// [`Error::is_permission_denied`] and [`Error::is_gone`] to decide what to do.
    ///
    /// `Display` names the path only: the cause is the error's `source()`, which `{:#}` (anyhow)
    /// and [`Error::with_cause`] print after it (once).
    #[error("{}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// Line `line` (1-based) of `path` is not what the kernel prints.
    #[error("{} line {line}: expected {expected}, got {got:?}", path.display())]
    Parse {
        path: PathBuf,
        line: usize,
        /// What the line (or field) should look like.
        expected: String,
        /// The offending text, cut to 80 characters.
        got: String,
    },
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn parse(
        path: impl Into<PathBuf>,
        line: usize,
        expected: impl Into<String>,
        got: &str,
    ) -> Self {
        let got = match got.char_indices().nth(MAX_GOT) {
            Some((cut, _)) => format!("{}...", &got[..cut]),
            None => got.to_string(),
        };
        Error::Parse {
            path: path.into(),
            line,
            expected: expected.into(),
            got,
        }
    }

    /// The same error, reported against `path` (the file the reader really opened).
    pub fn at(self, path: &Path) -> Self {
        match self {
            Error::Io { source, .. } => Error::io(path, source),
            Error::Parse {
                line,
                expected,
                got,
                ..
            } => Error::Parse {
                path: path.to_path_buf(),
                line,
                expected,
                got,
            },
        }
    }

    /// One line with the cause: `/proc/meminfo: No such file or directory (os error 2)` (for
    /// callers that print the error without walking its source chain).
    pub fn with_cause(&self) -> String {
        match self {
            Error::Io { path, source } => format!("{}: {source}", path.display()),
            e => e.to_string(),
        }
    }

    /// The path the error is about.
    pub fn path(&self) -> &Path {
        match self {
            Error::Io { path, .. } | Error::Parse { path, .. } => path,
        }
    }

    /// The file does not exist: the kernel lacks the feature (optional source) or, under
    /// /proc/PID, the process is gone.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::Io { source, .. } if source.kind() == io::ErrorKind::NotFound)
    }

    /// We may not read the file (not root, or a hardened /proc).
    pub fn is_permission_denied(&self) -> bool {
        matches!(self, Error::Io { source, .. } if source.kind() == io::ErrorKind::PermissionDenied)
    }

    /// The process owning a /proc/PID file exited while we read it (`ENOENT` or `ESRCH`).
    pub fn is_gone(&self) -> bool {
        matches!(self, Error::Io { source, .. }
            if source.kind() == io::ErrorKind::NotFound || source.raw_os_error() == Some(ESRCH))
    }
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_error_is_one_clear_line() {
        let e = Error::parse("/proc/meminfo", 3, "\"Key: value [kB]\"", "MemFree 12");
        assert_eq!(
            e.to_string(),
            r#"/proc/meminfo line 3: expected "Key: value [kB]", got "MemFree 12""#
        );
    }

    #[test]
    fn long_excerpts_are_cut_on_a_char_boundary() {
        let long = "é".repeat(200);
        let Error::Parse { got, .. } = Error::parse("x", 1, "y", &long) else {
            panic!("not a parse error")
        };
        assert_eq!(got.chars().count(), MAX_GOT + 3);
    }

    #[test]
    fn classifies_io_errors() {
        let gone = Error::io("/proc/1/status", io::Error::from_raw_os_error(ESRCH));
        assert!(gone.is_gone() && !gone.is_not_found());
        let missing = Error::io("/proc/pressure/memory", io::ErrorKind::NotFound.into());
        assert!(missing.is_not_found() && missing.is_gone());
        let denied = Error::io("/proc/1/smaps", io::ErrorKind::PermissionDenied.into());
        assert!(denied.is_permission_denied() && !denied.is_gone());
        assert_eq!(
            denied.at(Path::new("/x")).with_cause(),
            "/x: permission denied"
        );
    }

    /// Regression: the cause was printed twice (`...(os error 2): ...(os error 2)`) because
    /// `Display` included `{source}` while `#[source]` chained it too.
    #[test]
    fn io_cause_is_printed_once_through_the_chain() {
        use std::error::Error as _;
        let e = Error::io("/proc/meminfo", io::Error::from_raw_os_error(2));
        assert_eq!(e.to_string(), "/proc/meminfo");
        let source = e.source().expect("chained cause").to_string();
        assert!(source.contains("os error 2"), "{source}");
        let chain = format!("{e}: {source}");
        assert_eq!(chain.matches("os error 2").count(), 1, "{chain}");
        assert_eq!(e.with_cause(), chain);
    }
}
