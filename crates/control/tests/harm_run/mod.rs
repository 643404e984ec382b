//! The controller over one real guest, cycle by cycle, with a printed timeline: what the harm
//! tests (plain QEMU and libvirt) share.

#![allow(dead_code)] // Each test file uses its own part.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use memwarden_collector::Collector;
use memwarden_control::balloon::{Cycle, CycleReport};
use memwarden_hv::qmp::QmpClient;
use memwarden_hv::Scope;
use memwarden_lab::virsh;
use memwarden_model::units::MIB;
use memwarden_model::vm::VmSample;
use memwarden_policy::{Direction, HarmKind};

/// Where a test asks for the balloon's size.
pub enum Balloon {
    Qmp(PathBuf),
    Libvirt,
}

pub const CYCLE: Duration = Duration::from_secs(1);
pub const MAX: u64 = 512 * MIB;
pub const SHRUNK: u64 = 300 * MIB;

/// memwarden's policy, left to answer harm alone (see the module documentation).
pub fn policy() -> memwarden_policy::Config {
    memwarden_policy::Config {
        host_min_available_share: 0.0,
        host_min_available_bytes: 0,
        host_dead_band_bytes: u64::MAX / 4,
        psi_some_avg10_pct: 100.0,
        psi_full_avg10_pct: 100.0,
        ..memwarden_policy::Config::default()
    }
}

/// The controller over one guest, with a clock and a printed timeline.
pub struct Run {
    pub t0: Instant,
    pub collector: Collector,
    pub cycle: Cycle,
    pub name: String,
    /// Where the balloon's size is asked for, between cycles.
    pub balloon: Balloon,
    /// Every cycle's (seconds since start, sample of the guest, report).
    pub cycles: Vec<(f64, Option<VmSample>, CycleReport)>,
}

impl Run {
    pub fn s(&self) -> f64 {
        self.t0.elapsed().as_secs_f64()
    }

    pub fn note(&self, what: &str) {
        eprintln!("{:6.1} s  -- {what}", self.s());
    }

    /// One controller cycle, then a sleep to the next; prints what it saw and did.
    pub fn step(&mut self) -> usize {
        let started = Instant::now();
        let mut sample = self.collector.collect().expect("sample");
        sample.vms.retain(|v| v.name == self.name);
        let at = self.s();
        let view = memwarden_policy::View::of(sample);
        let report = self
            .cycle
            .step(&view, self.collector.hypervisor().map(|h| h as _));
        let vm = view.sample().vms.first().cloned();
        let b = vm.as_ref().map(|v| v.balloon.clone()).unwrap_or_default();
        let mib = |x: Option<u64>| x.map_or("-".into(), |x| format!("{}", x / MIB));
        let mut line = format!(
            "{at:6.1} s  actual {} MiB, stats at {}, oom_kills {:?}, minor_faults {:?}",
            mib(b.actual_bytes),
            b.last_update_unix_s.map_or(0, |t| t % 1000),
            b.oom_kills,
            b.minor_faults
        );
        for h in &report.plan.harm {
            line.push_str(&format!(
                "\n          HARM {}: {}",
                h.kind.as_str(),
                h.detail
            ));
        }
        for a in &report.applied {
            line.push_str(&format!(
                "\n          ACTION {:?} {} → {} MiB ({:?}): {}",
                a.action.direction,
                a.action.from_bytes / MIB,
                a.action.target_bytes / MIB,
                a.outcome,
                a.action.reason
            ));
        }
        // Why it was left alone, each time that changes.
        let skip = report
            .plan
            .skipped
            .iter()
            .find(|k| k.vm == self.name)
            .map(|k| k.reason.clone());
        let before = self.cycles.last().and_then(|c| {
            c.2.plan
                .skipped
                .iter()
                .find(|k| k.vm == self.name)
                .map(|k| k.reason.clone())
        });
        if let Some(why) = skip.filter(|w| Some(w) != before.as_ref()) {
            line.push_str(&format!("\n          LEFT ALONE: {why}"));
        }
        eprintln!("{line}");
        self.cycles.push((at, vm, report));
        std::thread::sleep(CYCLE.saturating_sub(started.elapsed()));
        self.cycles.len() - 1
    }

    /// Cycles until `f` holds (checked after each), at most `timeout`; the index of that cycle.
    pub fn until(
        &mut self,
        what: &str,
        timeout: Duration,
        mut f: impl FnMut(&Run) -> bool,
    ) -> usize {
        let t = Instant::now();
        loop {
            let i = self.step();
            if f(self) {
                return i;
            }
            assert!(
                t.elapsed() < timeout,
                "timed out after {timeout:?} waiting for {what}"
            );
        }
    }

    /// The balloon's size from QMP's own `query-balloon`, or `virsh dommemstat`'s `actual`
    /// (a connection of ours, between cycles).
    pub fn query_balloon(&self) -> u64 {
        match &self.balloon {
            Balloon::Qmp(path) => {
                let mut c = QmpClient::connect(path, Instant::now() + Duration::from_secs(5))
                    .expect("QMP connect");
                let r = c.execute("query-balloon", None).expect("query-balloon");
                r["actual"].as_u64().expect("actual")
            }
            Balloon::Libvirt => {
                let out = virsh(&["dommemstat", &self.name]).expect("virsh dommemstat");
                out.lines()
                    .find_map(|l| l.trim().strip_prefix("actual ")?.trim().parse::<u64>().ok())
                    .unwrap_or_else(|| panic!("no actual in {out:?}"))
                    * 1024
            }
        }
    }

    pub fn set_balloon(&mut self, bytes: u64) {
        self.note(&format!("balloon set by hand to {} MiB", bytes / MIB));
        let name = self.name.clone();
        self.collector
            .hypervisor()
            .expect("hypervisor")
            .set_memory(&name, bytes, Scope::LIVE)
            .expect("set_memory");
    }

    /// The first cycle from `from` on whose plan reports `kind` for this guest.
    pub fn harm_at(&self, from: usize, kind: HarmKind) -> Option<usize> {
        (from..self.cycles.len()).find(|i| {
            self.cycles[*i]
                .2
                .plan
                .harm
                .iter()
                .any(|h| h.vm == self.name && h.kind == kind)
        })
    }

    /// The growth cycle `i` applied to this guest: to its maximum, without error.
    pub fn assert_grown_back(&self, i: usize) {
        let grow = self.cycles[i]
            .2
            .applied
            .iter()
            .find(|a| a.action.vm == self.name)
            .expect("an action in the harm's cycle");
        assert_eq!(
            (
                grow.action.direction,
                grow.action.target_bytes,
                &grow.outcome
            ),
            (
                Direction::Grow,
                MAX,
                &memwarden_control::balloon::Outcome::Applied
            ),
            "{}",
            grow.action.reason
        );
    }

    /// Cycles from `from` on, and every action they applied.
    pub fn actions_since(&self, from: usize) -> Vec<(f64, &memwarden_control::balloon::Applied)> {
        self.cycles[from..]
            .iter()
            .flat_map(|(at, _, r)| r.applied.iter().map(move |a| (*at, a)))
            .collect()
    }
}

/// How many times the guest has printed `LAB-READY` (once per boot).
pub fn boots(serial_log: &Path) -> usize {
    std::fs::read(serial_log)
        .map(|b| String::from_utf8_lossy(&b).matches("LAB-READY").count())
        .unwrap_or(0)
}
