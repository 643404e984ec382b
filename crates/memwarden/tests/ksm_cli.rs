//! `memwarden ksm` end to end: ksmd's CPU share measured live between two readings, and
//! `--tune` / `--tune --apply` on a copy of a captured guest's KSM directory (the live
//! directory is written by memwarden-control's tests, under their lock and restore guard).

use std::path::{Path, PathBuf};

use assert_cmd::Command;

fn memwarden() -> Command {
    Command::cargo_bin("memwarden").expect("binary")
}

fn json(cmd: &mut Command) -> serde_json::Value {
    let out = cmd.output().expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("valid JSON")
}

/// proc/meminfo and sys/kernel/mm/ksm of the captured 6.1 guest (a kernel without the
/// advisor), copied where they may be written.
fn guest_tree() -> tempfile::TempDir {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/guest-6.1-ksm");
    let tmp = tempfile::tempdir().expect("tmp");
    let ksm = tmp.path().join("sys/kernel/mm/ksm");
    std::fs::create_dir_all(&ksm).expect("mkdir");
    std::fs::create_dir_all(tmp.path().join("proc")).expect("mkdir");
    std::fs::copy(src.join("proc/meminfo"), tmp.path().join("proc/meminfo")).expect("meminfo");
    for e in std::fs::read_dir(src.join("sys/kernel/mm/ksm"))
        .expect("ksm dir")
        .flatten()
    {
        std::fs::copy(e.path(), ksm.join(e.file_name())).expect("copy");
    }
    tmp
}

/// A config whose `[ksm]` threshold is all of memory: KSM is "needed" on any host.
fn eager_config(dir: &Path) -> PathBuf {
    let path = dir.join("memwarden.toml");
    std::fs::write(&path, "[ksm]\nthreshold_share = 1.0\n").expect("write");
    path
}

#[test]
fn ksmd_cpu_share_is_measured_between_two_live_readings() {
    let v = json(memwarden().args(["ksm", "--no-vms", "--cpu-window", "300ms", "--json"]));
    let k = &v["ksmd"];
    assert!(k["pid"].as_u64().is_some_and(|p| p > 1), "{v}");
    let w = k["window_s"].as_f64().expect("window");
    assert!((0.29..5.0).contains(&w), "{w}");
    let share = k["cpu_share"].as_f64().expect("a share from two readings");
    assert!((0.0..=1.0).contains(&share), "{share}");
    // One reading: CPU time since boot, and a note saying why there is no share.
    let v = json(memwarden().args(["ksm", "--no-vms", "--cpu-window", "0s", "--json"]));
    assert!(v["ksmd"]["cpu_share"].is_null(), "{v}");
    assert!(v["notes"].to_string().contains("two readings"), "{v}");
}

#[test]
fn tune_prints_a_plan_and_apply_writes_it() {
    let tree = guest_tree();
    let cfg = eager_config(tree.path());
    let ksm = tree.path().join("sys/kernel/mm/ksm");
    let read = |f: &str| std::fs::read_to_string(ksm.join(f)).expect("read");
    // Captured with KSM running; stopped here so that the plan starts it.
    std::fs::write(ksm.join("run"), "0\n").expect("write");
    let before = read("run");

    // Dry run: the plan, nothing written.
    let out = memwarden()
        .arg("--root")
        .arg(tree.path())
        .args(["ksm", "--tune", "--config"])
        .arg(&cfg)
        .output()
        .expect("run");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("Tuner plan: Start"), "{text}");
    assert!(
        text.contains("pages_to_scan") && text.contains("dry run"),
        "{text}"
    );
    assert_eq!(read("run"), before, "a dry run writes nothing");

    // --apply: the changed knobs are written, run last.
    let v = json(
        memwarden()
            .arg("--root")
            .arg(tree.path())
            .args(["ksm", "--tune", "--apply", "--json", "--config"])
            .arg(&cfg),
    );
    assert_eq!(v["plan"]["run"], "start", "{v}");
    assert_eq!(v["plan"]["advisor"], false, "6.1 has no advisor");
    let applied = v["applied"].as_array().expect("results");
    assert!(applied.iter().all(|r| r["outcome"] != "refused"), "{v}");
    assert_eq!(read("run"), "1");
    let pages: u64 = read("pages_to_scan").trim().parse().expect("pages");
    assert!((64..=1250).contains(&pages), "{pages}");
}
