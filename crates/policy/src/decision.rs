//! What a plan says: the vocabulary of the controller's decisions (actions, skips, exposure,
//! harm, measurements) as plain data, with no decision in it. The planner (`plan`), the state
//! it leaves (`state`), harm detection (`harm`) and measurement (`measure`) all speak it, and
//! it depends on none of them.

use memwarden_model::units::{format_bytes, format_signed_bytes};
use serde::{Deserialize, Serialize};

use crate::host::HostView;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Grow,
    Shrink,
}

/// One balloon change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Action {
    /// The VM's name (`name` in JSON, as in `vms --json`).
    #[serde(rename = "name", alias = "vm")]
    pub vm: String,
    pub uuid: Option<String>,
    /// The balloon's size now (libvirt `actual`), bytes.
    pub from_bytes: u64,
    /// The size to set, bytes.
    pub target_bytes: u64,
    pub direction: Direction,
    /// Plain words, with the figures it came from.
    pub reason: String,
    /// What the host really gets back: QEMU-resident memory the guest held free or as cache
    /// (untouched pages give nothing). Negative for growth: what the host may have to find.
    pub expected_host_gain_bytes: i64,
    /// QEMU's RSS when the action was planned (to measure the real gain later).
    pub host_rss_bytes: Option<u64>,
    /// The guest's use and cache when the action was planned (to judge that measurement net
    /// of what the guest did meanwhile).
    #[serde(default)]
    pub guest_used_bytes: Option<u64>,
    #[serde(default)]
    pub guest_cache_bytes: Option<u64>,
}

/// How the reason of a grow that gives back an unpaid shrink begins.
pub const UNDO_REASON: &str = "undo:";

impl Action {
    /// A grow that gives back the part of an earlier shrink measured not to pay: a correction,
    /// not a change of mind (a judge of oscillation counts it apart).
    pub fn is_undo(&self) -> bool {
        self.direction == Direction::Grow && self.reason.starts_with(UNDO_REASON)
    }
}

/// A guest's exposure after this cycle: what it can allocate at once before growth could come.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Exposure {
    #[serde(rename = "name", alias = "vm")]
    pub vm: String,
    pub uuid: Option<String>,
    /// The balloon after this cycle's action, bytes.
    pub balloon_bytes: u64,
    pub max_bytes: u64,
    /// What it can allocate at once after this cycle (its MemAvailable at that balloon size).
    pub headroom_bytes: u64,
    /// The margin its floor keeps, and the largest burst it has shown.
    pub margin_bytes: u64,
    pub burst_seen_bytes: u64,
    pub deflate_on_oom: bool,
    /// QEMU's RSS this cycle, and the guest's use (the controller remembers the lowest RSS
    /// beyond the use it has seen).
    #[serde(default)]
    pub host_rss_bytes: Option<u64>,
    #[serde(default)]
    pub guest_used_bytes: Option<u64>,
    /// Ballooned below its maximum without deflate-on-oom: an allocation above `headroom_bytes`
    /// faster than one cycle meets the guest's OOM killer, not the balloon.
    pub exposed: bool,
}

/// A VM left alone this cycle, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Skip {
    #[serde(rename = "name", alias = "vm")]
    pub vm: String,
    pub uuid: Option<String>,
    pub reason: String,
}

/// The controller's decision for one cycle.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub taken_at_unix_ms: u64,
    pub actions: Vec<Action>,
    pub skipped: Vec<Skip>,
    /// The host figures the plan came from.
    pub host: HostView,
    /// Earlier shrinks measured this cycle.
    pub measured: Vec<Measured>,
    /// Host need (plus what pressured guests were granted) that no guest could safely cover,
    /// bytes of expected host gain.
    pub unmet_need_bytes: u64,
    /// Harm seen this cycle (each answered by a growth to the guest's maximum).
    #[serde(default)]
    pub harm: Vec<Harm>,
    /// Every guest judged this cycle, with what it can take at once afterwards.
    #[serde(default)]
    pub exposure: Vec<Exposure>,
}

/// What happened to the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HarmKind {
    /// Its kernel started again (counters reset): a reboot, or a panic that rebooted it.
    Reboot,
    /// libvirt or QEMU says it crashed (GUEST_PANICKED, pvpanic).
    Crash,
    /// Its kernel OOM-killed a process.
    OomKill,
    /// It swaps in or faults hard while the controller holds part of its memory.
    Thrash,
}

impl HarmKind {
    pub fn as_str(self) -> &'static str {
        match self {
            HarmKind::Reboot => "reboot",
            HarmKind::Crash => "crash",
            HarmKind::OomKill => "oom_kill",
            HarmKind::Thrash => "thrash",
        }
    }
}

