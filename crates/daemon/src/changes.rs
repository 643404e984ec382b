//! What the log must say about reading the VMs, once per change and never every sample: a VM
//! source (libvirt, QMP) that cannot be read or is read again, and a VM whose read fails
//! (with its status and reason) or recovers. The figures themselves are on /metrics
//! (`memwarden_source_success`, `memwarden_vm_read_status`); the log says when they changed.
//!
//! [`Watch::observe`] is pure: it compares a sample with what the previous ones showed and
//! returns the changes; [`log`] writes them.

use std::collections::BTreeMap;

use memwarden_model::vm::ReadStatus;
use memwarden_model::Sample;
use tracing::{info, warn};

/// A VM as the log and /metrics tell it apart: its name and, when known, its UUID.
pub type VmKey = (String, Option<String>);

/// One change worth a log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A source was not read (first seen so, or it was read before).
    SourceDown { source: String, error: String },
    /// A source that was not read is read again.
    SourceBack { source: String },
    /// A VM's read failed (first seen so, or its status changed): `was` is the status before.
    VmNotRead {
        vm: VmKey,
        status: ReadStatus,
        reason: String,
        was: Option<ReadStatus>,
    },
    /// A VM whose read had failed is read again.
    VmBack { vm: VmKey, was: ReadStatus },
}

/// What the previous samples showed.
#[derive(Debug, Default)]
pub struct Watch {
    /// Each source's success, as last seen.
    sources: BTreeMap<String, bool>,
    /// Each VM's read status, as last seen.
    vms: BTreeMap<VmKey, ReadStatus>,
}

impl Watch {
    /// The changes `sample` shows against the samples before it.
    pub fn observe(&mut self, sample: &Sample) -> Vec<Change> {
        let mut out = Vec::new();
        for s in &sample.sources {
            match (self.sources.insert(s.name.clone(), s.ok), s.ok) {
                (None | Some(true), false) => out.push(Change::SourceDown {
                    source: s.name.clone(),
                    error: s.error.clone().unwrap_or_else(|| "no reason given".into()),
                }),
                (Some(false), true) => out.push(Change::SourceBack {
                    source: s.name.clone(),
                }),
                _ => {}
            }
        }
        for v in &sample.vms {
            let key = (v.name.clone(), v.uuid.clone());
            let status = v.read.status;
            let was = self.vms.insert(key.clone(), status);
            if status != ReadStatus::Ok && was != Some(status) {
                out.push(Change::VmNotRead {
                    vm: key,
                    status,
                    reason: v
                        .read
                        .reason
                        .clone()
                        .unwrap_or_else(|| "no reason given".into()),
                    was,
                });
            } else if let Some(was) =
                was.filter(|w| *w != ReadStatus::Ok && status == ReadStatus::Ok)
            {
                out.push(Change::VmBack { vm: key, was });
            }
        }
        out
    }
}

/// One line per change: a failure at WARN, a recovery at INFO.
pub fn log(changes: &[Change]) {
    for c in changes {
        match c {
            Change::SourceDown { source, error } => warn!(
                error = %error,
                "VM source not read: {source}; its VMs are missing until it is read again"
            ),
            Change::SourceBack { source } => info!("VM source recovered: {source} is read again"),
            Change::VmNotRead {
                vm,
                status,
                reason,
                was,
            } => warn!(
                uuid = vm.1.as_deref(),
                reason = %reason,
                was = %was.map_or("not seen before", ReadStatus::as_str),
                "VM {} not read: {}",
                vm.0,
                status.as_str()
            ),
            Change::VmBack { vm, was } => info!(
                uuid = vm.1.as_deref(),
                was = %was.as_str(),
                "VM {} recovered: read again",
                vm.0
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use memwarden_model::vm::{VmRead, VmSample};
    use memwarden_model::SourceHealth;

    fn src(name: &str, ok: bool) -> SourceHealth {
        SourceHealth {
            name: name.into(),
            ok,
            duration_ms: 1,
            error: (!ok).then(|| format!("{name} refused")),
        }
    }

    fn vm(name: &str, status: ReadStatus) -> VmSample {
        VmSample {
            name: name.into(),
            uuid: Some(format!("u-{name}")),
            read: VmRead {
                status,
                reason: (status != ReadStatus::Ok).then(|| format!("{} because", status.as_str())),
                duration_ms: 1,
            },
            ..VmSample::default()
        }
    }

    fn sample(sources: &[(&str, bool)], vms: &[(&str, ReadStatus)]) -> Sample {
        Sample {
            sources: sources.iter().map(|(n, ok)| src(n, *ok)).collect(),
            vms: vms.iter().map(|(n, s)| vm(n, *s)).collect(),
            ..Sample::default()
        }
    }

    fn key(name: &str) -> VmKey {
        (name.into(), Some(format!("u-{name}")))
    }

    const LV: &str = "libvirt qemu:///system";

    #[test]
    fn a_source_down_then_back_is_one_change_each_way() {
        let mut w = Watch::default();
        let up = sample(&[("host", true), (LV, true)], &[]);
        let down = sample(&[("host", true), (LV, false)], &[]);
        assert_eq!(w.observe(&up), vec![]);
        let first = w.observe(&down);
        assert_eq!(
            first,
            vec![Change::SourceDown {
                source: LV.into(),
                error: format!("{LV} refused")
            }]
        );
        for _ in 0..5 {
            assert_eq!(w.observe(&down), vec![], "not every sample");
        }
        assert_eq!(
            w.observe(&up),
            vec![Change::SourceBack { source: LV.into() }]
        );
        assert_eq!(w.observe(&up), vec![]);
    }

    #[test]
    fn a_source_down_from_the_start_is_said_once() {
        let mut w = Watch::default();
        let down = sample(&[("host", true), (LV, false)], &[]);
        assert_eq!(w.observe(&down).len(), 1);
        assert_eq!(w.observe(&down), vec![]);
    }

    #[test]
    fn a_vm_read_failing_changing_and_recovering_is_one_line_per_change() {
        use ReadStatus::{Busy, Ok, TimedOut};
        let mut w = Watch::default();
        let s = |st| sample(&[(LV, true)], &[("a", Ok), ("b", st)]);
        assert_eq!(w.observe(&s(Ok)), vec![], "VMs read well are not news");
        let c = w.observe(&s(TimedOut));
        assert_eq!(
            c,
            vec![Change::VmNotRead {
                vm: key("b"),
                status: TimedOut,
                reason: "timed out because".into(),
                was: Some(Ok)
            }]
        );
        assert_eq!(w.observe(&s(TimedOut)), vec![], "same status, no line");
        let c = w.observe(&s(Busy));
        assert!(
            matches!(
                &c[..],
                [Change::VmNotRead {
                    status: Busy,
                    was: Some(TimedOut),
                    ..
                }]
            ),
            "{c:?}"
        );
        assert_eq!(
            w.observe(&s(Ok)),
            vec![Change::VmBack {
                vm: key("b"),
                was: Busy
            }]
        );
        assert_eq!(w.observe(&s(Ok)), vec![]);
    }

    #[test]
    fn a_vm_not_read_when_first_seen_is_said_once() {
        let mut w = Watch::default();
        let s = sample(&[(LV, true)], &[("c", ReadStatus::Unreachable)]);
        let c = w.observe(&s);
        assert!(
            matches!(&c[..], [Change::VmNotRead { was: None, .. }]),
            "{c:?}"
        );
        assert_eq!(w.observe(&s), vec![]);
    }
}
