//! /proc/net/sockstat and /proc/net/sockstat6: lines of `PROTO: key value key value ...`
//! (net/ipv4/proc.c and net/ipv6/proc.c `sockstat_seq_show`, `sockstat6_seq_show`). The first
//! line of sockstat is `sockets: used N`. Every pair is kept, known or not: lines come and go
//! between kernels (UDPLITE was removed upstream).

use memwarden_model::host::SockstatEntry;

use crate::error::{Error, Result};
use crate::text::{numbered_lines, parse_u64};

/// Parses one of the two files; `path` is the file's usual location, for errors.
pub fn parse(path: &str, text: &str) -> Result<Vec<SockstatEntry>> {
    let mut entries = Vec::new();
    for (n, line) in numbered_lines(text) {
        let bad = || Error::parse(path, n, "\"PROTO: key value [key value]...\"", line);
        let (protocol, rest) = line.split_once(':').ok_or_else(bad)?;
        if protocol.is_empty() || protocol.contains(char::is_whitespace) {
            return Err(bad());
        }
        let words: Vec<&str> = rest.split_whitespace().collect();
        if words.is_empty() || !words.len().is_multiple_of(2) {
            return Err(bad());
        }
        for pair in words.chunks(2) {
            entries.push(SockstatEntry {
                protocol: protocol.to_string(),
                key: pair[0].to_string(),
                value: parse_u64(pair[1]).ok_or_else(bad)?,
            });
        }
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;
    use memwarden_model::host::Sockstat;

    #[test]
    fn every_pair_of_both_files() {
        // The layout of this machine's files (kernel 6.18), values varied.
        let v4 = "sockets: used 230\nTCP: inuse 30 orphan 0 tw 2 alloc 36 mem 2049\n\
                  UDP: inuse 3 mem 7\nUDPLITE: inuse 0\nRAW: inuse 0\nFRAG: inuse 1 memory 4096\n";
        let v6 = "TCP6: inuse 4\nUDP6: inuse 2\nUDPLITE6: inuse 0\nRAW6: inuse 0\n\
                  FRAG6: inuse 0 memory 0\n";
        let mut entries = parse("/proc/net/sockstat", v4).expect("v4");
        assert_eq!(entries.len(), 12);
        entries.extend(parse("/proc/net/sockstat6", v6).expect("v6"));
        let s = Sockstat {
            entries,
            ipv6: true,
        };
        assert_eq!(s.get("sockets", "used"), Some(230));
        assert_eq!(s.get("TCP", "mem"), Some(2049));
        assert_eq!(s.get("UDP", "mem"), Some(7));
        assert_eq!(s.get("FRAG", "memory"), Some(4096));
        assert_eq!(s.get("TCP6", "inuse"), Some(4));
        assert_eq!(s.get("TCP6", "mem"), None);
    }

    #[test]
    fn a_bad_line_names_the_file_and_line() {
        let e = parse("/proc/net/sockstat", "sockets: used 1\nTCP: inuse 3 mem\n")
            .expect_err("odd words");
        assert!(
            e.to_string()
                .starts_with("/proc/net/sockstat line 2: expected"),
            "{e}"
        );
        assert!(
            parse("/proc/net/sockstat", "TCP inuse 3\n").is_err(),
            "no colon"
        );
        assert!(
            parse("/proc/net/sockstat", "TCP: inuse -3\n").is_err(),
            "negative"
        );
        assert!(parse("/proc/net/sockstat6", "TCP6:\n").is_err(), "no pairs");
    }
}
