//! Who gives first when the host needs memory back, and what each gives the host.
//!
//! Order: guests without free page reporting first (a guest with it on already hands its free
//! pages back by itself: ballooning it only takes its cache), then the most idle memory per
//! share (a guest with twice the share gives as if it had half the idle memory), then by name so
//! that the same input always gives the same order.

use std::cmp::Ordering;

use crate::config::Config;
use crate::guest::GuestView;

/// A guest that may be shrunk, with how far and what the host would get.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate<'a> {
    pub view: &'a GuestView,
    /// The most it may give (idle memory, above its floor, within the step where one applies).
    pub give_bytes: u64,
    /// Resident guest memory QEMU holds beyond the guest's use: the most the host can gain.
    pub resident_idle_bytes: u64,
    /// Host gain per balloon byte: measured on this VM's last shrink, else 1.
    pub efficiency: f64,
    /// A small shrink to learn whether the balloon reaches memory QEMU backs.
    pub probe: bool,
}

impl Candidate<'_> {
    pub fn new<'a>(
        view: &'a GuestView,
        give_bytes: u64,
        cfg: &Config,
        efficiency: Option<f64>,
    ) -> Candidate<'a> {
        Candidate {
            view,
            give_bytes,
            resident_idle_bytes: view.resident_idle_bytes(cfg).unwrap_or(0),
            efficiency: efficiency.unwrap_or(1.0).clamp(0.0, 1.0),
            probe: false,
        }
    }

    /// What the host gets back when the balloon takes `bytes`: the balloon takes free pages
    /// and cache, but only those QEMU has made resident come back to the host.
    pub fn gain(&self, bytes: u64) -> u64 {
        (bytes.min(self.resident_idle_bytes) as f64 * self.efficiency) as u64
    }

    /// The smallest balloon change (≤ `give_bytes`) that gives the host `want` bytes, or
    /// `give_bytes` when it cannot.
    pub fn bytes_for(&self, want: u64) -> u64 {
        if self.efficiency <= 0.0 {
            return self.give_bytes;
        }
        let need = (want as f64 / self.efficiency).ceil() as u64;
        need.min(self.give_bytes)
    }
}

/// Orders candidates: who gives first comes first.
pub fn rank(c: &mut [Candidate<'_>]) {
    c.sort_by(|a, b| order(a.view, b.view));
}

/// Who gives first: `Less` when `a` does.
pub fn order(a: &GuestView, b: &GuestView) -> Ordering {
    a.free_page_reporting
        .cmp(&b.free_page_reporting)
        .then_with(|| {
            // idle_b / share_b vs idle_a / share_a, exactly, descending.
            let ka = u128::from(a.idle_bytes) * u128::from(b.share);
            let kb = u128::from(b.idle_bytes) * u128::from(a.share);
            kb.cmp(&ka)
        })
        .then_with(|| a.name.cmp(&b.name))
        .then_with(|| a.uuid.cmp(&b.uuid))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::History;
    use crate::tests::fixtures::{guest, judge_vm};
    use memwarden_model::units::MIB;

    fn view(name: &str, usable_mib: u64, share: u32, fpr: bool) -> GuestView {
        let mut vm = guest(name, 2048, 2048, usable_mib);
        vm.device.free_page_reporting = Some(fpr);
        let mut cfg = Config::default();
        cfg.shares.insert(name.into(), share);
        judge_vm(&vm, &History::default(), &cfg, None).expect("eligible")
    }

    #[test]
    fn most_idle_per_share_first_and_free_page_reporting_last() {
        let cfg = Config::default();
        let views = [
            view("a", 1000, 1000, false),
            view("b", 1500, 1000, false),
            view("c", 1500, 4000, false),
            view("d", 1900, 1000, true),
        ];
        let mut c: Vec<_> = views
            .iter()
            .map(|v| Candidate::new(v, 0, &cfg, None))
            .collect();
        rank(&mut c);
        let names: Vec<_> = c.iter().map(|c| c.view.name.as_str()).collect();
        assert_eq!(names, ["b", "a", "c", "d"]);
    }

    #[test]
    fn gain_is_bounded_by_resident_memory_and_efficiency() {
        let cfg = Config::default();
        let v = view("a", 1000, 1000, false);
        let c = Candidate {
            resident_idle_bytes: 100 * MIB,
            ..Candidate::new(&v, 300 * MIB, &cfg, Some(0.5))
        };
        assert_eq!(c.gain(50 * MIB), 25 * MIB);
        assert_eq!(c.gain(300 * MIB), 50 * MIB);
        assert_eq!(c.bytes_for(20 * MIB), 40 * MIB);
        assert_eq!(c.bytes_for(900 * MIB), 300 * MIB);
    }
}
