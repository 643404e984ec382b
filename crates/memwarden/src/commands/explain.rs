//! `memwarden explain [FIELD]`: what a meminfo field counts, in English or Chinese.

use std::path::Path;

use anyhow::Result;

use crate::cli::{ExplainArgs, Lang};

pub fn explain(_root: Option<&Path>, _lang: Lang, _a: &ExplainArgs) -> Result<()> {
    anyhow::bail!("not built yet")
}
