//! The crate's one error type. Every variant names what was being done and,
//! for guests, the run directory and the tail of the serial log.

use std::path::PathBuf;

/// Errors from the lab: scripts, locks, guests and their consoles.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file or socket operation failed.
    #[error("{what} ({path}): {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file or socket involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A lab script or tool (`lab/*.sh`, `virsh`, `scripts/setup.sh`) failed.
    #[error("{command} failed ({status}); stderr tail:\n{stderr}")]
    Script {
        /// The command line, abbreviated.
        command: String,
        /// Exit status as printed by std.
        status: String,
        /// Last lines of its standard error.
        stderr: String,
    },
    /// Something did not happen in time (boot, console answer, free guest slot).
    #[error("timed out after {secs} s waiting for {what}; run dir {run_dir}; serial log tail:\n{log_tail}")]
    Timeout {
        /// What was awaited.
        what: String,
        /// Seconds waited.
        secs: u64,
        /// The guest's run directory (or the lab directory).
        run_dir: PathBuf,
        /// Last lines of the guest's serial log, if any.
        log_tail: String,
    },
    /// The guest ran a console command and reported failure (`LAB-ACK rc!=0` or `LAB-ERR`).
    #[error("guest command {command:?} failed (rc {rc}); run dir {run_dir}; output:\n{output}")]
    Command {
        /// The command line sent.
        command: String,
        /// The guest's exit status (255 for `LAB-ERR`, unknown command).
        rc: i32,
        /// What the guest printed for it.
        output: String,
        /// The guest's run directory.
        run_dir: PathBuf,
    },
    /// Guest output did not have the expected shape.
    #[error("cannot parse {what} from the guest (run dir {run_dir}): {detail}")]
    Parse {
        /// What was parsed (e.g. "meminfo").
        what: &'static str,
        /// The offending text or reason.
        detail: String,
        /// The guest's run directory.
        run_dir: PathBuf,
    },
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) fn io(
    what: &'static str,
    path: impl Into<PathBuf>,
) -> impl FnOnce(std::io::Error) -> Error {
    let path = path.into();
    move |source| Error::Io { what, path, source }
}
