//! The balloon controller's configuration: the `[balloon]` section of memwarden's TOML config.
//!
//! Every key has a default, so an empty section is a working configuration; unknown keys are
//! refused (a misspelt threshold must not silently fall back to its default). The doc comment of
//! each field is what the README's configuration reference quotes.

use std::collections::BTreeMap;

use memwarden_model::units::{GIB, MIB};
use serde::{Deserialize, Serialize};

/// A configuration value that cannot work, with the key that holds it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConfigError {
    #[error("[balloon] {key} = {value}: must be between {min} and {max}")]
    OutOfRange {
        key: &'static str,
        value: f64,
        min: f64,
        max: f64,
    },
    #[error(
        "[balloon] guest_usable_low_share = {low} must be below guest_usable_high_share = {high} \
         (the band between them is what keeps the controller from oscillating)"
    )]
    WatermarksCrossed { low: f64, high: f64 },
    #[error("[balloon] shares.{vm} = 0: a share must be at least 1 (list the VM in `manual` to leave it alone)")]
    ZeroShare { vm: String },
}

/// `[balloon]`: when and how far the controller moves each guest's balloon.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// `memwarden serve` runs the controller every sample. Off by default: ballooning changes
    /// what guests have, and an operator turns it on knowingly. (`memwarden balance` plans
    /// whatever this says.)
    pub enabled: bool,
    /// `memwarden serve` plans every cycle, logs and counts the plan, and changes nothing.
    pub dry_run: bool,
    /// Host target: keep the host's MemAvailable at or above this share of its MemTotal
    /// (0.0–1.0). Below it the host is under pressure and idle guests are shrunk. Default 0.15.
    pub host_min_available_share: f64,
    /// Host target in bytes; the target is the larger of this and the share. Default 0 (the
    /// share alone decides).
    pub host_min_available_bytes: u64,
    /// Dead band above the host target, bytes. Between target and target + band nothing is
    /// shrunk and nothing is given back; above target + band, balloons are deflated again.
    /// Default 256 MiB.
    pub host_dead_band_bytes: u64,
    /// Host PSI `memory some` avg10 (percent of time some task stalled on memory) at or above
    /// which the host counts as under pressure, whatever its MemAvailable. Default 10.
    pub psi_some_avg10_pct: f64,
    /// Host PSI `memory full` avg10 (percent of time all tasks stalled) at or above which the
    /// host counts as under pressure. Default 2.
    pub psi_full_avg10_pct: f64,
    /// Low watermark of a guest's usable share (MemAvailable over the guest's own memory,
    /// balloon excluded). Below it the guest is under pressure and is grown at once. Default 0.10.
    pub guest_usable_low_share: f64,
    /// High watermark of the usable share. A guest is only shrunk down to this share, and a
    /// guest under pressure is grown back up to it; the gap to the low watermark is the guest
    /// side's hysteresis. Default 0.25.
    pub guest_usable_high_share: f64,
    /// Guest major faults per second at or above which a guest whose usable share is below the
    /// high watermark counts as under pressure (above it, faults are file reads, not a shortage).
    /// Default 100.
    pub guest_major_faults_per_s: f64,
    /// Guest swap-in, bytes per second, at or above which the guest is under pressure.
    /// Default 1 MiB.
    pub guest_swap_in_bytes_per_s: u64,
    /// How far ahead a filling guest is judged, in controller cycles (plus the age of its
    /// statistics): a guest whose use grew by R bytes a second is judged as if it had already
    /// used R × (this × the cycle + the statistics' age) more, so that it is grown before it
    /// runs out between two looks, and not shrunk into its own fill. 0 judges the present only.
    /// Default 2.
    pub guest_fill_lookahead_cycles: f64,
    /// Headroom kept above a guest's current use when shrinking: the floor is the guest's use,
    /// plus what its kernel keeps out of MemTotal, plus this (as `memwarden setmem --margin`),
    /// and never below libvirt's `<min_guarantee>`. Default 128 MiB.
    pub margin_bytes: u64,
    /// The floor's margin for a guest without deflate-on-oom is `margin_bytes` times this: its
    /// balloon cannot give pages back when an allocation outruns the controller, so its OOM
    /// killer acts instead. Default 1.5.
    pub margin_without_deflate_on_oom_factor: f64,
    /// The floor's margin is at least this multiple of the largest rise in use the guest has
    /// shown between two statistics updates (its recorded bursts). Default 1.25.
    pub margin_burst_factor: f64,
    /// Largest shrink of one guest in one cycle, bytes. Default 1 GiB: memory the host backs
    /// and the guest holds free is taken in as few cycles as the floor allows.
    pub max_shrink_step_bytes: u64,
    /// Largest shrink of one guest in one cycle, as a share of its maximum memory; the smaller
    /// of the two limits applies. Default 0.5.
    pub max_shrink_step_share: f64,
    /// A shrink is made only when the host gain expected from it is at least this share of the
    /// balloon it takes (QEMU-resident free and cache pages, times what the VM's last shrink
    /// really gave). A VM whose shrink was measured below it is not shrunk again until that
    /// belief expires (then probed); one measured below half of it is given the balloon back
    /// at once. Default 0.5.
    pub min_host_gain_share: f64,
    /// How long what a shrink really gave the host (a measured gain per balloon byte) is
    /// believed, seconds; then the VM is probed again. Default 300.
    pub belief_ttl_s: u64,
    /// Size of a probe: the first shrink of a VM no measurement is believed of (never measured,
    /// harmed since, or measured below `min_host_gain_share` and that belief expired with its
    /// QEMU no larger). Once a probe shows the balloon reaches memory QEMU backs, shrinks take
    /// all that may go. Default 32 MiB.
    pub probe_bytes: u64,
    /// After harm to a guest (a reboot, an OOM kill, a crash, swapping or faulting under a
    /// shrink) it is grown back to its maximum and not shrunk for this long, seconds; its
    /// floor's margin is doubled (at most a quarter of its maximum). Default 600.
    pub harm_backoff_s: u64,
    /// Largest growth of one guest in one cycle, bytes. Generous: a filling guest must not wait.
    /// Default 1 GiB.
    pub max_grow_step_bytes: u64,
    /// Largest growth of one guest in one cycle, as a share of its maximum memory. Default 0.5.
    pub max_grow_step_share: f64,
    /// Changes smaller than this are not worth a balloon operation (a guest under pressure is
    /// grown by at least this much instead). Default 16 MiB.
    pub min_change_bytes: u64,
    /// Seconds that must pass after an action on a VM before the controller moves that VM the
    /// other way (a guest under pressure is grown at once regardless). Default 20: long enough
    /// for a fill to show, short enough that memory a guest freed is taken back within 30 s.
    pub min_reverse_interval_s: u64,
    /// Seconds between two shrinks of the same VM: the time its QEMU process needs to give the
    /// pages back, so that the drop in RSS can be measured before asking for more. Default 10.
    pub settle_s: u64,
    /// QEMU's own resident memory (device emulation, TCG, its heap), bytes: subtracted from
    /// QEMU RSS − guest use when estimating what a shrink gives the host. Default 64 MiB.
    pub qemu_overhead_bytes: u64,
    /// Share of a VM that has no entry in `shares`. Default 1000 (as Proxmox).
    pub default_share: u32,
    /// Per-VM shares by VM name: a VM with twice the share gives half as much when guests are
    /// shrunk. `shares = { db1 = 2000 }`.
    pub shares: BTreeMap<String, u32>,
    /// VMs the controller leaves alone (by name): their balloons are set by hand.
    pub manual: Vec<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            enabled: false,
            dry_run: false,
            host_min_available_share: 0.15,
            host_min_available_bytes: 0,
            host_dead_band_bytes: 256 * MIB,
            psi_some_avg10_pct: 10.0,
            psi_full_avg10_pct: 2.0,
            guest_usable_low_share: 0.10,
            guest_usable_high_share: 0.25,
            guest_major_faults_per_s: 100.0,
            guest_swap_in_bytes_per_s: MIB,
            guest_fill_lookahead_cycles: 2.0,
            margin_bytes: 128 * MIB,
            margin_without_deflate_on_oom_factor: 1.5,
            margin_burst_factor: 1.25,
            max_shrink_step_bytes: GIB,
            max_shrink_step_share: 0.5,
            min_host_gain_share: 0.5,
            belief_ttl_s: 300,
            probe_bytes: 32 * MIB,
            harm_backoff_s: 600,
            max_grow_step_bytes: GIB,
            max_grow_step_share: 0.5,
            min_change_bytes: 16 * MIB,
            min_reverse_interval_s: 20,
            settle_s: 10,
            qemu_overhead_bytes: 64 * MIB,
            default_share: 1000,
            shares: BTreeMap::new(),
            manual: Vec::new(),
        }
    }
}

