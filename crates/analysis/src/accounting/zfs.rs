//! The ZFS ARC, counted once. arcstats `size` is everything the ARC holds, but where its pages sit
//! depends on how each buffer was allocated (OpenZFS 2.1, module/os/linux):
//!
//! - **scatter ABDs** (`zfs_abd_scatter_enabled=1`, the default: most data and metadata
//!   buffers larger than `zfs_abd_scatter_min_size`): pages taken with `alloc_pages_node()`
//!   (zfs/abd_os.c `abd_alloc_chunks`, compound up to `zfs_abd_scatter_max_order`). The module
//!   counts them only in its own abdstats (`scatter_data_size`, plus `scatter_chunk_waste` for
//!   the unused tail of the last chunk, which arcstats also shows as `abd_chunk_waste_size`);
//!   no meminfo field, no LRU, no Slab. These are subtracted from X.
//! - **linear ABDs** (`linear_data_size`: small buffers, and every buffer with scatter off):
//!   `zio_buf_*`/`zio_data_buf_*` kmem caches. The SPL backs a cache of objects up to
//!   `spl_kmem_cache_slab_limit` (16 KiB) with a Linux slab cache (meminfo Slab) and a larger
//!   one with its own slabs from `spl_kvmalloc()` (kmalloc, whose large pages are Slab too, or
//!   vmalloc: VmallocUsed). Already counted: not subtracted again.
//! - **uncompressed copies** handed to the DMU (`arc_buf_t` data beside a compressed or scatter
//!   header, arcstats `overhead_size`): `arc_get_data_buf()` takes them from the same
//!   `zio_buf_*` caches directly, not through an ABD: Slab or VmallocUsed as above.
//! - **headers, dbufs, dnodes, bonus buffers** (`hdr_size`, `dbuf_size`, `dnode_size`,
//!   `bonus_size`) and the `abd_t` structs (`struct_size`): small kmem caches, Slab.
//!
//! Measured in a lab guest (Debian 6.1.0-57, OpenZFS 2.1.11 from zfs-dkms, 512 MiB, a 160 MiB
//! random file read back after `zpool export`/`import`; `zfs_arc_in_a_real_guest.rs`): arcstats
//! `size` 4.2 → 176.4 MB; abdstats `scatter_data_size` +167.8 MB (1,280 order-5 chunks of 128
//! KiB); MemFree −172.1 MB, Slab +0.6 MB, VmallocUsed +4.1 MB (the SPL's `spl_cache_grow_work`
//! areas, 9.1 → 13.2 MB: `zio_buf_comb_131072` slabs holding the copies); so meminfo's
//! unaccounted rest grew by 167.3 MB, the scatter figure within 0.5 MB. The same read with
//! `zfs_abd_scatter_enabled=0`: abdstats `linear_data_size` +167.8 MB, `scatter_data_size`
//! unchanged, VmallocUsed +166.1 MB, X 3.01 → 3.01 MB: with linear ABDs meminfo counts the
//! ARC, and the row (the scatter figure) is about nothing, as it must be. Without abdstats (ZFS
//! before 0.7: no ABDs, every buffer from a kmem cache) nothing is outside meminfo for sure:
//! `data_size + metadata_size` is shown inside X, at most, and not subtracted.

use memwarden_model::host::HostSample;
use memwarden_model::units::format_bytes;

use super::kernel::KernelTerms;
use super::terms::Part;

/// The row label (also the glossary key `memwarden explain` knows it by).
pub const ZFS_ARC: &str = "ZFS ARC";

/// The ARC's pages outside every meminfo field: abdstats `scatter_data_size +
/// scatter_chunk_waste`; `None` without abdstats.
pub fn outside_meminfo_bytes(s: &HostSample) -> Option<u64> {
    let z = s.zfs.as_ref()?;
    let data = z.abd("scatter_data_size")?;
    Some(data.saturating_add(z.abd("scatter_chunk_waste").unwrap_or(0)))
}

