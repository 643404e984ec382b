//! Kernel memory, counted once: the terms every decomposition subtracts from MemTotal, with the
//! rule used for each term that can be counted two ways, and the figures refused by their
//! sanity bound.
//!
//! - **vmalloc**: meminfo `VmallocUsed` (one moment, the same as the other meminfo fields) when
//!   the kernel prints it (5.3+; 4.4–5.2 print 0); vmallocinfo's `pages=` sum otherwise. The
//!   other figure is the cross-check (the `vmalloc` identity).
//! - **KernelStack**: with CONFIG_VMAP_STACK (every x86-64 distribution kernel) stacks are
//!   vmalloc'd, so KernelStack is inside the vmalloc figure. Detected from the data: the
//!   stack callers' `pages=` in vmallocinfo ≈ KernelStack (plus a few stacks in flight or
//!   cached per CPU). Then KernelStack is not subtracted again.
//! - **per-CPU free pages**: zoneinfo's pcp `count:`, which has left MemFree but is on no LRU
//!   and in no other meminfo field.
//! - **Percpu**: its first chunk is allocated from memblock at boot (mm/percpu.c,
//!   pcpu_embed_first_chunk; `pcpu_nr_populated += PFN_DOWN(size_sum)` in
//!   pcpu_setup_first_chunk), outside MemTotal, yet counted in `Percpu`. With no dynamic
//!   chunk in vmallocinfo (`pcpu_get_vm_areas`), Percpu is that chunk alone and is not
//!   subtracted; otherwise it is subtracted and the first chunk is a caveat with its bounds.
//! - **balloon**: pages a balloon driver holds (meminfo `Balloon` where printed, else vmstat
//!   `balloon_inflate − balloon_deflate`). With VIRTIO_BALLOON_F_DEFLATE_ON_OOM the driver
//!   leaves them in MemTotal (subtracted, named); without it the driver took them out of
//!   MemTotal (not subtracted, named in a rule).
//! - **zram, socket buffers, DMA-buf**: pages no meminfo field counts, or counts in part: see
//!   [`super::consumers`]; the ZFS ARC's scatter buffers: [`super::zfs`].

use memwarden_model::host::HostSample;
use memwarden_model::units::{format_bytes, KIB};
use serde::Serialize;

use super::terms::{hugetlb_bytes, Part};

/// Kernel stack size on x86-64 (THREAD_SIZE, 16 KiB with KASAN off).
const STACK_BYTES: u64 = 16 * KIB;

/// The kernel terms of one sample.
#[derive(Debug, Clone, Default, Serialize)]
pub struct KernelTerms {
    pub parts: Vec<Part>,
    /// Which rule decided each term that can be counted two ways, one line each.
    pub rules: Vec<String>,
    /// What X misses or over-counts that memwarden can bound but not remove.
    pub caveats: Vec<String>,
    /// Figures that failed their sanity bound (larger than MemTotal): not used.
    pub refused: Vec<String>,
    /// Set when a refused figure had no replacement: X cannot be computed.
    pub blocks_x: Option<String>,
    /// Named consumers whose pages are in X at most in part (the rest may be in a meminfo
    /// field, or not memory): shown beside X, not subtracted ([`super::consumers`]).
    pub within_x: Vec<Part>,
}

/// Evaluates the kernel terms on `s`.
pub fn terms(s: &HostSample) -> KernelTerms {
    let mut k = KernelTerms::default();
    let total = s.meminfo.get_or_zero("MemTotal");
    let mi = |key: &str| s.meminfo.get(key);
    let ps = s.page_size();

    k.push(
        total,
        "Slab",
        mi("Slab"),
        "meminfo Slab (SReclaimable + SUnreclaim)",
    );

    let vmalloc = vmalloc_figure(s, total, &mut k);
    let stacks_in_vmalloc = stacks_rule(s, &vmalloc, &mut k);
    if let Some((bytes, source)) = vmalloc {
        let label = if stacks_in_vmalloc {
            "vmalloc (incl. stacks)"
        } else {
            "vmalloc"
        };
        k.push(total, label, Some(bytes), &source);
    }
    for key in [
        "PageTables",
        "KernelStack",
        "ShadowCallStack",
        "HardwareCorrupted",
        "Bounce",
        "Zswap",
        "Unaccepted",
    ] {
        if key == "KernelStack" && stacks_in_vmalloc {
            continue;
        }
        k.push(total, key, mi(key), &format!("meminfo {key}"));
    }
    super::kvm::add(s, total, &mut k);
    percpu(s, total, &mut k);
    if let Some(z) = &s.zoneinfo {
        let pcp = z.pcp_free_pages().saturating_mul(ps);
        k.push(
            total,
            "per-CPU free pages",
            Some(pcp),
            "zoneinfo pagesets count: free pages on CPUs' lists, out of MemFree",
        );
    } else {
        k.caveats.push(
            "zoneinfo was not read: free pages on the per-CPU lists (often most of X) are in X"
                .to_string(),
        );
    }
    balloon(s, total, &mut k);
    super::consumers::add(s, total, &mut k);
    super::zfs::add(s, total, &mut k);
    k.push(
        total,
        "hugetlb pools",
        hugetlb_bytes(s).filter(|b| *b > 0),
        "hugepages sysfs nr_hugepages × size (all sizes)",
    );
    k
}

