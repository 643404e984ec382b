//! Glossary tests: the data loads, both languages are filled in, and every key this machine's
//! kernel (and every captured fixture tree) prints has an entry.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use super::*;

/// Keys of a `Key: value [kB]` file such as meminfo or smaps_rollup.
fn colon_keys(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, _)| k.trim().to_string())
        .filter(|k| !k.is_empty() && !k.contains(' '))
        .collect()
}

fn missing(kind: Kind, keys: &BTreeSet<String>) -> Vec<String> {
    keys.iter()
        .filter(|k| lookup(kind, k).is_none())
        .cloned()
        .collect()
}

/// Every entry of `kind`, failing the test if the data did not load or is empty (`entries`
/// returns an empty list then, and a loop over it would check nothing).
fn loaded_entries(kind: Kind) -> &'static [Entry] {
    if let Err(e) = check(kind) {
        panic!("{kind:?}: data does not load: {e}");
    }
    let list = entries(kind);
    assert!(!list.is_empty(), "{kind:?} has no entries");
    list
}

fn fixtures_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures")
}

#[test]
fn every_data_file_loads() {
    for kind in Kind::ALL {
        if let Err(e) = check(kind) {
            panic!("{kind:?}: {e}");
        }
        assert!(!entries(kind).is_empty(), "{kind:?} has no entries");
    }
}

#[test]
fn every_entry_has_both_languages() {
    for kind in Kind::ALL {
        for e in loaded_entries(kind) {
            for lang in [Lang::En, Lang::Zh] {
                assert!(
                    !e.text(lang).trim().is_empty(),
                    "{kind:?} {}: empty {lang:?}",
                    e.key
                );
                assert_eq!(
                    e.overlaps(Lang::En).is_some(),
                    e.overlaps(Lang::Zh).is_some(),
                    "{kind:?} {}: overlaps given in one language only",
                    e.key
                );
            }
            let zh = e.text(Lang::Zh);
            assert!(
                zh.chars().any(|c| ('\u{4e00}'..='\u{9fff}').contains(&c)),
                "{kind:?} {}: Chinese text has no Chinese characters",
                e.key
            );
            assert!(!e.source.trim().is_empty(), "{kind:?} {}: no source", e.key);
        }
    }
}

#[test]
fn no_duplicate_keys() {
    for kind in Kind::ALL {
        let mut seen = BTreeSet::new();
        for e in loaded_entries(kind) {
            assert!(seen.insert(e.key.as_str()), "{kind:?}: {} twice", e.key);
        }
    }
}

#[test]
fn versions_are_dotted_numbers() {
    let ok = |v: &str| {
        v.split('.')
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
    };
    for kind in Kind::ALL {
        for e in loaded_entries(kind) {
            for v in [&e.since, &e.until].into_iter().flatten() {
                assert!(
                    ok(v),
                    "{kind:?} {}: version {v:?} is not dotted numbers",
                    e.key
                );
            }
        }
    }
}

#[test]
fn unknown_key_is_none() {
    assert!(lookup(Kind::Meminfo, "NoSuchField").is_none());
    assert!(
        lookup(Kind::Meminfo, "memtotal").is_none(),
        "lookup is exact, not case-folded"
    );
    assert!(
        lookup(Kind::Ksm, "MemTotal").is_none(),
        "kinds do not leak into each other"
    );
}

#[test]
fn known_key_is_found_with_its_facts() {
    let shmem = lookup(Kind::Meminfo, "Shmem").expect("Shmem has an entry");
    assert_eq!(shmem.unit, Unit::Kb);
    assert!(
        shmem.source.contains("NR_SHMEM"),
        "source: {}",
        shmem.source
    );
    assert!(shmem
        .overlaps(Lang::En)
        .is_some_and(|o| o.contains("Cached")));
    let total = lookup(Kind::Meminfo, "HugePages_Total").expect("HugePages_Total has an entry");
    assert_eq!(total.unit, Unit::Count);
}

#[test]
fn bad_data_is_rejected() {
    let one = "[[entry]]\nkey = \"A\"\nunit = \"kB\"\nsource = \"s\"\nen = \"e\"\nzh = \"中\"\n";
    assert!(parse_text("t", one).is_ok());
    let twice = format!("{one}{one}");
    assert!(matches!(
        parse_text("t", &twice),
        Err(GlossaryError::Duplicate { .. })
    ));
    let no_zh = one.replace("zh = \"中\"", "zh = \" \"");
    assert!(matches!(
        parse_text("t", &no_zh),
        Err(GlossaryError::Empty { field: "zh", .. })
    ));
    let half = format!("{one}overlaps_en = \"x\"\n");
    assert!(matches!(
        parse_text("t", &half),
        Err(GlossaryError::Empty { .. })
    ));
    let unit = one.replace("\"kB\"", "\"furlongs\"");
    assert!(matches!(
        parse_text("t", &unit),
        Err(GlossaryError::Parse { .. })
    ));
}

