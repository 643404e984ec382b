//! A VM's words in tables (`memwarden vms`, `memwarden top`): its state, its balloon levers
//! and its diagnosis, said the same way everywhere.

use memwarden_analysis::vm::VmReport;
use memwarden_model::vm::{ReadStatus, VmSample, VmState};

/// Its state, or why it was not read (`timed out`, `busy`, ...).
pub fn state(vm: &VmSample) -> String {
    if vm.read.status != ReadStatus::Ok {
        return vm.read.status.as_str().to_string();
    }
    match &vm.state {
        VmState::Running => "running",
        VmState::Paused => "paused",
        VmState::Shutoff => "shut off",
        VmState::Crashed => "crashed",
        VmState::Suspended => "suspended",
        VmState::Unknown => "unknown",
        VmState::Other(o) => o,
    }
    .to_string()
}

/// Free page reporting / deflate-on-oom: `on`, `off`, or `?` where the source cannot tell.
pub fn levers(vm: &VmSample) -> String {
    let w = |x: Option<bool>| match x {
        Some(true) => "on",
        Some(false) => "off",
        None => "?",
    };
    format!(
        "{}/{}",
        w(vm.device.free_page_reporting),
        w(vm.device.autodeflate)
    )
}

/// `ok`, or each finding's text, `; `-separated.
pub fn diagnosis(r: &VmReport) -> String {
    if r.diagnosis.is_empty() {
        return "ok".to_string();
    }
    r.diagnosis
        .iter()
        .map(|d| d.text.as_str())
        .collect::<Vec<_>>()
        .join("; ")
}
