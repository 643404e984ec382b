//! The reads of the consumers no meminfo field counts: zram devices, socket buffers, DMA-bufs,
//! the ZFS ARC.
//! Same rules as the rest of the reader: regular files only, every read capped.

use std::fs;

use memwarden_model::host::{DmaBufSource, DmaBufs, Sockstat, ZfsArc, ZramMmStat};

use super::{caps, file_name, read_text, subdirs, HostReader};
use crate::error::{Error, Result};
use crate::{dmabuf, kstat, sockstat, zram};

/// The most DMA-bufs read from sysfs (two small files each) or bufinfo; the figures of a host
/// with more are a lower bound (`DmaBufs::truncated`). Android phones hold a few thousand.
pub const MAX_DMABUF_BUFFERS: usize = 16_384;

/// bufinfo is ~100 bytes a buffer plus its attachments.
const BUFINFO_CAP: u64 = 16 << 20;

impl HostReader {
    /// Every `/sys/block/zram<N>/mm_stat`, by device name. `Ok(None)` when the host has no zram
    /// device (no zram module loaded, or a capture without /sys/block).
    pub fn read_zram(&self) -> Result<Option<Vec<ZramMmStat>>> {
        let dir = self.sys_root.join("block");
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(&dir, e)),
        };
        // /sys/block's entries are symlinks to the devices: named, not followed, here.
        let mut devices: Vec<(u32, String)> = entries
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = file_name(&e.path());
                let n = name.strip_prefix("zram")?.parse().ok()?;
                Some((n, name))
            })
            .collect();
        if devices.is_empty() {
            return Ok(None);
        }
        devices.sort();
        let mut out = Vec::with_capacity(devices.len());
        for (_, name) in devices {
            let path = dir.join(&name).join("mm_stat");
            let text = read_text(&path, caps::SMALL)?;
            out.push(zram::parse(&name, &text).map_err(|e| e.at(&path))?);
        }
        Ok(Some(out))
    }

    /// /proc/net/sockstat, and sockstat6 when IPv6 is on.
    pub fn read_sockstat(&self) -> Result<Sockstat> {
        let v4 = self.proc_root.join("net/sockstat");
        let mut entries = sockstat::parse("/proc/net/sockstat", &read_text(&v4, caps::SMALL)?)
            .map_err(|e| e.at(&v4))?;
        let v6 = self.proc_root.join("net/sockstat6");
        let ipv6 = match read_text(&v6, caps::SMALL) {
            Ok(t) => {
                entries.extend(sockstat::parse("/proc/net/sockstat6", &t).map_err(|e| e.at(&v6))?);
                true
            }
            Err(e) if e.is_not_found() => false,
            Err(e) => return Err(e),
        };
        Ok(Sockstat { entries, ipv6 })
    }

    /// DMA-bufs from /sys/kernel/dmabuf/buffers (CONFIG_DMABUF_SYSFS_STATS), else from debugfs's
    /// bufinfo. `Ok(None)` when neither exists.
    pub fn read_dmabuf(&self) -> Result<Option<DmaBufs>> {
        let dir = self.sys_root.join("kernel/dmabuf/buffers");
        match subdirs(&dir) {
            Ok(bufs) => return self.read_dmabuf_sysfs(&bufs).map(Some),
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e),
        }
        let path = self.sys_root.join("kernel/debug/dma_buf/bufinfo");
        match read_text(&path, BUFINFO_CAP) {
            Ok(t) => dmabuf::parse_bufinfo(&t, MAX_DMABUF_BUFFERS)
                .map(Some)
                .map_err(|e| e.at(&path)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// OpenZFS's /proc/spl/kstat/zfs/arcstats and abdstats. `Ok(None)` when there is no
    /// arcstats (the zfs module is not loaded); abdstats alone missing (ZFS before 0.7) leaves
    /// `abdstats` `None`.
    pub fn read_zfs(&self) -> Result<Option<ZfsArc>> {
        let dir = self.proc_root.join("spl/kstat/zfs");
        let read = |name: &str| -> Result<Option<Vec<_>>> {
            let path = dir.join(name);
            match read_text(&path, caps::SMALL) {
                Ok(t) => kstat::parse(&format!("/proc/spl/kstat/zfs/{name}"), &t)
                    .map(Some)
                    .map_err(|e| e.at(&path)),
                Err(e) if e.is_not_found() => Ok(None),
                Err(e) => Err(e),
            }
        };
        let Some(arcstats) = read("arcstats")? else {
            return Ok(None);
        };
        Ok(Some(ZfsArc {
            arcstats,
            abdstats: read("abdstats")?,
        }))
    }

    fn read_dmabuf_sysfs(&self, bufs: &[std::path::PathBuf]) -> Result<DmaBufs> {
        let truncated = bufs.len() > MAX_DMABUF_BUFFERS;
        let mut read: Vec<(String, u64)> = Vec::new();
        for b in bufs.iter().take(MAX_DMABUF_BUFFERS) {
            let size_path = b.join("size");
            let size = match read_text(&size_path, caps::SMALL) {
                Ok(t) => dmabuf::parse_size(&size_path.to_string_lossy(), &t)?,
                // Freed between the listing and the read.
                Err(e) if e.is_not_found() => continue,
                Err(e) => return Err(e),
            };
            let exporter = read_text(&b.join("exporter_name"), caps::SMALL)
                .map(|t| t.trim().to_string())
                .unwrap_or_else(|_| "(unknown)".to_string());
            read.push((exporter, size));
        }
        Ok(DmaBufs::from_buffers(
            DmaBufSource::Sysfs,
            read.iter().map(|(e, s)| (e.as_str(), *s)),
            truncated,
        ))
    }
}
