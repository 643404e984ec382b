//! What a shrink really gave the host, judged net of what the guest itself did meanwhile.
//!
//! The drop in QEMU's RSS over the settle time is the balloon's gain plus whatever the guest did:
//! pages it touched for the first time raise RSS (a fill, or a touch-and-free the two snapshots
//! cannot see), pages it freed stay resident. So the measurement brackets the gain: at least the
//! RSS drop, at most the drop plus the rise in the guest's use and cache. It is conclusive only
//! when the whole bracket is on one side of `min_host_gain_share`, and never when QEMU's RSS
//! grew (the guest touched memory the snapshots do not show): an inconclusive measurement is no
//! belief at all, neither good nor bad, and the next shrink is judged as if none was made.

use memwarden_analysis::vm::VmReport;
use memwarden_model::units::format_bytes;

use crate::config::Config;
use crate::decision::Measured;
use crate::history::key_of;
use crate::state::{spare, State};

/// RSS moves by a few MiB on its own (QEMU's heap, TCG's code cache): a rise smaller than this
/// share of the minimum change is noise, not the guest touching memory.
const RSS_NOISE_SHARE_OF_MIN_CHANGE: f64 = 0.25;

/// The RSS drop since a pending shrink, once it has had `settle_s` to happen.
pub fn measure(r: &VmReport, state: &State, cfg: &Config, now: u64) -> Option<Measured> {
    let vm = r.vm;
    let record = state.get(&key_of(vm.uuid.as_deref(), &vm.name))?;
    let pending = record.pending?;
    let after_s = now.saturating_sub(pending.at_unix_ms) / 1000;
    if after_s < cfg.settle_s {
        return None;
    }
    let f = &r.figures;
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
    let too_little = inconclusive.is_none() && low < share;
    let spare_now = f.guest_used_bytes.map(|u| spare(rss, u));
    let dry_spare_bytes = match (inconclusive.is_none(), too_little, spare_now) {
        (true, true, now) => now,
        // Paid from below the level where shrinks stopped paying: that level was wrong.
        (true, false, Some(now))
            if record
                .dry_spare_bytes
                .is_some_and(|d| now.saturating_add(cfg.min_change_bytes) < d) =>
        {
            None
        }
        _ => record.dry_spare_bytes,
    };
    Some(Measured {
        dry_spare_bytes,
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
        guest_used_bytes: f.guest_used_bytes,
        too_little,
        fruitless: inconclusive.is_none() && high < share / 2.0,
        inconclusive,
    })
}
