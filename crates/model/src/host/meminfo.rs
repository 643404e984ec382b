//! /proc/meminfo as data: every line, in the kernel's order, known or not.

use serde::{Deserialize, Serialize};

/// What the number on a meminfo line means.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MeminfoUnit {
    /// The line ended in `kB`; the stored value was converted to bytes.
    Bytes,
    /// No unit on the line (`HugePages_Total`, ...): a count.
    Count,
}

/// One line of /proc/meminfo.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MeminfoEntry {
    /// The key exactly as printed, without the colon: `Active(anon)`.
    pub key: String,
    /// Bytes when `unit` is `Bytes`, else the raw count.
    pub value: u64,
    pub unit: MeminfoUnit,
}

/// /proc/meminfo (or a NUMA node's meminfo), every line kept.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meminfo {
    pub entries: Vec<MeminfoEntry>,
}

impl Meminfo {
    /// The value for `key` (bytes, or a count for unit-less lines); `None` when this kernel does not
    /// print the field.
    pub fn get(&self, key: &str) -> Option<u64> {
        self.entries.iter().find(|e| e.key == key).map(|e| e.value)
    }

    /// Like [`Meminfo::get`], 0 when absent: for sums where a missing field means "not on this kernel".
    pub fn get_or_zero(&self, key: &str) -> u64 {
        self.get(key).unwrap_or(0)
    }

    pub fn contains(&self, key: &str) -> bool {
        self.entries.iter().any(|e| e.key == key)
    }
}
