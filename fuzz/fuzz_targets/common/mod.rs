//! What the protocol and end-to-end targets share: the bounds every derived VM figure keeps,
//! and a fake QMP endpoint on a Unix socket that sends what the fuzz input says.
//!
//! Each target uses part of it (`#[path]`-included), hence the `dead_code` allowance.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Mutex;

use memwarden_model::vm::VmSample;

/// A fake QEMU: a listening socket in a private directory, and one thread for the life of the
/// process that serves its connections, one at a time, each with the script of the `serve`
/// call that is waiting for it. Not a thread per execution: starting one (with ASan's
/// per-thread set-up) cost more than the rest of a short conversation.
pub struct FakeQmp {
    _dir: tempfile::TempDir,
    pub path: PathBuf,
    /// To the serving thread: what to send on the next connection.
    jobs: Mutex<Sender<Job>>,
    /// From it: that connection is over (the client hung up).
    done: Mutex<Receiver<()>>,
}

struct Job {
    script: Vec<u8>,
    flood: usize,
}

impl FakeQmp {
    pub fn new() -> FakeQmp {
        ignore_sigpipe();
        let dir = tempfile::Builder::new()
            .prefix("mw-fuzz-qmp")
            .tempdir_in(shm())
            .expect("a temporary directory");
        let path = dir.path().join("vm-fuzz.qmp");
        let listener = UnixListener::bind(&path).expect("bind the fake QMP socket");
        let (jobs, job_rx) = mpsc::channel::<Job>();
        let (done_tx, done) = mpsc::channel();
        std::thread::Builder::new()
            .name("fake-qmp".into())
            .spawn(move || {
                for job in job_rx {
                    if let Ok((mut conn, _)) = listener.accept() {
                        let _ = send(&mut conn, &job.script, job.flood);
                        let _ = conn.shutdown(std::net::Shutdown::Write);
                        let mut sink = [0u8; 4096];
                        while matches!(conn.read(&mut sink), Ok(n) if n > 0) {}
                    }
                    if done_tx.send(()).is_err() {
                        return;
                    }
                }
            })
            .expect("the fake QMP thread");
        FakeQmp {
            _dir: dir,
            path,
            jobs: Mutex::new(jobs),
            done: Mutex::new(done),
        }
    }

    /// Runs `client` while the serving thread accepts one connection, sends `script` (then,
    /// when `flood` is given, that many bytes with no newline), shuts its write side and reads
    /// whatever the client sends until it hangs up; returns what `client` returned once that
    /// connection is over. `client` must connect exactly once, as with a thread per call.
    pub fn serve<T>(&self, script: &[u8], flood: usize, client: impl FnOnce(&Path) -> T) -> T {
        let jobs = self.jobs.lock().unwrap_or_else(|e| e.into_inner());
        let done = self.done.lock().unwrap_or_else(|e| e.into_inner());
        jobs.send(Job {
            script: script.to_vec(),
            flood,
        })
        .expect("the fake QMP thread is running");
        let r = client(&self.path);
        done.recv().expect("the fake QMP thread is running");
        r
    }
}

fn send(conn: &mut UnixStream, script: &[u8], flood: usize) -> std::io::Result<()> {
    conn.write_all(script)?;
    let block = [b' '; 64 * 1024];
    let mut left = flood;
    while left > 0 {
        let n = left.min(block.len());
        conn.write_all(&block[..n])?;
        left -= n;
    }
    Ok(())
}

/// libFuzzer's main is not Rust's: SIGPIPE is not ignored, and a write to a socket the other
/// side closed would kill the run instead of returning EPIPE.
fn ignore_sigpipe() {
    // SAFETY: setting a signal's disposition to SIG_IGN installs no handler code.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
}

/// tmpfs when there is one: the end-to-end targets write files on every execution.
pub fn shm() -> &'static Path {
    let p = Path::new("/dev/shm");
    if p.is_dir() {
        p
    } else {
        Path::new("/tmp")
    }
}

/// The bounds memwarden-analysis's VM figures keep whatever the guest and QEMU report (each
/// is a `saturating_sub`, a `min` or a clamp in `vm::figures`): a figure outside them is a
/// wrapped or mixed-up computation.
pub fn check_vm_figures(vm: &VmSample) {
    let f = memwarden_analysis::vm::figures(vm);
    let b = &vm.balloon;
    if let (Some(used), Some(total)) = (f.guest_used_bytes, f.guest_total_bytes) {
        assert!(used <= total, "guest used {used} > guest total {total}");
    }
    if let (Some(used), Some(total)) = (f.guest_used_legacy_bytes, f.guest_total_bytes) {
        assert!(
            used <= total,
            "guest used (legacy) {used} > guest total {total}"
        );
    }
    if let Some(held) = f.balloon_held_bytes {
        let max = vm.max_memory_bytes.expect("held needs max");
        assert!(held <= max, "balloon holds {held} > max memory {max}");
    }
    if let Some(idle) = f.host_backed_idle_bytes {
        let rss = f.host_rss_bytes.expect("idle needs RSS");
        assert!(idle <= rss, "host-backed idle {idle} > host RSS {rss}");
    }
    if let (Some(o), Some(rss)) = (f.host_overhead_bytes, f.host_rss_bytes) {
        assert!(
            i128::from(o) <= i128::from(rss),
            "host overhead {o} > host RSS {rss}"
        );
    }
    if let (Some(age), Some(t)) = (f.stats_age_s, b.last_update_unix_s) {
        assert!(
            age <= vm.read_at_unix_s,
            "stats age {age} s with last update {t}"
        );
    }
    assert_eq!(f.guest_total_bytes, b.available_bytes);
    assert_eq!(f.actual_bytes, b.actual_bytes);
    // The diagnoses and JSON of the same VM must not panic either.
    let _ = memwarden_analysis::vm::diagnose(vm);
    let _ = memwarden_analysis::vm::checks::problems(vm);
    serde_json::to_string(&f).expect("figures serialize");
}
