//! Transparent hugepages: /sys/kernel/mm/transparent_hugepage/* and khugepaged/*.

use memwarden_model::host::ThpSysfs;

use crate::text::selected_choice;

/// Builds [`ThpSysfs`] from its files as `(relative name, contents)` (`enabled`,
/// `khugepaged/pages_collapsed`, `hugepages-64kB/enabled`...). All are kept, trimmed; the mode
/// files are lifted as their bracketed word (`always [madvise] never` gives `madvise`).
pub fn thp_sysfs(files: Vec<(String, String)>) -> ThpSysfs {
    let files: Vec<(String, String)> = files
        .into_iter()
        .map(|(n, c)| (n, c.trim().to_string()))
        .collect();
    let choice = |name: &str| {
        files
            .iter()
            .find(|(f, _)| f == name)
            .and_then(|(_, v)| selected_choice(v))
    };
    ThpSysfs {
        enabled: choice("enabled"),
        defrag: choice("defrag"),
        shmem_enabled: choice("shmem_enabled"),
        files,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifts_the_bracketed_modes() {
        // Copied from this machine's /sys/kernel/mm/transparent_hugepage (kernel 6.18).
        let files = [
            ("defrag", "always defer defer+madvise [madvise] never\n"),
            ("enabled", "always [madvise] never\n"),
            ("hpage_pmd_size", "2097152\n"),
            (
                "shmem_enabled",
                "always within_size advise [never] deny force\n",
            ),
            ("khugepaged/max_ptes_none", "511\n"),
        ]
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .to_vec();
        let t = thp_sysfs(files);
        assert_eq!(t.enabled.as_deref(), Some("madvise"));
        assert_eq!(t.defrag.as_deref(), Some("madvise"));
        assert_eq!(t.shmem_enabled.as_deref(), Some("never"));
        assert_eq!(
            t.files[4],
            ("khugepaged/max_ptes_none".into(), "511".into())
        );
    }
}
