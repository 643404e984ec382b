//! Small helpers shared by the parsers (crate-private).

/// Lines of `text` numbered from 1, blank ones skipped (the kernel prints none inside its memory
/// files; a trailing newline yields none either).
pub(crate) fn numbered_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l))
        .filter(|(_, l)| !l.trim().is_empty())
}

/// A decimal `u64` made of ASCII digits only (no sign, no `+`: `str::parse` would accept `+5`).
pub(crate) fn parse_u64(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// A decimal `i64`, optionally with a leading `-`.
pub(crate) fn parse_i64(s: &str) -> Option<i64> {
    let digits = s.strip_prefix('-').unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// `Key:   value` split at the first colon; the key must be one non-empty word.
pub(crate) fn split_key(line: &str) -> Option<(&str, &str)> {
    let (key, rest) = line.split_once(':')?;
    if key.is_empty() || key.chars().any(char::is_whitespace) {
        return None;
    }
    Some((key, rest.trim()))
}

/// `N kB` to bytes: `Ok(None)` when the value is not of that form, `Err(())` on overflow.
pub(crate) fn kb_value(value: &str) -> Result<Option<u64>, ()> {
    let Some(num) = value.strip_suffix("kB") else {
        return Ok(None);
    };
    let Some(kib) = parse_u64(num.trim_end()) else {
        return Ok(None);
    };
    memwarden_model::units::kib_to_bytes(kib)
        .map(Some)
        .ok_or(())
}

/// The bracketed word of a sysfs choice file: `always [madvise] never` gives `madvise`.
/// A file with no brackets (a plain value) gives its trimmed contents.
pub fn selected_choice(contents: &str) -> Option<String> {
    let t = contents.trim();
    match (t.find('['), t.find(']')) {
        (Some(open), Some(close)) if open < close => Some(t[open + 1..close].to_string()),
        (None, None) if !t.is_empty() => Some(t.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_strict() {
        assert_eq!(parse_u64("12"), Some(12));
        assert_eq!(parse_u64("+12"), None);
        assert_eq!(parse_u64(""), None);
        assert_eq!(parse_u64("99999999999999999999999"), None);
        assert_eq!(parse_i64("-3"), Some(-3));
        assert_eq!(parse_i64("-"), None);
    }

    #[test]
    fn kb_values() {
        assert_eq!(kb_value("5620 kB"), Ok(Some(5620 * 1024)));
        assert_eq!(kb_value("0"), Ok(None));
        assert_eq!(kb_value("18446744073709551615 kB"), Err(()));
    }

    #[test]
    fn choices() {
        // Copied from this machine's /sys/kernel/mm (kernel 6.18).
        assert_eq!(
            selected_choice("always [madvise] never\n").as_deref(),
            Some("madvise")
        );
        assert_eq!(
            selected_choice("always within_size advise [never] deny force").as_deref(),
            Some("never")
        );
        assert_eq!(selected_choice("[none] scan-time").as_deref(), Some("none"));
        assert_eq!(selected_choice("1").as_deref(), Some("1"));
        assert_eq!(selected_choice("] x ["), None);
    }
}
