//! The KSM tuner in the daemon: when `[ksm] tune = true`, each sample goes through the pure
//! [`ksm_plan`] and the plan's changed knobs are written to /sys/kernel/mm/ksm. Its memory (the
//! cost window, a cost refusal) lives here, across intervals and reloads.

use std::path::PathBuf;

use memwarden_control::ksm::{apply, Outcome, SYSFS_DIR};
use memwarden_model::Sample;
use memwarden_policy::ksm::{ksm_plan, KsmConfig, KsmHistory, KsmPlan};
use tracing::{debug, info, warn};

/// The tuner's state between intervals.
#[derive(Debug)]
pub struct KsmTuner {
    history: KsmHistory,
    dir: PathBuf,
}

impl Default for KsmTuner {
    fn default() -> Self {
        KsmTuner {
            history: KsmHistory::default(),
            dir: PathBuf::from(SYSFS_DIR),
        }
    }
}

impl KsmTuner {
    /// A tuner writing into `dir` instead of the live directory.
    pub fn at(dir: impl Into<PathBuf>) -> Self {
        KsmTuner {
            history: KsmHistory::default(),
            dir: dir.into(),
        }
    }

    /// One interval: nothing when tuning is off (and the window is forgotten, so that turning
    /// it on again starts afresh); else plan, write, log what changed and what refused.
    pub fn step(&mut self, cfg: &KsmConfig, sample: &Sample) -> Option<KsmPlan> {
        if !cfg.tune {
            self.history = KsmHistory::default();
            return None;
        }
        let plan = ksm_plan(sample, &self.history, cfg);
        let results = apply(&plan, &self.dir);
        for r in &results {
            match &r.outcome {
                Outcome::Unchanged => {}
                Outcome::Written => info!(
                    knob = r.knob.file(),
                    from = r.before.as_deref().unwrap_or("?"),
                    to = %r.wanted,
                    why = %plan.reason,
                    "KSM setting written"
                ),
                Outcome::ReadBack(v) | Outcome::Refused(v) => warn!(
                    knob = r.knob.file(),
                    wanted = %r.wanted,
                    result = %v,
                    "KSM setting not taken; the other knobs were still written"
                ),
            }
        }
        debug!(run = ?plan.run, why = %plan.reason, "KSM plan");
        self.history.record(sample, &plan);
        Some(plan)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use memwarden_policy::ksm::RunDecision;

    /// Every key of `[ksm]` appears in deploy/memwarden.toml (the file lists each at its default;
    /// config.rs checks that it parses to exactly the defaults).
    #[test]
    fn the_example_lists_every_ksm_key() {
        let text = include_str!("../../../deploy/memwarden.toml");
        let example: toml::Table = toml::from_str(text).expect("example parses");
        let listed = example["ksm"].as_table().expect("[ksm] section");
        let all = toml::Table::try_from(KsmConfig::default()).expect("serializes");
        let missing: Vec<&String> = all.keys().filter(|k| !listed.contains_key(*k)).collect();
        assert!(
            missing.is_empty(),
            "not in deploy/memwarden.toml: {missing:?}"
        );
    }

    /// The daemon's wiring on a copy of KSM's directory (the real one is exercised by
    /// memwarden-control's tests): off writes nothing; on, a host short of memory gets run = 1.
    #[test]
    fn off_writes_nothing_and_on_writes_the_plan() {
        let dir = tempfile::tempdir().expect("tempdir");
        for (f, v) in [
            ("run", "0\n"),
            ("pages_to_scan", "100\n"),
            ("sleep_millisecs", "20\n"),
        ] {
            std::fs::write(dir.path().join(f), v).expect("write");
        }
        let mut s = Sample::default();
        s.host.meminfo = memwarden_procfs::parse_meminfo(
            "MemTotal: 4194304 kB\nMemFree: 102400 kB\nMemAvailable: 102400 kB\n",
        )
        .expect("meminfo");
        s.host.ksm = Some(memwarden_procfs::ksm_sysfs(
            ["run", "pages_to_scan", "sleep_millisecs"]
                .iter()
                .map(|f| {
                    let v = std::fs::read_to_string(dir.path().join(f)).expect("read");
                    (f.to_string(), v)
                })
                .collect(),
        ));
        let mut t = KsmTuner::at(dir.path());
        assert!(t.step(&KsmConfig::default(), &s).is_none());
        let run = || std::fs::read_to_string(dir.path().join("run")).expect("run");
        assert_eq!(run(), "0\n");
        let on = KsmConfig {
            tune: true,
            ..KsmConfig::default()
        };
        let plan = t.step(&on, &s).expect("a plan");
        assert_eq!(plan.run, RunDecision::Start, "{}", plan.reason);
        assert_eq!(run(), "1");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("pages_to_scan")).expect("read"),
            "400"
        );
    }
}
