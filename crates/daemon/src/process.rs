//! Process-wide settings made once at start: the open-file limit (raised, and split between
//! the HTTP side and sampling) and the file-creation mask.

use tracing::{info, warn};

/// Fds kept for sampling and the store whatever the clients do: the recorder's and the
/// maintainer's store handles (database, WAL, shared memory: 3 each), the HTTP side's history
/// readers (3 each), one /proc or /sys file at a time, libvirt's socket, log and slack.
pub const SAMPLING_FDS: u64 = 40;

/// The open-file limit before and after [`raise_nofile`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NofileLimit {
    pub soft_before: u64,
    pub soft: u64,
    pub hard: u64,
}

/// Raises RLIMIT_NOFILE's soft limit to the hard limit (a systemd service starts at 1,024
/// whatever the hard limit is) and logs both. A failure leaves the limit as it was, logged.
#[allow(unsafe_code)]
pub fn raise_nofile() -> NofileLimit {
    // SAFETY: getrlimit and setrlimit read and write the struct we own.
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        let e = std::io::Error::last_os_error();
        warn!(error = %e, "reading the open-file limit failed; assuming 1024");
        return NofileLimit {
            soft_before: 1024,
            soft: 1024,
            hard: 1024,
        };
    }
    let before = lim.rlim_cur;
    if lim.rlim_cur < lim.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            lim.rlim_cur = lim.rlim_max;
        } else {
            let e = std::io::Error::last_os_error();
            warn!(error = %e, soft = before, hard = lim.rlim_max, "raising the open-file limit failed");
        }
    }
    let l = NofileLimit {
        soft_before: before,
        soft: lim.rlim_cur,
        hard: lim.rlim_max,
    };
    info!(
        soft_before = l.soft_before,
        soft = l.soft,
        hard = l.hard,
        "open-file limit"
    );
    l
}

/// Fds this process has open now (entries of /proc/self/fd, less the one reading it).
pub fn open_fds() -> u64 {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| (d.count() as u64).saturating_sub(1))
}

/// How many connections the HTTP side may hold: `wanted`, lowered so that the fds open now,
/// `extra` more for sampling (one per QMP socket read at once) and [`SAMPLING_FDS`] stay free.
/// `None` when not even one is left.
pub fn connection_cap(wanted: usize, limit: u64, open_now: u64, extra: u64) -> Option<usize> {
    let room = limit.saturating_sub(open_now + SAMPLING_FDS + extra);
    let cap = usize::try_from(room).unwrap_or(usize::MAX).min(wanted);
    (cap > 0).then_some(cap)
}

/// Big buffers mapped on their own, and few heaps: what a daemon that runs for months needs
/// from glibc's allocator. The store's block compressor (zstd, 16 MiB window) takes tens of
/// MiB for a moment every maintenance; glibc's dynamic mmap threshold moves such buffers into
/// a heap after the first one is freed, where they stay resident (the 30-minute soak: +50 MiB
/// that never came back). A fixed threshold (which also turns the dynamic one off) maps each
/// on its own and unmaps it on free. Two arenas instead of 8 per core: every sample spawns
/// short-lived reader threads, and each arena keeps its own free memory. A no-op elsewhere.
#[allow(unsafe_code)]
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets the allocator's parameters; it is called before other threads.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 * 1024);
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

/// Hands freed heap memory back to the kernel (glibc keeps what a burst of connections freed
/// in its free lists; `malloc_trim` releases every whole free page). A no-op elsewhere.
#[allow(unsafe_code)]
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks the allocator's own free lists.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Files the daemon creates (the history, its WAL and shared memory, the audit file, the
/// store's directory) are readable by their owner only: umask 0077.
#[allow(unsafe_code)]
pub fn private_umask() {
    // SAFETY: umask only swaps the process's file-creation mask.
    unsafe {
        libc::umask(0o077);
    }
}

/// Files an earlier memwarden left readable by others (the history, its WAL and shared
/// memory, the audit file next to it): made owner-only, each logged once. Absent files are
/// skipped; a failure is logged and start goes on.
pub fn tighten_existing(db: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt;
    let name = db.file_name().map(|n| n.to_string_lossy().into_owned());
    let Some(name) = name else { return };
    let files = [
        db.to_path_buf(),
        db.with_file_name(format!("{name}-wal")),
        db.with_file_name(format!("{name}-shm")),
        db.with_file_name("balloon-audit.jsonl"),
    ];
    for f in files {
        let Ok(meta) = std::fs::metadata(&f) else {
            continue;
        };
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 == 0 {
            continue;
        }
        match std::fs::set_permissions(&f, std::fs::Permissions::from_mode(mode & 0o700)) {
            Ok(()) => info!(file = %f.display(), was = format!("{mode:o}"), "made owner-only"),
            Err(e) => warn!(file = %f.display(), error = %e, "could not make owner-only"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_left_readable_by_others_are_made_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("h.db");
        let audit = dir.path().join("balloon-audit.jsonl");
        let other = dir.path().join("other");
        for f in [&db, &audit, &other] {
            std::fs::write(f, "x").expect("write");
            std::fs::set_permissions(f, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        }
        tighten_existing(&db);
        let mode =
            |p: &std::path::Path| std::fs::metadata(p).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode(&db), 0o600);
        assert_eq!(mode(&audit), 0o600);
        assert_eq!(mode(&other), 0o644, "only the daemon's own files");
    }

    #[test]
    fn the_cap_leaves_sampling_its_fds() {
        assert_eq!(connection_cap(256, 65_536, 20, 8), Some(256));
        // A systemd default of 1024 still allows the default 256.
        assert_eq!(connection_cap(256, 1024, 20, 8), Some(256));
        let c = connection_cap(256, 64, 12, 0).expect("some");
        assert_eq!(c as u64, 64 - 12 - SAMPLING_FDS);
        assert_eq!(connection_cap(256, 40, 12, 0), None);
    }
}
