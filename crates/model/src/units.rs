//! Unit conversion at the boundary: everything inside memwarden is bytes (or a count).

/// Bytes in one KiB (the kernel's "kB" is KiB).
pub const KIB: u64 = 1024;
/// Bytes in one MiB.
pub const MIB: u64 = 1024 * KIB;
/// Bytes in one GiB.
pub const GIB: u64 = 1024 * MIB;
/// The base page size assumed when a sample does not record one (x86_64; aarch64 with 4K pages).
/// Readers record the real one in `HostSample::page_size_bytes` (64 KiB-page arm64 hosts exist):
/// prefer [`pages_to_bytes_at`] with it.
pub const PAGE_SIZE: u64 = 4096;

/// KiB to bytes; `None` on overflow (a kernel never prints such a value, a corrupt file might).
pub fn kib_to_bytes(kib: u64) -> Option<u64> {
    kib.checked_mul(KIB)
}

/// Pages of [`PAGE_SIZE`] to bytes; `None` on overflow.
pub fn pages_to_bytes(pages: u64) -> Option<u64> {
    pages.checked_mul(PAGE_SIZE)
}

/// Pages of `page_size_bytes` to bytes; `None` on overflow.
pub fn pages_to_bytes_at(pages: u64, page_size_bytes: u64) -> Option<u64> {
    pages.checked_mul(page_size_bytes)
}

/// A plausible base page size: a power of two from 4 KiB to 1 MiB (x86_64 4K; arm64 4K, 16K,
/// 64K; ppc64 64K; some MIPS/LoongArch/SPARC 8K/16K).
pub fn is_page_size(bytes: u64) -> bool {
    bytes.is_power_of_two() && (4 * KIB..=MIB).contains(&bytes)
}

/// Human form with binary prefixes, three significant figures: `0 B`, `812 KiB`, `1.50 GiB`.
pub fn format_bytes(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut v = bytes as f64;
    let mut i = 0;
    while v >= 1024.0 && i < UNITS.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    if v >= 100.0 {
        format!("{v:.0} {}", UNITS[i])
    } else if v >= 10.0 {
        format!("{v:.1} {}", UNITS[i])
    } else {
        format!("{v:.2} {}", UNITS[i])
    }
}

/// Like [`format_bytes`] for a signed quantity (residuals, deltas).
pub fn format_signed_bytes(bytes: i128) -> String {
    let mag = u64::try_from(bytes.unsigned_abs()).unwrap_or(u64::MAX);
    if bytes < 0 {
        format!("-{}", format_bytes(mag))
    } else {
        format_bytes(mag)
    }
}

/// Error from [`parse_size`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid size {input:?}: {why}")]
pub struct SizeError {
    pub input: String,
    pub why: &'static str,
}

/// Parses a size as virsh does for `setmem`: a number with an optional suffix
/// (`b`, `k`/`KiB`, `M`/`MiB`, `G`/`GiB`, `T`/`TiB`; `KB`, `MB`, `GB` are decimal as in virsh).
/// A bare number is in `default_unit_bytes` units (virsh: KiB). Returns bytes.
pub fn parse_size(input: &str, default_unit_bytes: u64) -> Result<u64, SizeError> {
    let err = |why| SizeError {
        input: input.to_string(),
        why,
    };
    let s = input.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, suffix) = s.split_at(split);
    if num.is_empty() {
        return Err(err(
            "expected a number, optionally followed by a unit such as M or G",
        ));
    }
    let n: u64 = num.parse().map_err(|_| err("number too large"))?;
    let mult = match suffix.trim() {
        "" => default_unit_bytes,
        "b" | "B" | "bytes" => 1,
        "k" | "K" | "KiB" | "kiB" | "Ki" => KIB,
        "KB" | "kB" => 1000,
        "m" | "M" | "MiB" | "Mi" => MIB,
        "MB" => 1000 * 1000,
        "g" | "G" | "GiB" | "Gi" => GIB,
        "GB" => 1000 * 1000 * 1000,
        "t" | "T" | "TiB" | "Ti" => 1024 * GIB,
        "TB" => 1000 * 1000 * 1000 * 1000,
        _ => {
            return Err(err(
                "unknown unit (use B, K, M, G, T; KB/MB/GB are powers of 1000)",
            ))
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| err("size overflows 64 bits"))
}

