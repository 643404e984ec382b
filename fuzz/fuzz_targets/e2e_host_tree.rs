#![no_main]
//! End to end on the host side: a mutated /proc + /sys tree → `HostReader::at_root` (as
//! `memwarden --root DIR host` reads a captured tree) → the Sample → accounting
//! (the view: `accounting::analyse` and the KSM report), the process table → every renderer: the CLI's
//! host report and process table (crates/memwarden/src/render, compiled in here), `host --json`
//! and /metrics (Prometheus text or OpenMetrics, by the input's length). Never a panic
//! (arithmetic overflow checks are on in fuzz builds), and every derived figure keeps the bound
//! the code states:
//!
//! - each kernel term is at most MemTotal (`kernel::terms`: larger ones are refused);
//! - each unaccounted rest X is exactly MemTotal − Σ its parts (no wrap, no saturation), so at
//!   most MemTotal, and at least −(number of parts) × MemTotal (X is not computed when a part
//!   fails its sanity bound); the black hole is the LRU decomposition's X;
//! - each identity's residual is exactly left − right;
//! - the process table's totals are at least each row's figure; USS is private clean + dirty;
//! - every /metrics sample value is a number (not NaN).
//!
//! Input: sections separated by NUL bytes, in the order of [`FILES`]; an empty section leaves
//! its file out. A directory section holds lines `relative/path value` (path components of
//! `[A-Za-z0-9_.-]`, at most three deep). scripts/fuzz-smoke.sh seeds it from fixtures/.

use std::fmt::Write as _;
use std::fs;
use std::path::Path;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use memwarden_analysis::accounting::kernel;
use memwarden_analysis::procs;
use memwarden_analysis::view::View;
use memwarden_metrics::{DaemonHealth, Format};
use memwarden_model::Sample;
use memwarden_procfs::HostReader;

#[path = "common/mod.rs"]
mod common;

#[allow(dead_code)]
#[path = "../../crates/memwarden/src/render/mod.rs"]
mod render;

/// Where each section goes; `/` at the end: a directory of `name value` lines.
pub const FILES: [&str; 18] = [
    "proc/meminfo",
    "proc/vmstat",
    "proc/pressure/memory",
    "proc/zoneinfo",
    "proc/vmallocinfo",
    "proc/modules",
    "proc/sys/kernel/osrelease",
    "proc/1/status",
    "proc/1/smaps_rollup",
    "proc/1/smaps",
    "proc/1/ksm_stat",
    "proc/1/ksm_merging_pages",
    "proc/2/status",
    "proc/2/stat",
    "sys/kernel/mm/ksm/",
    "sys/kernel/mm/hugepages/",
    "sys/kernel/mm/transparent_hugepage/",
    "sys/devices/system/node/node0/meminfo",
];

fn root() -> &'static tempfile::TempDir {
    static R: OnceLock<tempfile::TempDir> = OnceLock::new();
    R.get_or_init(|| {
        tempfile::Builder::new()
            .prefix("mw-fuzz-tree")
            .tempdir_in(common::shm())
            .expect("a temporary directory")
    })
}

fn safe(rel: &str) -> bool {
    let parts: Vec<&str> = rel.split('/').collect();
    parts.len() <= 3
        && parts.iter().all(|p| {
            !p.is_empty()
                && *p != "."
                && *p != ".."
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
        })
}

fn write(path: &Path, bytes: &[u8]) {
    // A file where a directory should be, or the reverse (`enabled 1` and `enabled/x 2` in
    // one section): the first one written stays.
    if let Some(dir) = path.parent() {
        if fs::create_dir_all(dir).is_err() {
            return;
        }
    }
    let _ = fs::write(path, bytes);
}

