//! What a hypervisor reports about one VM's memory (owned by the hv work; placeholder shape).

use serde::{Deserialize, Serialize};

/// One VM in one sample.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct VmSample {
    pub name: String,
}
