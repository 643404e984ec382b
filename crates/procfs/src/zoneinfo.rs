//! /proc/zoneinfo: each zone's free, managed, present and spanned pages and its per-CPU page
//! lists (`pagesets` → `cpu: N` → `count:`/`high:`/`batch:`).
//!
//! Everything else the kernel prints per zone (per-node stats, watermarks, `nr_*` counters,
//! `high_min`/`high_max` since 6.7, `vm stats threshold`) is skipped: vmstat has the counters.
//! The free pages on the pcp lists matter to the black hole: they have left MemFree
//! (NR_FREE_PAGES drops when rmqueue_bulk fills a list) but are on no LRU and in no other
//! meminfo field.

use memwarden_model::host::{PcpList, Zone, ZoneInfo};

use crate::error::{Error, Result};
use crate::text::{numbered_lines, parse_u64};

const PATH: &str = "/proc/zoneinfo";

/// Parses /proc/zoneinfo. The first line must be a `Node N, zone NAME` header; the fields read
/// must be numbers; pcp fields must follow a `cpu: N` line of a `pagesets` block.
pub fn parse(text: &str) -> Result<ZoneInfo> {
    let mut zones: Vec<Zone> = Vec::new();
    let mut in_pagesets = false;
    for (n, line) in numbered_lines(text) {
        let bad = |expected: &str| Error::parse(PATH, n, expected, line);
        if let Some(rest) = line.strip_prefix("Node ") {
            let (node, zone) = rest
                .split_once(", zone")
                .ok_or_else(|| bad("\"Node N, zone NAME\""))?;
            let node = parse_u64(node.trim())
                .and_then(|v| u32::try_from(v).ok())
                .ok_or_else(|| bad("\"Node N, zone NAME\" with N a node number"))?;
            let name = zone.trim();
            if name.is_empty() || name.contains(char::is_whitespace) {
                return Err(bad("\"Node N, zone NAME\""));
            }
            zones.push(Zone {
                node,
                name: name.to_string(),
                ..Zone::default()
            });
            in_pagesets = false;
            continue;
        }
        let zone = zones
            .last_mut()
            .ok_or_else(|| bad("a \"Node N, zone NAME\" header first"))?;
        let trimmed = line.trim();
        if trimmed == "pagesets" {
            in_pagesets = true;
            continue;
        }
        let (key, value) = match trimmed.split_once(':') {
            Some((k, v)) => (k.trim(), v.trim()),
            None => match trimmed.rsplit_once(char::is_whitespace) {
                Some((k, v)) => (k.trim(), v.trim()),
                None => continue,
            },
        };
        let num = || parse_u64(value).ok_or_else(|| bad(&format!("\"{key} N\" with N a count")));
        if in_pagesets {
            match key {
                "cpu" => {
                    let cpu = num()?;
                    zone.pcp.push(PcpList {
                        cpu: u32::try_from(cpu).map_err(|_| bad("a CPU number"))?,
                        ..PcpList::default()
                    });
                    continue;
                }
                "count" | "high" | "batch" => {
                    let v = num()?;
                    let pcp = zone
                        .pcp
                        .last_mut()
                        .ok_or_else(|| bad("\"cpu: N\" before the list's fields"))?;
                    match key {
                        "count" => pcp.count_pages = v,
                        "high" => pcp.high_pages = Some(v),
                        _ => pcp.batch_pages = Some(v),
                    }
                    continue;
                }
                // `vm stats threshold` sits between CPUs (6.x) or after them; per-zone lines
                // after the block (`node_unreclaimable`, `start_pfn`) end nothing either.
                _ => {}
            }
        }
        match key {
            "pages free" => zone.free_pages = Some(num()?),
            "managed" => zone.managed_pages = Some(num()?),
            "present" => zone.present_pages = Some(num()?),
            "spanned" => zone.spanned_pages = Some(num()?),
            _ => {}
        }
    }
    Ok(ZoneInfo { zones })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Copied from fixtures/guest-6.1-idle/proc/zoneinfo (Debian 6.1), per-node stats and
    /// counters trimmed.
    const DEBIAN_6_1: &str = "\
Node 0, zone      DMA
  per-node stats
      nr_inactive_anon 0
      nr_kernel_stack 752
  pages free     3808
        boost    0
        min      22
        spanned  4095
        present  3998
        managed  3840
        cma      0
        protection: (0, 440, 440, 440, 440)
      nr_free_pages 3808
  pagesets
    cpu: 0
              count: 0
              high:  27
              batch: 1
  vm stats threshold: 2
  node_unreclaimable:  0
  start_pfn:           1
Node 0, zone    DMA32
  pages free     108728
        spanned  126940
        present  126940
        managed  114911
  pagesets
    cpu: 0
              count: 457
              high:  1189
              batch: 31
  vm stats threshold: 6
  node_unreclaimable:  0
  start_pfn:           4096
Node 0, zone   Normal
  pages free     0
        spanned  0
        present  0
        managed  0
        protection: (0, 0, 0, 0, 0)
";

    /// Copied from this machine's live /proc/zoneinfo (kernel 6.18, two CPUs), trimmed:
    /// `high_min`/`high_max` and a threshold line between CPUs.
    const LIVE_6_18: &str = "\
Node 0, zone   Normal
  pages free     5663140
        managed  5966086
  pagesets
    cpu: 0
              count:    1290
              high:     5449
              batch:    63
              high_min: 5449
              high_max: 48300
  vm stats threshold: 24
    cpu: 1
              count:    11
              high:     5449
              batch:    63
              high_min: 5449
              high_max: 48300
  node_unreclaimable:  0
  start_pfn:           1048576
";

    #[test]
    fn zones_and_pcp_lists_of_a_6_1_kernel() {
        let z = parse(DEBIAN_6_1).expect("parses");
        let names: Vec<_> = z.zones.iter().map(|z| z.name.as_str()).collect();
        assert_eq!(names, ["DMA", "DMA32", "Normal"]);
        assert_eq!(z.zones[1].free_pages, Some(108728));
        assert_eq!(z.zones[1].managed_pages, Some(114911));
        assert_eq!(z.zones[0].spanned_pages, Some(4095));
        assert_eq!(
            z.zones[1].pcp,
            [PcpList {
                cpu: 0,
                count_pages: 457,
                high_pages: Some(1189),
                batch_pages: Some(31)
            }]
        );
        assert!(z.zones[2].pcp.is_empty());
        assert_eq!(z.pcp_free_pages(), 457);
        assert_eq!(z.managed_pages(), 3840 + 114911);
    }

    #[test]
    fn threshold_lines_between_cpus_of_a_6_18_kernel() {
        let z = parse(LIVE_6_18).expect("parses");
        assert_eq!(z.zones[0].pcp.len(), 2);
        assert_eq!(z.zones[0].pcp[1].cpu, 1);
        assert_eq!(z.pcp_free_pages(), 1301);
    }

    #[test]
    fn rejects_what_the_kernel_never_prints() {
        assert!(parse("  pages free 1\n").is_err(), "no header");
        assert!(parse("Node x, zone DMA\n").is_err());
        assert!(parse("Node 0 DMA\n").is_err());
        assert!(parse("Node 0, zone DMA\n  pages free lots\n").is_err());
        assert!(parse("Node 0, zone DMA\n  pagesets\n    count: 3\n").is_err());
        assert!(parse("Node 0, zone DMA\n  pagesets\n    cpu: 0\n    count: -3\n").is_err());
        assert_eq!(parse("").expect("empty").zones.len(), 0);
    }
}
