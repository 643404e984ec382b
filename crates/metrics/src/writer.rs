//! The exposition writer: series gathered per family, then written in either format.
//!
//! Hand-written rather than prometheus-client's encoder: that crate writes OpenMetrics only, and
//! the text format 0.0.4 is what `promtool check metrics`, older Prometheus servers and most
//! other scrapers (Telegraf, VictoriaMetrics' agent, Datadog) read by default. The two formats
//! differ in a handful of lines (family names of counters and infos, `# UNIT`, HELP escaping,
//! `# EOF`), all written below from the one table. Our series are derived from a Sample at each
//! scrape, so prometheus-client's registry of long-lived metric objects would add nothing but a
//! copy per scrape.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::sync::OnceLock;

use crate::table::{MetricDef, MetricType, METRICS};
use crate::Format;

/// A sample value, kept exact until written (byte counts beyond 2^53 print every digit).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Value {
    U(u64),
    I(i128),
    F(f64),
}

impl From<u64> for Value {
    fn from(v: u64) -> Self {
        Value::U(v)
    }
}
impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Value::I(v.into())
    }
}
impl From<i128> for Value {
    fn from(v: i128) -> Self {
        Value::I(v)
    }
}
impl From<f64> for Value {
    fn from(v: f64) -> Self {
        Value::F(v)
    }
}
impl From<bool> for Value {
    fn from(v: bool) -> Self {
        Value::U(v.into())
    }
}

fn index() -> &'static HashMap<&'static str, usize> {
    static INDEX: OnceLock<HashMap<&'static str, usize>> = OnceLock::new();
    INDEX.get_or_init(|| {
        METRICS
            .iter()
            .enumerate()
            .map(|(i, d)| (d.name, i))
            .collect()
    })
}

/// The series of one scrape, grouped by family (both formats want a family's lines together).
#[derive(Debug)]
pub(crate) struct Series {
    families: Vec<Vec<(String, Value)>>,
    /// (family index, labels) already added: a series is written once, the first value wins
    /// (a meminfo that repeats a key must not make Prometheus reject the whole scrape).
    seen: HashSet<(usize, String)>,
}

impl Series {
    pub(crate) fn new() -> Self {
        Series {
            families: vec![Vec::new(); METRICS.len()],
            seen: HashSet::new(),
        }
    }

    /// Adds one series of the declared family `name`; `labels` are the values of the family's
    /// declared labels, in order. An empty value leaves its label out (Prometheus reads an
    /// empty label as an absent one). A name missing from the table is a bug caught by tests
    /// (debug builds panic); a release build leaves the series out rather than write an
    /// undeclared family.
    pub(crate) fn add(&mut self, name: &'static str, labels: &[&str], value: impl Into<Value>) {
        let Some(&i) = index().get(name) else {
            debug_assert!(false, "{name} is not in METRICS");
            return;
        };
        let def = &METRICS[i];
        debug_assert_eq!(labels.len(), def.labels.len(), "{name}: label count");
        let mut l = String::new();
        for (k, v) in def.labels.iter().zip(labels) {
            if v.is_empty() {
                continue;
            }
            l.push(if l.is_empty() { '{' } else { ',' });
            l.push_str(k);
            l.push_str("=\"");
            escape_label_value(&mut l, v);
            l.push('"');
        }
        if !l.is_empty() {
            l.push('}');
        }
        if self.seen.insert((i, l.clone())) {
            self.families[i].push((l, value.into()));
        }
    }

    /// Adds `name` when `value` is known.
    pub(crate) fn add_opt<V: Into<Value>>(
        &mut self,
        name: &'static str,
        labels: &[&str],
        value: Option<V>,
    ) {
        if let Some(v) = value {
            self.add(name, labels, v);
        }
    }

    /// Writes every family that has series, in table order.
    pub(crate) fn write(&self, format: Format) -> String {
        let lines: usize = self.families.iter().map(Vec::len).sum();
        let mut out = String::with_capacity(lines * 80 + 4096);
        for (def, series) in METRICS.iter().zip(&self.families) {
            if series.is_empty() {
                continue;
            }
            write_metadata(&mut out, def, format);
            for (labels, value) in series {
                out.push_str(def.name);
                out.push_str(labels);
                out.push(' ');
                write_value(&mut out, *value);
                out.push('\n');
            }
        }
        if format == Format::OpenMetrics {
            out.push_str("# EOF\n");
        }
        out
    }
}

