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
        let entries = v["sample"]["host"]["meminfo"]["entries"]
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
        v["sample"]["host"]["meminfo"]["entries"][0]["value"].as_u64(),
        Some(live_total * 1024)
    );
    assert!(v["sample"]["host"]["processes"]
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
    let e = &v["sample"]["host"]["meminfo"]["entries"];
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

/// A copy of a fixture tree (files only; symlinks are not used in the fixtures).
fn copy_tree(name: &str) -> tempfile::TempDir {
    fn copy_dir(src: &Path, dst: &Path) {
        std::fs::create_dir_all(dst).expect("mkdir");
        for e in std::fs::read_dir(src).expect("read_dir").flatten() {
            let (s, d) = (e.path(), dst.join(e.file_name()));
            if e.file_type().expect("type").is_dir() {
                copy_dir(&s, &d);
            } else {
                std::fs::copy(&s, &d).expect("copy");
            }
        }
    }
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures")
        .join(name);
    let tmp = tempfile::tempdir().expect("tmp");
    copy_dir(&src, tmp.path());
    tmp
}

/// Runs memwarden on `root` with a 20 s limit (a hang fails the test instead of the run).
fn run_limited(root: &Path, args: &[&str]) -> (bool, String, String, std::time::Duration) {
    let start = std::time::Instant::now();
    let out = memwarden()
        .arg("--root")
        .arg(root)
        .args(args)
        .timeout(std::time::Duration::from_secs(20))
        .output()
        .expect("run");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        start.elapsed(),
    )
}

