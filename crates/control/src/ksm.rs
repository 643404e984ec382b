//! Writing a KSM plan's settings to /sys/kernel/mm/ksm (or any directory: tests and captured
//! trees pass their own). Nothing here decides: each setting that differs from its current
//! value is written once, read back and reported; a knob that refuses (EINVAL, EBUSY, a kernel
//! without the file) is reported as that, and the rest are still written.
//!
//! Writes are bounded: only the six knobs a plan names, values of at most [`MAX_VALUE_LEN`]
//! bytes, files opened write-only and never created (a wrong directory gets no new files).

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};

use memwarden_policy::ksm::{Knob, KsmPlan, Setting};
use serde::Serialize;

/// The live KSM directory.
pub const SYSFS_DIR: &str = "/sys/kernel/mm/ksm";

/// Longest value written (the longest real one is `scan-time`).
pub const MAX_VALUE_LEN: usize = 32;

/// What happened to one knob.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "outcome", content = "detail")]
pub enum Outcome {
    /// Written, and read back as written.
    Written,
    /// Already at the wanted value: not written.
    Unchanged,
    /// Written without error, but the file reads back otherwise (the kernel adjusted it).
    ReadBack(String),
    /// The kernel (or the file system) refused: the error, in plain words.
    Refused(String),
}

/// One knob's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KnobResult {
    pub knob: Knob,
    pub path: PathBuf,
    pub before: Option<String>,
    pub wanted: String,
    pub outcome: Outcome,
}

impl KnobResult {
    pub fn ok(&self) -> bool {
        matches!(self.outcome, Outcome::Written | Outcome::Unchanged)
    }
}

/// Writes the plan's settings in its order into `dir`.
pub fn apply(plan: &KsmPlan, dir: &Path) -> Vec<KnobResult> {
    write_settings(&plan.settings, dir)
}

/// Writes each setting that differs from the value read now (not the plan's `current`: the
/// file may have changed since the sample).
pub fn write_settings(settings: &[Setting], dir: &Path) -> Vec<KnobResult> {
    settings
        .iter()
        .map(|s| write_knob(dir, s.knob, &s.value))
        .collect()
}

/// Writes `value` to one knob unless it already holds it; reads it back.
pub fn write_knob(dir: &Path, knob: Knob, value: &str) -> KnobResult {
    let path = dir.join(knob.file());
    let before = read_knob(&path, knob);
    let result = |outcome| KnobResult {
        knob,
        path: path.clone(),
        before: before.clone(),
        wanted: value.to_string(),
        outcome,
    };
    if value.len() > MAX_VALUE_LEN || value.contains('\n') {
        return result(Outcome::Refused(format!(
            "value of {} bytes is not a sysfs setting (at most {MAX_VALUE_LEN}, one line)",
            value.len()
        )));
    }
    if before.as_deref() == Some(value) {
        return result(Outcome::Unchanged);
    }
    let written = OpenOptions::new()
        .write(true)
        .create(false)
        // sysfs ignores O_TRUNC (as for `echo 1 > run`); a regular file (a test's copy of the
        // directory) must not keep the tail of a longer old value.
        .truncate(true)
        .open(&path)
        .and_then(|mut f| f.write_all(value.as_bytes()));
    if let Err(e) = written {
        return result(Outcome::Refused(format!("{}: {e}", path.display())));
    }
    match read_knob(&path, knob) {
        Some(v) if v == value => result(Outcome::Written),
        Some(v) => result(Outcome::ReadBack(v)),
        None => result(Outcome::ReadBack("(unreadable)".into())),
    }
}

/// A knob's value as the tuner compares it: trimmed, `advisor_mode` as its selected choice.
pub fn read_knob(path: &Path, knob: Knob) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let t = text.trim();
    if knob == Knob::AdvisorMode {
        // `[none] scan-time` → `none`.
        return memwarden_procfs::selected_choice(t);
    }
    Some(t.to_string())
}

/// Every knob the tuner may write, as found in `dir`: what a caller restores after trying a
/// plan (tests do, in a drop guard).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KsmSnapshot {
    dir: PathBuf,
    values: Vec<(Knob, String)>,
}

/// The knobs in the order a restore writes them: stop first, advisor mode before the pace it
/// would reset, run last.
const RESTORE_ORDER: [Knob; 6] = [
    Knob::AdvisorMode,
    Knob::AdvisorMaxCpu,
    Knob::AdvisorTargetScanTime,
    Knob::PagesToScan,
    Knob::SleepMillisecs,
    Knob::Run,
];

impl KsmSnapshot {
    /// Reads every tunable knob present in `dir`.
    pub fn take(dir: &Path) -> KsmSnapshot {
        let values = RESTORE_ORDER
            .iter()
            .filter_map(|k| read_knob(&dir.join(k.file()), *k).map(|v| (*k, v)))
            .collect();
        KsmSnapshot {
            dir: dir.to_path_buf(),
            values,
        }
    }

    pub fn value(&self, knob: Knob) -> Option<&str> {
        self.values
            .iter()
            .find(|(k, _)| *k == knob)
            .map(|(_, v)| v.as_str())
    }

    /// Writes the saved values back: `run` first when it was 0 (stop scanning before anything
    /// else), then the rest, `run` last otherwise.
    pub fn restore(&self) -> Vec<KnobResult> {
        let mut out = Vec::new();
        let run = self.value(Knob::Run);
        if run == Some("0") {
            out.push(write_knob(&self.dir, Knob::Run, "0"));
        }
        for (k, v) in &self.values {
            if *k == Knob::Run && run == Some("0") {
                continue;
            }
            out.push(write_knob(&self.dir, *k, v));
        }
        out
    }
}
