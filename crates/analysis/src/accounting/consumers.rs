//! Consumers whose pages no meminfo field counts, or counts only in part: zram, socket buffers,
//! DMA-bufs. Each is counted once: subtracted from X only for the part that is outside every
//! meminfo field; a part that may sit in a meminfo field, or may not be memory at all, is named
//! as *inside X, at most* (`KernelTerms::within_x`) and X does not move.
//!
//! - **zram**: `mem_used_total` of every device is the pages its zsmalloc pool holds. zsmalloc
//!   takes them one at a time with `alloc_page()` (mm/zsmalloc.c `alloc_zspage`, Linux 6.1 and
//!   6.12 alike; the later zpdesc conversion keeps the counter) and counts them only in the
//!   zone counter `NR_ZSPAGES` (vmstat `nr_zspages`), which /proc/meminfo does not print: not
//!   in Slab (they
//!   are not slab pages), not on an LRU, not in Cached or Shmem, not in MemFree. They are
//!   subtracted whole. What a device also holds elsewhere is already counted where it is: its
//!   table is `vzalloc`'d (VmallocUsed), its handles and zspage descriptors come from slab
//!   caches (Slab), and `mem_used_total` (`zs_get_total_pages`) counts neither. zswap's pool
//!   is zsmalloc too but a separate pool, counted in meminfo `Zswap`: `nr_zspages` is zram's
//!   pools plus zswap's, the cross-check in the rule line.
//! - **socket buffers**: sockstat's `TCP mem` and `UDP mem` (pages, machine-wide) are what the
//!   protocols *charged* (`proto_memory_allocated`): the truesize of queued skbs, rounded up to
//!   whole pages of forward allocation, plus per-CPU reserves. That truesize is partly Slab
//!   (the `sk_buff` itself from skbuff_head_cache / skbuff_fclone_cache, heads that are
//!   kmalloc'd or from skbuff_small_head) and partly pages no meminfo field counts (page-frag
//!   heads and fragments), and the forward allocation is no memory at all; /proc does not say
//!   how it splits. `FRAG memory` (bytes, per network namespace) is the same kind of figure for
//!   reassembly queues. So the sum is named inside X, at most, and not subtracted.
//! - **DMA-buf**: what a buffer's pages are depends on its exporter. The system dma-heap
//!   (`system`) allocates with `alloc_pages()` and maps them to user space with
//!   `remap_pfn_range()` (drivers/dma-buf/heaps/system_heap.c): in no meminfo field and not in
//!   PSS, so subtracted. `udmabuf` buffers are the pages of a memfd (Shmem, already counted):
//!   not subtracted. Any other exporter (GPU drivers: shmem-backed GEM, TTM pool pages, device
//!   VRAM that is not RAM at all, CMA) cannot be told apart from /proc: inside X, at most.

use memwarden_model::host::HostSample;
use memwarden_model::units::format_bytes;

use super::kernel::KernelTerms;
use super::terms::Part;

/// The row labels (also the glossary keys `memwarden explain` knows them by).
pub const ZRAM: &str = "zram";
pub const SOCKET_BUFFERS: &str = "socket buffers";
pub const DMABUF: &str = "DMA-buf";

/// DMA-buf exporters whose pages are outside every meminfo field.
const OUTSIDE_MEMINFO_EXPORTERS: &[&str] = &["system"];
/// DMA-buf exporters whose pages a meminfo field already counts.
const IN_MEMINFO_EXPORTERS: &[(&str, &str)] = &[("udmabuf", "Shmem (a memfd's pages)")];

/// Adds the consumers' parts, rules and inside-X figures to `k`.
pub fn add(s: &HostSample, total: u64, k: &mut KernelTerms) {
    zram(s, total, k);
    sockets(s, k);
    dmabuf(s, total, k);
}

