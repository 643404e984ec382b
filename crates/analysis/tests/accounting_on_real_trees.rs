//! Every identity and decomposition, evaluated on every captured fixture tree and on the live
//! /proc of the machine running the tests. Residuals are reported; what is asserted is what the
//! kernel guarantees (identities that hold by construction) and what memwarden promises (every
//! broken identity is visible, the three decompositions agree within their named caveats).

use std::path::{Path, PathBuf};

use memwarden_analysis::accounting::{self, Verdict};
use memwarden_model::host::HostSample;
use memwarden_model::units::{format_signed_bytes, MIB};
use memwarden_procfs::HostReader;

fn fixture_dirs() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures");
    let mut v: Vec<PathBuf> = std::fs::read_dir(&root)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| p.join("proc/meminfo").is_file())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn trees() -> Vec<(String, HostSample)> {
    let mut out = Vec::new();
    for d in fixture_dirs() {
        let s = HostReader::at_root(&d)
            .read_host()
            .unwrap_or_else(|e| panic!("{}: {e}", d.display()));
        out.push((
            d.file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned(),
            s,
        ));
    }
    out.push((
        "live".into(),
        HostReader::live().read_host().expect("live /proc"),
    ));
    out
}

#[test]
fn there_are_fixture_trees() {
    assert!(
        !fixture_dirs().is_empty(),
        "no fixture trees under fixtures/"
    );
}

#[test]
fn identities_that_hold_by_construction_hold_everywhere() {
    for (name, s) in trees() {
        for r in accounting::identities::evaluate_all(&s) {
            if r.name == "LRU lists" || r.name == "slab" {
                assert_eq!(
                    r.verdict,
                    Verdict::Holds,
                    "{name}: {} residual {:?}",
                    r.name,
                    r.residual_bytes
                );
                assert_eq!(r.residual_bytes, Some(0), "{name}: {}", r.name);
            }
        }
    }
}

#[test]
fn lru_identities_hold_or_are_explained() {
    for (name, s) in trees() {
        for r in accounting::identities::evaluate_all(&s) {
            eprintln!(
                "{name:>28} {:<14} residual {:>12} tol {:>10} explainable {:>10} -> {:?}",
                r.name,
                r.residual_bytes.map_or("-".into(), format_signed_bytes),
                format_signed_bytes(r.tolerance_bytes as i128),
                format_signed_bytes(r.explainable_bytes as i128),
                r.verdict
            );
            if matches!(r.name, "anon LRU" | "file LRU" | "vmalloc") {
                assert!(
                    matches!(
                        r.verdict,
                        Verdict::Holds | Verdict::Explained | Verdict::NotApplicable
                    ),
                    "{name}: {} broken: {} vs {} ({:?})",
                    r.name,
                    r.left,
                    r.right,
                    r.residual_bytes
                );
            }
        }
    }
}

/// The LRU and page-cache decompositions differ only by what the anon/file LRU identities leave
/// over plus SwapCached and Unevictable, so their black holes must agree within that.
#[test]
fn decompositions_agree_on_the_black_hole() {
    for (name, s) in trees() {
        let d = accounting::decompositions::all(&s);
        let total = s.meminfo.get_or_zero("MemTotal");
        for x in &d {
            let parts: u128 = x.parts.iter().map(|p| u128::from(p.bytes)).sum();
            assert_eq!(
                parts as i128 + x.unaccounted_bytes,
                i128::from(total),
                "{name} {}",
                x.name
            );
            eprintln!(
                "{name:>28} {:<14} X = {}",
                x.name,
                format_signed_bytes(x.unaccounted_bytes)
            );
        }
        let (lru, pc) = (&d[0], &d[1]);
        let slack =
            s.meminfo.get_or_zero("SwapCached") + s.meminfo.get_or_zero("Unevictable") + 8 * MIB;
        let gap = (lru.unaccounted_bytes - pc.unaccounted_bytes).unsigned_abs();
        assert!(
            gap <= u128::from(slack),
            "{name}: LRU X and page-cache X differ by {gap} > {slack}"
        );
        // A black hole larger than a quarter of RAM on a test machine means a term is missing.
        assert!(
            lru.unaccounted_bytes.unsigned_abs() < u128::from(total / 4),
            "{name}: black hole {} of {}",
            lru.unaccounted_bytes,
            total
        );
    }
}

/// lsmod's sizes rounded up to whole pages are exactly what vmallocinfo's module-loading
/// callers hold (the guard page each area also gets is address space, not memory).
#[test]
fn module_sizes_match_their_vmalloc_pages() {
    let mut checked = 0;
    for (name, s) in trees() {
        let Some(m) = accounting::modules::summarize(&s, 0) else {
            continue;
        };
        let Some(in_vmalloc) = m.vmalloc_module_bytes else {
            continue;
        };
        if m.count == 0 {
            continue;
        }
        assert_eq!(m.backing_bytes, in_vmalloc, "{name}: {} modules", m.count);
        checked += 1;
    }
    eprintln!("{checked} trees with modules checked");
}
