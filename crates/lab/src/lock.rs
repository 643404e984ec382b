//! File locks (flock(2), shared with the shell's `flock(1)`): one for builds and
//! set-up, and N "guest slots" so that all test binaries together run at most N
//! guests at once (`MEMWARDEN_LAB_SLOTS`, default 2).

use crate::error::{io, Error, Result};
use std::fs::{File, OpenOptions, TryLockError};
use std::path::Path;
use std::time::{Duration, Instant};

/// An exclusive flock on a file; released on drop (or when the process dies).
#[derive(Debug)]
pub(crate) struct FileLock {
    _file: File,
}

fn open(path: &Path) -> Result<File> {
    OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(io("open lock file", path))
}

/// Blocks until the lock at `path` is ours.
pub(crate) fn lock(path: &Path) -> Result<FileLock> {
    let file = open(path)?;
    file.lock().map_err(io("flock", path))?;
    Ok(FileLock { _file: file })
}

/// How a [`shared_or_exclusive`] lock is held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    Shared,
    Exclusive,
}

/// Waits (up to `timeout`) for a shared or an exclusive flock on `path`.
pub(crate) fn shared_or_exclusive(path: &Path, mode: Mode, timeout: Duration) -> Result<FileLock> {
    let file = open(path)?;
    let start = Instant::now();
    loop {
        let r = match mode {
            Mode::Shared => file.try_lock_shared(),
            Mode::Exclusive => file.try_lock(),
        };
        match r {
            Ok(()) => return Ok(FileLock { _file: file }),
            Err(TryLockError::WouldBlock) => {}
            Err(TryLockError::Error(e)) => return Err(io("flock", path)(e)),
        }
        if start.elapsed() > timeout {
            return Err(Error::Timeout {
                what: format!("{mode:?} lock {}", path.display()),
                secs: timeout.as_secs(),
                run_dir: path.to_path_buf(),
                log_tail: String::new(),
            });
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// One of the lab's guest slots, held for a guest's whole life.
#[derive(Debug)]
pub(crate) struct Slot {
    _lock: FileLock,
}

/// Number of guests the lab lets run at once (`MEMWARDEN_LAB_SLOTS`, default 2).
pub fn slots() -> usize {
    std::env::var("MEMWARDEN_LAB_SLOTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(2)
}

/// Waits (up to `timeout`) for a free slot `dir/guest-slot-<i>`.
pub(crate) fn slot(dir: &Path, timeout: Duration) -> Result<Slot> {
    let start = Instant::now();
    loop {
        for i in 0..slots() {
            let path = dir.join(format!("guest-slot-{i}"));
            let file = open(&path)?;
            match file.try_lock() {
                Ok(()) => {
                    return Ok(Slot {
                        _lock: FileLock { _file: file },
                    })
                }
                Err(TryLockError::WouldBlock) => {}
                Err(TryLockError::Error(e)) => return Err(io("flock", &path)(e)),
            }
        }
        if start.elapsed() > timeout {
            return Err(Error::Timeout {
                what: format!("a free guest slot ({} in use)", slots()),
                secs: timeout.as_secs(),
                run_dir: dir.to_path_buf(),
                log_tail: String::new(),
            });
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}
