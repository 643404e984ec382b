//! The exposition of a captured host with VMs, checked by the real `promtool check metrics`
//! (text format) and a structural OpenMetrics check, and held against the METRICS table.

mod common;

use std::collections::HashSet;
use std::io::Write;
use std::process::{Command, Stdio};

use memwarden_analysis::view::View;
use memwarden_metrics::{lookup, render, Format, MetricType, METRICS};
use memwarden_model::vm::VmSample;
use memwarden_model::Sample;

const FIXTURE: &str = "host-6.18-sandbox";

/// The captured host with 8 VMs (every variant `common::vm` makes) and one whose name needs
/// escaping.
fn sample() -> Sample {
    let mut s = common::sample(FIXTURE, 8);
    s.vms.push(VmSample {
        name: "odd \"vm\" \\ with\nnewline".into(),
        ..common::vm(1)
    });
    add_consumers(&mut s);
    s
}

/// Consumers the captured host lacks (no zram in use, no DMA-buf, no sockstat in the capture,
/// no ZFS), with handwritten figures, so that their families are rendered too.
fn add_consumers(s: &mut Sample) {
    use memwarden_model::host::{
        DmaBufSource, DmaBufs, KstatEntry, Sockstat, SockstatEntry, ZfsArc, ZramMmStat,
    };
    let kstat = |name: &str, value| KstatEntry {
        name: name.into(),
        value,
    };
    s.host.zfs = Some(ZfsArc {
        arcstats: vec![kstat("size", 176 << 20), kstat("c", 202 << 20)],
        abdstats: Some(vec![kstat("scatter_data_size", 160 << 20)]),
    });
    s.host.zram = Some(vec![ZramMmStat {
        device: "zram0".into(),
        orig_data_bytes: 64 << 20,
        compr_data_bytes: 20 << 20,
        mem_used_total_bytes: 21 << 20,
        ..ZramMmStat::default()
    }]);
    s.host.sockstat = Some(Sockstat {
        entries: vec![SockstatEntry {
            protocol: "TCP".into(),
            key: "mem".into(),
            value: 12,
        }],
        ipv6: false,
    });
    s.host.dmabuf = Some(DmaBufs::from_buffers(
        DmaBufSource::Sysfs,
        [("system", 1 << 20)],
        false,
    ));
}

/// The sample name and the label set of one sample line.
fn series_of(line: &str) -> (&str, &str) {
    let end = line.find(['{', ' ']).expect("a sample line has a name");
    let name = &line[..end];
    let labels = if line[end..].starts_with('{') {
        // Label values escape `"` and `\`, so the set ends at the last `} `.
        let close = line.rfind("} ").expect("labels end in '} '");
        &line[end..=close]
    } else {
        ""
    };
    (name, labels)
}

/// The label names of a label set (values skipped, escapes honoured).
fn label_names(labels: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = labels.trim_start_matches('{');
    while let Some((name, after)) = rest.split_once("=\"") {
        names.push(name.trim_start_matches(',').to_string());
        let mut chars = after.char_indices();
        let mut end = after.len();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => {
                    chars.next();
                }
                '"' => {
                    end = i + 1;
                    break;
                }
                _ => {}
            }
        }
        rest = &after[end..];
    }
    names
}

fn samples(text: &str) -> impl Iterator<Item = &str> {
    text.lines().filter(|l| !l.starts_with('#'))
}

#[test]
fn promtool_accepts_the_text_format() {
    let text = render(&View::of(sample()), &common::health(), Format::Prometheus);
    let child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child =
        child.unwrap_or_else(|e| panic!("promtool ({e}): scripts/setup.sh --test installs it"));
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("promtool reads");
    let out = child.wait_with_output().expect("promtool runs");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool check metrics: {said}");
    assert!(said.trim().is_empty(), "promtool lint: {said}");
}

/// The official Python client's strict OpenMetrics parser (Debian's python3-prometheus-client
/// installs into the system interpreter, hence /usr/bin/python3): it prints the number of
/// samples, then every `domain` label value as JSON, one a line.
const PARSE_OM: &str = "
import sys, json
from prometheus_client.openmetrics.parser import text_string_to_metric_families
fams = list(text_string_to_metric_families(sys.stdin.read()))
print(sum(len(f.samples) for f in fams))
for f in fams:
    for s in f.samples:
        if 'domain' in s.labels:
            print(json.dumps(s.labels['domain']))
";

#[test]
fn the_reference_openmetrics_parser_reads_it_back() {
    let has_parser = Command::new("/usr/bin/python3")
        .args(["-c", "import prometheus_client"])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        has_parser,
        "no python3-prometheus-client: scripts/setup.sh --test installs it"
    );
    let s = sample();
    let text = render(&View::of(s.clone()), &common::health(), Format::OpenMetrics);
    let mut child = Command::new("/usr/bin/python3")
        .args(["-c", PARSE_OM])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("the parser reads");
    let out = child.wait_with_output().expect("the parser ends");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "OpenMetrics parser: {err}");
    let said = String::from_utf8_lossy(&out.stdout);
    let mut lines = said.lines();
    let count: usize = lines.next().and_then(|c| c.parse().ok()).expect("a count");
    assert_eq!(count, samples(&text).count(), "every sample read");
    let odd = serde_json::to_string(&s.vms[8].name).expect("json");
    assert!(lines.any(|l| l == odd), "{odd} read back");
}

