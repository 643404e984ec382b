//! OpenZFS's named kstats under /proc/spl/kstat/zfs/ (`arcstats`, `abdstats`): what the SPL
//! prints for a `KSTAT_TYPE_NAMED` kstat (module/os/linux/spl/spl-kstat.c,
//! `kstat_seq_show_headers` and `kstat_seq_show_named`):
//!
//! ```text
//! 13 1 0x01 147 39984 5170304353 218591034474      <- kid type flags ndata data_size crtime snaptime
//! name                            type data
//! hits                            4    1130
//! memory_available_bytes          3    -1409024
//! ```
//!
//! The type column is the kstat data type: 1 int32, 2 uint32, 3 int64, 4 uint64 (5 long, 6
//! ulong; 7 string, which no memory kstat uses). Every numeric entry is kept, known or not:
//! the list changes between ZFS releases.

use memwarden_model::host::KstatEntry;

use crate::error::{Error, Result};
use crate::text::{numbered_lines, parse_i64, parse_u64};

/// Parses a named kstat; `path` is the file's usual location, for errors.
pub fn parse(path: &str, text: &str) -> Result<Vec<KstatEntry>> {
    let mut lines = numbered_lines(text);
    let (n, header) = lines
        .next()
        .ok_or_else(|| Error::parse(path, 1, "a kstat header line", ""))?;
    // kid type flags ndata data_size crtime snaptime; type 1 is KSTAT_TYPE_NAMED.
    let words: Vec<&str> = header.split_whitespace().collect();
    if words.len() != 7 || words[1] != "1" {
        return Err(Error::parse(
            path,
            n,
            "a named kstat's header (7 fields, type 1)",
            header,
        ));
    }
    let (n, columns) = lines
        .next()
        .ok_or_else(|| Error::parse(path, 2, "\"name type data\"", ""))?;
    if columns.split_whitespace().collect::<Vec<_>>() != ["name", "type", "data"] {
        return Err(Error::parse(path, n, "\"name type data\"", columns));
    }
    let mut entries = Vec::new();
    for (n, line) in lines {
        let bad = |what: &str| Error::parse(path, n, what, line);
        let words: Vec<&str> = line.split_whitespace().collect();
        let [name, kind, value] = words[..] else {
            return Err(bad("\"NAME TYPE VALUE\""));
        };
        let value = match kind {
            "1" | "3" | "5" => parse_i64(value).ok_or_else(|| bad("a signed integer"))?,
            // Unsigned: a value past i64::MAX would be a counter no byte figure reaches.
            "2" | "4" | "6" => parse_u64(value)
                .and_then(|v| i64::try_from(v).ok())
                .ok_or_else(|| bad("an unsigned integer below 2^63"))?,
            "7" => continue,
            _ => return Err(bad("a kstat data type 1 to 7")),
        };
        entries.push(KstatEntry {
            name: name.to_string(),
            value,
        });
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PATH: &str = "/proc/spl/kstat/zfs/arcstats";

    #[test]
    fn every_numeric_entry_signed_or_not() {
        // The layout of OpenZFS 2.1.11's arcstats (Debian 12), values varied.
        let text = "13 1 0x01 147 39984 5170304353 218591034474\n\
                    name                            type data\n\
                    hits                            4    1130\n\
                    size                            4    140509184\n\
                    memory_available_bytes          3    -1409024\n";
        let e = parse(PATH, text).expect("parses");
        assert_eq!(e.len(), 3);
        assert_eq!((e[1].name.as_str(), e[1].value), ("size", 140_509_184));
        assert_eq!(e[2].value, -1_409_024);
    }

    #[test]
    fn bad_input_names_the_line() {
        let head = "13 1 0x01 1 1 1 1\nname type data\n";
        let e = parse(PATH, &format!("{head}size 4 -5\n")).expect_err("negative uint64");
        assert!(e.to_string().starts_with(&format!("{PATH} line 3:")), "{e}");
        assert!(parse(PATH, &format!("{head}size 4\n")).is_err(), "no value");
        assert!(parse(PATH, &format!("{head}size 9 1\n")).is_err(), "type 9");
        assert!(
            parse(PATH, &format!("{head}size 4 9223372036854775808\n")).is_err(),
            "2^63"
        );
        let e = parse(PATH, "13 3 0x01 1 1 1 1\nname type data\n").expect_err("raw kstat");
        assert!(e.to_string().contains("line 1"), "{e}");
        assert!(parse(PATH, "13 1 0x01 1 1 1 1\nname value\n").is_err());
        assert!(parse(PATH, "").is_err());
    }
}
