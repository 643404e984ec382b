//! Memory consumers that allocate pages no /proc/meminfo field counts (or counts only in part):
//! zram devices, socket buffers, DMA-buf buffers. Raw, as the kernel prints them; what part of
//! each is outside meminfo is the accounting's business (`memwarden-analysis` `accounting`).

use serde::{Deserialize, Serialize};

/// One zram device's `/sys/block/zramN/mm_stat` (Documentation/admin-guide/blockdev/zram.rst),
/// fields in the kernel's order. The first five are bytes, the rest page counts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ZramMmStat {
    /// The device's name in /sys/block (`zram0`).
    pub device: String,
    /// `orig_data_size`: uncompressed bytes stored (same-filled pages excluded).
    pub orig_data_bytes: u64,
    /// `compr_data_size`: compressed bytes stored.
    pub compr_data_bytes: u64,
    /// `mem_used_total`: bytes of pages zsmalloc holds for this device (its compressed data,
    /// fragmentation and zsmalloc's in-page metadata): what the device costs in RAM.
    pub mem_used_total_bytes: u64,
    /// `mem_limit`: the most the device may use; 0 for no limit.
    pub mem_limit_bytes: u64,
    /// `mem_used_max`: the high-water mark of `mem_used_total`.
    pub mem_used_max_bytes: u64,
    /// `same_pages`: pages filled with one repeated word, stored without memory.
    pub same_pages: u64,
    /// `pages_compacted`: pages freed by compaction since the device was set up.
    pub pages_compacted: u64,
    /// `huge_pages`: incompressible pages stored whole; absent on older kernels.
    #[serde(default)]
    pub huge_pages: Option<u64>,
    /// `huge_pages_since`: incompressible pages since set-up; absent on older kernels.
    #[serde(default)]
    pub huge_pages_since: Option<u64>,
}

/// `/proc/net/sockstat` and `/proc/net/sockstat6` as printed: every `PROTO: key value ...`
/// pair, both files, in order (net/ipv4/proc.c and net/ipv6/proc.c `sockstat*_seq_show`).
///
/// Units are the kernel's: `TCP mem` and `UDP mem` are pages (`proto_memory_allocated`,
/// machine-wide, shared by IPv4 and IPv6), `FRAG memory` and `FRAG6 memory` are bytes (per
/// network namespace: the reader's), the rest are counts of sockets.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sockstat {
    pub entries: Vec<SockstatEntry>,
    /// Whether /proc/net/sockstat6 was read (absent when IPv6 is off).
    #[serde(default)]
    pub ipv6: bool,
}

/// One `key value` pair of a sockstat line: `TCP: ... mem 5` is `("TCP", "mem", 5)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SockstatEntry {
    pub protocol: String,
    pub key: String,
    pub value: u64,
}

impl Sockstat {
    pub fn get(&self, protocol: &str, key: &str) -> Option<u64> {
        self.entries
            .iter()
            .find(|e| e.protocol == protocol && e.key == key)
            .map(|e| e.value)
    }
}

/// Where the DMA-buf figures were read from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DmaBufSource {
    /// `/sys/kernel/dmabuf/buffers/<inode>/{size,exporter_name}` (CONFIG_DMABUF_SYSFS_STATS).
    #[default]
    Sysfs,
    /// `/sys/kernel/debug/dma_buf/bufinfo` (debugfs, root only).
    DebugfsBufinfo,
}

/// Every exported DMA-buf, summed by exporter.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DmaBufs {
    pub source: DmaBufSource,
    /// By exporter name (`system` for the system dma-heap, `udmabuf`, a GPU driver's name...),
    /// largest first.
    pub exporters: Vec<DmaBufExporter>,
    /// Set when there were more buffers than the reader reads: the figures are those of the
    /// buffers read, a lower bound.
    #[serde(default)]
    pub truncated: bool,
}

/// The buffers of one exporter.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DmaBufExporter {
    pub exporter: String,
    pub buffers: u64,
    /// Sum of the buffers' `size`, bytes.
    pub bytes: u64,
}

impl DmaBufs {
    pub fn total_bytes(&self) -> u64 {
        self.exporters
            .iter()
            .map(|e| e.bytes)
            .fold(0, u64::saturating_add)
    }

    pub fn buffers(&self) -> u64 {
        self.exporters
            .iter()
            .map(|e| e.buffers)
            .fold(0, u64::saturating_add)
    }

    /// Sums `(exporter, size)` pairs by exporter, largest first.
    pub fn from_buffers<'a>(
        source: DmaBufSource,
        buffers: impl IntoIterator<Item = (&'a str, u64)>,
        truncated: bool,
    ) -> DmaBufs {
        let mut exporters: Vec<DmaBufExporter> = Vec::new();
        for (name, size) in buffers {
            match exporters.iter_mut().find(|e| e.exporter == name) {
                Some(e) => {
                    e.buffers += 1;
                    e.bytes = e.bytes.saturating_add(size);
                }
                None => exporters.push(DmaBufExporter {
                    exporter: name.to_string(),
                    buffers: 1,
                    bytes: size,
                }),
            }
        }
        exporters.sort_by(|a, b| b.bytes.cmp(&a.bytes).then(a.exporter.cmp(&b.exporter)));
        DmaBufs {
            source,
            exporters,
            truncated,
        }
    }
}