#[test]
fn openmetrics_is_well_formed() {
    let text = render(&View::of(sample()), &common::health(), Format::OpenMetrics);
    assert!(text.ends_with("\n# EOF\n"), "ends with # EOF");
    assert_eq!(text.matches("# EOF").count(), 1);
    let mut families_seen = HashSet::new();
    let mut current: Option<&memwarden_metrics::MetricDef> = None;
    for line in text.lines().filter(|l| *l != "# EOF") {
        assert!(!line.is_empty(), "no blank lines in OpenMetrics");
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (family, kind) = rest.split_once(' ').expect("TYPE family kind");
            let def = METRICS
                .iter()
                .find(|d| d.family() == family)
                .unwrap_or_else(|| panic!("TYPE of undeclared family {family}"));
            let want = match def.kind {
                MetricType::Gauge => "gauge",
                MetricType::Counter => "counter",
                MetricType::Info => "info",
            };
            assert_eq!(kind, want, "{family}");
            assert!(families_seen.insert(family), "{family} written twice");
            current = Some(def);
        } else if let Some(rest) = line.strip_prefix("# UNIT ") {
            let def = current.expect("UNIT after TYPE");
            assert_eq!(rest, format!("{} {}", def.family(), def.unit));
        } else if let Some(rest) = line.strip_prefix("# HELP ") {
            // HELP precedes TYPE: it names the family about to start.
            let family = rest.split(' ').next().unwrap_or("");
            assert!(
                METRICS.iter().any(|d| d.family() == family),
                "HELP {family}"
            );
        } else {
            assert!(!line.starts_with('#'), "unknown comment {line}");
            let def = current.expect("a sample after its TYPE");
            let (name, _) = series_of(line);
            assert_eq!(name, def.name, "sample outside its family");
            let value = line.rsplit(' ').next().unwrap_or("");
            let v: f64 = value.parse().unwrap_or_else(|_| panic!("value {line}"));
            match def.kind {
                MetricType::Info => assert_eq!(v, 1.0, "{line}"),
                MetricType::Counter => assert!(v >= 0.0, "{line}"),
                MetricType::Gauge => {}
            }
        }
    }
}

#[test]
fn every_declared_family_is_rendered_and_nothing_else() {
    for format in [Format::Prometheus, Format::OpenMetrics] {
        let text = render(&View::of(sample()), &common::health(), format);
        let mut rendered = HashSet::new();
        for line in samples(&text) {
            let (name, labels) = series_of(line);
            let def = lookup(name).unwrap_or_else(|| panic!("{name} is not in METRICS"));
            let names = label_names(labels);
            let declared: Vec<String> = def
                .labels
                .iter()
                .filter(|l| names.iter().any(|n| n == *l))
                .map(|l| l.to_string())
                .collect();
            assert_eq!(names, declared, "{line}: labels undeclared or out of order");
            rendered.insert(name);
        }
        // The sample holds every kind of input, so every family applies.
        let missing: Vec<&str> = METRICS
            .iter()
            .map(|d| d.name)
            .filter(|n| !rendered.contains(n))
            .collect();
        assert!(missing.is_empty(), "declared, never rendered: {missing:?}");
    }
}

#[test]
fn no_series_is_written_twice() {
    for format in [Format::Prometheus, Format::OpenMetrics] {
        let text = render(&View::of(sample()), &common::health(), format);
        let mut seen = HashSet::new();
        for line in samples(&text) {
            assert!(seen.insert(series_of(line)), "duplicate series {line}");
        }
    }
}

#[test]
fn the_figures_are_the_analyses_figures() {
    let s = sample();
    let text = render(&View::of(s.clone()), &common::health(), Format::Prometheus);
    let vm = &s.vms[0];
    let f = memwarden_analysis::vm::figures(vm);
    let line = format!(
        "memwarden_vm_guest_used_bytes{{domain=\"{}\",uuid=\"{}\"}} {}\n",
        vm.name,
        vm.uuid.as_deref().unwrap_or(""),
        f.guest_used_bytes.expect("captured stats have usable")
    );
    assert!(text.contains(&line), "{line}");
    let hole = memwarden_analysis::accounting::analyse(&s.host)
        .black_hole_bytes
        .expect("the fixture's black hole is computed");
    assert!(text.contains(&format!("\nmemwarden_host_black_hole_bytes {hole}\n")));
    let ksmd = s.host.ksmd.expect("the sample has ksmd");
    assert!(text.contains(&format!(
        "\nmemwarden_host_ksmd_cpu_seconds_total {}\n",
        ksmd.total_ms() as f64 / 1000.0
    )));
    let memtotal = s.host.meminfo.get("MemTotal").expect("MemTotal");
    assert!(text.contains(&format!(
        "\nmemwarden_host_meminfo_bytes{{field=\"MemTotal\"}} {memtotal}\n"
    )));
}
