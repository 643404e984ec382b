//! Where host memory goes: identities, decompositions, the black hole, modules.

pub mod consumers;
pub mod decompositions;
pub mod identities;
pub mod kernel;
pub mod kvm;
pub mod modules;
pub mod terms;
pub mod zfs;

use memwarden_model::host::HostSample;
use serde::Serialize;

pub use decompositions::Decomposition;
pub use identities::{IdentityResult, Verdict, IDENTITIES};
pub use terms::Part;

/// Everything the accounting derives from one host sample.
#[derive(Debug, Clone, Serialize)]
pub struct HostAccounting {
    pub identities: Vec<IdentityResult>,
    pub decompositions: Vec<Decomposition>,
    /// The black hole: the LRU decomposition's unaccounted rest (the one with the fewest double
    /// counts; the other two are shown beside it). `None` when it cannot be computed (the LRU
    /// decomposition's `not_computed` says why).
    pub black_hole_bytes: Option<i128>,
    /// How each kernel term that can be counted two ways was counted (stacks, vmalloc,
    /// Percpu, balloon, zram, socket buffers, DMA-buf), one line each.
    pub kernel_rules: Vec<String>,
    pub modules: Option<modules::ModulesSummary>,
}

/// Runs every accounting analysis on `s`.
pub fn analyse(s: &HostSample) -> HostAccounting {
    let decompositions = decompositions::all(s);
    HostAccounting {
        identities: identities::evaluate_all(s),
        black_hole_bytes: decompositions.first().and_then(|d| d.unaccounted_bytes),
        kernel_rules: kernel::terms(s).rules,
        decompositions,
        modules: modules::summarize(s, 10),
    }
}
