//! OpenZFS's ARC as the module's own kstats print it: /proc/spl/kstat/zfs/arcstats (how much
//! the ARC holds, its targets and what it is made of) and abdstats (how the buffers holding its
//! data are allocated, which decides which meminfo field, if any, counts them). Raw; the split
//! in or out of meminfo is the accounting's (`memwarden-analysis` `accounting::zfs`).

use serde::{Deserialize, Serialize};

/// One `name type value` line of a named kstat; every numeric type fits an `i64` (memory
/// figures are bytes, a few arcstats entries such as `memory_available_bytes` are signed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KstatEntry {
    pub name: String,
    pub value: i64,
}

/// The ZFS ARC's kstats, every entry as printed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ZfsArc {
    /// `/proc/spl/kstat/zfs/arcstats`: `size` (bytes the ARC holds), `c` (its target), `c_min`,
    /// `c_max`, `data_size`, `metadata_size`, `hdr_size`, `dbuf_size`, `dnode_size`,
    /// `bonus_size`, `abd_chunk_waste_size` (2.0+), ... (bytes).
    pub arcstats: Vec<KstatEntry>,
    /// `/proc/spl/kstat/zfs/abdstats` (OpenZFS 0.7+, with ABDs): `scatter_data_size` and
    /// `scatter_chunk_waste` (pages from the page allocator), `linear_data_size` (zio_buf
    /// kmem caches), `struct_size` (bytes). `None` when absent.
    #[serde(default)]
    pub abdstats: Option<Vec<KstatEntry>>,
}

fn get(entries: &[KstatEntry], name: &str) -> Option<u64> {
    entries
        .iter()
        .find(|e| e.name == name)
        .and_then(|e| u64::try_from(e.value).ok())
}

impl ZfsArc {
    /// An arcstats entry, `None` when absent or negative.
    pub fn arc(&self, name: &str) -> Option<u64> {
        get(&self.arcstats, name)
    }

    /// An abdstats entry, `None` when absent, negative, or abdstats was not read.
    pub fn abd(&self, name: &str) -> Option<u64> {
        get(self.abdstats.as_deref()?, name)
    }
}
