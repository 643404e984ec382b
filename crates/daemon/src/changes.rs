//! What the log must say about reading the VMs, once per change and never every sample: a VM
//! source (libvirt, QMP) that cannot be read or is read again, a VM whose read fails (with its
//! status and reason) or recovers, and a VM that is gone: listed before, not listed now by a
//! source that was read (its QEMU killed, its domain destroyed or undefined). The figures
//! themselves are on /metrics (`memwarden_source_success`, `memwarden_vm_read_status`); the
//! log says when they changed, and a gone VM, which leaves no series behind, is also a
//! [`GONE_EVENT`] in the store's events.
//!
//! [`Watch::observe`] is pure: it compares a sample with what the previous ones showed and
//! returns the changes; [`log`] and [`record`] write them.

use std::collections::{BTreeMap, BTreeSet};

use memwarden_model::vm::ReadStatus;
use memwarden_model::Sample;
use memwarden_store::Store;
use tracing::{info, warn};

/// The store's event for a VM that is gone.
pub const GONE_EVENT: &str = "vm_gone";

/// A VM as the log and /metrics tell it apart: its name and, when known, its UUID.
pub type VmKey = (String, Option<String>);

/// One change worth a log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A source was not read (first seen so, or it was read before).
    SourceDown { source: String, error: String },
    /// A source that was not read is read again.
    SourceBack { source: String },
    /// A VM source is reached through `transport` (its first connection, or a different
    /// transport than before): which path runs is never silent.
    Transport { source: String, transport: String },
    /// A VM's read failed (first seen so, or its status changed): `was` is the status before.
    VmNotRead {
        vm: VmKey,
        status: ReadStatus,
        reason: String,
        was: Option<ReadStatus>,
    },
    /// A VM whose read had failed is read again.
    VmBack { vm: VmKey, was: ReadStatus },
    /// A VM listed before is not listed now, by a source that was read: `source` is the source
    /// that listed it, `at` its libvirt URI or QMP socket, `last` its last read status.
    VmGone {
        vm: VmKey,
        source: String,
        at: String,
        last: ReadStatus,
    },
}

/// A VM as last seen.
#[derive(Debug)]
struct Seen {
    status: ReadStatus,
    /// The source that listed it (`libvirt qemu:///system`, `qmp`).
    source: String,
    /// Its libvirt URI or QMP socket.
    at: String,
}

/// What the previous samples showed.
#[derive(Debug, Default)]
pub struct Watch {
    /// Each source's success, as last seen.
    sources: BTreeMap<String, bool>,
    /// Each VM source's transport, as last seen.
    transports: BTreeMap<String, String>,
    /// Each VM as last seen.
    vms: BTreeMap<VmKey, Seen>,
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
            if let Some(t) = &s.transport {
                if self.transports.insert(s.name.clone(), t.clone()).as_ref() != Some(t) {
                    out.push(Change::Transport {
                        source: s.name.clone(),
                        transport: t.clone(),
                    });
                }
            }
        }
        // The VM sources (the host is the other source); the collector has one at most.
        let mut listing = sample.sources.iter().filter(|s| s.name != HOST);
        let lister = listing
            .clone()
            .next()
            .map_or("the hypervisor", |s| s.name.as_str());
        // A source that was not read listed nothing: its VMs are not gone, only unseen.
        let listed_all = listing.all(|s| s.ok);
        let mut now = BTreeSet::new();
        for v in &sample.vms {
            let key = (v.name.clone(), v.uuid.clone());
            let status = v.read.status;
            now.insert(key.clone());
            let seen = Seen {
                status,
                source: lister.to_string(),
                at: v.source.clone(),
            };
            let was = self.vms.insert(key.clone(), seen).map(|s| s.status);
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
        if listed_all {
            let gone: Vec<VmKey> = self
                .vms
                .keys()
                .filter(|k| !now.contains(*k))
                .cloned()
                .collect();
            for key in gone {
                if let Some(s) = self.vms.remove(&key) {
                    out.push(Change::VmGone {
                        vm: key,
                        source: s.source,
                        at: s.at,
                        last: s.status,
                    });
                }
            }
        }
        out
    }
}

/// The host's source name in a sample.
const HOST: &str = "host";

/// How many of the changes are a VM gone (counted on /metrics: a gone VM leaves no series).
pub fn gone(changes: &[Change]) -> u64 {
    changes
        .iter()
        .filter(|c| matches!(c, Change::VmGone { .. }))
        .count() as u64
}

