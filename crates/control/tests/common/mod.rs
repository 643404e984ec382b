//! Shared by the tests that write the real /sys/kernel/mm/ksm: one at a time across every test
//! binary (and the other worktrees on this machine), and the original values always restored.

#![allow(dead_code)] // Each test binary uses its own part of this module.

use std::fs::{File, OpenOptions};
use std::path::Path;

use memwarden_control::ksm::{KsmSnapshot, SYSFS_DIR};

/// Serializes every test that touches the live KSM knobs (flock on a file in the temp dir,
/// released when the test ends, even by a panic or a kill).
pub struct KsmSysfsLock {
    _file: File,
}

pub fn lock() -> KsmSysfsLock {
    let path = std::env::temp_dir().join("memwarden-ksm-sysfs.lock");
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    file.lock()
        .unwrap_or_else(|e| panic!("flock {}: {e}", path.display()));
    KsmSysfsLock { _file: file }
}

/// Restores the knobs as they were when it was made, on drop (a failing test too), and checks
/// that they read back so.
pub struct Restore {
    pub original: KsmSnapshot,
    _lock: KsmSysfsLock,
}

impl Restore {
    /// Takes the lock, then the snapshot.
    pub fn new() -> Restore {
        let lock = lock();
        let original = KsmSnapshot::take(Path::new(SYSFS_DIR));
        assert!(
            original.value(memwarden_policy::ksm::Knob::Run).is_some(),
            "no {SYSFS_DIR}/run: this test needs a kernel with KSM (and root)"
        );
        Restore {
            original,
            _lock: lock,
        }
    }
}

impl Drop for Restore {
    fn drop(&mut self) {
        let failed: Vec<String> = self
            .original
            .restore()
            .into_iter()
            .filter(|r| !r.ok())
            .map(|r| format!("{r:?}"))
            .collect();
        let now = KsmSnapshot::take(Path::new(SYSFS_DIR));
        if !std::thread::panicking() {
            assert!(failed.is_empty(), "restore failed: {failed:?}");
            assert_eq!(now, self.original, "KSM restored to its original settings");
        } else if !failed.is_empty() {
            eprintln!("restore failed: {failed:?}");
        }
    }
}