fn zram(s: &HostSample, total: u64, k: &mut KernelTerms) {
    let Some(devs) = &s.zram else { return };
    let bytes = devs
        .iter()
        .map(|d| d.mem_used_total_bytes)
        .fold(0u64, u64::saturating_add);
    if bytes == 0 {
        // Devices not set up, or empty: nothing held.
        return;
    }
    let names: Vec<&str> = devs
        .iter()
        .filter(|d| d.mem_used_total_bytes > 0)
        .map(|d| d.device.as_str())
        .collect();
    let zspages = s
        .vmstat
        .as_ref()
        .and_then(|v| v.get("nr_zspages"))
        .map(|p| p.saturating_mul(s.page_size()));
    let check = match zspages {
        Some(z) => format!(
            "; vmstat nr_zspages holds {} (zram's pools and zswap's)",
            format_bytes(z)
        ),
        None => String::new(),
    };
    k.rules.push(format!(
        "zram {}: subtracted ({}: zsmalloc pages, counted in no meminfo field{check})",
        format_bytes(bytes),
        names.join(", ")
    ));
    k.push(
        total,
        ZRAM,
        Some(bytes),
        "/sys/block/zram*/mm_stat mem_used_total: zsmalloc pages, in no meminfo field",
    );
}

/// Σ sockstat buffer memory in bytes, and what it is made of; `None` without sockstat.
pub fn socket_buffer_bytes(s: &HostSample) -> Option<(u64, String)> {
    let st = s.sockstat.as_ref()?;
    let ps = s.page_size();
    let mut parts = Vec::new();
    let mut bytes = 0u64;
    for (proto, key, pages) in [
        ("TCP", "mem", true),
        ("UDP", "mem", true),
        ("FRAG", "memory", false),
        ("FRAG6", "memory", false),
    ] {
        if let Some(v) = st.get(proto, key) {
            let b = if pages { v.saturating_mul(ps) } else { v };
            bytes = bytes.saturating_add(b);
            parts.push(format!("{proto} {key} {}", format_bytes(b)));
        }
    }
    Some((bytes, parts.join(" + ")))
}

fn sockets(s: &HostSample, k: &mut KernelTerms) {
    let Some((bytes, parts)) = socket_buffer_bytes(s) else {
        return;
    };
    if bytes == 0 {
        return;
    }
    k.rules.push(format!(
        "socket buffers {}: not subtracted, inside X at most ({parts}: charged truesize, part of \
         it Slab (sk_buff heads, kmalloc'd data) and part reservation; /proc does not split it)",
        format_bytes(bytes)
    ));
    k.within_x.push(Part {
        label: SOCKET_BUFFERS.into(),
        bytes,
        source: "sockstat TCP/UDP mem (pages) + FRAG/FRAG6 memory: charged, partly Slab".into(),
    });
}

fn dmabuf(s: &HostSample, total: u64, k: &mut KernelTerms) {
    let Some(d) = &s.dmabuf else { return };
    if d.total_bytes() == 0 {
        return;
    }
    let sum = |pred: &dyn Fn(&str) -> bool| -> u64 {
        d.exporters
            .iter()
            .filter(|e| pred(&e.exporter))
            .map(|e| e.bytes)
            .fold(0, u64::saturating_add)
    };
    let outside = sum(&|e| OUTSIDE_MEMINFO_EXPORTERS.contains(&e));
    let counted: Vec<String> = IN_MEMINFO_EXPORTERS
        .iter()
        .filter_map(|(name, field)| {
            let b = sum(&|e| e == *name);
            (b > 0).then(|| format!("{name} {} in {field}", format_bytes(b)))
        })
        .collect();
    let unknown = sum(&|e| {
        !OUTSIDE_MEMINFO_EXPORTERS.contains(&e)
            && !IN_MEMINFO_EXPORTERS.iter().any(|(n, _)| *n == e)
    });
    let cut = if d.truncated {
        " (more buffers than memwarden reads: a lower bound)"
    } else {
        ""
    };
    let mut rule = format!(
        "DMA-buf {} in {} buffers{cut}: system heap {} subtracted (alloc_pages, in no meminfo field)",
        format_bytes(d.total_bytes()),
        d.buffers(),
        format_bytes(outside)
    );
    if !counted.is_empty() {
        rule.push_str(&format!("; already counted: {}", counted.join(", ")));
    }
    if unknown > 0 {
        rule.push_str(&format!(
            "; other exporters {} inside X at most (shmem, TTM pool, device memory or CMA: \
             /proc cannot tell)",
            format_bytes(unknown)
        ));
        k.within_x.push(Part {
            label: format!("{DMABUF} (other exporters)"),
            bytes: unknown,
            source: "DMA-buf sizes of exporters other than the system heap and udmabuf".into(),
        });
    }
    k.rules.push(rule);
    if outside > 0 {
        k.push(
            total,
            DMABUF,
            Some(outside),
            "DMA-buf sizes of the system heap: alloc_pages(), in no meminfo field",
        );
    }
}