/// `500ms`, `2s`, `1m`, `6h`, `30d`.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration (write 500ms, 2s, 10m, 6h, 30d)"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" | "" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        "d" => n * 86400.0,
        _ => return Err(format!("{s:?}: unknown unit {unit:?} (ms, s, m, h, d)")),
    };
    if !secs.is_finite() || !(0.0..=1e9).contains(&secs) {
        return Err(format!("{s:?} is out of range"));
    }
    Ok(std::time::Duration::from_secs_f64(secs))
}

/// serde for `Duration` fields written as `10s`, `6h` (config files).
pub mod duration_str {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        super::parse_duration(&s).map_err(serde::de::Error::custom)
    }

    pub fn serialize<S: Serializer>(v: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::format_duration(*v))
    }
}

/// The shortest exact `parse_duration` spelling of `d` (`10s`, `6h`, `1500ms`).
pub fn format_duration(d: std::time::Duration) -> String {
    let ms = d.as_millis();
    for (unit, n) in [
        ("d", 86_400_000u128),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1000),
    ] {
        if ms >= n && ms.is_multiple_of(n) {
            return format!("{}{unit}", ms / n);
        }
    }
    format!("{ms}ms")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_with_binary_prefixes() {
        assert_eq!(format_bytes(0), "0 B");
        assert_eq!(format_bytes(1023), "1023 B");
        assert_eq!(format_bytes(1024), "1.00 KiB");
        assert_eq!(format_bytes(1536 * MIB), "1.50 GiB");
        assert_eq!(format_bytes(300 * MIB), "300 MiB");
        assert_eq!(format_signed_bytes(-(2 * MIB as i128)), "-2.00 MiB");
    }

    #[test]
    fn page_sizes() {
        assert_eq!(pages_to_bytes_at(3, 64 * KIB), Some(192 * KIB));
        assert_eq!(pages_to_bytes_at(u64::MAX, 4096), None);
        assert!(is_page_size(4096) && is_page_size(64 * KIB));
        assert!(!is_page_size(0) && !is_page_size(4095) && !is_page_size(2 * MIB));
    }

    #[test]
    fn parses_virsh_sizes() {
        assert_eq!(parse_size("524288", KIB), Ok(512 * MIB));
        assert_eq!(parse_size("512M", KIB), Ok(512 * MIB));
        assert_eq!(parse_size("2G", KIB), Ok(2 * GIB));
        assert_eq!(parse_size("1GB", KIB), Ok(1_000_000_000));
        assert!(parse_size("12Q", KIB).is_err());
        assert!(parse_size("", KIB).is_err());
        assert!(parse_size("99999999999999999999", KIB).is_err());
        assert!(parse_size("18446744073709551615G", KIB).is_err());
    }

    proptest::proptest! {
        #[test]
        fn kib_roundtrip(k in 0u64..(u64::MAX / 1024)) {
            proptest::prop_assert_eq!(kib_to_bytes(k).map(|b| b / KIB), Some(k));
        }

        #[test]
        fn kib_overflow_is_none(k in (u64::MAX / 1024 + 1)..) {
            proptest::prop_assert_eq!(kib_to_bytes(k), None);
        }

        #[test]
        fn parse_size_never_panics(s in "\\PC*") {
            let _ = parse_size(&s, KIB);
        }

        #[test]
        fn format_bytes_never_panics_and_keeps_unit(b in proptest::num::u64::ANY) {
            let s = format_bytes(b);
            proptest::prop_assert!(s.ends_with('B'));
        }
    }

    #[test]
    fn durations_parse_and_format_back() {
        for (text, secs) in [
            ("500ms", 0.5),
            ("10s", 10.0),
            ("6h", 21600.0),
            ("30d", 2_592_000.0),
        ] {
            let d = parse_duration(text).expect(text);
            assert_eq!(d.as_secs_f64(), secs, "{text}");
            assert_eq!(format_duration(d), text);
        }
        assert_eq!(
            format_duration(std::time::Duration::from_millis(1500)),
            "1500ms"
        );
        assert!(parse_duration("10 parsecs").is_err());
        assert!(parse_duration("-1s").is_err());
    }
}
