//! `memwarden sample`: one raw [`Sample`] of the host and its VMs, as JSON.
//!
//! This is the unit the coming recorder stores, the exporter renders and the balloon policy
//! reads: raw readings only, so history can be re-analysed when the analyses improve.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Result;
use memwarden_model::Sample;

use super::host::read_host;
use super::print_json;
use super::vm::backend;
use crate::cli::{HvArgs, SampleArgs};

/// Reads the host (required) and, unless `hv` is `None`, every VM. A hypervisor that cannot be
/// reached degrades the sample (a line in `degraded`), it does not fail it.
pub fn collect(root: Option<&Path>, hv: Option<&HvArgs>) -> Result<Sample> {
    let taken_at_unix_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    let host = read_host(root)?;
    let mut sample = Sample {
        taken_at_unix_ms,
        host,
        ..Default::default()
    };
    if let Some(hv) = hv {
        match backend(hv, false).and_then(|mut b| Ok(b.list()?)) {
            Ok(vms) => sample.vms = vms,
            Err(e) => sample.degraded.push(format!("VMs not read: {e:#}")),
        }
    }
    Ok(sample)
}

pub fn sample(root: Option<&Path>, a: &SampleArgs) -> Result<()> {
    // A captured tree has no hypervisor behind it.
    let hv = (!a.no_vms && root.is_none()).then_some(&a.hv);
    print_json(&collect(root, hv)?)
}
