//! /sys/block/zramN/mm_stat: one line of whitespace-separated numbers.
//!
//! The order is the kernel's (drivers/block/zram/zram_drv.c `mm_stat_show`, documented in
//! Documentation/admin-guide/blockdev/zram.rst): orig_data_size compr_data_size mem_used_total
//! mem_limit mem_used_max same_pages pages_compacted, then huge_pages and huge_pages_since on
//! newer kernels. The first five are bytes, the rest page counts.

use memwarden_model::host::ZramMmStat;

use crate::error::{Error, Result};
use crate::text::parse_u64;

const PATH: &str = "/sys/block/zram0/mm_stat";

/// Fields every kernel with mm_stat prints.
const REQUIRED: usize = 7;
/// Fields the newest kernels print; more are refused (a field memwarden does not know could
/// shift the meaning of the others).
const KNOWN: usize = 9;

/// Parses one device's mm_stat.
pub fn parse(device: &str, text: &str) -> Result<ZramMmStat> {
    let expected = "7 to 9 unsigned numbers (orig_data_size compr_data_size mem_used_total \
                    mem_limit mem_used_max same_pages pages_compacted [huge_pages \
                    [huge_pages_since]])";
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let line = lines.next().unwrap_or("");
    if let Some(extra) = lines.next() {
        return Err(Error::parse(PATH, 2, "one line", extra));
    }
    let words: Vec<&str> = line.split_whitespace().collect();
    if !(REQUIRED..=KNOWN).contains(&words.len()) {
        return Err(Error::parse(PATH, 1, expected, line));
    }
    let nums: Vec<u64> = words
        .iter()
        .map(|w| parse_u64(w))
        .collect::<Option<_>>()
        .ok_or_else(|| Error::parse(PATH, 1, expected, line))?;
    Ok(ZramMmStat {
        device: device.to_string(),
        orig_data_bytes: nums[0],
        compr_data_bytes: nums[1],
        mem_used_total_bytes: nums[2],
        mem_limit_bytes: nums[3],
        mem_used_max_bytes: nums[4],
        same_pages: nums[5],
        pages_compacted: nums[6],
        huge_pages: nums.get(7).copied(),
        huge_pages_since: nums.get(8).copied(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nine_fields_in_the_kernels_order() {
        // The kernel's layout ("%8llu %8llu ..."), values handwritten: 64 MiB written, 16 MiB
        // held by zsmalloc.
        let text =
            "67108864 16384000 16777216        0 16777216      100        0       12       12\n";
        let z = parse("zram0", text).expect("parses");
        assert_eq!(z.device, "zram0");
        assert_eq!(z.orig_data_bytes, 64 << 20);
        assert_eq!(z.compr_data_bytes, 16_384_000);
        assert_eq!(z.mem_used_total_bytes, 16 << 20);
        assert_eq!(z.mem_limit_bytes, 0);
        assert_eq!(z.mem_used_max_bytes, 16 << 20);
        assert_eq!((z.same_pages, z.pages_compacted), (100, 0));
        assert_eq!((z.huge_pages, z.huge_pages_since), (Some(12), Some(12)));
    }

    #[test]
    fn older_kernels_print_seven_or_eight() {
        let z = parse("zram1", "4096 100 4096 0 4096 0 0\n").expect("seven");
        assert_eq!((z.huge_pages, z.huge_pages_since), (None, None));
        let z = parse("zram1", "4096 100 4096 0 4096 0 0 3\n").expect("eight");
        assert_eq!((z.huge_pages, z.huge_pages_since), (Some(3), None));
    }

    #[test]
    fn a_bad_line_names_the_file_and_line() {
        let e = parse("zram0", "1 2 3\n").expect_err("too few");
        assert!(e
            .to_string()
            .starts_with(&format!("{PATH} line 1: expected 7 to 9")));
        assert!(
            parse("zram0", "1 2 3 4 5 6 7 8 9 10\n").is_err(),
            "too many"
        );
        assert!(parse("zram0", "1 2 -3 4 5 6 7\n").is_err(), "negative");
        assert!(parse("zram0", "").is_err(), "empty");
        let e = parse("zram0", "1 2 3 4 5 6 7\n8\n").expect_err("two lines");
        assert!(e.to_string().starts_with(&format!("{PATH} line 2:")), "{e}");
    }
}
