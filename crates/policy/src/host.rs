//! Host pressure: MemAvailable against the configured target, and PSI memory some/full.
//!
//! MemAvailable, not MemFree + Buffers + Cached (MOM) or MemTotal − MemAvailable against 80 %
//! (Proxmox) alone: it is the kernel's own estimate of what can be had without swapping. PSI
//! catches what MemAvailable misses (a host thrashing on a working set that does not fit, while
//! MemAvailable still looks fine).

use memwarden_model::units::format_bytes;
use memwarden_model::Sample;
use serde::{Deserialize, Serialize};

use crate::config::Config;

/// Where the host stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HostLevel {
    /// Below the target, or PSI over a threshold: idle guests are shrunk.
    Pressure,
    /// Between the target and target + dead band: nothing is shrunk or given back.
    DeadBand,
    /// Above target + dead band: balloons may be deflated again.
    Comfortable,
    /// MemTotal or MemAvailable missing (MemAvailable needs Linux ≥ 3.14): the controller only
    /// grows guests under pressure.
    Unknown,
}

/// The host figures a plan came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostView {
    pub mem_total_bytes: Option<u64>,
    pub mem_available_bytes: Option<u64>,
    /// MemAvailable the controller keeps at least.
    pub target_bytes: u64,
    pub dead_band_bytes: u64,
    pub psi_some_avg10_pct: Option<f64>,
    pub psi_full_avg10_pct: Option<f64>,
    pub level: HostLevel,
    /// What the host wants back now, bytes (0 unless under pressure).
    pub need_bytes: u64,
    /// What may be given back to guests now, bytes (0 unless comfortable).
    pub surplus_bytes: u64,
    /// The level in plain words, with its figures.
    pub why: String,
}

/// Judges the host in `sample` against `cfg`.
pub fn host_view(sample: &Sample, cfg: &Config) -> HostView {
    let m = &sample.host.meminfo;
    let total = m.get("MemTotal");
    let avail = m.get("MemAvailable");
    let share_target = total.map_or(0, |t| (t as f64 * cfg.host_min_available_share) as u64);
    let target = share_target.max(cfg.host_min_available_bytes);
    let band = cfg.host_dead_band_bytes;
    let psi = sample.host.psi.as_ref();
    let some = psi.map(|p| p.some.avg10);
    let full = psi.and_then(|p| p.full.map(|f| f.avg10));
    let psi_over = match (some, full) {
        (Some(s), _) if s >= cfg.psi_some_avg10_pct => Some(format!(
            "PSI memory some avg10 {s:.1}% ≥ {:.1}%",
            cfg.psi_some_avg10_pct
        )),
        (_, Some(f)) if f >= cfg.psi_full_avg10_pct => Some(format!(
            "PSI memory full avg10 {f:.1}% ≥ {:.1}%",
            cfg.psi_full_avg10_pct
        )),
        _ => None,
    };
    let mut view = HostView {
        mem_total_bytes: total,
        mem_available_bytes: avail,
        target_bytes: target,
        dead_band_bytes: band,
        psi_some_avg10_pct: some,
        psi_full_avg10_pct: full,
        level: HostLevel::Unknown,
        need_bytes: 0,
        surplus_bytes: 0,
        why: String::new(),
    };
    let (Some(_), Some(avail)) = (total, avail) else {
        view.why = "host MemTotal or MemAvailable unknown (MemAvailable needs Linux ≥ 3.14): \
                    nothing is shrunk; guests under pressure are still grown"
            .into();
        return view;
    };
    let upper = target.saturating_add(band);
    if avail < target || psi_over.is_some() {
        view.level = HostLevel::Pressure;
        // Aim at the top of the band so that the next cycle lands inside it, not just under the
        // target again; under PSI alone, ask for at least one band's worth.
        view.need_bytes = upper
            .saturating_sub(avail)
            .max(if avail < target { 0 } else { band });
        let mut why = Vec::new();
        if avail < target {
            why.push(format!(
                "MemAvailable {} < target {}",
                format_bytes(avail),
                format_bytes(target)
            ));
        }
        why.extend(psi_over);
        view.why = format!(
            "host under pressure ({}): wants {} back",
            why.join(", "),
            format_bytes(view.need_bytes)
        );
    } else if avail < upper {
        view.level = HostLevel::DeadBand;
        view.why = format!(
            "host within its dead band: MemAvailable {} between target {} and {}",
            format_bytes(avail),
            format_bytes(target),
            format_bytes(upper)
        );
    } else {
        view.level = HostLevel::Comfortable;
        view.surplus_bytes = avail - upper;
        view.why = format!(
            "host comfortable: MemAvailable {} ≥ target {} + dead band {}; {} may go back to guests",
            format_bytes(avail),
            format_bytes(target),
            format_bytes(band),
            format_bytes(view.surplus_bytes)
        );
    }
    view
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::fixtures::host_with;
    use memwarden_model::host::{Psi, PsiLine};
    use memwarden_model::units::MIB;

    /// 16 GiB host, default target 15 % = 2457.6 MiB, band 256 MiB.
    #[test]
    fn levels_follow_memavailable_against_target_and_band() {
        let cfg = Config::default();
        let target = (16.0 * 1024.0 * 0.15 * MIB as f64) as u64;
        let v = host_view(&host_with(0, 2000, vec![]), &cfg);
        assert_eq!(v.level, HostLevel::Pressure);
        assert_eq!(v.target_bytes, target);
        assert_eq!(v.need_bytes, target + 256 * MIB - 2000 * MIB);
        assert!(
            v.why.contains("MemAvailable 1.95 GiB < target"),
            "{}",
            v.why
        );
        let v = host_view(&host_with(0, 2600, vec![]), &cfg);
        assert_eq!(
            (v.level, v.need_bytes, v.surplus_bytes),
            (HostLevel::DeadBand, 0, 0)
        );
        let v = host_view(&host_with(0, 4000, vec![]), &cfg);
        assert_eq!(v.level, HostLevel::Comfortable);
        assert_eq!(v.surplus_bytes, 4000 * MIB - target - 256 * MIB);
    }

    #[test]
    fn psi_alone_is_pressure_and_asks_for_a_band() {
        let cfg = Config::default();
        let mut s = host_with(0, 8000, vec![]);
        s.host.psi = Some(Psi {
            some: PsiLine {
                avg10: 3.0,
                ..PsiLine::default()
            },
            full: Some(PsiLine {
                avg10: 2.5,
                ..PsiLine::default()
            }),
        });
        let v = host_view(&s, &cfg);
        assert_eq!((v.level, v.need_bytes), (HostLevel::Pressure, 256 * MIB));
        assert!(v.why.contains("PSI memory full avg10 2.5%"), "{}", v.why);
    }

    #[test]
    fn byte_target_wins_when_larger_and_missing_meminfo_is_unknown() {
        let cfg = Config {
            host_min_available_bytes: 10 * 1024 * MIB,
            ..Config::default()
        };
        let v = host_view(&host_with(0, 8000, vec![]), &cfg);
        assert_eq!(
            (v.level, v.target_bytes),
            (HostLevel::Pressure, 10 * 1024 * MIB)
        );
        let v = host_view(&Sample::default(), &cfg);
        assert_eq!(v.level, HostLevel::Unknown);
        assert_eq!((v.need_bytes, v.surplus_bytes), (0, 0));
    }
}