impl Config {
    /// Checks what serde cannot: shares in range, watermarks in order, no zero share.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let unit = [
            ("host_min_available_share", self.host_min_available_share),
            ("guest_usable_low_share", self.guest_usable_low_share),
            ("guest_usable_high_share", self.guest_usable_high_share),
            ("max_shrink_step_share", self.max_shrink_step_share),
            ("max_grow_step_share", self.max_grow_step_share),
            ("min_host_gain_share", self.min_host_gain_share),
        ];
        for (key, value) in unit {
            // `!(..)` so that NaN is refused too.
            if !(0.0..=1.0).contains(&value) {
                return Err(ConfigError::OutOfRange {
                    key,
                    value,
                    min: 0.0,
                    max: 1.0,
                });
            }
        }
        for (key, value) in [
            ("psi_some_avg10_pct", self.psi_some_avg10_pct),
            ("psi_full_avg10_pct", self.psi_full_avg10_pct),
        ] {
            if !(0.0..=100.0).contains(&value) {
                return Err(ConfigError::OutOfRange {
                    key,
                    value,
                    min: 0.0,
                    max: 100.0,
                });
            }
        }
        if !(0.0..=100.0).contains(&self.guest_fill_lookahead_cycles) {
            return Err(ConfigError::OutOfRange {
                key: "guest_fill_lookahead_cycles",
                value: self.guest_fill_lookahead_cycles,
                min: 0.0,
                max: 100.0,
            });
        }
        for (key, value) in [
            (
                "margin_without_deflate_on_oom_factor",
                self.margin_without_deflate_on_oom_factor,
            ),
            ("margin_burst_factor", self.margin_burst_factor),
        ] {
            if !(1.0..=10.0).contains(&value) {
                return Err(ConfigError::OutOfRange {
                    key,
                    value,
                    min: 1.0,
                    max: 10.0,
                });
            }
        }
        if self.guest_major_faults_per_s.is_nan() || self.guest_major_faults_per_s < 0.0 {
            return Err(ConfigError::OutOfRange {
                key: "guest_major_faults_per_s",
                value: self.guest_major_faults_per_s,
                min: 0.0,
                max: f64::MAX,
            });
        }
        // The high watermark must leave room for the guest to be shrunk at all (< 1).
        if self.guest_usable_low_share >= self.guest_usable_high_share
            || self.guest_usable_high_share >= 1.0
        {
            return Err(ConfigError::WatermarksCrossed {
                low: self.guest_usable_low_share,
                high: self.guest_usable_high_share,
            });
        }
        if self.default_share == 0 {
            return Err(ConfigError::ZeroShare {
                vm: "(default_share)".into(),
            });
        }
        if let Some((vm, _)) = self.shares.iter().find(|(_, s)| **s == 0) {
            return Err(ConfigError::ZeroShare { vm: vm.clone() });
        }
        Ok(())
    }

    /// The share of `vm` (by name).
    pub fn share(&self, vm: &str) -> u32 {
        self.shares
            .get(vm)
            .copied()
            .unwrap_or(self.default_share)
            .max(1)
    }

    pub fn is_manual(&self, vm: &str) -> bool {
        self.manual.iter().any(|m| m == vm)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_section_is_the_default_and_valid() {
        let c: Config = toml::from_str("").expect("empty section parses");
        assert_eq!(c, Config::default());
        assert_eq!(c.validate(), Ok(()));
    }

    #[test]
    fn keys_parse_and_unknown_keys_are_refused() {
        let c: Config = toml::from_str(
            "host_min_available_bytes = 1073741824\nmanual = [\"db1\"]\n[shares]\nweb1 = 2000\n",
        )
        .expect("parses");
        assert_eq!(c.host_min_available_bytes, GIB);
        assert!(c.is_manual("db1") && !c.is_manual("web1"));
        assert_eq!((c.share("web1"), c.share("other")), (2000, 1000));
        let err = toml::from_str::<Config>("host_min_available_shar = 0.2")
            .expect_err("a misspelt key must not pass");
        assert!(err.to_string().contains("unknown field"), "{err}");
    }

    #[test]
    fn validation_names_the_key() {
        let c = Config {
            guest_usable_low_share: 0.3,
            ..Config::default()
        };
        assert!(matches!(
            c.validate(),
            Err(ConfigError::WatermarksCrossed { .. })
        ));
        let c = Config {
            host_min_available_share: f64::NAN,
            ..Config::default()
        };
        let err = c.validate().expect_err("NaN refused");
        assert!(
            err.to_string().contains("host_min_available_share"),
            "{err}"
        );
        let mut c = Config::default();
        c.shares.insert("web1".into(), 0);
        assert_eq!(
            c.validate(),
            Err(ConfigError::ZeroShare { vm: "web1".into() })
        );
    }
}
