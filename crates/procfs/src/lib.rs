//! Parsers for the kernel's memory files, and the one reader that opens them.
//!
//! Each module parses one kernel file from `&str` into `memwarden_model::host` types (pure, no
//! I/O, fuzzed); [`HostReader`] opens the files under an injectable root and attaches paths to
//! errors. Parsers are hand-written rather than taken from the `procfs` crate because it drops
//! data we need (unknown meminfo keys; it has nothing for vmallocinfo, KSM sysfs, hugepage
//! sysfs, zoneinfo or ksm_stat), and small parsers are easy to fuzz.

pub mod dmabuf;
pub mod error;
pub mod hugepages;
pub mod ksm;
pub mod kstat;
pub mod memcg;
pub mod meminfo;
pub mod modules;
pub mod psi;
pub mod reader;
pub mod smaps_rollup;
pub mod sockstat;
pub mod stat;
pub mod status;
mod text;
pub mod thp;
pub mod vmallocinfo;
pub mod vmstat;
pub mod zoneinfo;
pub mod zram;

pub use error::{Error, Result};
pub use ksm::{
    ksm_sysfs, parse_merging_pages as parse_ksm_merging_pages, parse_stat as parse_ksm_stat,
    uksm_sysfs,
};
pub use meminfo::{
    parse as parse_meminfo, parse_node as parse_node_meminfo, render as render_meminfo,
};
pub use modules::parse as parse_modules;
pub use psi::parse as parse_psi;
pub use reader::{caps, HostReader, ProcessScan, ReadOptions};
pub use smaps_rollup::{parse as parse_smaps_rollup, parse_smaps};
pub use status::{parse as parse_status, ParsedStatus};
pub use text::selected_choice;
pub use thp::thp_sysfs;
pub use vmallocinfo::parse as parse_vmallocinfo;
pub use vmstat::parse as parse_vmstat;
pub use zoneinfo::parse as parse_zoneinfo;
