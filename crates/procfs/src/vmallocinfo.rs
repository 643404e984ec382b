//! /proc/vmallocinfo summarized: what vmalloc really allocated (the `pages=` counts, which is
//! what meminfo's VmallocUsed sums), the address space it reserved, and who asked for it.
//!
//! A record is `0xSTART-0xEND SIZE [CALLER] [pages=N] [phys=ADDR] FLAGS... [N0=..]`; the size
//! column includes one guard page. Records flagged `vmalloc` with a `pages=` count are vmalloc
//! allocations; `vmalloc` records without one are percpu chunks (no pages of their own) and
//! count as "other", as do `user`-only, `vm_map_ram`, `dma-coherent`... records. Lazily freed
//! `unpurged vm_area` records hold address space only and are summed apart.

use std::collections::HashMap;

use memwarden_model::host::{VmallocCaller, VmallocInfo};
use memwarden_model::units::{is_page_size, PAGE_SIZE};

use crate::error::{Error, Result};
use crate::text::{numbered_lines, parse_u64};

const PATH: &str = "/proc/vmallocinfo";
const EXPECTED: &str = "\"0xSTART-0xEND SIZE [caller] [pages=N] flags...\"";

/// How many callers [`VmallocInfo::top_callers`] keeps.
pub const TOP_CALLERS: usize = 20;

/// Words the kernel prints as flags (never a caller).
const FLAGS: &[&str] = &[
    "ioremap",
    "vmalloc",
    "vmap",
    "user",
    "dma-coherent",
    "sparse",
    "vpages",
    "vm_map_ram",
];

/// Callers that allocate kernel stacks (CONFIG_VMAP_STACK): `kernel_clone` since 5.10,
/// `_do_fork` before; `copy_process`, `dup_task_struct` and `alloc_thread_stack_node` where the
/// compiler did not inline them.
pub const STACK_CALLERS: &[&str] = &[
    "kernel_clone",
    "_do_fork",
    "copy_process",
    "dup_task_struct",
    "alloc_thread_stack_node",
];

/// Parses and summarizes /proc/vmallocinfo with 4 KiB pages; see [`parse_with_page_size`].
pub fn parse(text: &str) -> Result<VmallocInfo> {
    parse_with_page_size(text, PAGE_SIZE)
}

