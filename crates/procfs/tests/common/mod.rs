//! Shared by the integration tests: capture this machine's /proc and /sys memory files into a
//! tree shaped like `fixtures/<name>/`, and check a tree read by `HostReader` against its files.

#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};

use memwarden_model::host::HostSample;

/// Copies `src` to `dst` (creating parents); false when `src` could not be read.
fn copy(src: &Path, dst: &Path) -> bool {
    let Ok(bytes) = fs::read(src) else {
        return false;
    };
    if let Some(parent) = dst.parent() {
        fs::create_dir_all(parent).expect("create fixture dir");
    }
    fs::write(dst, bytes).expect("write fixture file");
    true
}

/// Copies every regular file of `src` (not recursing) into `dst`.
fn copy_dir_files(src: &Path, dst: &Path) {
    let Ok(entries) = fs::read_dir(src) else {
        return;
    };
    for e in entries.flatten() {
        if e.file_type().map(|t| t.is_file()).unwrap_or(false) {
            copy(&e.path(), &dst.join(e.file_name()));
        }
    }
}

fn subdirs(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
        .map(|e| e.path())
        .collect()
}

/// Captures this machine's memory files under `dest/proc` and `dest/sys`, as the fixture
/// helper does for other kernels: kernel-wide files, every process's status, cmdline,
/// smaps_rollup, smaps, ksm files, and the KSM, THP, hugepage and NUMA sysfs directories.
pub fn capture_live(dest: &Path) {
    let (proc, sys) = (Path::new("/proc"), Path::new("/sys"));
    let (dproc, dsys) = (dest.join("proc"), dest.join("sys"));
    for f in [
        "meminfo",
        "zoneinfo",
        "vmstat",
        "vmallocinfo",
        "modules",
        "pressure/memory",
        "sys/kernel/osrelease",
    ] {
        copy(&proc.join(f), &dproc.join(f));
    }
    for e in fs::read_dir(proc).expect("read /proc").flatten() {
        let name = e.file_name();
        if name.to_str().and_then(|n| n.parse::<u32>().ok()).is_none() {
            continue;
        }
        let (src, dst) = (proc.join(&name), dproc.join(&name));
        if !copy(&src.join("status"), &dst.join("status")) {
            continue; // exited
        }
        for f in [
            "cmdline",
            "smaps_rollup",
            "smaps",
            "ksm_stat",
            "ksm_merging_pages",
        ] {
            copy(&src.join(f), &dst.join(f));
        }
    }
    let mm = sys.join("kernel/mm");
    let dmm = dsys.join("kernel/mm");
    copy_dir_files(&mm.join("ksm"), &dmm.join("ksm"));
    copy_dir_files(&mm.join("uksm"), &dmm.join("uksm"));
    let thp = mm.join("transparent_hugepage");
    copy_dir_files(&thp, &dmm.join("transparent_hugepage"));
    for sub in subdirs(&thp) {
        let name = sub.file_name().expect("dir name");
        copy_dir_files(&sub, &dmm.join("transparent_hugepage").join(name));
    }
    for pool in subdirs(&mm.join("hugepages")) {
        let name = pool.file_name().expect("dir name");
        copy_dir_files(&pool, &dmm.join("hugepages").join(name));
    }
    let nodes = sys.join("devices/system/node");
    for node in subdirs(&nodes) {
        let name = node.file_name().expect("dir name");
        if !name.to_string_lossy().starts_with("node") {
            continue;
        }
        let dnode = dsys.join("devices/system/node").join(name);
        copy(&node.join("meminfo"), &dnode.join("meminfo"));
        for pool in subdirs(&node.join("hugepages")) {
            let pname = pool.file_name().expect("dir name");
            copy_dir_files(&pool, &dnode.join("hugepages").join(pname));
        }
    }
}

/// Non-blank lines of a file.
pub fn lines_of(path: &Path) -> Vec<String> {
    let bytes = fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    String::from_utf8_lossy(&bytes)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_string)
        .collect()
}

