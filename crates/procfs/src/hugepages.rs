//! Hugepage pools: /sys/kernel/mm/hugepages/hugepages-<N>kB/* and the per-node
//! /sys/devices/system/node/nodeN/hugepages/hugepages-<N>kB/*.

use memwarden_model::host::HugepagePool;
use memwarden_model::units::kib_to_bytes;

use crate::error::{Error, Result};
use crate::text::parse_u64;

const PATH: &str = "/sys/kernel/mm/hugepages";

/// The page size named by a pool directory: `hugepages-2048kB` gives 2 MiB.
pub fn page_size_from_dir(dir_name: &str) -> Option<u64> {
    dir_name
        .strip_prefix("hugepages-")?
        .strip_suffix("kB")
        .and_then(parse_u64)
        .and_then(kib_to_bytes)
}

/// Builds one pool from its directory name and its files as `(name, contents)`.
/// `nr_hugepages`, `free_hugepages` and `surplus_hugepages` are required; per-node pools have no
/// `resv_hugepages` (0 then) nor `nr_overcommit_hugepages` (`None`).
pub fn pool(node: Option<u32>, dir_name: &str, files: &[(String, String)]) -> Result<HugepagePool> {
    let path = format!("{PATH}/{dir_name}");
    let page_size_bytes = page_size_from_dir(dir_name)
        .ok_or_else(|| Error::parse(&path, 1, "a directory named hugepages-<N>kB", dir_name))?;
    let num = |name: &str| -> Result<Option<u64>> {
        match files.iter().find(|(f, _)| f == name) {
            None => Ok(None),
            Some((_, v)) => parse_u64(v.trim())
                .map(Some)
                .ok_or_else(|| Error::parse(format!("{path}/{name}"), 1, "a count", v.trim())),
        }
    };
    let required = |name: &str| -> Result<u64> {
        num(name)?.ok_or_else(|| Error::parse(format!("{path}/{name}"), 1, "the file", "nothing"))
    };
    Ok(HugepagePool {
        node,
        page_size_bytes,
        nr_hugepages: required("nr_hugepages")?,
        free_hugepages: required("free_hugepages")?,
        resv_hugepages: num("resv_hugepages")?.unwrap_or(0),
        surplus_hugepages: required("surplus_hugepages")?,
        nr_overcommit_hugepages: num("nr_overcommit_hugepages")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn global_and_node_pools() {
        // File names as on this machine (kernel 6.18); counts varied.
        let g = pool(
            None,
            "hugepages-2048kB",
            &files(&[
                ("free_hugepages", "3\n"),
                ("nr_hugepages", "4\n"),
                ("nr_hugepages_mempolicy", "4\n"),
                ("nr_overcommit_hugepages", "0\n"),
                ("resv_hugepages", "1\n"),
                ("surplus_hugepages", "0\n"),
            ]),
        )
        .expect("parses");
        assert_eq!(g.page_size_bytes, 2 << 20);
        assert_eq!(
            (g.nr_hugepages, g.free_hugepages, g.resv_hugepages),
            (4, 3, 1)
        );
        assert_eq!(g.nr_overcommit_hugepages, Some(0));
        let n = pool(
            Some(0),
            "hugepages-1048576kB",
            &files(&[
                ("free_hugepages", "0\n"),
                ("nr_hugepages", "0\n"),
                ("surplus_hugepages", "0\n"),
            ]),
        )
        .expect("parses");
        assert_eq!(n.page_size_bytes, 1 << 30);
        assert_eq!(n.node, Some(0));
        assert_eq!(n.nr_overcommit_hugepages, None);
    }

    #[test]
    fn bad_pools() {
        assert!(pool(None, "hugepages-2MB", &[]).is_err());
        assert!(pool(None, "hugepages-2048kB", &[]).is_err());
        let bad = files(&[
            ("free_hugepages", "x"),
            ("nr_hugepages", "0"),
            ("surplus_hugepages", "0"),
        ]);
        assert!(pool(None, "hugepages-2048kB", &bad).is_err());
    }
}