#[cfg(test)]
mod tests {
    use super::super::kernel::terms;
    use super::*;
    use memwarden_model::host::{
        DmaBufSource, DmaBufs, Meminfo, MeminfoEntry, MeminfoUnit, Sockstat, SockstatEntry, Vmstat,
        ZramMmStat,
    };
    use memwarden_model::units::MIB;

    fn sample() -> HostSample {
        HostSample {
            meminfo: Meminfo {
                entries: vec![MeminfoEntry {
                    key: "MemTotal".into(),
                    value: 512 * MIB,
                    unit: MeminfoUnit::Bytes,
                }],
            },
            page_size_bytes: Some(4096),
            ..Default::default()
        }
    }

    fn part<'a>(parts: &'a [Part], label: &str) -> Option<&'a Part> {
        parts.iter().find(|p| p.label == label)
    }

    #[test]
    fn zram_is_subtracted_whole_and_cross_checked() {
        let mut s = sample();
        s.zram = Some(vec![
            ZramMmStat {
                device: "zram0".into(),
                mem_used_total_bytes: 16 * MIB,
                ..Default::default()
            },
            ZramMmStat {
                device: "zram1".into(),
                mem_used_total_bytes: 4 * MIB,
                ..Default::default()
            },
        ]);
        s.vmstat = Some(Vmstat {
            entries: vec![("nr_zspages".into(), 5120)],
        });
        let k = terms(&s);
        assert_eq!(part(&k.parts, ZRAM).map(|p| p.bytes), Some(20 * MIB));
        let rule = k
            .rules
            .iter()
            .find(|r| r.starts_with("zram"))
            .expect("rule");
        assert!(rule.contains("zram0, zram1"), "{rule}");
        assert!(rule.contains("nr_zspages holds 20.0 MiB"), "{rule}");
        // No zram device: no row, no rule.
        let k = terms(&sample());
        assert!(part(&k.parts, ZRAM).is_none());
        assert!(!k.rules.iter().any(|r| r.starts_with("zram")));
    }

    #[test]
    fn a_zram_figure_larger_than_memtotal_is_refused() {
        let mut s = sample();
        s.zram = Some(vec![ZramMmStat {
            device: "zram0".into(),
            mem_used_total_bytes: u64::MAX,
            ..Default::default()
        }]);
        let k = terms(&s);
        assert!(part(&k.parts, ZRAM).is_none());
        assert!(k.blocks_x.is_some());
    }

    #[test]
    fn socket_buffers_are_inside_x_not_subtracted() {
        let mut s = sample();
        let e = |p: &str, k: &str, v| SockstatEntry {
            protocol: p.into(),
            key: k.into(),
            value: v,
        };
        s.sockstat = Some(Sockstat {
            entries: vec![
                e("TCP", "mem", 2048),
                e("UDP", "mem", 512),
                e("FRAG", "memory", 1 << 20),
            ],
            ipv6: false,
        });
        let k = terms(&s);
        assert!(part(&k.parts, SOCKET_BUFFERS).is_none());
        assert_eq!(
            part(&k.within_x, SOCKET_BUFFERS).map(|p| p.bytes),
            Some(11 * MIB)
        );
        assert!(k
            .rules
            .iter()
            .any(|r| r.starts_with("socket buffers 11.0 MiB")));
    }

    #[test]
    fn dmabuf_is_split_by_exporter() {
        let mut s = sample();
        s.dmabuf = Some(DmaBufs::from_buffers(
            DmaBufSource::Sysfs,
            [
                ("system", 8 * MIB),
                ("system", 2 * MIB),
                ("udmabuf", MIB),
                ("i915", 4 * MIB),
            ],
            false,
        ));
        let k = terms(&s);
        assert_eq!(part(&k.parts, DMABUF).map(|p| p.bytes), Some(10 * MIB));
        assert_eq!(
            part(&k.within_x, "DMA-buf (other exporters)").map(|p| p.bytes),
            Some(4 * MIB)
        );
        let rule = k
            .rules
            .iter()
            .find(|r| r.starts_with("DMA-buf"))
            .expect("rule");
        assert!(rule.contains("udmabuf 1.00 MiB in Shmem"), "{rule}");
        assert!(rule.contains("in 4 buffers"), "{rule}");
    }
}
