//! /proc/vmstat: `name value` pairs, every one kept in the kernel's order.

use memwarden_model::host::Vmstat;

use crate::error::{Error, Result};
use crate::text::{numbered_lines, parse_u64};

const PATH: &str = "/proc/vmstat";

/// Parses /proc/vmstat (counts and page numbers, kept as printed: no unit conversion here).
pub fn parse(text: &str) -> Result<Vmstat> {
    let mut entries = Vec::new();
    for (n, line) in numbered_lines(text) {
        let bad = || Error::parse(PATH, n, "\"name value\"", line);
        let mut words = line.split_whitespace();
        let (Some(name), Some(value), None) = (words.next(), words.next(), words.next()) else {
            return Err(bad());
        };
        entries.push((name.to_string(), parse_u64(value).ok_or_else(bad)?));
    }
    Ok(Vmstat { entries })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_all_pairs_in_order() {
        // Copied from this machine's live /proc/vmstat (kernel 6.18).
        let text =
            "nr_free_pages 910878\nnr_free_pages_blocks 836096\nnr_zone_inactive_anon 5799\n";
        let v = parse(text).expect("parses");
        assert_eq!(v.entries.len(), 3);
        assert_eq!(v.entries[1], ("nr_free_pages_blocks".to_string(), 836096));
        assert_eq!(v.get("nr_zone_inactive_anon"), Some(5799));
    }

    #[test]
    fn rejects_malformed_lines() {
        let e = parse("a 1\nb\n").expect_err("missing value");
        assert!(e.to_string().starts_with("/proc/vmstat line 2:"));
        assert!(parse("a 1 2\n").is_err());
        assert!(parse("a -1\n").is_err());
    }
}