/// Writes the tree for `data` under `dir` (emptied first).
fn build(dir: &Path, data: &[u8]) {
    let _ = fs::remove_dir_all(dir.join("proc"));
    let _ = fs::remove_dir_all(dir.join("sys"));
    fs::create_dir_all(dir.join("proc")).expect("proc");
    fs::create_dir_all(dir.join("sys")).expect("sys");
    for (section, file) in data.split(|b| *b == 0).zip(FILES) {
        if section.is_empty() {
            continue;
        }
        if let Some(d) = file.strip_suffix('/') {
            for line in String::from_utf8_lossy(section).lines() {
                let (rel, value) = line.split_once(' ').unwrap_or((line, ""));
                if safe(rel) {
                    write(&dir.join(d).join(rel), format!("{value}\n").as_bytes());
                }
            }
        } else {
            write(&dir.join(file), section);
        }
    }
    // pid 1 is a process with a command line; pid 2 a kernel thread (ksmd, when its status
    // says so): an empty cmdline.
    if dir.join("proc/1").is_dir() {
        write(&dir.join("proc/1/cmdline"), b"/sbin/init\0splash\0");
    }
    if dir.join("proc/2").is_dir() {
        write(&dir.join("proc/2/cmdline"), b"");
    }
}

fuzz_target!(|data: &[u8]| {
    let dir = root().path();
    build(dir, data);
    let reader = HostReader::at_root(dir);
    let Ok(host) = reader.read_host() else {
        // meminfo is required; what else the CLI does then is print the error.
        return;
    };
    // The one view every output reads, as the daemon and the CLI build it.
    let view = View::of(Sample {
        taken_at_unix_ms: 1_795_000_000_000,
        host,
        ..Sample::default()
    });
    let host = &view.sample().host;
    let acc = &view.accounting;
    let total = host.meminfo.get_or_zero("MemTotal");

    for p in kernel::terms(host).parts {
        assert!(
            p.bytes <= total,
            "kernel term {} is {} > MemTotal {total}",
            p.label,
            p.bytes
        );
    }
    for d in &acc.decompositions {
        assert_eq!(d.memtotal_bytes, total);
        if let Some(x) = d.unaccounted_bytes {
            let sum: i128 = d.parts.iter().map(|p| i128::from(p.bytes)).sum();
            assert_eq!(
                x,
                i128::from(total) - sum,
                "{}: X is not MemTotal − Σ",
                d.name
            );
            assert!(
                x <= i128::from(total),
                "{}: X {x} > MemTotal {total}",
                d.name
            );
            // Every part within MemTotal, so X is at least −(parts − 1) × MemTotal: a figure
            // beyond that came from a part no bound refused.
            let parts = i128::try_from(d.parts.len()).expect("few parts");
            assert!(
                x >= -parts * i128::from(total),
                "{}: X {x} below −{parts} × MemTotal {total}: {:?}",
                d.name,
                d.parts
                    .iter()
                    .map(|p| (&p.label, p.bytes))
                    .collect::<Vec<_>>()
            );
        }
    }
    assert_eq!(
        acc.black_hole_bytes,
        acc.decompositions.first().and_then(|d| d.unaccounted_bytes)
    );
    for id in &acc.identities {
        if let (Some(l), Some(r), Some(res)) = (id.left_bytes, id.right_bytes, id.residual_bytes) {
            assert_eq!(res, i128::from(l) - i128::from(r), "{}", id.name);
        }
    }

    let top = procs::table(host, procs::SortBy::Pss, 20);
    for r in &top.rows {
        assert!(top.total_pss_bytes >= r.pss_bytes && top.total_rss_bytes >= r.rss_bytes);
        assert!(top.total_uss_bytes >= r.uss_bytes && top.total_swap_bytes >= r.swap_bytes);
    }
    assert!(top.unreadable <= top.total_processes);

    // The CLI: `host`, `procs`, `host --json`.
    let text = render::host::render(host, acc, &top);
    assert!(text.starts_with("Host memory: MemTotal"), "{text}");
    let mut out = String::new();
    let _ = write!(
        out,
        "{}\n{}",
        render::procs::process_table(&top, true),
        render::host::process_errors(host)
    );
    // `host --json` is the view (what /api/v1/latest serves) and the process table.
    serde_json::to_string(&(&view, &top)).expect("host --json serializes");

    // /metrics.
    // One format an execution (the input's length picks it): they share all but the framing.
    let format = [Format::Prometheus, Format::OpenMetrics][data.len() % 2];
    {
        let body = memwarden_metrics::render(&view, &DaemonHealth::default(), format);
        for line in body
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
        {
            let value = line.rsplit(' ').next().unwrap_or_default();
            let v: f64 = value
                .parse()
                .unwrap_or_else(|_| panic!("/metrics value {value:?} in {line:?}"));
            assert!(!v.is_nan(), "NaN in {line:?}");
        }
    }
});