/// Checks what must hold for any tree read by `HostReader` rooted at `proc`/`sys`:
/// meminfo has one entry per line in file order, and the cross-file invariants that a real
/// kernel keeps. `label` names the tree in failure messages.
pub fn check_sample(label: &str, proc: &Path, sys: &Path, host: &HostSample) {
    let m = &host.meminfo;
    let lines = lines_of(&proc.join("meminfo"));
    assert_eq!(
        m.entries.len(),
        lines.len(),
        "{label}: one entry per meminfo line"
    );
    for (e, line) in m.entries.iter().zip(&lines) {
        assert!(
            line.starts_with(&format!("{}:", e.key)),
            "{label}: entry {} out of order vs {line:?}",
            e.key
        );
    }
    let total = m.get("MemTotal").expect("MemTotal");
    assert!(total > 0, "{label}: MemTotal > 0");
    assert!(
        m.get("MemFree").expect("MemFree") <= total,
        "{label}: MemFree <= MemTotal"
    );

    // Every degradation must be an absence or a refusal, never a parse failure of a real file.
    for d in &host.degraded {
        assert!(
            d.contains("not present") || d.contains("permission denied"),
            "{label}: unexpected degradation {d:?}"
        );
    }

    if let Some(v) = &host.vmstat {
        assert_eq!(
            v.entries.len(),
            lines_of(&proc.join("vmstat")).len(),
            "{label}: vmstat pairs"
        );
    }
    if proc.join("modules").exists() {
        let modules = host.modules.as_ref().expect("modules read when present");
        assert_eq!(modules.len(), lines_of(&proc.join("modules")).len());
    } else {
        assert!(host.modules.is_none());
        assert!(host
            .degraded
            .iter()
            .any(|d| d.contains("modules: not present")));
    }
    if let Some(ksm) = &host.ksm {
        let n = fs::read_dir(sys.join("kernel/mm/ksm"))
            .expect("ksm dir")
            .count();
        assert_eq!(ksm.files.len(), n, "{label}: every KSM file kept");
        assert!(ksm.run.is_some(), "{label}: ksm/run lifted");
    }
    if let Some(thp) = &host.thp {
        if let Some(enabled) = &thp.enabled {
            assert!(
                ["always", "madvise", "never"].contains(&enabled.as_str()),
                "{enabled}"
            );
        }
    }
    for pool in &host.hugepages {
        assert!(pool.page_size_bytes >= 64 * 1024, "{label}: hugepage size");
        assert!(pool.free_hugepages <= pool.nr_hugepages + pool.surplus_hugepages);
    }
    // zoneinfo: on the Debian guest kernels MemTotal is totalram_pages, the sum of every
    // zone's managed pages (a balloon without deflate-on-oom moves both together). This
    // machine's 6.18 Firecracker kernel manages far fewer pages in its zones than MemTotal
    // (Normal: present 5505024, managed 819200), so there the sum is only printed.
    if proc.join("zoneinfo").exists() {
        let z = host.zoneinfo.as_ref().expect("zoneinfo read when present");
        assert!(!z.zones.is_empty(), "{label}: zones");
        assert!(
            z.zones.iter().any(|zone| !zone.pcp.is_empty()),
            "{label}: pcp lists"
        );
        let ps = host.page_size_bytes.expect("page size found");
        assert_eq!(ps, 4096, "{label}: x86-64 page size");
        if label.starts_with("guest-") {
            assert_eq!(
                z.managed_pages() * ps,
                total,
                "{label}: Σ managed pages = MemTotal"
            );
        } else {
            eprintln!(
                "{label}: Σ managed pages {} B, MemTotal {total} B",
                z.managed_pages() * ps
            );
        }
    }
    for node in &host.numa_nodes {
        let path = sys.join(format!("devices/system/node/node{}/meminfo", node.node));
        assert_eq!(
            node.meminfo.entries.len(),
            lines_of(&path).len(),
            "{label}: node lines"
        );
    }

    // Processes: every captured pid whose status parses is read; names match status.
    assert!(!host.processes.is_empty(), "{label}: processes read");
    for p in &host.processes {
        assert!(!p.name.is_empty() || p.status.name.is_empty());
        if let Some(s) = &p.smaps {
            assert!(
                s.pss <= s.rss + 4096 * 4,
                "{label}: pid {} pss {} rss {}",
                p.pid,
                s.pss,
                s.rss
            );
            assert_eq!(
                s.private_clean + s.private_dirty + s.shared_clean + s.shared_dirty,
                s.rss,
                "{label}: pid {}: private + shared = rss",
                p.pid
            );
        }
    }
}
