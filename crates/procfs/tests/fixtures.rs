//! `HostReader::at_root` on captured trees: every `fixtures/<name>/` of the repository (captured
//! from real kernels by the lab), plus this machine's own tree captured into a tempdir.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use memwarden_procfs::HostReader;

fn check_tree(label: &str, root: &Path) {
    let host = HostReader::at_root(root)
        .read_host()
        .unwrap_or_else(|e| panic!("{label}: {e}"));
    common::check_sample(label, &root.join("proc"), &root.join("sys"), &host);

    // Every captured pid with a status file is read (nothing silently skipped in a still tree).
    let captured = fs::read_dir(root.join("proc"))
        .expect("proc dir")
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.parse::<u32>().is_ok())
        })
        .filter(|e| e.path().join("status").exists())
        .count();
    assert_eq!(
        host.processes.len(),
        captured,
        "{label}: every captured process read"
    );
    // Non-empty smaps_rollup <=> smaps Some.
    for p in &host.processes {
        let rollup = root.join(format!("proc/{}/smaps_rollup", p.pid));
        let has_rollup = fs::read(&rollup).is_ok_and(|b| !b.is_empty());
        if has_rollup {
            assert!(
                p.smaps.as_ref().is_some_and(|s| !s.from_smaps),
                "{label}: pid {}",
                p.pid
            );
        }
    }
}

fn repo_fixtures() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures");
    let Ok(entries) = fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("proc/meminfo").exists())
        .collect();
    out.sort();
    out
}

#[test]
fn every_repository_fixture_reads_cleanly() {
    let fixtures = repo_fixtures();
    eprintln!("{} repository fixture(s)", fixtures.len());
    // The trees this repository ships: the host kernel and both guest kernels must be there.
    for kernel in ["host-6.18", "guest-6.1-", "guest-6.12-"] {
        assert!(
            fixtures
                .iter()
                .any(|f| f.to_string_lossy().contains(kernel)),
            "no fixture tree for {kernel} under fixtures/"
        );
    }
    for root in fixtures {
        let label = root
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        check_tree(&label, &root);
    }
}

#[test]
fn this_machine_captured_into_a_tempdir() {
    let dir = tempfile::tempdir().expect("tempdir");
    common::capture_live(dir.path());
    check_tree("captured-live", dir.path());

    // The reader on the copy agrees with the files it was copied from.
    let host = HostReader::at_root(dir.path()).read_host().expect("reads");
    let text = fs::read_to_string(dir.path().join("proc/meminfo")).expect("meminfo");
    assert_eq!(
        host.meminfo,
        memwarden_procfs::parse_meminfo(&text).expect("parses")
    );
    assert_eq!(
        host.kernel_release.as_deref(),
        fs::read_to_string("/proc/sys/kernel/osrelease")
            .ok()
            .as_deref()
            .map(str::trim)
    );
}

#[test]
fn smaps_fallback_agrees_with_rollup() {
    // A kernel before 4.14 has no smaps_rollup: take a captured tree, remove every rollup, and
    // the reader must sum smaps to the same totals (same instant: the same captured files? No:
    // smaps and smaps_rollup were read moments apart, so allow a small drift).
    let dir = tempfile::tempdir().expect("tempdir");
    common::capture_live(dir.path());
    let with_rollup = HostReader::at_root(dir.path()).read_host().expect("reads");
    for e in fs::read_dir(dir.path().join("proc"))
        .expect("proc")
        .flatten()
    {
        let _ = fs::remove_file(e.path().join("smaps_rollup"));
    }
    let summed = HostReader::at_root(dir.path()).read_host().expect("reads");
    let mut compared = 0;
    for p in &summed.processes {
        let Some(s) = &p.smaps else { continue };
        assert!(s.from_smaps);
        let Some(r) = with_rollup
            .processes
            .iter()
            .find(|q| q.pid == p.pid)
            .and_then(|q| q.smaps.as_ref())
        else {
            continue;
        };
        let tolerance = r.rss / 10 + (1 << 20);
        assert!(
            s.rss.abs_diff(r.rss) <= tolerance,
            "pid {}: rss {} vs {}",
            p.pid,
            s.rss,
            r.rss
        );
        assert!(
            s.pss.abs_diff(r.pss) <= tolerance,
            "pid {}: pss {} vs {}",
            p.pid,
            s.pss,
            r.pss
        );
        compared += 1;
    }
    assert!(compared > 0, "no process had both smaps and smaps_rollup");
}
