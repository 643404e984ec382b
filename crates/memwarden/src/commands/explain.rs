//! `memwarden explain [FIELD]`: what a meminfo field counts, in English or Chinese.
//!
//! With a field: its entry (or, for a key the glossary lacks, a plain statement that memwarden
//! keeps and shows it without explaining it). Without: every field this host (or `--root` tree)
//! prints, with its value and a one-line meaning, then glossary fields this kernel does not print.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Result;
use memwarden_analysis::glossary::{self, Entry, Kind, Lang as GLang};
use memwarden_model::host::MeminfoUnit;
use memwarden_model::units::format_bytes;

use super::host::reader;
use crate::cli::{ExplainArgs, Lang};

/// Longest piece of user input an error quotes.
const MAX_QUOTED: usize = 100;

/// `input` cut to [`MAX_QUOTED`] characters (with `...` when cut), for error messages.
fn quoted(input: &str) -> String {
    match input.char_indices().nth(MAX_QUOTED) {
        Some((cut, _)) => format!("{:?}...", &input[..cut]),
        None => format!("{input:?}"),
    }
}

/// The first sentence of `text`: up to a `.` followed by a space (or the end) that does not
/// close `e.g.`/`i.e.`/`vs.`, or a `。`. A dot inside a word (`vm.overcommit`, `4.14`) is not a
/// sentence end.
fn first_sentence(text: &str) -> &str {
    let bytes = text.as_bytes();
    for (i, c) in text.char_indices() {
        if c == '。' {
            return &text[..i + c.len_utf8()];
        }
        if c != '.' {
            continue;
        }
        let next = bytes.get(i + 1);
        if !matches!(next, None | Some(b' ') | Some(b'\n')) {
            continue;
        }
        let before = &text[..i];
        if ["e.g", "i.e", " vs", "etc"]
            .iter()
            .any(|a| before.ends_with(a))
            && next.is_some()
        {
            continue;
        }
        return &text[..=i];
    }
    text
}

fn lang(l: Lang) -> GLang {
    match l {
        Lang::En => GLang::En,
        Lang::Zh => GLang::Zh,
    }
}

fn describe(e: &Entry, l: GLang, out: &mut String) {
    let _ = writeln!(out, "{}", e.key);
    let _ = writeln!(out, "  {}", e.text(l));
    if let Some(o) = e.overlaps(l) {
        let label = if l == GLang::Zh { "重叠" } else { "overlaps" };
        let _ = writeln!(out, "  {label}: {o}");
    }
    let mut meta = vec![format!("unit: {}", e.unit)];
    if let Some(s) = &e.since {
        meta.push(format!("since {s}"));
    }
    if let Some(u) = &e.until {
        meta.push(format!("removed in {u}"));
    }
    if let Some(c) = &e.shown_if {
        meta.push(format!("shown if {c}"));
    }
    let _ = writeln!(out, "  {}", meta.join("; "));
    let _ = writeln!(out, "  source: {}", e.source);
}

/// Looks a key up in every glossary, meminfo first.
fn find(key: &str) -> Option<(Kind, &'static Entry)> {
    Kind::ALL
        .iter()
        .find_map(|k| glossary::lookup(*k, key).map(|e| (*k, e)))
}

pub fn explain(root: Option<&Path>, l: Lang, a: &ExplainArgs) -> Result<()> {
    let l = lang(l);
    let mut out = String::new();
    match &a.field {
        Some(key) => match find(key) {
            Some((_, e)) => describe(e, l, &mut out),
            None => {
                anyhow::bail!(
                    "{} is not in memwarden's glossary: if your kernel prints it, memwarden \
                     keeps and shows it (memwarden host --json) but cannot explain it; \
                     `memwarden explain` lists the fields it knows",
                    quoted(key)
                )
            }
        },
        None => {
            // The one command that reads a file, not a sample: the collector's host sample
            // refuses a meminfo without the keys accounting needs, while a glossary lists
            // whatever the file holds, a field short or not.
            let meminfo = reader(root).read_meminfo()?;
            let first_line = |e: &Entry| first_sentence(e.text(l)).to_string();
            let mut t = crate::render::table(&["field", "value", "meaning"], &[1]);
            for entry in &meminfo.entries {
                let value = match entry.unit {
                    MeminfoUnit::Bytes => format_bytes(entry.value),
                    MeminfoUnit::Count => entry.value.to_string(),
                };
                let meaning = glossary::lookup(Kind::Meminfo, &entry.key).map_or_else(
                    || "(unknown to memwarden: kept and shown, not explained)".to_string(),
                    first_line,
                );
                t.add_row(vec![entry.key.clone(), value, meaning]);
            }
            let _ = writeln!(out, "{t}");
            let absent: Vec<&str> = glossary::entries(Kind::Meminfo)
                .iter()
                .filter(|e| !meminfo.contains(&e.key))
                .map(|e| e.key.as_str())
                .collect();
            if !absent.is_empty() {
                let _ = writeln!(
                    out,
                    "\nKnown fields this kernel does not print: {}\n\
                     `memwarden explain FIELD` gives the full entry (--lang zh for Chinese).",
                    absent.join(", ")
                );
            }
        }
    }
    super::print(&out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression: the list cut each meaning at the first "." ("vm.", "4.").
    #[test]
    fn cuts_at_a_sentence_end() {
        assert_eq!(
            first_sentence("Limit set by vm.overcommit_ratio. More text."),
            "Limit set by vm.overcommit_ratio."
        );
        assert_eq!(
            first_sentence("Printed since Linux 4.14, e.g. on Debian. Then."),
            "Printed since Linux 4.14, e.g. on Debian."
        );
        assert_eq!(first_sentence("无句号的文本。第二句。"), "无句号的文本。");
        assert_eq!(first_sentence("No end"), "No end");
    }

    #[test]
    fn quotes_at_most_a_hundred_characters() {
        let q = quoted(&"x".repeat(10_000));
        assert!(q.len() < 110, "{}", q.len());
        assert_eq!(quoted("Shmem"), "\"Shmem\"");
    }
}
