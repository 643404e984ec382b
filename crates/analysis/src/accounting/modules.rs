//! Kernel modules: what lsmod says versus what vmalloc really gives them.

use memwarden_model::host::HostSample;
use memwarden_model::units::PAGE_SIZE;
use serde::Serialize;

/// What a module of `size_bytes` (lsmod's column) takes from vmalloc space with 4 KiB pages:
/// whole pages plus the guard page vmalloc puts after every area. 69417 bytes (floppy) → 16
/// pages + 1 = 73728.
pub fn vmalloc_footprint(size_bytes: u64) -> u64 {
    vmalloc_footprint_at(size_bytes, PAGE_SIZE)
}

/// [`vmalloc_footprint`] with pages of `page_size` bytes (the sample's).
pub fn vmalloc_footprint_at(size_bytes: u64, page_size: u64) -> u64 {
    let page_size = page_size.max(1);
    size_bytes
        .div_ceil(page_size)
        .saturating_add(1)
        .saturating_mul(page_size)
}

/// Modules in total.
#[derive(Debug, Clone, Serialize)]
pub struct ModulesSummary {
    pub count: usize,
    /// Σ lsmod size.
    pub lsmod_bytes: u64,
    /// Σ [`vmalloc_footprint`]: address space including guard pages.
    pub footprint_bytes: u64,
    /// Σ pages actually backing them (footprint minus the guard pages): what VmallocUsed counts.
    pub backing_bytes: u64,
    /// What vmallocinfo's module-loading callers hold (pages= bytes), when vmallocinfo was read:
    /// should equal `backing_bytes`.
    pub vmalloc_module_bytes: Option<u64>,
    /// The largest modules, by size: (name, lsmod bytes, footprint).
    pub largest: Vec<(String, u64, u64)>,
}

/// vmallocinfo callers that allocate module memory (the name changed across kernel versions:
/// `module_alloc`/`move_module`/`load_module` up to 6.9, `execmem_alloc` since 6.10).
pub fn is_module_caller(caller: &str) -> bool {
    matches!(
        caller,
        "load_module" | "module_alloc" | "move_module" | "execmem_alloc"
    )
}

/// Summarises /proc/modules; `None` when it was not readable (no module support, or absent).
pub fn summarize(s: &HostSample, top: usize) -> Option<ModulesSummary> {
    let mods = s.modules.as_ref()?;
    let ps = s.page_size();
    let mut largest: Vec<_> = mods
        .iter()
        .map(|m| {
            (
                m.name.clone(),
                m.size_bytes,
                vmalloc_footprint_at(m.size_bytes, ps),
            )
        })
        .collect();
    largest.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let footprint = largest.iter().map(|m| m.2).fold(0u64, u64::saturating_add);
    let guard_pages = ps.saturating_mul(u64::try_from(mods.len()).unwrap_or(u64::MAX));
    let out = ModulesSummary {
        count: mods.len(),
        lsmod_bytes: largest.iter().map(|m| m.1).fold(0u64, u64::saturating_add),
        footprint_bytes: footprint,
        backing_bytes: footprint.saturating_sub(guard_pages),
        vmalloc_module_bytes: s.vmalloc.as_ref().map(|v| {
            v.top_callers
                .iter()
                .filter(|c| is_module_caller(&c.caller))
                .map(|c| c.bytes)
                .fold(0u64, u64::saturating_add)
        }),
        largest: largest.into_iter().take(top).collect(),
    };
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floppy_module_takes_whole_pages_plus_a_guard_page() {
        // /proc/modules on the reference host: "floppy 69417 0 - Live".
        assert_eq!(vmalloc_footprint(69417), 73728);
        assert_eq!(vmalloc_footprint(4096), 8192);
        assert_eq!(vmalloc_footprint(1), 8192);
        assert_eq!(vmalloc_footprint(0), 4096);
        assert_eq!(vmalloc_footprint(u64::MAX), u64::MAX);
        assert_eq!(
            vmalloc_footprint_at(69417, 65536),
            3 * 65536,
            "2 pages + a guard page"
        );
    }

    /// Regression: summing lsmod sizes panicked in a debug build on a corrupt /proc/modules.
    #[test]
    fn sums_saturate() {
        let m = |size_bytes| memwarden_model::host::Module {
            name: "x".into(),
            size_bytes,
            refcount: None,
            state: "Live".into(),
        };
        let s = HostSample {
            modules: Some(vec![m(u64::MAX), m(u64::MAX)]),
            ..Default::default()
        };
        let out = summarize(&s, 1).expect("summary");
        assert_eq!(out.lsmod_bytes, u64::MAX);
        assert_eq!(out.footprint_bytes, u64::MAX);
    }

    proptest::proptest! {
        #[test]
        fn footprint_is_the_size_rounded_up_plus_one_page(size in proptest::num::u64::ANY) {
            let f = vmalloc_footprint(size);
            proptest::prop_assert!(f >= size);
            if size < u64::MAX - 2 * PAGE_SIZE {
                // Rounding adds 0..4095, the guard page 4096 more.
                proptest::prop_assert_eq!(f % PAGE_SIZE, 0);
                proptest::prop_assert!((PAGE_SIZE..2 * PAGE_SIZE).contains(&(f - size)));
            }
        }
    }
}
