//! One derived view per sample: the accounting, the KSM report and every VM's figures and
//! diagnosis, computed once (by the daemon's recorder, or by a CLI command) and read by every
//! output and policy, so that `/metrics`, the API, the page and `--json` can never disagree.
//!
//! The costly files (each process's smaps_rollup, /proc/vmallocinfo) are read on a slower
//! cadence than the rest. On a sample without them the identities that need them (mapped ≈ PSS,
//! vmalloc) cannot be judged: mixing a PSS read a minute ago with this meminfo would judge two
//! moments against each other. The view shows instead those identities as judged on the last
//! sample that read everything at one moment, and says how old that judgement is
//! ([`Carried`]). The sample itself stays as read.

use std::sync::Arc;

use serde::ser::SerializeStruct;
use serde::{Serialize, Serializer};

use memwarden_model::Sample;

use crate::accounting::{self, HostAccounting, IdentityResult, Verdict};
use crate::ksm::{self, KsmReport};
use crate::vm::{self, Finding, VmFigures, VmReport};

/// Everything derived from one [`Sample`].
#[derive(Debug, Clone)]
pub struct View {
    sample: Arc<Sample>,
    pub accounting: HostAccounting,
    pub ksm: KsmReport,
    /// One per `sample.vms`, in the same order.
    vms: Vec<VmDerived>,
    /// Identities judged on an earlier sample (see [`Carried`]).
    pub carried: Carried,
    /// The identities of the last sample that read the costly files, for the next view.
    last_full: Option<Arc<Judged>>,
}

#[derive(Debug, Clone)]
struct VmDerived {
    figures: VmFigures,
    diagnosis: Vec<Finding>,
}

/// Identities this sample could not judge, shown as judged on the last sample that read
/// every file they need at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Carried {
    /// Their names (as in `accounting.identities`).
    pub identities: Vec<&'static str>,
    /// When that sample was taken, and its age at this one; `None` when nothing was carried.
    pub judged_at_unix_ms: Option<u64>,
    pub age_s: Option<u64>,
}

/// The identities of a sample that read the costly files.
#[derive(Debug)]
struct Judged {
    at_unix_ms: u64,
    identities: Vec<IdentityResult>,
}

impl View {
    /// The view of `sample`, carrying the slow-cadence figures it lacks from `previous` (the
    /// view of the sample before it, from the same host).
    pub fn new(sample: Arc<Sample>, previous: Option<&View>) -> View {
        let at = sample.taken_at_unix_ms;
        let host = &sample.host;
        let mut accounting = accounting::analyse(host);
        let read_costly = host.processes.iter().any(|p| p.smaps.is_some());
        let (last_full, carried) = if read_costly {
            let judged = Judged {
                at_unix_ms: at,
                identities: accounting.identities.clone(),
            };
            (Some(Arc::new(judged)), Carried::default())
        } else {
            let last = previous.and_then(|p| p.last_full.clone());
            let carried = last
                .as_deref()
                .map(|j| carry(&mut accounting.identities, j, at))
                .unwrap_or_default();
            (last, carried)
        };
        let vms = sample
            .vms
            .iter()
            .map(|v| VmDerived {
                figures: vm::figures(v),
                diagnosis: vm::diagnose(v),
            })
            .collect();
        View {
            ksm: ksm::report(host),
            accounting,
            vms,
            carried,
            last_full,
            sample,
        }
    }

    /// The view of a sample on its own (a CLI command's one look: nothing to carry).
    pub fn of(sample: Sample) -> View {
        View::new(Arc::new(sample), None)
    }

    /// The sample as read (without carried figures).
    pub fn sample(&self) -> &Sample {
        &self.sample
    }

    /// Every VM as outputs show it, in the sample's order.
    pub fn vms(&self) -> impl Iterator<Item = VmReport<'_>> + '_ {
        self.sample
            .vms
            .iter()
            .zip(&self.vms)
            .map(|(vm, d)| VmReport {
                vm,
                figures: d.figures.clone(),
                diagnosis: d.diagnosis.clone(),
            })
    }
}

/// Replaces each identity `identities` could not judge by its judgement on `last`, when that
/// one could; returns what was replaced.
fn carry(identities: &mut [IdentityResult], last: &Judged, at: u64) -> Carried {
    let age_s = at.saturating_sub(last.at_unix_ms) / 1000;
    let mut carried = Carried::default();
    for id in identities
        .iter_mut()
        .filter(|i| i.verdict == Verdict::NotApplicable)
    {
        let Some(then) = last
            .identities
            .iter()
            .find(|j| j.name == id.name && j.verdict != Verdict::NotApplicable)
        else {
            continue;
        };
        *id = IdentityResult {
            note: format!(
                "judged on the sample of {age_s} s before, the last that read PSS and vmallocinfo \
                 (read on a slower cadence){}{}",
                if then.note.is_empty() { "" } else { "; " },
                then.note
            ),
            ..then.clone()
        };
        carried.identities.push(id.name);
    }
    if !carried.identities.is_empty() {
        carried.judged_at_unix_ms = Some(last.at_unix_ms);
        carried.age_s = Some(age_s);
    }
    carried
}

/// The API's and `--json`'s one shape: the derived figures first, then the sample as read.
impl Serialize for View {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("View", 6)?;
        st.serialize_field("taken_at_unix_ms", &self.sample.taken_at_unix_ms)?;
        st.serialize_field("accounting", &self.accounting)?;
        st.serialize_field("ksm", &self.ksm)?;
        st.serialize_field("vms", &self.vms().collect::<Vec<_>>())?;
        st.serialize_field("carried", &self.carried)?;
        st.serialize_field("sample", &*self.sample)?;
        st.end()
    }
}

#[cfg(test)]
mod tests;
