//! What a shrink really gave the host, judged net of what the guest itself did meanwhile.
//!
//! The drop in QEMU's RSS over the settle time is the balloon's gain plus whatever the guest did:
//! pages it touched for the first time raise RSS (a fill, or a touch-and-free the two snapshots
//! cannot see), pages it freed stay resident. So the measurement brackets the gain: at least the
//! RSS drop, at most the drop plus the rise in the guest's use and cache. It is conclusive only
//! when the whole bracket is on one side of `min_host_gain_share`, and never when QEMU's RSS
//! grew (the guest touched memory the snapshots do not show): an inconclusive measurement is no
//! belief at all, neither good nor bad, and the next shrink is judged as if none was made.

use memwarden_analysis::vm::figures;
use memwarden_model::units::format_bytes;
use memwarden_model::vm::VmSample;
use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::history::key_of;
use crate::state::State;

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
    /// QEMU RSS when measured: the efficiency holds while the QEMU holds no more than this.
    #[serde(default)]
    pub rss_bytes: u64,
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

/// RSS moves by a few MiB on its own (QEMU's heap, TCG's code cache): a rise smaller than this
/// share of the minimum change is noise, not the guest touching memory.
const RSS_NOISE_SHARE_OF_MIN_CHANGE: f64 = 0.25;

/// The RSS drop since a pending shrink, once it has had `settle_s` to happen.
pub fn measure(vm: &VmSample, state: &State, cfg: &Config, now: u64) -> Option<Measured> {
    let pending = state.get(&key_of(vm.uuid.as_deref(), &vm.name))?.pending?;
    let after_s = now.saturating_sub(pending.at_unix_ms) / 1000;
    if after_s < cfg.settle_s {
        return None;
    }
    let f = figures(vm);
    let rss = f.host_rss_bytes?;
    let drop = (i128::from(pending.rss_before_bytes) - i128::from(rss))
        .clamp(i64::MIN.into(), i64::MAX.into()) as i64;
    let both = |a: Option<u64>, b: Option<u64>| a.zip(b).map(|(a, b)| a.saturating_add(b));
    let rise = match (
        both(pending.used_before_bytes, pending.cache_before_bytes),
        both(f.guest_used_bytes, f.guest_cache_bytes),
    ) {
        (Some(then), Some(now)) => Some(now.saturating_sub(then)),
        _ => None,
    };
    let balloon = pending.balloon_bytes.max(1) as f64;
    let low = drop as f64 / balloon;
    let high = (drop as f64 + rise.unwrap_or(0) as f64) / balloon;
    let share = cfg.min_host_gain_share;
    let noise = (cfg.min_change_bytes as f64 * RSS_NOISE_SHARE_OF_MIN_CHANGE) as i64;
    let inconclusive = if drop < -noise {
        Some(format!(
            "QEMU's RSS grew by {} meanwhile: the guest touched memory it had not before, which \
             hides what the balloon gave",
            format_bytes(drop.unsigned_abs())
        ))
    } else if rise.is_none() && low < share {
        Some("the guest's use and cache at the shrink are not known".into())
    } else if low < share && high >= share {
        Some(format!(
            "the guest's use and cache rose by {} meanwhile: the gain is between {:.0}% and \
             {:.0}% of the balloon",
            format_bytes(rise.unwrap_or(0)),
            low.max(0.0) * 100.0,
            high.min(1.0) * 100.0
        ))
    } else {
        None
    };
    let unpaid = if inconclusive.is_none() && low < share && share > 0.0 {
        let kept = (drop.max(0) as f64 / share).min(balloon) as u64;
        pending.balloon_bytes.saturating_sub(kept)
    } else {
        0
    };
    Some(Measured {
        undo_bytes: if unpaid >= cfg.min_change_bytes {
            unpaid
        } else {
            0
        },
        vm: vm.name.clone(),
        uuid: vm.uuid.clone(),
        balloon_bytes: pending.balloon_bytes,
        host_gain_bytes: drop,
        guest_rise_bytes: rise,
        after_s,
        rss_bytes: rss,
        too_little: inconclusive.is_none() && low < share,
        fruitless: inconclusive.is_none() && high < share / 2.0,
        inconclusive,
    })
}
