//! The KSM tuner's configuration: the `[ksm]` section of memwarden's TOML config.
//!
//! Every key has a default (the classic ones are ksmtuned's and oVirt MOM's published
//! defaults), so an empty section is a working configuration; unknown keys are refused. The doc
//! comment of each field is what the README's configuration reference quotes.

use memwarden_model::units::MIB;
use serde::{Deserialize, Serialize};

/// A `[ksm]` value that cannot work, with the key that holds it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum KsmConfigError {
    #[error("[ksm] {key} = {value}: must be between {min} and {max}")]
    OutOfRange {
        key: &'static str,
        value: f64,
        min: f64,
        max: f64,
    },
    #[error("[ksm] pages_min = {min} must not exceed pages_max = {max}")]
    PagesCrossed { min: u64, max: u64 },
}

/// `[ksm]`: when KSM runs and how fast it scans.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KsmConfig {
    /// Let `memwarden serve` write /sys/kernel/mm/ksm each interval. Off by default: KSM trades
    /// CPU for memory and opens a cross-VM timing side channel, a choice for the operator.
    /// `memwarden ksm --tune` prints the plan whatever this says.
    pub tune: bool,
    /// KSM runs when the host's free memory (MemAvailable) falls below this share of MemTotal,
    /// or when memory committed to VMs plus this share exceeds MemTotal (ksmtuned's
    /// KSM_THRES_COEF, MOM's ksm_free_percent). Default 0.20.
    pub threshold_share: f64,
    /// The threshold is at least this many bytes (ksmtuned's KSM_THRES_CONST). Default 2 MiB.
    pub threshold_min_bytes: u64,
    /// pages_to_scan grows by this much per interval while free memory is below the threshold
    /// (ksmtuned's KSM_NPAGES_BOOST). Default 300.
    pub pages_boost: u64,
    /// pages_to_scan shrinks by this much per interval otherwise (ksmtuned's KSM_NPAGES_DECAY,
    /// there written as -50). Default 50.
    pub pages_decay: u64,
    /// pages_to_scan never goes below this (ksmtuned's KSM_NPAGES_MIN). Default 64.
    pub pages_min: u64,
    /// pages_to_scan never goes above this (ksmtuned's KSM_NPAGES_MAX). Default 1250.
    pub pages_max: u64,
    /// sleep_millisecs for a 16 GiB host; larger hosts sleep proportionally less, smaller ones
    /// more (ksmtuned's KSM_SLEEP_MSEC, MOM's ksm_sleep_ms_baseline). Default 10.
    pub sleep_ms_per_16gib: u64,
    /// sleep_millisecs never goes below this (ksmtuned's floor). Default 10.
    pub sleep_min_ms: u64,
    /// On kernels with KSM's scan-time advisor (`advisor_mode`, Linux 6.8+), hand the pace to
    /// it (advisor_mode = scan-time) instead of setting pages_to_scan. Default true.
    pub use_advisor: bool,
    /// The advisor's target time for one full scan of mergeable memory, seconds
    /// (advisor_target_scan_time). Default 200, the kernel's.
    pub advisor_target_scan_time_s: u64,
    /// Most of one CPU ksmd may use, percent: written as advisor_max_cpu on advisor kernels;
    /// elsewhere pages_to_scan is scaled down when ksmd's measured share exceeds it. Default 20
    /// (the kernel's advisor default, 70, is a lot on a small host).
    pub max_cpu_percent: f64,
    /// The cost rule: after a full scan, KSM must save at least this many bytes (general_profit,
    /// else pages_sharing × page size) for each percent of one CPU ksmd spends, or it is stopped
    /// and not started again for `retry_after_s`. Default 40 MiB: a vCPU is priced like 4 GiB of
    /// RAM on common cloud instance types, so 1 % of a CPU is worth about 40 MiB.
    pub min_saved_bytes_per_cpu_percent: u64,
    /// ksmd's CPU share is measured over at least this long, seconds, and over at least one
    /// full scan, before the cost rule judges. Default 300.
    pub cost_window_s: u64,
    /// After the cost rule stopped KSM, seconds before it may be started again. Default 3600.
    pub retry_after_s: u64,
}

impl Default for KsmConfig {
    fn default() -> Self {
        KsmConfig {
            tune: false,
            threshold_share: 0.20,
            threshold_min_bytes: 2 * MIB,
            pages_boost: 300,
            pages_decay: 50,
            pages_min: 64,
            pages_max: 1250,
            sleep_ms_per_16gib: 10,
            sleep_min_ms: 10,
            use_advisor: true,
            advisor_target_scan_time_s: 200,
            max_cpu_percent: 20.0,
            min_saved_bytes_per_cpu_percent: 40 * MIB,
            cost_window_s: 300,
            retry_after_s: 3600,
        }
    }
}

impl KsmConfig {
    /// Checks what serde cannot: shares and percentages in range, min ≤ max.
    pub fn validate(&self) -> Result<(), KsmConfigError> {
        for (key, value, max) in [
            ("threshold_share", self.threshold_share, 1.0),
            ("max_cpu_percent", self.max_cpu_percent, 100.0),
        ] {
            // `!(..)` so that NaN is refused too.
            if !(0.0..=max).contains(&value) {
                return Err(KsmConfigError::OutOfRange {
                    key,
                    value,
                    min: 0.0,
                    max,
                });
            }
        }
        if self.pages_min > self.pages_max {
            return Err(KsmConfigError::PagesCrossed {
                min: self.pages_min,
                max: self.pages_max,
            });
        }
        Ok(())
    }
}