impl KernelTerms {
    /// Adds a part if present and within its sanity bound (≤ MemTotal); else notes it refused.
    pub(super) fn push(&mut self, total: u64, label: &str, bytes: Option<u64>, source: &str) {
        let Some(bytes) = bytes else { return };
        if !self.within_bound(total, label, bytes, source) {
            self.blocks_x.get_or_insert_with(|| {
                format!("{label} fails its sanity bound and nothing replaces it")
            });
            return;
        }
        self.parts.push(Part {
            label: label.into(),
            bytes,
            source: source.into(),
        });
    }

    fn within_bound(&mut self, total: u64, label: &str, bytes: u64, source: &str) -> bool {
        if bytes <= total {
            return true;
        }
        self.refused.push(format!(
            "{label} from {source} is {} ({bytes} bytes), more than MemTotal {}: not used",
            format_bytes(bytes),
            format_bytes(total)
        ));
        false
    }
}

/// The vmalloc figure and its source, by the rule in the module doc; each candidate must pass
/// its sanity bound.
fn vmalloc_figure(s: &HostSample, total: u64, k: &mut KernelTerms) -> Option<(u64, String)> {
    let used = s.meminfo.get("VmallocUsed");
    let info = s.vmalloc.as_ref().map(|v| v.vmalloc_pages_bytes);
    let mut candidates: Vec<(u64, &str, &str)> = Vec::new();
    match (used, info) {
        (Some(u), _) if u > 0 => {
            candidates.push((
                u,
                "meminfo VmallocUsed",
                "VmallocUsed (5.3+; read with the rest of meminfo)",
            ));
            if let Some(i) = info {
                candidates.push((
                    i,
                    "vmallocinfo: pages= of vmalloc records",
                    "vmallocinfo pages= (VmallocUsed refused)",
                ));
            }
        }
        (_, Some(i)) => {
            candidates.push((
                i,
                "vmallocinfo: pages= of vmalloc records",
                "vmallocinfo pages= (VmallocUsed is 0 or absent: kernels 4.4–5.2)",
            ));
        }
        (Some(u), None) => candidates.push((
            u,
            "meminfo VmallocUsed",
            "VmallocUsed (vmallocinfo not read)",
        )),
        (None, None) => return None,
    }
    let mut chosen = None;
    for (bytes, source, rule) in candidates {
        // Every candidate is checked, the one not chosen too: a cross-check figure that fails
        // its bound is reported, not silently ignored.
        if k.within_bound(total, "vmalloc", bytes, source) && chosen.is_none() {
            let carried = s.vmalloc.as_ref().and_then(|v| v.carried_from_unix_ms);
            let carried = if carried.is_some() && source.starts_with("vmallocinfo") {
                ", carried from the last read (vmallocinfo is read on the PSS cadence)"
            } else {
                ""
            };
            k.rules.push(format!("vmalloc: {rule}{carried}"));
            chosen = Some((bytes, source.to_string()));
        }
    }
    if chosen.is_some() {
        return chosen;
    }
    k.blocks_x
        .get_or_insert_with(|| "no vmalloc figure passes its sanity bound".to_string());
    None
}