/// Parses and summarizes /proc/vmallocinfo, `pages=` counted in pages of `page_size` bytes
/// (4 KiB when that is not a plausible page size). Sums saturate (a corrupt file cannot
/// overflow them).
pub fn parse_with_page_size(text: &str, page_size: u64) -> Result<VmallocInfo> {
    let page_size = if is_page_size(page_size) {
        page_size
    } else {
        PAGE_SIZE
    };
    let mut info = VmallocInfo::default();
    let mut callers: HashMap<&str, (u64, u64)> = HashMap::new();
    for (n, line) in numbered_lines(text) {
        let bad = || Error::parse(PATH, n, EXPECTED, line);
        let mut words = line.split_whitespace();
        let range = words.next().ok_or_else(bad)?;
        if !range.starts_with("0x") || !range.contains('-') {
            return Err(bad());
        }
        let size = words.next().and_then(parse_u64).ok_or_else(bad)?;
        let rest: Vec<&str> = words.collect();
        if rest == ["unpurged", "vm_area"] {
            info.unpurged_bytes = info.unpurged_bytes.saturating_add(size);
            continue;
        }
        let caller = rest
            .first()
            .filter(|w| !FLAGS.contains(w) && !w.contains('='))
            .map(|w| w.split('+').next().unwrap_or(w));
        let mut pages = None;
        for w in &rest {
            if let Some(p) = w.strip_prefix("pages=") {
                pages = Some(parse_u64(p).ok_or_else(bad)?);
            }
        }
        let has = |flag: &str| rest.contains(&flag);
        match pages {
            Some(pages) if has("vmalloc") => {
                let bytes = pages.saturating_mul(page_size);
                if caller.is_some_and(|c| STACK_CALLERS.contains(&c)) {
                    info.stack_bytes = info.stack_bytes.saturating_add(bytes);
                }
                info.vmalloc_pages_bytes = info.vmalloc_pages_bytes.saturating_add(bytes);
                info.vmalloc_size_bytes = info.vmalloc_size_bytes.saturating_add(size);
                info.vmalloc_records = info.vmalloc_records.saturating_add(1);
                let slot = callers.entry(caller.unwrap_or("?")).or_default();
                slot.0 = slot.0.saturating_add(bytes);
                slot.1 = slot.1.saturating_add(1);
            }
            _ if caller == Some("pcpu_get_vm_areas") => {
                info.percpu_chunk_bytes = info.percpu_chunk_bytes.saturating_add(size);
                info.other_bytes = info.other_bytes.saturating_add(size);
            }
            _ if has("ioremap") => info.ioremap_bytes = info.ioremap_bytes.saturating_add(size),
            _ if has("vmap") => info.vmap_bytes = info.vmap_bytes.saturating_add(size),
            _ => info.other_bytes = info.other_bytes.saturating_add(size),
        }
    }
    let mut top: Vec<VmallocCaller> = callers
        .into_iter()
        .map(|(caller, (bytes, records))| VmallocCaller {
            caller: caller.to_string(),
            bytes,
            records,
        })
        .collect();
    top.sort_by(|a, b| b.bytes.cmp(&a.bytes).then_with(|| a.caller.cmp(&b.caller)));
    top.truncate(TOP_CALLERS);
    info.top_callers = top;
    Ok(info)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Copied from this machine's live /proc/vmallocinfo (kernel 6.18), one line of each kind.
    const LIVE: &str = "\
0x000000004b29ced0-0x000000004251ce06   20480 irq_init_percpu_irqstack+0xed/0x120 vmap
0x000000004251ce06-0x00000000d2a49009    8192 acpi_os_map_iomem+0x1bc/0x1e0 phys=0x00000000000a0000 ioremap
0x0000000045fcff8a-0x0000000050d3bde0   20480 kernel_clone+0xb8/0x400 pages=4 vmalloc N0=4
0x00000000f4c82133-0x000000003efad2e5   20480 kernel_clone+0xb8/0x400 pages=4 vmalloc N0=4
0x000000004d8b6a09-0x00000000a154495a 2097152 pcpu_get_vm_areas+0x0/0x1050 vmalloc
0x00000000df2863ee-0x000000007a860b00   20480 unpurged vm_area
";

    #[test]
    fn sums_by_kind() {
        let v = parse(LIVE).expect("parses");
        assert_eq!(v.vmalloc_pages_bytes, 8 * 4096);
        assert_eq!(v.vmalloc_size_bytes, 2 * 20480);
        assert_eq!(v.vmalloc_records, 2);
        assert_eq!(v.ioremap_bytes, 8192);
        assert_eq!(v.vmap_bytes, 20480);
        assert_eq!(v.other_bytes, 2097152);
        assert_eq!(v.unpurged_bytes, 20480);
        assert_eq!(v.stack_bytes, 8 * 4096, "kernel_clone records are stacks");
        assert_eq!(v.percpu_chunk_bytes, 2097152);
        assert_eq!(
            v.top_callers,
            [VmallocCaller {
                caller: "kernel_clone".into(),
                bytes: 8 * 4096,
                records: 2
            }]
        );
    }

    #[test]
    fn module_callers_and_missing_callers() {
        let text = "\
0xffffc90000001000-0xffffc90000023000  139264 xfs_buf_map+0x1e/0x40 [xfs] pages=33 vmalloc vpages N0=33
0xffffc90000030000-0xffffc90000034000   16384 pages=3 vmalloc user
0xffffc90000040000-0xffffc90000042000    8192 vm_map_ram
";
        let v = parse(text).expect("parses");
        assert_eq!(v.vmalloc_pages_bytes, 36 * 4096);
        assert_eq!(v.top_callers[0].caller, "xfs_buf_map");
        assert_eq!(v.top_callers[1].caller, "?");
        assert_eq!(v.other_bytes, 8192);
    }

    #[test]
    fn keeps_the_top_twenty_largest_first() {
        let text: String = (1..=30)
            .map(|i| {
                format!(
                    "0x1-0x2 {} f{i}+0x0/0x1 pages={i} vmalloc\n",
                    (i + 1) * 4096
                )
            })
            .collect();
        let v = parse(&text).expect("parses");
        assert_eq!(v.top_callers.len(), TOP_CALLERS);
        assert_eq!(v.top_callers[0].caller, "f30");
        assert_eq!(v.top_callers[19].caller, "f11");
    }

    #[test]
    fn pages_count_in_the_hosts_page_size() {
        let text = "0x1-0x2 139264 f+0x0/0x1 pages=2 vmalloc\n";
        let v = parse_with_page_size(text, 65536).expect("parses");
        assert_eq!(v.vmalloc_pages_bytes, 2 * 65536);
        let v = parse_with_page_size(text, 12345).expect("parses");
        assert_eq!(
            v.vmalloc_pages_bytes,
            2 * 4096,
            "implausible page size: 4 KiB"
        );
        let huge = "0x1-0x2 4096 f+0x0/0x1 pages=18446744073709551615 vmalloc\n";
        assert_eq!(parse(huge).expect("parses").vmalloc_pages_bytes, u64::MAX);
    }

    #[test]
    fn rejects_malformed_records() {
        assert!(parse("garbage\n").is_err());
        assert!(parse("0x1-0x2 notasize vmalloc\n").is_err());
        assert!(parse("0x1-0x2 4096 f pages=x vmalloc\n").is_err());
    }
}
