//! `memwarden host`, `procs`, `ksm` end to end: on captured trees, on the live system, and on
//! broken input (a clear one-line error, non-zero exit, no panic).

use std::path::{Path, PathBuf};

use assert_cmd::Command;

fn fixtures() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures");
    let mut v: Vec<PathBuf> = std::fs::read_dir(root)
        .expect("fixtures/")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("proc/meminfo").is_file())
        .collect();
    v.sort();
    v
}

fn memwarden() -> Command {
    Command::cargo_bin("memwarden").expect("binary")
}

/// A tree with `proc/` and, when given, `proc/meminfo` holding `meminfo`.
fn tree(meminfo: Option<&str>) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().expect("tmp");
    std::fs::create_dir_all(tmp.path().join("proc")).expect("mkdir");
    if let Some(text) = meminfo {
        std::fs::write(tmp.path().join("proc/meminfo"), text).expect("write");
    }
    tmp
}

/// Runs memwarden on `root` with `args`: (success, stdout, stderr).
fn run_on(root: &Path, args: &[&str]) -> (bool, String, String) {
    let out = memwarden()
        .arg("--root")
        .arg(root)
        .args(args)
        .output()
        .expect("run");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn json(args: &[&str], root: Option<&Path>) -> serde_json::Value {
    let mut c = memwarden();
    if let Some(r) = root {
        c.arg("--root").arg(r);
    }
    let out = c.args(args).output().expect("run");
    assert!(
        out.status.success(),
        "{args:?} {root:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("valid JSON")
}

#[test]
fn host_json_keeps_every_meminfo_line_of_every_tree() {
    for dir in fixtures() {
        let v = json(&["host", "--json"], Some(&dir));
        let text = std::fs::read_to_string(dir.join("proc/meminfo")).expect("meminfo");
        let keys: Vec<&str> = text.lines().filter_map(|l| l.split(':').next()).collect();
        let entries = v["sample"]["meminfo"]["entries"]
            .as_array()
            .expect("entries");
        let got: Vec<&str> = entries
            .iter()
            .map(|e| e["key"].as_str().unwrap_or(""))
            .collect();
        assert_eq!(got, keys, "{}", dir.display());
        // MemTotal in bytes = kB × 1024, straight from the file.
        let kb: u64 = text
            .lines()
            .find(|l| l.starts_with("MemTotal:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|n| n.parse().ok())
            .expect("MemTotal");
        assert_eq!(
            entries[0]["value"].as_u64(),
            Some(kb * 1024),
            "{}",
            dir.display()
        );
        let decompositions = v["accounting"]["decompositions"]
            .as_array()
            .map_or(0, Vec::len);
        assert!(decompositions >= 2, "{}", dir.display());
    }
}

#[test]
fn host_text_names_the_black_hole_and_identities() {
    let dir = &fixtures()[0];
    let (ok, text, err) = run_on(dir, &["host"]);
    assert!(ok, "{err}");
    for needle in [
        "Black hole",
        "by LRU",
        "by page cache",
        "anon LRU",
        "file LRU",
        "Top processes",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
    }
}

#[test]
fn live_host_json_reads_this_machine() {
    let v = json(&["host", "--json"], None);
    let live_total = std::fs::read_to_string("/proc/meminfo")
        .expect("meminfo")
        .lines()
        .next()
        .and_then(|l| {
            l.split_whitespace()
                .nth(1)
                .and_then(|n| n.parse::<u64>().ok())
        })
        .expect("MemTotal");
    assert_eq!(
        v["sample"]["meminfo"]["entries"][0]["value"].as_u64(),
        Some(live_total * 1024)
    );
    assert!(v["sample"]["processes"]
        .as_array()
        .is_some_and(|p| !p.is_empty()));
}

#[test]
fn procs_sorts_by_the_requested_key() {
    for key in ["pss", "rss", "swap"] {
        let v = json(&["procs", "--json", "--top", "50", "--sort", key], None);
        let rows = v["rows"].as_array().expect("rows");
        assert!(!rows.is_empty());
        let field = format!("{key}_bytes");
        let vals: Vec<u64> = rows
            .iter()
            .map(|r| r[&field].as_u64().expect("number"))
            .collect();
        assert!(
            vals.windows(2).all(|w| w[0] >= w[1]),
            "{key}: not sorted: {vals:?}"
        );
        let total_pss = v["total_pss_bytes"].as_u64().expect("total");
        let shown: u64 = rows
            .iter()
            .map(|r| r["pss_bytes"].as_u64().unwrap_or(0))
            .sum();
        assert!(total_pss >= shown);
    }
}

#[test]
fn ksm_runs_on_every_tree() {
    for dir in fixtures() {
        let v = json(&["ksm", "--json"], Some(&dir));
        let has_sysfs = dir.join("sys/kernel/mm/ksm/run").is_file();
        assert_eq!(
            v["report"]["available"].as_bool(),
            Some(has_sysfs),
            "{}",
            dir.display()
        );
    }
}

#[test]
fn missing_meminfo_is_a_one_line_error_naming_the_file() {
    let tmp = tree(None);
    let (ok, _, err) = run_on(tmp.path(), &["host"]);
    assert!(!ok);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("proc/meminfo"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn malformed_meminfo_names_the_line() {
    let tmp = tree(Some("MemTotal:  1000 kB\nMemFree 12\n"));
    let (ok, _, err) = run_on(tmp.path(), &["host"]);
    assert!(!ok);
    assert!(err.contains("meminfo") && err.contains("line 2"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn unknown_meminfo_fields_are_kept() {
    let tmp = tree(Some(
        "MemTotal:  1000 kB\nMemFree:  500 kB\nFutureThing:  7 kB\nFutureCount:  3\n",
    ));
    let v = json(&["host", "--json"], Some(tmp.path()));
    let e = &v["sample"]["meminfo"]["entries"];
    assert_eq!(e[2]["key"], "FutureThing");
    assert_eq!(e[2]["value"].as_u64(), Some(7 * 1024));
    assert_eq!(e[3]["unit"], "count");
}

#[test]
fn explain_gives_english_and_chinese_and_says_when_it_does_not_know() {
    let en = memwarden()
        .args(["explain", "Shmem"])
        .output()
        .expect("run");
    assert!(en.status.success());
    let en = String::from_utf8_lossy(&en.stdout);
    assert!(en.contains("tmpfs") && en.contains("source:"), "{en}");
    let zh = memwarden()
        .args(["--lang", "zh", "explain", "Shmem"])
        .output()
        .expect("run");
    let zh = String::from_utf8_lossy(&zh.stdout);
    assert!(
        zh.chars().any(|c| ('\u{4e00}'..='\u{9fff}').contains(&c)),
        "{zh}"
    );
    let unknown = memwarden()
        .args(["explain", "NoSuchField"])
        .output()
        .expect("run");
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("not in memwarden's glossary"));
}

#[test]
fn explain_lists_every_field_of_the_tree_and_flags_unknown_ones() {
    let tmp = tree(Some("MemTotal:  1000 kB\nFutureThing:  7 kB\n"));
    let (ok, text, err) = run_on(tmp.path(), &["explain"]);
    assert!(ok, "{err}");
    assert!(
        text.contains("MemTotal") && text.contains("FutureThing"),
        "{text}"
    );
    assert!(text.contains("unknown to memwarden"), "{text}");
}

/// The raw sample is what a recorder keeps: it must load back into the model and give the same
/// analysis as reading the tree directly ("record raw, derive on read").
#[test]
fn sample_json_loads_back_and_analyses_the_same() {
    for dir in fixtures() {
        let (ok, out, err) = run_on(&dir, &["sample"]);
        assert!(ok, "{err}");
        let s: memwarden_model::Sample = serde_json::from_str(&out).expect("Sample");
        assert!(
            s.vms.is_empty() && s.degraded.is_empty(),
            "a tree has no hypervisor"
        );
        let direct = memwarden_procfs::HostReader::at_root(&dir)
            .read_host()
            .expect("read");
        let a = memwarden_analysis::accounting::analyse(&s.host);
        let b = memwarden_analysis::accounting::analyse(&direct);
        assert_eq!(a.black_hole_bytes, b.black_hole_bytes, "{}", dir.display());
        let residuals = |x: &memwarden_analysis::accounting::HostAccounting| {
            x.identities
                .iter()
                .map(|r| r.residual_bytes)
                .collect::<Vec<_>>()
        };
        assert_eq!(residuals(&a), residuals(&b), "{}", dir.display());
        assert_eq!(s.host.meminfo, direct.meminfo);
    }
}

/// `memwarden sample --connect URI` on the live host, parsed back into the model.
fn live_sample(uri: &str) -> memwarden_model::Sample {
    let out = memwarden()
        .args(["sample", "--connect", uri])
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("Sample")
}

/// libvirt's built-in test driver (no daemon) has one domain, "test": the live sample carries it.
#[test]
fn live_sample_carries_the_hypervisors_vms() {
    let s = live_sample("test:///default");
    assert_eq!(
        s.vms.iter().map(|v| v.name.as_str()).collect::<Vec<_>>(),
        ["test"]
    );
    assert!(s.host.meminfo.get("MemTotal").is_some_and(|t| t > 0));
    assert!(s.taken_at_unix_ms > 1_700_000_000_000);
}

/// An unreachable hypervisor degrades the sample; the host part is still there.
#[test]
fn unreachable_hypervisor_degrades_the_sample() {
    let s = live_sample("qemu+unix:///system?socket=/nonexistent/sock");
    assert!(s.vms.is_empty());
    assert_eq!(s.degraded.len(), 1, "{:?}", s.degraded);
    assert!(s.degraded[0].contains("VMs not read"), "{:?}", s.degraded);
    assert!(!s.host.meminfo.entries.is_empty());
}