/// Whether KernelStack is inside the vmalloc figure (CONFIG_VMAP_STACK), decided from the data.
fn stacks_rule(s: &HostSample, vmalloc: &Option<(u64, String)>, k: &mut KernelTerms) -> bool {
    let Some(ks) = s.meminfo.get("KernelStack") else {
        return false;
    };
    let Some(v) = &s.vmalloc else {
        k.rules.push(
            "KernelStack: counted on its own (vmallocinfo not read: cannot tell whether stacks \
             are vmalloc'd)"
                .to_string(),
        );
        return false;
    };
    if vmalloc.is_none() || ks == 0 {
        return false;
    }
    let stacks = v.stack_bytes;
    // Stacks in flight (being freed) and cached per CPU (NR_CACHED_STACKS = 2) are vmalloc'd
    // but no longer in KernelStack.
    let cpus = s
        .zoneinfo
        .as_ref()
        .and_then(|z| z.zones.iter().flat_map(|z| &z.pcp).map(|p| p.cpu).max())
        .map_or(64, |c| u64::from(c) + 1);
    let slack = (ks / 10).max(STACK_BYTES.saturating_mul(4).saturating_mul(cpus));
    if stacks > s.meminfo.get_or_zero("MemTotal") {
        k.rules.push(format!(
            "KernelStack {}: counted on its own (vmallocinfo's stack figure {} fails its sanity \
             bound, more than MemTotal: not used)",
            format_bytes(ks),
            format_bytes(stacks)
        ));
        false
    } else if stacks == 0 {
        k.rules.push(
            "KernelStack: counted on its own (no stack callers in vmallocinfo: stacks are not \
             vmalloc'd)"
                .to_string(),
        );
        false
    } else if stacks.abs_diff(ks) <= slack {
        k.rules.push(format!(
            "KernelStack {}: counted once, inside vmalloc (CONFIG_VMAP_STACK: vmallocinfo's \
             stack callers hold {}, ≈ KernelStack)",
            format_bytes(ks),
            format_bytes(stacks)
        ));
        true
    } else {
        k.rules.push(format!(
            "KernelStack {}: counted on its own (vmallocinfo's stack callers hold {}, not ≈ \
             KernelStack within {}: cannot tell)",
            format_bytes(ks),
            format_bytes(stacks),
            format_bytes(slack)
        ));
        false
    }
}

/// Percpu, with its first chunk outside MemTotal (module doc).
fn percpu(s: &HostSample, total: u64, k: &mut KernelTerms) {
    let Some(pc) = s.meminfo.get("Percpu").filter(|b| *b > 0) else {
        return;
    };
    match s.vmalloc.as_ref().map(|v| v.percpu_chunk_bytes) {
        Some(0) => k.rules.push(format!(
            "Percpu {}: not subtracted (no dynamic chunk in vmallocinfo: it is all the first \
             chunk, allocated at boot outside MemTotal)",
            format_bytes(pc)
        )),
        chunks => {
            k.push(total, "Percpu", Some(pc), "meminfo Percpu");
            let low = chunks.map_or(0, |c| pc.saturating_sub(c));
            k.caveats.push(format!(
                "Percpu {} includes the percpu first chunk, allocated at boot outside MemTotal: \
                 X is understated by its size, between {} and {} (dynamic chunks hold the rest; \
                 the kernel's boot line \"percpu: Embedded N pages/cpu\" gives it exactly)",
                format_bytes(pc),
                format_bytes(low),
                format_bytes(pc)
            ));
        }
    }
}

