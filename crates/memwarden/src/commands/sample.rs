//! `memwarden sample`: one raw [`Sample`] of the host and its VMs, as JSON.
//!
//! This is the unit the recorder stores, the exporter renders and the balloon policy reads:
//! raw readings only, so history can be re-analysed when the analyses improve.

use std::path::Path;

use anyhow::Result;
use memwarden_collector::{Collector, Config};
use memwarden_model::Sample;

use super::host::reader;
use super::print_json;
use super::settings;
use crate::cli::{HvArgs, SampleArgs};

/// Reads the host (required) and, unless `hv` is `None`, every VM, through the shared
/// collector. A hypervisor that cannot be reached degrades the sample; it does not fail it.
pub fn collect(root: Option<&Path>, hv: Option<&HvArgs>) -> Result<Sample> {
    let cfg = match hv {
        Some(h) => settings::vms(h, None, false)?.collector(true, true),
        None => Config::default(),
    };
    Ok(Collector::new(cfg, reader(root))?.collect()?)
}

pub fn sample(root: Option<&Path>, a: &SampleArgs) -> Result<()> {
    // A captured tree has no hypervisor behind it.
    let hv = (!a.no_vms && root.is_none()).then_some(&a.hv);
    print_json(&collect(root, hv)?)
}