/// Adds the ARC's part, rule or inside-X figure to `k`.
pub fn add(s: &HostSample, total: u64, k: &mut KernelTerms) {
    let Some(z) = &s.zfs else { return };
    let size = z.arc("size").unwrap_or(0);
    match outside_meminfo_bytes(s) {
        Some(scatter) => {
            let linear = z.abd("linear_data_size").unwrap_or(0);
            let rest = size.saturating_sub(scatter);
            k.rules.push(format!(
                "ZFS ARC {}: scatter ABDs {} subtracted (abdstats scatter_data_size + \
                 scatter_chunk_waste: alloc_pages_node(), in no meminfo field); the rest {} \
                 (linear ABDs {}, headers, dbufs, dnodes) is kmem caches, already in Slab or \
                 VmallocUsed",
                format_bytes(size),
                format_bytes(scatter),
                format_bytes(rest),
                format_bytes(linear)
            ));
            if scatter > 0 {
                k.push(
                    total,
                    ZFS_ARC,
                    Some(scatter),
                    "abdstats scatter_data_size + scatter_chunk_waste: ARC pages in no meminfo field",
                );
            }
        }
        None => {
            let bufs = z
                .arc("data_size")
                .unwrap_or(0)
                .saturating_add(z.arc("metadata_size").unwrap_or(0));
            k.rules.push(format!(
                "ZFS ARC {}: not subtracted, no abdstats (ZFS before 0.7, or unreadable): its \
                 buffers {} are inside X at most (kmem caches in Slab or VmallocUsed otherwise)",
                format_bytes(size),
                format_bytes(bufs)
            ));
            if bufs > 0 {
                k.within_x.push(Part {
                    label: ZFS_ARC.into(),
                    bytes: bufs,
                    source: "arcstats data_size + metadata_size, allocation unknown".into(),
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::kernel::terms;
    use super::*;
    use memwarden_model::host::{KstatEntry, Meminfo, MeminfoEntry, MeminfoUnit, ZfsArc};
    use memwarden_model::units::MIB;

    fn kstat(pairs: &[(&str, u64)]) -> Vec<KstatEntry> {
        pairs
            .iter()
            .map(|(n, v)| KstatEntry {
                name: (*n).into(),
                value: i64::try_from(*v).expect("small"),
            })
            .collect()
    }

    fn sample(zfs: Option<ZfsArc>) -> HostSample {
        HostSample {
            meminfo: Meminfo {
                entries: vec![MeminfoEntry {
                    key: "MemTotal".into(),
                    value: 512 * MIB,
                    unit: MeminfoUnit::Bytes,
                }],
            },
            zfs,
            ..Default::default()
        }
    }

    fn part<'a>(parts: &'a [Part], label: &str) -> Option<&'a Part> {
        parts.iter().find(|p| p.label == label)
    }

    #[test]
    fn scatter_abds_are_subtracted_the_rest_is_not() {
        let k = terms(&sample(Some(ZfsArc {
            arcstats: kstat(&[("size", 140 * MIB), ("data_size", 128 * MIB)]),
            abdstats: Some(kstat(&[
                ("scatter_data_size", 126 * MIB),
                ("scatter_chunk_waste", MIB),
                ("linear_data_size", 6 * MIB),
            ])),
        })));
        assert_eq!(part(&k.parts, ZFS_ARC).map(|p| p.bytes), Some(127 * MIB));
        assert!(part(&k.within_x, ZFS_ARC).is_none());
        let rule = k
            .rules
            .iter()
            .find(|r| r.starts_with("ZFS ARC"))
            .expect("rule");
        assert!(rule.contains("the rest 13.0 MiB"), "{rule}");
        assert!(rule.contains("linear ABDs 6.00 MiB"), "{rule}");
    }

    #[test]
    fn without_abdstats_the_buffers_are_inside_x_at_most() {
        let k = terms(&sample(Some(ZfsArc {
            arcstats: kstat(&[
                ("size", 40 * MIB),
                ("data_size", 30 * MIB),
                ("metadata_size", 5 * MIB),
            ]),
            abdstats: None,
        })));
        assert!(part(&k.parts, ZFS_ARC).is_none());
        assert_eq!(part(&k.within_x, ZFS_ARC).map(|p| p.bytes), Some(35 * MIB));
    }

    #[test]
    fn no_zfs_no_row_no_rule() {
        let k = terms(&sample(None));
        assert!(part(&k.parts, ZFS_ARC).is_none());
        assert!(!k.rules.iter().any(|r| r.starts_with("ZFS")));
    }

    #[test]
    fn a_scatter_figure_larger_than_memtotal_is_refused() {
        let k = terms(&sample(Some(ZfsArc {
            arcstats: kstat(&[("size", 1 << 40)]),
            abdstats: Some(kstat(&[("scatter_data_size", 1 << 40)])),
        })));
        assert!(part(&k.parts, ZFS_ARC).is_none());
        assert!(k.blocks_x.is_some());
    }
}
