//! deploy/: the Prometheus alert rules (checked and unit-tested by the real promtool) and the
//! Grafana dashboard (valid JSON) query only metrics declared in METRICS.

mod common;

use std::path::Path;
use std::process::Command;

use memwarden_metrics::METRICS;

/// Every metric name in a PromQL text (our prefixes only: `memwarden_`, `process_`).
fn metric_names(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let starts_word = i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_');
        if starts_word && (text[i..].starts_with("memwarden_") || text[i..].starts_with("process_"))
        {
            let end = text[i..]
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
                .map_or(text.len(), |e| i + e);
            out.push(text[i..end].to_string());
            i = end;
        } else {
            i += 1;
        }
    }
    out
}

fn assert_declared(what: &str, text: &str) -> usize {
    let names = metric_names(text);
    for n in &names {
        assert!(
            METRICS.iter().any(|d| d.name == n),
            "{what} queries {n}, which METRICS does not declare"
        );
    }
    names.len()
}

fn deploy(rel: &str) -> std::path::PathBuf {
    common::repo().join("deploy").join(rel)
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(deploy(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// Runs promtool in `dir`: whether it succeeded, and what it said.
fn promtool(dir: &Path, args: &[&str]) -> (bool, String) {
    match Command::new("promtool")
        .args(args)
        .current_dir(dir)
        .output()
    {
        Ok(o) => (
            o.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            ),
        ),
        Err(e) => panic!("promtool {args:?}: {e} (scripts/setup.sh --test installs it)"),
    }
}

#[test]
fn metric_names_are_found_in_promql() {
    assert_eq!(
        metric_names("rate(memwarden_a_total{x=\"y\"}[5m]) / process_b and notmemwarden_c"),
        ["memwarden_a_total", "process_b"]
    );
}

#[test]
fn alert_rules_pass_promtool_and_their_unit_tests() {
    let dir = deploy("prometheus");
    let (ok, out) = promtool(&dir, &["check", "rules", "memwarden-rules.yml"]);
    assert!(ok, "promtool check rules: {out}");
    let (ok, out) = promtool(&dir, &["test", "rules", "memwarden-rules.test.yml"]);
    assert!(ok, "promtool test rules: {out}");
}

#[test]
fn alert_rules_and_their_tests_use_declared_metrics() {
    let rules = read("prometheus/memwarden-rules.yml");
    assert!(assert_declared("memwarden-rules.yml", &rules) >= 12);
    let tests = read("prometheus/memwarden-rules.test.yml");
    assert!(assert_declared("memwarden-rules.test.yml", &tests) >= 12);
}

#[test]
fn dashboard_is_json_and_queries_declared_metrics() {
    let text = read("grafana/memwarden.json");
    let d: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
    let mut exprs = Vec::new();
    for p in d["panels"].as_array().expect("panels") {
        for t in p["targets"].as_array().into_iter().flatten() {
            exprs.push(
                t["expr"]
                    .as_str()
                    .expect("a target has an expr")
                    .to_string(),
            );
        }
    }
    for v in d["templating"]["list"].as_array().expect("variables") {
        if let Some(q) = v["definition"].as_str() {
            exprs.push(q.to_string());
        }
    }
    let queried: usize = exprs
        .iter()
        .map(|e| assert_declared("the dashboard", e))
        .sum();
    assert!(queried >= 20, "only {queried} metric references");
    let domain = d["templating"]["list"]
        .as_array()
        .and_then(|l| l.iter().find(|v| v["name"] == "domain"))
        .expect("a $domain variable");
    assert!(domain["definition"]
        .as_str()
        .is_some_and(|q| q.contains("memwarden_vm_info")));
    // The MemTotal decomposition is drawn stacked, as the parts add up to MemTotal.
    let decomposition = d["panels"]
        .as_array()
        .and_then(|ps| {
            ps.iter().find(|p| {
                p["targets"][0]["expr"]
                    .as_str()
                    .is_some_and(|e| e.starts_with("memwarden_host_decomposition_bytes"))
            })
        })
        .expect("a decomposition panel");
    assert_eq!(
        decomposition["fieldConfig"]["defaults"]["custom"]["stacking"]["mode"],
        "normal"
    );
}
