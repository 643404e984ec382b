//! lab/capture-tree.sh on the live host (under busybox sh, as in the guests):
//! the tree has the files memwarden's readers are rooted at, and nothing else.

use std::path::Path;
use std::process::Command;

#[test]
fn capture_tree_copies_the_memory_files_of_the_live_host() {
    let lab = memwarden_lab::Lab::new().expect("lab");
    let dest = lab
        .dir()
        .join(format!("capture-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dest);
    let status = Command::new("/bin/busybox")
        .arg("sh")
        .arg(lab.script("capture-tree.sh"))
        .arg(&dest)
        .env("SMAPS_KEEP", "2")
        .status()
        .expect("run busybox sh");
    assert!(status.success());
    for f in [
        "proc/meminfo",
        "proc/vmstat",
        "proc/zoneinfo",
        "proc/sys/kernel/osrelease",
        "sys/kernel/mm/ksm/run",
    ] {
        let p = dest.join(f);
        assert!(p.is_file(), "missing {}", p.display());
    }
    let meminfo = std::fs::read_to_string(dest.join("proc/meminfo")).expect("meminfo");
    assert!(meminfo.starts_with("MemTotal:"), "{meminfo}");
    // Our own process was captured, with smaps_rollup; smaps kept for <= 1 + 2 pids.
    let me = dest.join(format!("proc/{}", std::process::id()));
    assert!(me.join("status").is_file() && me.join("smaps_rollup").is_file());
    let smaps = std::fs::read_dir(dest.join("proc"))
        .expect("proc")
        .filter_map(Result::ok)
        .filter(|e| e.path().join("smaps").is_file())
        .count();
    assert!((1..=3).contains(&smaps), "{smaps} pids kept smaps");
    assert!(!Path::new(&dest.join("proc/self")).exists());
    let _ = std::fs::remove_dir_all(&dest);
}
