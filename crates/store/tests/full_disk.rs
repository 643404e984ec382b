//! A full disk and a read-only mount, for real: a small tmpfs (needs root and mount, as the
//! suite runs; a failed mount fails the test). A read-only mount stands for a read-only file:
//! root writes through mode 0444. Appends must fail with a clear error, earlier samples stay
//! readable, the file stays sound, and appends resume once space is freed.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use memwarden_store::{ErrorKind, Store};

/// A tmpfs mounted on a temp dir, unmounted on drop (even when the test fails).
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Result<Tmpfs, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "mount -t tmpfs refused: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(Tmpfs { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn remount(&self, opts: &str) {
        let ok = Command::new("mount")
            .args(["-o", &format!("remount,{opts}")])
            .arg(self.path())
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "remount {opts}");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

/// Write zeros into `path` until the file system is full.
fn fill(path: &PathBuf) {
    use std::io::Write;
    let mut f = std::fs::File::create(path).expect("filler");
    let chunk = vec![0u8; 64 * 1024];
    while f.write_all(&chunk).is_ok() {}
    let _ = f.sync_all();
}

#[test]
fn full_disk_is_a_clear_error_and_recoverable() {
    let fs = Tmpfs::mount("4m")
        .unwrap_or_else(|why| panic!("{why} (the suite runs as root: scripts/test.sh)"));
    let path = fs.path().join("history.db");
    let mut store = Store::open(&path).expect("open");
    let mut gen = common::Generator::new(1_700_000_000_000, 9);
    let mut stored = Vec::new();
    for _ in 0..5 {
        let s = gen.next_sample();
        store.append(&s).expect("append with space");
        stored.push(s.taken_at_unix_ms);
    }
    let filler = fs.path().join("filler");
    fill(&filler);

    // The WAL may have room left in pages it already holds: append until it does not.
    let err = loop {
        let s = gen.next_sample();
        match store.append(&s) {
            Ok(()) => stored.push(s.taken_at_unix_ms),
            Err(e) => break e,
        }
        assert!(stored.len() < 500, "a 4 MiB file system never filled up");
    };
    assert_eq!(err.kind(), ErrorKind::DiskFull, "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("history.db") && msg.contains("disk full"),
        "{msg}"
    );

    let held: Vec<u64> = store
        .range(0, u64::MAX)
        .expect("read while full")
        .iter()
        .map(|s| s.taken_at_unix_ms)
        .collect();
    assert_eq!(held, stored);
    assert!(store.check_integrity().expect("check").is_empty());

    std::fs::remove_file(&filler).expect("free space");
    let s = gen.next_sample();
    store.append(&s).expect("append after space was freed");
    stored.push(s.taken_at_unix_ms);
    drop(store);
    let store = Store::open(&path).expect("reopen");
    let held: Vec<u64> = store
        .range(0, u64::MAX)
        .expect("range")
        .iter()
        .map(|s| s.taken_at_unix_ms)
        .collect();
    assert_eq!(held, stored);
    assert!(store.check_integrity().expect("check").is_empty());
}

#[test]
fn read_only_mount_is_a_clear_error() {
    let fs = Tmpfs::mount("4m")
        .unwrap_or_else(|why| panic!("{why} (the suite runs as root: scripts/test.sh)"));
    let path = fs.path().join("history.db");
    let mut gen = common::Generator::new(1_700_000_000_000, 5);
    let first = gen.next_sample();
    Store::open(&path)
        .expect("open")
        .append(&first)
        .expect("append");
    fs.remount("ro");
    // Root ignores mode 0444, not a read-only mount: opening may fail, or writing must.
    let err = match Store::open(&path) {
        Err(e) => e,
        Ok(mut s) => s
            .append(&gen.next_sample())
            .expect_err("append on a read-only mount"),
    };
    assert_eq!(err.kind(), ErrorKind::ReadOnly, "{err}");
    assert!(err.to_string().contains("history.db"), "{err}");
    fs.remount("rw");
}
