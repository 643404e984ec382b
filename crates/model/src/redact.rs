//! What is taken out of a sample before it is kept or shown, and a record of it in the sample,
//! so that a reader of history can tell "redacted" from "empty". Privacy is decided here, on
//! the plain data, once: the daemon redacts before the store, the policies and HTTP see it.

use serde::{Deserialize, Serialize};

use crate::Sample;

/// The rules [`Sample::redact`] applies now. Raise it when they change: a stored sample says
/// which rules it went through.
pub const REDACTION_RULES: u32 = 1;

/// What was taken out of a sample.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Redaction {
    /// The version of the rules applied; 0 = never redacted (a CLI look, or a sample stored by
    /// a memwarden that did not record it).
    pub rules: u32,
    /// Every process's command line was cleared (its `comm` name stays).
    pub cmdlines: bool,
}

impl Sample {
    /// Clears every process's command line (arguments can hold passwords and tokens) unless
    /// `keep_cmdlines`, and records what was done.
    pub fn redact(&mut self, keep_cmdlines: bool) {
        self.redaction = Redaction {
            rules: REDACTION_RULES,
            cmdlines: !keep_cmdlines,
        };
        if keep_cmdlines {
            return;
        }
        let vm_procs = self.vms.iter_mut().filter_map(|v| v.host.as_mut());
        for p in self.host.processes.iter_mut().chain(vm_procs) {
            p.cmdline.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::ProcessMem;
    use crate::vm::VmSample;

    fn sample() -> Sample {
        let p = |name: &str| ProcessMem {
            name: name.into(),
            cmdline: format!("{name} --password hunter2"),
            ..ProcessMem::default()
        };
        let mut s = Sample::default();
        s.host.processes = vec![p("sshd")];
        s.vms = vec![VmSample {
            host: Some(p("qemu-system-x86_64")),
            ..VmSample::default()
        }];
        s
    }

    #[test]
    fn cmdlines_are_cleared_names_kept_and_the_rules_recorded() {
        let mut s = sample();
        assert_eq!(s.redaction, Redaction::default(), "not redacted yet");
        s.redact(false);
        let procs = s.host.processes.iter().chain(s.vms[0].host.as_ref());
        for p in procs {
            assert!(p.cmdline.is_empty(), "{p:?}");
            assert!(!p.name.is_empty());
        }
        assert_eq!(
            s.redaction,
            Redaction {
                rules: REDACTION_RULES,
                cmdlines: true
            }
        );
    }

    #[test]
    fn keeping_cmdlines_keeps_them_and_says_so() {
        let mut s = sample();
        s.redact(true);
        assert_eq!(s.host.processes[0].cmdline, "sshd --password hunter2");
        assert!(!s.redaction.cmdlines);
        assert_eq!(s.redaction.rules, REDACTION_RULES);
    }

    #[test]
    fn a_sample_stored_before_redaction_was_recorded_reads_as_never_redacted() {
        let s: Sample =
            serde_json::from_str(r#"{"taken_at_unix_ms":1,"host":{"meminfo":{"entries":[]}}}"#)
                .expect("an old sample parses");
        assert_eq!(s.redaction, Redaction::default());
    }
}