/// One line per change: a failure or a VM gone at WARN, a recovery at INFO.
pub fn log(changes: &[Change]) {
    for c in changes {
        match c {
            Change::SourceDown { source, error } => warn!(
                error = %error,
                "VM source not read: {source}; its VMs are missing until it is read again"
            ),
            Change::SourceBack { source } => info!("VM source recovered: {source} is read again"),
            Change::Transport { source, transport } => {
                info!(transport = %transport, "VM source {source} reached through {transport}")
            }
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
            Change::VmGone {
                vm,
                source,
                at,
                last,
            } => warn!(
                uuid = vm.1.as_deref(),
                at = %at,
                last_read = %last.as_str(),
                "VM {} is gone: not listed by {source} any more",
                vm.0
            ),
        }
    }
}

/// Each gone VM as a [`GONE_EVENT`] in the store (when it is open; the log has it anyway).
pub fn record(store: Option<&mut Store>, at_unix_ms: u64, changes: &[Change]) {
    let Some(store) = store else { return };
    for c in changes {
        let Change::VmGone {
            vm,
            source,
            at,
            last,
        } = c
        else {
            continue;
        };
        let data = serde_json::json!({
            "domain": vm.0,
            "uuid": vm.1,
            "source": source,
            "at": at,
            "last_read": last,
        });
        if let Err(e) = store.append_event(at_unix_ms, GONE_EVENT, &data) {
            warn!(error = %crate::report::chain(&e), "VM {} gone: event not recorded in the history", vm.0);
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
            transport: None,
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

    /// The transport a source is reached through is said at its first connection and when it
    /// changes, not every sample, and not while it is unknown (not connected).
    #[test]
    fn the_transport_is_said_once_and_again_when_it_changes() {
        let mut w = Watch::default();
        let with = |t: Option<&str>| {
            let mut s = sample(&[("host", true), (LV, true)], &[]);
            s.sources[1].transport = t.map(String::from);
            s
        };
        let said = |t: &str| {
            vec![Change::Transport {
                source: LV.into(),
                transport: t.into(),
            }]
        };
        assert_eq!(w.observe(&with(None)), vec![]);
        assert_eq!(w.observe(&with(Some("rpc"))), said("rpc"));
        assert_eq!(w.observe(&with(Some("rpc"))), vec![]);
        assert_eq!(w.observe(&with(None)), vec![], "unknown is not a change");
        assert_eq!(w.observe(&with(Some("libvirt.so"))), said("libvirt.so"));
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
    fn a_vm_no_longer_listed_is_gone_once_but_not_while_its_source_is_down() {
        use ReadStatus::{Ok, TimedOut};
        let mut w = Watch::default();
        let both = sample(&[(LV, true)], &[("a", Ok), ("b", TimedOut)]);
        let _ = w.observe(&both);
        // libvirtd down: nothing listed, nothing gone.
        let down = sample(&[(LV, false)], &[]);
        let c = w.observe(&down);
        assert!(matches!(&c[..], [Change::SourceDown { .. }]), "{c:?}");
        assert_eq!(gone(&c), 0);
        assert_eq!(w.observe(&down), vec![]);
        // Back, and b was destroyed meanwhile.
        let only_a = sample(&[(LV, true)], &[("a", Ok)]);
        let c = w.observe(&only_a);
        assert_eq!(
            c,
            vec![
                Change::SourceBack { source: LV.into() },
                Change::VmGone {
                    vm: key("b"),
                    source: LV.into(),
                    at: String::new(),
                    last: TimedOut
                }
            ]
        );
        assert_eq!(gone(&c), 1, "counted on /metrics");
        assert_eq!(w.observe(&only_a), vec![], "gone once");
        // A VM of the same name that comes back is a VM like any other.
        assert_eq!(w.observe(&both).len(), 1, "b not read: said again");
    }

    #[test]
    fn a_gone_vm_is_an_event_in_the_store() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("h.db");
        let mut store = Store::open(&db).expect("store");
        let gone = Change::VmGone {
            vm: key("b"),
            source: "qmp".into(),
            at: "/run/b.qmp".into(),
            last: ReadStatus::Ok,
        };
        record(Some(&mut store), 1_000, &[gone]);
        let events = store.events(GONE_EVENT, 0, u64::MAX).expect("events");
        assert_eq!(events.len(), 1);
        let (t, v) = &events[0];
        assert_eq!(*t, 1_000);
        assert_eq!(v["domain"], "b");
        assert_eq!(v["uuid"], "u-b");
        assert_eq!(v["source"], "qmp");
        assert_eq!(v["at"], "/run/b.qmp");
        assert_eq!(v["last_read"], "ok");
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
