//! DMA-buf: `/sys/kernel/debug/dma_buf/bufinfo` (drivers/dma-buf/dma-buf.c
//! `dma_buf_debug_show`), and the per-buffer sysfs files the reader sums
//! (`/sys/kernel/dmabuf/buffers/<inode>/size` and `exporter_name`, CONFIG_DMABUF_SYSFS_STATS).
//!
//! bufinfo prints a header, then for each buffer one line
//! `size\tflags\tmode\tcount\texp_name\tino\tname` (size in decimal bytes, `%08zu`) followed by
//! its fences and attached devices (lines that start with a tab, and `Total N devices
//! attached`), and ends with `Total N objects, N bytes`.

use memwarden_model::host::{DmaBufSource, DmaBufs};

use crate::error::{Error, Result};
use crate::text::{numbered_lines, parse_u64};

const PATH: &str = "/sys/kernel/debug/dma_buf/bufinfo";

/// Parses bufinfo, summing at most `max_buffers` buffer lines (the rest set `truncated`).
pub fn parse_bufinfo(text: &str, max_buffers: usize) -> Result<DmaBufs> {
    let mut buffers: Vec<(&str, u64)> = Vec::new();
    let mut truncated = false;
    for (n, line) in numbered_lines(text) {
        let first = line.split('\t').next().unwrap_or("");
        // Only buffer lines start with a digit: headers, fences, devices and totals do not.
        if !first.starts_with(|c: char| c.is_ascii_digit()) {
            continue;
        }
        let fields: Vec<&str> = line.split('\t').collect();
        let expected = "\"size\\tflags\\tmode\\tcount\\texp_name\\tino[\\tname]\"";
        let (Some(size), Some(exporter)) = (parse_u64(first.trim()), fields.get(4)) else {
            return Err(Error::parse(PATH, n, expected, line));
        };
        if fields.len() < 6 {
            return Err(Error::parse(PATH, n, expected, line));
        }
        if buffers.len() >= max_buffers {
            truncated = true;
            break;
        }
        buffers.push((exporter.trim(), size));
    }
    Ok(DmaBufs::from_buffers(
        DmaBufSource::DebugfsBufinfo,
        buffers,
        truncated,
    ))
}

/// One sysfs `size` file: bytes.
pub fn parse_size(path: &str, text: &str) -> Result<u64> {
    parse_u64(text.trim()).ok_or_else(|| Error::parse(path, 1, "a size in bytes", text.trim()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The layout of dma_buf_debug_show (Linux 6.1), handwritten values.
    const BUFINFO: &str = "\nDma-buf Objects:\n\
        size    \tflags   \tmode    \tcount   \texp_name\tino     \tname\n\
        00004096\t00000002\t00000005\t00000001\tsystem\t00000018\t<none>\n\
        \tAttached Devices:\n\
        Total 0 devices attached\n\n\
        01048576\t00000002\t00000005\t00000002\tsystem\t00000019\tframebuffer\n\
        \tAttached Devices:\n\
        \tvirtio-gpu\n\
        Total 1 devices attached\n\n\
        00065536\t00000002\t00000005\t00000001\tudmabuf\t00000020\t\n\
        \tAttached Devices:\n\
        Total 0 devices attached\n\n\
        \nTotal 3 objects, 1118208 bytes\n";

    #[test]
    fn sums_bufinfo_by_exporter() {
        let d = parse_bufinfo(BUFINFO, 100).expect("parses");
        assert_eq!(d.source, DmaBufSource::DebugfsBufinfo);
        assert_eq!(d.total_bytes(), 1_118_208);
        assert_eq!(d.buffers(), 3);
        assert_eq!(d.exporters[0].exporter, "system");
        assert_eq!(
            (d.exporters[0].buffers, d.exporters[0].bytes),
            (2, 1_052_672)
        );
        assert_eq!(d.exporters[1].exporter, "udmabuf");
        assert!(!d.truncated);
    }

    #[test]
    fn stops_at_the_cap() {
        let d = parse_bufinfo(BUFINFO, 2).expect("parses");
        assert!(d.truncated);
        assert_eq!(d.buffers(), 2);
    }

    #[test]
    fn a_bad_line_names_the_file_and_line() {
        let e = parse_bufinfo("\nDma-buf Objects:\n0000x096\t1\t1\t1\tsystem\t1\n", 10)
            .expect_err("bad size");
        assert!(e.to_string().starts_with(&format!("{PATH} line 3:")), "{e}");
        assert!(parse_bufinfo("4096\t1\t1\n", 10).is_err(), "too few fields");
        assert_eq!(parse_size("x/size", "8192\n").expect("size"), 8192);
        let e = parse_size("/sys/kernel/dmabuf/buffers/7/size", "8k\n").expect_err("bad");
        assert!(e.to_string().contains("buffers/7/size line 1"), "{e}");
    }
}
