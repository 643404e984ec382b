//! Test oracles: the two balloon policies memwarden is compared with, re-implemented from their
//! published rules (read, not copied), each a pure function of the same inputs as [`plan`] and
//! returning the same [`Plan`], so that one test can run all three on the same guests.
//!
//! - [`mom`]: oVirt MOM's stock `doc/balloon.rules` (MOM 0.6);
//! - [`proxmox`]: Proxmox VE's `PVE::AutoBalloon::compute_alg1`, driven as `pvestatd` does.
//!
//! They reproduce the originals' behaviour, flaws included (MOM shrinks untouched memory that
//! frees nothing on the host; neither looks at guest pressure beyond free memory): that is what
//! the comparison is for. Their `expected_host_gain_bytes` is what each assumes — every balloon
//! byte — not what the host gets.
//!
//! [`plan`]: crate::plan()
//! [`Plan`]: crate::Plan

pub mod mom;
pub mod proxmox;

use memwarden_model::vm::{ReadStatus, VmSample, VmState};

use crate::decision::{Action, Direction, Skip};

/// Why an oracle cannot see this VM at all (the originals only see running guests whose
/// balloon reports), or `None`.
fn unseen(vm: &VmSample) -> Option<Skip> {
    let reason = if vm.read.status != ReadStatus::Ok {
        format!("not read ({})", vm.read.status.as_str())
    } else if vm.state != VmState::Running {
        "not running".to_string()
    } else if vm.balloon.actual_bytes.is_none() || vm.max_memory_bytes.is_none() {
        "no balloon size or maximum".to_string()
    } else {
        return None;
    };
    Some(Skip {
        vm: vm.name.clone(),
        uuid: vm.uuid.clone(),
        reason,
    })
}

/// An action from `from` to `target`, its gain taken at face value.
fn action(vm: &VmSample, from: u64, target: u64, reason: String) -> Action {
    let delta = i128::from(from) - i128::from(target);
    Action {
        vm: vm.name.clone(),
        uuid: vm.uuid.clone(),
        from_bytes: from,
        target_bytes: target,
        direction: if target < from {
            Direction::Shrink
        } else {
            Direction::Grow
        },
        reason,
        expected_host_gain_bytes: delta.clamp(i64::MIN.into(), i64::MAX.into()) as i64,
        host_rss_bytes: memwarden_analysis::vm::figures(vm).host_rss_bytes,
        guest_used_bytes: None,
        guest_cache_bytes: None,
    }
}
