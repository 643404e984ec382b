//! /proc/pressure/memory: `some` and `full` stall averages (percent) and totals (microseconds).

use memwarden_model::host::{Psi, PsiLine};

use crate::error::{Error, Result};
use crate::text::{numbered_lines, parse_u64};

const PATH: &str = "/proc/pressure/memory";
const EXPECTED: &str = "\"some|full avg10=F avg60=F avg300=F total=N\"";

/// Parses a PSI file. `some` is required, `full` optional; unknown `key=value` words are ignored
/// (a future kernel may add some); an average must be a finite number in 0..=100.
pub fn parse(text: &str) -> Result<Psi> {
    let mut some = None;
    let mut full = None;
    for (n, line) in numbered_lines(text) {
        let bad = || Error::parse(PATH, n, EXPECTED, line);
        let mut words = line.split_whitespace();
        let slot = match words.next() {
            Some("some") => &mut some,
            Some("full") => &mut full,
            _ => return Err(bad()),
        };
        let (mut avg10, mut avg60, mut avg300, mut total) = (None, None, None, None);
        for word in words {
            let (k, v) = word.split_once('=').ok_or_else(bad)?;
            match k {
                "avg10" => avg10 = Some(percent(v).ok_or_else(bad)?),
                "avg60" => avg60 = Some(percent(v).ok_or_else(bad)?),
                "avg300" => avg300 = Some(percent(v).ok_or_else(bad)?),
                "total" => total = Some(parse_u64(v).ok_or_else(bad)?),
                _ => {}
            }
        }
        let (Some(avg10), Some(avg60), Some(avg300), Some(total_us)) =
            (avg10, avg60, avg300, total)
        else {
            return Err(bad());
        };
        *slot = Some(PsiLine {
            avg10,
            avg60,
            avg300,
            total_us,
        });
    }
    let some = some.ok_or_else(|| Error::parse(PATH, 1, "a \"some\" line", text.trim()))?;
    Ok(Psi { some, full })
}

/// `12.34`: digits and one dot only (rejects `nan`, `inf`, exponents and signs).
fn percent(v: &str) -> Option<f64> {
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return None;
    }
    v.parse::<f64>().ok().filter(|p| (0.0..=100.0).contains(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_some_and_full() {
        // Shape copied from this machine's /proc/pressure/memory (kernel 6.18), values varied.
        let p = parse(
            "some avg10=1.25 avg60=0.00 avg300=0.00 total=4012\n\
             full avg10=0.50 avg60=0.00 avg300=0.00 total=1999\n",
        )
        .expect("parses");
        assert_eq!(p.some.avg10, 1.25);
        assert_eq!(p.some.total_us, 4012);
        assert_eq!(p.full.map(|f| f.total_us), Some(1999));
    }

    #[test]
    fn full_is_optional_some_is_not() {
        let p = parse("some avg10=0.00 avg60=0.00 avg300=0.00 total=0\n").expect("parses");
        assert_eq!(p.full, None);
        assert!(parse("full avg10=0.00 avg60=0.00 avg300=0.00 total=0\n").is_err());
        assert!(parse("").is_err());
    }

    #[test]
    fn rejects_bad_numbers() {
        assert!(parse("some avg10=nan avg60=0.00 avg300=0.00 total=0\n").is_err());
        assert!(parse("some avg10=1e3 avg60=0.00 avg300=0.00 total=0\n").is_err());
        assert!(parse("some avg10=0.00 avg60=0.00 total=0\n").is_err());
        assert!(parse("other avg10=0.00\n").is_err());
    }
}