#[test]
fn live_meminfo_is_covered() {
    let text = fs::read_to_string("/proc/meminfo").expect("read /proc/meminfo");
    let keys = colon_keys(&text);
    assert!(
        keys.len() > 20,
        "only {} keys parsed from /proc/meminfo",
        keys.len()
    );
    assert_eq!(missing(Kind::Meminfo, &keys), Vec::<String>::new());
}

#[test]
fn fixture_meminfo_is_covered() {
    let dirs = fs::read_dir(fixtures_root()).expect("fixtures/ (the repository ships trees)");
    let mut checked = 0;
    for dir in dirs.flatten() {
        let path = dir.path().join("proc/meminfo");
        let Ok(text) = fs::read_to_string(&path) else {
            continue;
        };
        let gaps = missing(Kind::Meminfo, &colon_keys(&text));
        assert!(gaps.is_empty(), "{}: no entry for {gaps:?}", path.display());
        checked += 1;
    }
    eprintln!("checked {checked} fixture meminfo files");
    assert!(checked >= 13, "only {checked} fixture meminfo files found");
}

#[test]
fn live_ksm_sysfs_is_covered() {
    let dir = Path::new("/sys/kernel/mm/ksm");
    // The development machine and CI run KSM-enabled kernels (fixtures/host-6.18-sandbox).
    let files = fs::read_dir(dir).expect("/sys/kernel/mm/ksm on this machine");
    let names: BTreeSet<String> = files
        .flatten()
        .map(|f| f.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        names.contains("run"),
        "{} lacks run: {names:?}",
        dir.display()
    );
    assert_eq!(missing(Kind::Ksm, &names), Vec::<String>::new());
}

#[test]
fn fixture_ksm_sysfs_is_covered() {
    let dirs = fs::read_dir(fixtures_root()).expect("fixtures/");
    let mut checked = 0;
    for dir in dirs.flatten() {
        let ksm = dir.path().join("sys/kernel/mm/ksm");
        let Ok(files) = fs::read_dir(&ksm) else {
            continue;
        };
        let names: BTreeSet<String> = files
            .flatten()
            .map(|f| f.file_name().to_string_lossy().into_owned())
            .collect();
        let gaps = missing(Kind::Ksm, &names);
        assert!(gaps.is_empty(), "{}: no entry for {gaps:?}", ksm.display());
        checked += 1;
    }
    assert!(checked >= 12, "only {checked} fixture trees with KSM sysfs");
}

#[test]
fn live_smaps_rollup_is_covered() {
    let text = fs::read_to_string("/proc/self/smaps_rollup").expect("read smaps_rollup");
    let keys = colon_keys(&text);
    assert!(
        keys.contains("Rss") && keys.contains("Pss"),
        "parsed keys: {keys:?}"
    );
    assert_eq!(missing(Kind::Smaps, &keys), Vec::<String>::new());
}

#[test]
fn balloon_names_of_libvirt_and_qemu_are_covered() {
    // libvirt's VIR_DOMAIN_MEMORY_STAT_* tag names and QEMU's balloon_stat_names[].
    let names = [
        "actual",
        "swap_in",
        "swap_out",
        "major_fault",
        "minor_fault",
        "unused",
        "available",
        "usable",
        "rss",
        "last_update",
        "disk_caches",
        "hugetlb_pgalloc",
        "hugetlb_pgfail",
        "stat-swap-in",
        "stat-swap-out",
        "stat-major-faults",
        "stat-minor-faults",
        "stat-free-memory",
        "stat-total-memory",
        "stat-available-memory",
        "stat-disk-caches",
        "stat-htlb-pgalloc",
        "stat-htlb-pgfail",
        "stat-oom-kills",
        "stat-alloc-stalls",
        "stat-async-scans",
        "stat-direct-scans",
        "stat-async-reclaims",
        "stat-direct-reclaims",
        "last-update",
    ];
    let names: BTreeSet<String> = names.iter().map(|s| s.to_string()).collect();
    assert_eq!(missing(Kind::Balloon, &names), Vec::<String>::new());
}

