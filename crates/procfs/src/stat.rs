//! /proc/PID/stat: the command name and CPU time of one task, for ksmd's cost.

use crate::error::{Error, Result};
use crate::text::parse_u64;

const PATH: &str = "/proc/PID/stat";

/// Clock ticks per second of `utime`/`stime` (the kernel's USER_HZ). It is 100 on every
/// architecture memwarden builds for (x86, arm64, riscv, powerpc, s390; only alpha differs),
/// so a constant spares an `unsafe` sysconf call.
pub const USER_HZ: u64 = 100;

/// What memwarden reads of a stat line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PidStat {
    /// `comm`, as printed between the parentheses (it may itself hold `)` or spaces).
    pub comm: String,
    /// Field 14, clock ticks.
    pub utime_ticks: u64,
    /// Field 15, clock ticks.
    pub stime_ticks: u64,
}

/// Parses `pid (comm) state ppid ...`. The comm is delimited by the first `(` and the *last*
/// `)`, since a process may name itself `a) b`.
pub fn parse(text: &str) -> Result<PidStat> {
    let line = text.trim_end();
    let bad = |expected: &str| Error::parse(PATH, 1, expected, line);
    let (open, close) = line
        .find('(')
        .zip(line.rfind(')'))
        .filter(|(o, c)| o < c)
        .ok_or_else(|| bad("\"pid (comm) state ...\""))?;
    // After the comm: state (field 3) is the first; utime and stime are fields 14 and 15.
    let rest: Vec<&str> = line[close + 1..].split_whitespace().collect();
    let field = |n: usize| {
        rest.get(n - 3)
            .and_then(|v| parse_u64(v))
            .ok_or_else(|| bad("at least 15 fields, utime and stime counts"))
    };
    Ok(PidStat {
        comm: line[open + 1..close].to_string(),
        utime_ticks: field(14)?,
        stime_ticks: field(15)?,
    })
}

/// Clock ticks to milliseconds, saturating.
pub fn ticks_to_ms(ticks: u64) -> u64 {
    ticks.saturating_mul(1000 / USER_HZ)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// This machine's ksmd (kernel 6.18), utime and stime varied.
    const KSMD: &str = "36 (ksmd) S 2 0 0 0 -1 2097216 0 0 0 0 7 250 0 0 25 5 1 0 24 0 0 \
        18446744073709551615 0 0 0 0 0 0 0 2147483647 0 1 0 0 17 1 0 0 0 0 0 0 0 0 0 0 0 0 0\n";

    #[test]
    fn reads_comm_and_cpu_ticks() {
        let s = parse(KSMD).expect("parses");
        assert_eq!(s.comm, "ksmd");
        assert_eq!((s.utime_ticks, s.stime_ticks), (7, 250));
        assert_eq!(ticks_to_ms(s.stime_ticks), 2500);
    }

    #[test]
    fn a_comm_with_parentheses_and_spaces_does_not_shift_fields() {
        let s = parse("9 (a) b (c) R 1 0 0 0 -1 0 0 0 0 0 3 4 0 0\n").expect("parses");
        assert_eq!(s.comm, "a) b (c");
        assert_eq!((s.utime_ticks, s.stime_ticks), (3, 4));
    }

    #[test]
    fn short_or_malformed_lines_are_errors() {
        assert!(parse("").is_err());
        assert!(parse("1 (x) S 0 0").is_err());
        assert!(parse("1 x) S (").is_err());
        assert!(parse("1 (x) S 2 0 0 0 -1 0 0 0 0 0 -3 4 0 0").is_err());
    }
}