/// Regression (issue 7): an empty meminfo, one without MemTotal, and one with a key twice gave
/// exit 0 with "MemTotal 0 B", a black hole of most of RAM, or silently the first value.
#[test]
fn broken_meminfo_is_an_error() {
    for (text, needle) in [
        ("", "MemTotal, MemFree missing"),
        ("MemFree:  500 kB\nCached:  3 kB\n", "MemTotal missing"),
        (
            "MemTotal:  1000 kB\nMemFree:  500 kB\nMemFree:  400 kB\n",
            "MemFree is printed twice",
        ),
    ] {
        let tmp = tree(Some(text));
        let (ok, out, err, _) = run_limited(tmp.path(), &["host"]);
        assert!(!ok, "{text:?} accepted:\n{out}");
        assert!(err.contains(needle), "{text:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
    }
}

/// Regression (issue 7): a meminfo cut after `SwapCached` printed "Black hole 448 MiB (96.8%)".
#[test]
fn meminfo_cut_short_is_a_warning_and_no_black_hole() {
    let tmp = copy_tree("guest-6.1-idle");
    let path = tmp.path().join("proc/meminfo");
    let text = std::fs::read_to_string(&path).expect("meminfo");
    let cut: String = text
        .lines()
        .take_while(|l| !l.starts_with("Active:"))
        .map(|l| format!("{l}\n"))
        .collect();
    assert!(cut.trim_end().ends_with("kB") && cut.contains("SwapCached"));
    std::fs::write(&path, cut).expect("write");
    let (ok, out, err, _) = run_limited(tmp.path(), &["host"]);
    assert!(ok, "{err}");
    assert!(
        out.contains("WARNING: /proc/meminfo looks cut short"),
        "{out}"
    );
    assert!(out.contains("Black hole: not computed"), "{out}");
    let v = json(&["host", "--json"], Some(tmp.path()));
    assert!(
        v["accounting"]["black_hole_bytes"].is_null(),
        "{}",
        v["accounting"]
    );
    let warnings = v["sample"]["host"]["warnings"]
        .as_array()
        .expect("warnings");
    assert_eq!(warnings.len(), 1, "{warnings:?}");
}

/// Regression (issue 7): `pages=18446744073709551615` printed "Black hole: −16384 PiB". The
/// figure fails its sanity bound: VmallocUsed is used, the output says the other was refused.
#[test]
fn an_absurd_vmalloc_figure_is_not_used_for_x() {
    let tmp = copy_tree("guest-6.1-idle");
    let (_, good, _, _) = run_limited(tmp.path(), &["host"]);
    let path = tmp.path().join("proc/vmallocinfo");
    let text = std::fs::read_to_string(&path).expect("vmallocinfo");
    let line = text
        .lines()
        .find(|l| l.contains("bpf_prog_pack_alloc") && l.contains("pages="))
        .expect("a vmalloc record that is not a stack");
    let bad = line.replace(
        &line[line.find("pages=").expect("pages=")..]
            .split_whitespace()
            .next()
            .expect("word")
            .to_string(),
        "pages=18446744073709551615",
    );
    std::fs::write(&path, text.replacen(line, &bad, 1)).expect("write");
    let (ok, out, err, _) = run_limited(tmp.path(), &["host"]);
    assert!(ok, "{err}");
    let black_hole = |t: &str| {
        t.lines()
            .find(|l| l.starts_with("Black hole"))
            .map(str::to_string)
    };
    assert_eq!(black_hole(&out), black_hole(&good), "{out}");
    assert!(
        out.contains("BROKEN"),
        "the vmalloc identity flags it:\n{out}"
    );
    assert!(
        out.contains("vmalloc from vmallocinfo: pages= of vmalloc records is 16384 PiB")
            && out.contains("more than MemTotal 469 MiB: not used"),
        "{out}"
    );
}

/// Regression (issue 7): a FIFO in place of meminfo or smaps_rollup hung every command;
/// /dev/zero in place of modules, vmallocinfo or smaps_rollup drove memwarden to 4–8 GB; a
/// 200 MB meminfo took 3.4 s and 748 MB. Now each is refused at once.
#[test]
fn fifos_devices_and_huge_files_are_refused() {
    let tmp = copy_tree("guest-6.1-idle");
    let proc = tmp.path().join("proc");
    let mkfifo = |p: &Path| {
        let _ = std::fs::remove_file(p);
        let ok = std::process::Command::new("mkfifo")
            .arg(p)
            .status()
            .expect("mkfifo");
        assert!(ok.success());
    };
    let zero = |p: &Path| {
        let _ = std::fs::remove_file(p);
        std::os::unix::fs::symlink("/dev/zero", p).expect("symlink");
    };
    // Optional files: refused with a note, the report still comes.
    zero(&proc.join("modules"));
    zero(&proc.join("vmallocinfo"));
    zero(&proc.join("1/smaps_rollup"));
    mkfifo(&proc.join("107/smaps_rollup"));
    let (ok, out, err, took) = run_limited(tmp.path(), &["host"]);
    assert!(ok, "{err}");
    assert!(took.as_secs() < 10, "took {took:?}");
    assert!(
        out.contains("modules: refused: a character device"),
        "{out}"
    );
    assert!(
        out.contains("vmallocinfo: refused: a character device"),
        "{out}"
    );
    assert!(out.contains("pid 1 (in part): smaps"), "{out}");
    assert!(
        out.contains("pid 107 (in part): smaps") && out.contains("a FIFO"),
        "{out}"
    );
    // meminfo: a FIFO and an oversized file are errors.
    mkfifo(&proc.join("meminfo"));
    let (ok, _, err, took) = run_limited(tmp.path(), &["host"]);
    assert!(!ok && err.contains("a FIFO"), "{err}");
    assert!(took.as_secs() < 10, "took {took:?}");
    std::fs::remove_file(proc.join("meminfo")).expect("rm");
    let f = std::fs::File::create(proc.join("meminfo")).expect("create");
    f.set_len(200 << 20).expect("sparse 200 MB");
    let (ok, _, err, took) = run_limited(tmp.path(), &["host"]);
    assert!(!ok && err.contains("larger than 1.00 MiB"), "{err}");
    assert!(took.as_secs() < 10, "took {took:?}");
}

/// Regression (issue 7): a process without cmdline vanished silently (all of them on a tree
/// captured without cmdline), one without status too; `procs` said 0 unreadable.
#[test]
fn unreadable_processes_are_counted_and_shown() {
    let tmp = copy_tree("guest-6.1-idle");
    let proc = tmp.path().join("proc");
    let before = json(&["host", "--json"], Some(tmp.path()));
    let n = before["sample"]["host"]["processes"]
        .as_array()
        .expect("p")
        .len();
    std::fs::remove_file(proc.join("107/cmdline")).expect("rm cmdline");
    std::fs::remove_file(proc.join("45/status")).expect("rm status");
    let v = json(&["host", "--json"], Some(tmp.path()));
    assert_eq!(
        v["sample"]["host"]["processes"]
            .as_array()
            .expect("p")
            .len(),
        n - 1
    );
    let errors = v["sample"]["host"]["process_errors"]
        .as_array()
        .expect("errors");
    assert_eq!(errors.len(), 2, "{errors:?}");
    let (ok, out, err, _) = run_limited(tmp.path(), &["host"]);
    assert!(ok, "{err}");
    assert!(
        out.contains("Processes not read: 1 left out, 1 read in part"),
        "{out}"
    );
    assert!(
        out.contains("pid 45 (left out)") && out.contains("45/status"),
        "{out}"
    );
    assert!(out.contains("pid 107 (in part): cmdline"), "{out}");
    let (ok, out, err, _) = run_limited(tmp.path(), &["procs"]);
    assert!(ok, "{err}");
    assert!(out.contains("pid 45 (left out)"), "{out}");
}

/// Regression (issue 7): `procs` and `ksm` failed when meminfo could not be parsed.
#[test]
fn procs_and_ksm_do_not_need_meminfo() {
    let tmp = copy_tree("guest-6.1-ksm");
    std::fs::write(tmp.path().join("proc/meminfo"), "garbage\n").expect("write");
    let (ok, _, _, _) = run_limited(tmp.path(), &["host"]);
    assert!(!ok);
    let v = json(&["procs", "--json"], Some(tmp.path()));
    assert!(v["total_pss_bytes"].as_u64().is_some_and(|p| p > 0), "{v}");
    let v = json(&["ksm", "--json"], Some(tmp.path()));
    assert_eq!(v["report"]["available"].as_bool(), Some(true), "{v}");
}

/// The smaller things: the tolerance behind "explained" is shown, hugetlb pools read as pages
/// × size, `--lang zh` is refused where nothing is translated, errors quote at most ~100
/// characters and print their cause once.
#[test]
fn what_an_operator_reads() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures");
    let (ok, out, err) = run_on(&dir.join("guest-6.1-hugepages"), &["host"]);
    assert!(ok, "{err}");
    assert!(
        out.contains("hugetlb pool: 16 × 2.00 MiB pages = 32.0 MiB"),
        "{out}"
    );
    assert!(out.contains("holds (≤ 4.00 MiB)"), "{out}");
    let (ok, _, err) = run_on(&dir.join("guest-6.1-idle"), &["--lang", "zh", "host"]);
    assert!(!ok && err.contains("English only"), "{err}");
    let long = "x".repeat(10_000);
    let (ok, _, err) = run_on(&dir.join("guest-6.1-idle"), &["explain", &long]);
    assert!(!ok && err.len() < 400, "{} bytes: {err}", err.len());
    let tmp = tree(None);
    let (_, _, err) = run_on(tmp.path(), &["host"]);
    assert_eq!(err.matches("No such file or directory").count(), 1, "{err}");
}