fn write_metadata(out: &mut String, def: &MetricDef, format: Format) {
    let (name, kind) = match (format, def.kind) {
        (Format::Prometheus, MetricType::Info) => (def.name, "gauge"),
        (Format::Prometheus, MetricType::Gauge) => (def.name, "gauge"),
        (Format::Prometheus, MetricType::Counter) => (def.name, "counter"),
        (Format::OpenMetrics, MetricType::Info) => (def.family(), "info"),
        (Format::OpenMetrics, MetricType::Gauge) => (def.family(), "gauge"),
        (Format::OpenMetrics, MetricType::Counter) => (def.family(), "counter"),
    };
    out.push_str("# HELP ");
    out.push_str(name);
    out.push(' ');
    escape_help(out, def.help, format);
    out.push_str("\n# TYPE ");
    out.push_str(name);
    out.push(' ');
    out.push_str(kind);
    out.push('\n');
    if format == Format::OpenMetrics && !def.unit.is_empty() {
        let _ = writeln!(out, "# UNIT {name} {}", def.unit);
    }
}

/// Label values: backslash, double quote and line feed escaped (both formats).
pub(crate) fn escape_label_value(out: &mut String, v: &str) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// HELP text: backslash and line feed escaped; OpenMetrics escapes double quotes too.
pub(crate) fn escape_help(out: &mut String, v: &str, format: Format) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '"' if format == Format::OpenMetrics => out.push_str("\\\""),
            c => out.push(c),
        }
    }
}

fn write_value(out: &mut String, v: Value) {
    let _ = match v {
        Value::U(u) => write!(out, "{u}"),
        Value::I(i) => write!(out, "{i}"),
        Value::F(f) if f.is_nan() => write!(out, "NaN"),
        Value::F(f) if f.is_infinite() => write!(out, "{}Inf", if f > 0.0 { '+' } else { '-' }),
        Value::F(f) => write!(out, "{f}"),
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_and_help_are_escaped() {
        let mut s = String::new();
        escape_label_value(&mut s, "a\"b\\c\nd");
        assert_eq!(s, r#"a\"b\\c\nd"#);
        let mut h = String::new();
        escape_help(&mut h, "x \"y\" \\ \n", Format::Prometheus);
        assert_eq!(h, "x \"y\" \\\\ \\n");
        h.clear();
        escape_help(&mut h, "x \"y\"", Format::OpenMetrics);
        assert_eq!(h, "x \\\"y\\\"");
    }

    #[test]
    fn values_print_exactly_and_floats_spell_specials() {
        let mut s = String::new();
        for v in [
            Value::U(u64::MAX),
            Value::I(-5),
            Value::F(0.25),
            Value::F(f64::NAN),
            Value::F(f64::NEG_INFINITY),
        ] {
            write_value(&mut s, v);
            s.push(' ');
        }
        assert_eq!(s, "18446744073709551615 -5 0.25 NaN -Inf ");
    }

    #[test]
    fn a_series_is_written_once_and_empty_labels_are_left_out() {
        let mut s = Series::new();
        s.add("memwarden_host_meminfo_bytes", &["MemFree"], 1u64);
        s.add("memwarden_host_meminfo_bytes", &["MemFree"], 2u64);
        s.add("memwarden_vm_max_memory_bytes", &["a", ""], 3u64);
        let text = s.write(Format::Prometheus);
        assert!(text.contains("memwarden_host_meminfo_bytes{field=\"MemFree\"} 1\n"));
        assert!(!text.contains("} 2\n"), "{text}");
        assert!(text.contains("memwarden_vm_max_memory_bytes{domain=\"a\"} 3\n"));
    }

    #[test]
    fn openmetrics_names_counter_families_without_total_and_ends_with_eof() {
        let mut s = Series::new();
        s.add(
            "memwarden_vm_balloon_swap_in_bytes_total",
            &["a", "u"],
            7u64,
        );
        let text = s.write(Format::OpenMetrics);
        assert!(text.contains("# TYPE memwarden_vm_balloon_swap_in_bytes counter\n"));
        assert!(text.contains("# UNIT memwarden_vm_balloon_swap_in_bytes bytes\n"));
        assert!(
            text.contains("memwarden_vm_balloon_swap_in_bytes_total{domain=\"a\",uuid=\"u\"} 7\n")
        );
        assert!(text.ends_with("\n# EOF\n"));
        let text = s.write(Format::Prometheus);
        assert!(text.contains("# TYPE memwarden_vm_balloon_swap_in_bytes_total counter\n"));
        assert!(!text.contains("# EOF") && !text.contains("# UNIT"));
    }
}
