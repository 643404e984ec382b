//! /proc/zoneinfo, the parts memwarden uses: each zone's free and managed pages and its per-CPU
//! page lists (pcp), whose free pages have left MemFree but are on no LRU and in no other
//! meminfo field.

use serde::{Deserialize, Serialize};

/// One CPU's page list in one zone (`pagesets` → `cpu: N`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PcpList {
    pub cpu: u32,
    /// Free pages on the list (`count:`), in base pages.
    pub count_pages: u64,
    /// `high:` (the list is drained above it).
    pub high_pages: Option<u64>,
    /// `batch:`.
    pub batch_pages: Option<u64>,
}

/// One `Node N, zone NAME` block.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Zone {
    pub node: u32,
    /// `DMA`, `DMA32`, `Normal`, `Movable`, `Device`...
    pub name: String,
    /// `pages free` (NR_FREE_PAGES of the zone: buddy lists only, pcp lists excluded).
    pub free_pages: Option<u64>,
    /// `managed`: pages the buddy allocator manages (what MemTotal sums).
    pub managed_pages: Option<u64>,
    pub present_pages: Option<u64>,
    pub spanned_pages: Option<u64>,
    /// The zone's per-CPU lists; empty for zones without memory.
    pub pcp: Vec<PcpList>,
}

/// /proc/zoneinfo summarized to its zones.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ZoneInfo {
    pub zones: Vec<Zone>,
}

impl ZoneInfo {
    /// Σ `count:` over every zone and CPU, in pages (saturating).
    pub fn pcp_free_pages(&self) -> u64 {
        self.zones
            .iter()
            .flat_map(|z| &z.pcp)
            .fold(0u64, |a, p| a.saturating_add(p.count_pages))
    }

    /// Σ `managed` over zones, in pages (saturating).
    pub fn managed_pages(&self) -> u64 {
        self.zones
            .iter()
            .filter_map(|z| z.managed_pages)
            .fold(0u64, u64::saturating_add)
    }
}
