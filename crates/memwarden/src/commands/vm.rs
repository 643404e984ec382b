//! VM commands: vms, dommemstat, stats-period, setmem.

use anyhow::Result;

use crate::cli::{DommemstatArgs, SetmemArgs, StatsPeriodArgs, VmsArgs};

pub fn vms(_a: &VmsArgs) -> Result<()> {
    anyhow::bail!("not built yet")
}
pub fn dommemstat(_a: &DommemstatArgs) -> Result<()> {
    anyhow::bail!("not built yet")
}
pub fn stats_period(_a: &StatsPeriodArgs) -> Result<()> {
    anyhow::bail!("not built yet")
}
pub fn setmem(_a: &SetmemArgs) -> Result<()> {
    anyhow::bail!("not built yet")
}