/// Leading numbers of a version: "6.18.44-fc" -> [6, 18, 44], "2.6.12" -> [2, 6, 12].
fn version(v: &str) -> Vec<u32> {
    let end = v
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(v.len());
    v[..end].split('.').map_while(|p| p.parse().ok()).collect()
}

/// A captured or live tree: its kernel release, meminfo keys and KSM file names.
struct Tree {
    name: String,
    release: Vec<u32>,
    meminfo: BTreeSet<String>,
    ksm: Option<BTreeSet<String>>,
}

fn read_tree(name: String, proc_dir: &Path, sys_dir: &Path) -> Option<Tree> {
    let release = fs::read_to_string(proc_dir.join("sys/kernel/osrelease")).ok()?;
    let meminfo = colon_keys(&fs::read_to_string(proc_dir.join("meminfo")).ok()?);
    let ksm = fs::read_dir(sys_dir.join("kernel/mm/ksm")).ok().map(|d| {
        d.flatten()
            .map(|f| f.file_name().to_string_lossy().into_owned())
            .collect()
    });
    Some(Tree {
        name,
        release: version(release.trim()),
        meminfo,
        ksm,
    })
}

fn all_trees() -> Vec<Tree> {
    let mut trees: Vec<Tree> = read_tree("live".into(), Path::new("/proc"), Path::new("/sys"))
        .into_iter()
        .collect();
    if let Ok(dirs) = fs::read_dir(fixtures_root()) {
        for d in dirs.flatten() {
            let p = d.path();
            let name = p.display().to_string();
            trees.extend(read_tree(name, &p.join("proc"), &p.join("sys")));
        }
    }
    trees
}

/// Checks `since`/`until` against what a real kernel of a known release prints: a key present
/// must not be newer than the kernel, and an unconditional key the kernel should have must be
/// there.
fn check_versions(kind: Kind, tree: &Tree, present: &BTreeSet<String>) -> Vec<String> {
    let mut problems = Vec::new();
    for e in loaded_entries(kind) {
        let since = e.since.as_deref().map(version);
        let until = e.until.as_deref().map(version);
        let old_enough = since.as_ref().is_some_and(|s| *s <= tree.release);
        let not_removed = !matches!(&until, Some(u) if tree.release >= *u);
        let is_present = present.contains(&e.key);
        if is_present && since.as_ref().is_some_and(|s| *s > tree.release) {
            problems.push(format!("{} present but since = {:?}", e.key, e.since));
        }
        if is_present && !not_removed {
            problems.push(format!("{} present but until = {:?}", e.key, e.until));
        }
        if !is_present && old_enough && not_removed && e.shown_if.is_none() {
            problems.push(format!(
                "{} absent but since = {:?} and unconditional",
                e.key, e.since
            ));
        }
    }
    problems
}

#[test]
fn since_and_until_match_real_kernels() {
    let trees = all_trees();
    assert!(
        trees.len() >= 14,
        "{} trees with a kernel release (the live one and 13 fixtures expected)",
        trees.len()
    );
    for t in &trees {
        assert!(
            t.release.len() >= 2,
            "{}: release {:?} not parsed",
            t.name,
            t.release
        );
        let mut problems = check_versions(Kind::Meminfo, t, &t.meminfo);
        if let Some(ksm) = &t.ksm {
            problems.extend(check_versions(Kind::Ksm, t, ksm));
        }
        assert!(
            problems.is_empty(),
            "{} ({:?}): {problems:#?}",
            t.name,
            t.release
        );
        eprintln!("{}: kernel {:?} agrees with since/until", t.name, t.release);
    }
}

#[test]
fn version_parse() {
    assert_eq!(version("6.18.44-fc-v782"), vec![6, 18, 44]);
    assert_eq!(version("6.1.0-28-amd64"), vec![6, 1, 0]);
    assert_eq!(version("2.6.12"), vec![2, 6, 12]);
    assert!(version("6.4") <= version("6.4.0"));
    assert!(version("6.10") > version("6.9.12"));
}

#[test]
fn every_consumer_row_has_an_entry() {
    use crate::accounting::consumers::{DMABUF, SOCKET_BUFFERS, ZRAM};
    use crate::accounting::zfs::ZFS_ARC;
    for label in [ZRAM, SOCKET_BUFFERS, DMABUF, ZFS_ARC] {
        let e = lookup(Kind::Consumer, label).unwrap_or_else(|| panic!("{label}: no entry"));
        assert!(!e.text(Lang::Zh).is_empty() && !e.text(Lang::En).is_empty());
    }
}