/// Pages held by balloon drivers, and whether they are inside MemTotal.
fn balloon(s: &HostSample, total: u64, k: &mut KernelTerms) {
    let from_vmstat = s.vmstat.as_ref().and_then(|v| {
        let inflated = v.get("balloon_inflate")?;
        let deflated = v.get("balloon_deflate").unwrap_or(0);
        Some(
            inflated
                .saturating_sub(deflated)
                .saturating_mul(s.page_size()),
        )
    });
    let (bytes, source) = match (s.meminfo.get("Balloon"), from_vmstat) {
        (Some(b), _) => (b, "meminfo Balloon"),
        (None, Some(b)) => (b, "vmstat balloon_inflate − balloon_deflate"),
        (None, None) => return,
    };
    if bytes == 0 {
        return;
    }
    match s.virtio_balloon.as_ref().map(|b| b.deflate_on_oom()) {
        Some(true) => {
            k.push(
                total,
                "balloon (deflate-on-oom)",
                Some(bytes),
                &format!("{source}; the device has deflate-on-oom: pages stay in MemTotal"),
            );
            k.rules.push(format!(
                "balloon {}: subtracted (deflate-on-oom keeps its pages in MemTotal)",
                format_bytes(bytes)
            ));
        }
        Some(false) => k.rules.push(format!(
            "balloon {} ({source}): not subtracted (without deflate-on-oom the driver took its \
             pages out of MemTotal)",
            format_bytes(bytes)
        )),
        None => k.caveats.push(format!(
            "a balloon holds {} ({source}); its device's features are not readable: with \
             deflate-on-oom those pages are in MemTotal and in X, without it they are already \
             outside MemTotal",
            format_bytes(bytes)
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use memwarden_model::host::{
        Meminfo, MeminfoEntry, MeminfoUnit, PcpList, VirtioBalloonSysfs, VmallocInfo, Vmstat, Zone,
        ZoneInfo,
    };
    use memwarden_model::units::MIB;

    fn sample(meminfo: &[(&str, u64)]) -> HostSample {
        HostSample {
            meminfo: Meminfo {
                entries: meminfo
                    .iter()
                    .map(|(k, v)| MeminfoEntry {
                        key: (*k).into(),
                        value: *v,
                        unit: MeminfoUnit::Bytes,
                    })
                    .collect(),
            },
            ..Default::default()
        }
    }

    fn part(k: &KernelTerms, label: &str) -> Option<u64> {
        k.parts.iter().find(|p| p.label == label).map(|p| p.bytes)
    }

    #[test]
    fn vmap_stacks_are_counted_once() {
        let mut s = sample(&[
            ("MemTotal", 512 * MIB),
            ("VmallocUsed", 8 * MIB),
            ("KernelStack", 768 * KIB),
        ]);
        s.vmalloc = Some(VmallocInfo {
            vmalloc_pages_bytes: 8 * MIB,
            stack_bytes: 784 * KIB,
            ..Default::default()
        });
        let k = terms(&s);
        assert_eq!(part(&k, "vmalloc (incl. stacks)"), Some(8 * MIB));
        assert_eq!(part(&k, "KernelStack"), None);
        assert!(
            k.rules.iter().any(|r| r.contains("CONFIG_VMAP_STACK")),
            "{:?}",
            k.rules
        );
        // Not vmalloc'd: counted on its own.
        s.vmalloc.as_mut().expect("set").stack_bytes = 0;
        let k = terms(&s);
        assert_eq!(part(&k, "KernelStack"), Some(768 * KIB));
        assert_eq!(part(&k, "vmalloc"), Some(8 * MIB));
    }

    #[test]
    fn vmallocused_is_the_figure_and_a_refused_figure_is_replaced_or_blocks_x() {
        let mut s = sample(&[("MemTotal", 512 * MIB), ("VmallocUsed", 7 * MIB)]);
        s.vmalloc = Some(VmallocInfo {
            vmalloc_pages_bytes: u64::MAX,
            ..Default::default()
        });
        let k = terms(&s);
        assert_eq!(part(&k, "vmalloc"), Some(7 * MIB));
        assert!(k.blocks_x.is_none());
        // VmallocUsed 0 (4.4–5.2): vmallocinfo, which fails its bound: no figure, X blocked.
        let mut s = sample(&[("MemTotal", 512 * MIB), ("VmallocUsed", 0)]);
        s.vmalloc = Some(VmallocInfo {
            vmalloc_pages_bytes: u64::MAX,
            ..Default::default()
        });
        let k = terms(&s);
        assert_eq!(part(&k, "vmalloc"), None);
        assert_eq!(k.refused.len(), 1, "{:?}", k.refused);
        assert!(k.blocks_x.is_some());
    }

    #[test]
    fn pcp_free_pages_are_a_term() {
        let mut s = sample(&[("MemTotal", 512 * MIB)]);
        s.page_size_bytes = Some(4096);
        s.zoneinfo = Some(ZoneInfo {
            zones: vec![Zone {
                pcp: vec![
                    PcpList {
                        cpu: 0,
                        count_pages: 1000,
                        ..Default::default()
                    },
                    PcpList {
                        cpu: 1,
                        count_pages: 24,
                        ..Default::default()
                    },
                ],
                ..Default::default()
            }],
        });
        assert_eq!(part(&terms(&s), "per-CPU free pages"), Some(4 * MIB));
    }

    #[test]
    fn percpu_first_chunk() {
        let mut s = sample(&[("MemTotal", 512 * MIB), ("Percpu", 256 * KIB)]);
        s.vmalloc = Some(VmallocInfo::default());
        let k = terms(&s);
        assert_eq!(part(&k, "Percpu"), None, "first chunk only: not subtracted");
        s.vmalloc = Some(VmallocInfo {
            percpu_chunk_bytes: 2 * MIB,
            ..Default::default()
        });
        let k = terms(&s);
        assert_eq!(part(&k, "Percpu"), Some(256 * KIB));
        assert!(k
            .caveats
            .iter()
            .any(|c| c.contains("between 0 B and 256 KiB")));
    }

    #[test]
    fn balloon_is_named_by_its_deflate_on_oom_feature() {
        let mut s = sample(&[("MemTotal", 512 * MIB)]);
        s.vmstat = Some(Vmstat {
            entries: vec![
                ("balloon_inflate".into(), 40_000),
                ("balloon_deflate".into(), 7_232),
            ],
        });
        let k = terms(&s);
        assert!(k
            .caveats
            .iter()
            .any(|c| c.contains("a balloon holds 128 MiB")));
        s.virtio_balloon = Some(VirtioBalloonSysfs {
            features: "0010000".into(),
        });
        assert_eq!(
            part(&terms(&s), "balloon (deflate-on-oom)"),
            Some(128 * MIB)
        );
        s.virtio_balloon = Some(VirtioBalloonSysfs {
            features: "1100000".into(),
        });
        let k = terms(&s);
        assert_eq!(part(&k, "balloon (deflate-on-oom)"), None);
        assert!(k.rules.iter().any(|r| r.contains("balloon 128 MiB")));
    }
}