/// One harm event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Harm {
    #[serde(rename = "name", alias = "vm")]
    pub vm: String,
    pub uuid: Option<String>,
    pub kind: HarmKind,
    /// What was seen, with its figures.
    pub detail: String,
    /// What the controller had done to this guest before, if anything.
    pub before: Option<String>,
    /// The balloon now, and the guest's maximum (what it is given back up to).
    pub actual_bytes: Option<u64>,
    pub max_bytes: Option<u64>,
    /// The extra margin its floor keeps from now on.
    pub margin_after_bytes: u64,
}

/// What an earlier shrink really gave the host: the drop in QEMU's RSS since.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Measured {
    #[serde(rename = "name", alias = "vm")]
    pub vm: String,
    pub uuid: Option<String>,
    /// The balloon change that was asked for, bytes.
    pub balloon_bytes: u64,
    /// QEMU RSS before − now, bytes (negative if it grew).
    pub host_gain_bytes: i64,
    /// How much the guest's use + cache rose meanwhile (0 if it fell), bytes; `None` when the
    /// figures at the shrink are not known.
    #[serde(default)]
    pub guest_rise_bytes: Option<u64>,
    /// Seconds between the shrink and this measurement.
    pub after_s: u64,
    /// QEMU RSS and the guest's use when measured: the efficiency holds while QEMU holds no
    /// more beyond the guest's use than it did then.
    #[serde(default)]
    pub rss_bytes: u64,
    #[serde(default)]
    pub guest_used_bytes: Option<u64>,
    /// Why the guest's own activity leaves the gain unknown; `None` when conclusive.
    #[serde(default)]
    pub inconclusive: Option<String>,
    /// Conclusive, and below `min_host_gain_share`: no more shrinks until the belief expires.
    #[serde(default)]
    pub too_little: bool,
    /// Conclusive, and below half of `min_host_gain_share`: next to nothing came back, so the
    /// shrink is undone (the guest's headroom bought nothing).
    #[serde(default)]
    pub fruitless: bool,
    /// Conclusive, and below `min_host_gain_share`: the part of the balloon that did not pay
    /// (the balloon less the RSS drop ÷ the share), given back to the guest so that what stays
    /// taken gave the host at least the share; 0 when it paid, when inconclusive, or when the
    /// part is under `min_change_bytes`.
    #[serde(default)]
    pub undo_bytes: u64,
    /// QEMU's RSS beyond the guest's use (`state::spare`) below which shrinks of this guest
    /// stopped paying, after this measurement: set by a conclusive shrink that paid too little,
    /// kept by one that paid above it or by an inconclusive one, dropped by one that paid below
    /// it; `None` when unknown.
    #[serde(default)]
    pub dry_spare_bytes: Option<u64>,
}

impl Measured {
    /// Host gain per balloon byte, 0–1 (the bracket's lower end).
    pub fn efficiency(&self) -> f64 {
        if self.balloon_bytes == 0 {
            return 0.0;
        }
        (self.host_gain_bytes as f64 / self.balloon_bytes as f64).clamp(0.0, 1.0)
    }

    /// One line for logs.
    pub fn line(&self) -> String {
        let verdict = match (&self.inconclusive, self.fruitless, self.too_little) {
            (Some(why), _, _) => format!("inconclusive: {why}"),
            (None, true, _) => "next to nothing: undone".into(),
            (None, false, true) if self.undo_bytes > 0 => format!(
                "too little: {} that did not pay given back; no more shrinks while that is \
                 believed",
                format_bytes(self.undo_bytes)
            ),
            (None, false, true) => "too little: no more shrinks while that is believed".into(),
            (None, false, false) => "worth it".into(),
        };
        format!(
            "{}: shrink of {} {} s ago: QEMU RSS {} ({:.0}% of the balloon); {verdict}",
            self.vm,
            format_bytes(self.balloon_bytes),
            self.after_s,
            memwarden_model::units::format_signed_bytes(i128::from(-self.host_gain_bytes)),
            self.efficiency() * 100.0
        )
    }
}

impl Plan {
    /// One line per action and skip, for logs and the CLI's plain output.
    pub fn lines(&self) -> Vec<String> {
        let mut out = vec![self.host.why.clone()];
        for a in &self.actions {
            out.push(format!(
                "{} {:?} {} → {} (host {}): {}",
                a.vm,
                a.direction,
                format_bytes(a.from_bytes),
                format_bytes(a.target_bytes),
                format_signed_bytes(a.expected_host_gain_bytes.into()),
                a.reason
            ));
        }
        for s in &self.skipped {
            out.push(format!("{} skipped: {}", s.vm, s.reason));
        }
        out
    }
}
