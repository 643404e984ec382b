//! Hand-built samples, in MiB for readability (as crates/analysis builds its VmSamples).

use memwarden_model::host::{
    Meminfo, MeminfoEntry, MeminfoUnit, ProcStatus, ProcessMem, Psi, PsiLine,
};
use memwarden_model::units::MIB;
use memwarden_model::vm::{BalloonDevice, BalloonStats, VmSample, VmState};
use memwarden_model::Sample;

/// What a lab guest's kernel keeps out of MemTotal, MiB.
pub const RESERVED_MIB: u64 = 24;
/// When the fixtures' VMs were read, s since the epoch.
pub const READ_AT_S: u64 = 1_800_000_000;

/// A running Linux guest with a balloon device polled every 2 s: `max_mib` maximum, balloon at
/// `actual_mib`, `usable_mib` MemAvailable, no page cache, and a QEMU that has touched every
/// page the guest may use (RSS = actual).
pub fn guest(name: &str, max_mib: u64, actual_mib: u64, usable_mib: u64) -> VmSample {
    VmSample {
        name: name.into(),
        uuid: Some(format!("uuid-{name}")),
        state: VmState::Running,
        max_memory_bytes: Some(max_mib * MIB),
        read_at_unix_s: READ_AT_S,
        device: BalloonDevice {
            present: true,
            path: Some("balloon0".into()),
            stats_period_s: Some(2),
            model: Some("virtio".into()),
            autodeflate: Some(false),
            free_page_reporting: Some(false),
        },
        balloon: BalloonStats {
            actual_bytes: Some(actual_mib * MIB),
            available_bytes: Some((actual_mib - RESERVED_MIB) * MIB),
            usable_bytes: Some(usable_mib * MIB),
            unused_bytes: Some(usable_mib * MIB),
            disk_caches_bytes: Some(0),
            major_faults: Some(0),
            swap_in_bytes: Some(0),
            last_update_unix_s: Some(READ_AT_S - 1),
            ..BalloonStats::default()
        },
        host: Some(ProcessMem {
            name: "qemu-system-x86".into(),
            status: ProcStatus {
                vm_rss: Some(actual_mib * MIB),
                ..ProcStatus::default()
            },
            ..ProcessMem::default()
        }),
        ..VmSample::default()
    }
}

/// Sets the QEMU process's RSS, MiB.
pub fn with_rss(mut vm: VmSample, rss_mib: u64) -> VmSample {
    if let Some(h) = vm.host.as_mut() {
        h.status.vm_rss = Some(rss_mib * MIB);
    }
    vm
}

fn entry(key: &str, mib: u64) -> MeminfoEntry {
    MeminfoEntry {
        key: key.into(),
        value: mib * MIB,
        unit: MeminfoUnit::Bytes,
    }
}

/// A 16 GiB host with `available_mib` MemAvailable (MemFree + Cached make it up) and no PSI.
pub fn host_with(taken_at_unix_ms: u64, available_mib: u64, vms: Vec<VmSample>) -> Sample {
    let mut s = Sample {
        taken_at_unix_ms,
        vms,
        ..Sample::default()
    };
    s.host.meminfo = Meminfo {
        entries: vec![
            entry("MemTotal", 16 * 1024),
            entry("MemFree", available_mib / 2),
            entry("MemAvailable", available_mib),
            entry("Buffers", 0),
            entry("Cached", available_mib - available_mib / 2),
        ],
    };
    s.host.psi = Some(Psi {
        some: PsiLine::default(),
        full: Some(PsiLine::default()),
    });
    s
}

/// A comfortable host (8 GiB of 16 available) holding `vms`.
pub fn host_sample(taken_at_unix_ms: u64, vms: Vec<VmSample>) -> Sample {
    host_with(taken_at_unix_ms, 8 * 1024, vms)
}

/// A state in which every VM of `sample` gave back all of its last shrink, measured at
/// `sample`'s time with its current RSS: no probe is needed, shrinks take all that may go.
pub fn trusted(sample: &Sample) -> crate::state::State {
    let mut st = crate::state::State::default();
    for vm in &sample.vms {
        let rss = memwarden_analysis::vm::figures(vm).host_rss_bytes;
        st.vms.insert(
            crate::history::vm_key(vm),
            crate::state::VmRecord {
                measured_efficiency: Some(1.0),
                measured_at_rss_bytes: rss,
                measured_at_unix_ms: Some(sample.taken_at_unix_ms),
                ..crate::state::VmRecord::default()
            },
        );
    }
    st
}

/// `vm`'s action in `p` (the test fails, printing the plan, when it has none).
pub fn action<'a>(p: &'a crate::decision::Plan, vm: &str) -> &'a crate::decision::Action {
    p.actions
        .iter()
        .find(|a| a.vm == vm)
        .unwrap_or_else(|| panic!("no action for {vm}: {:#?}", p.lines()))
}

/// Why `vm` was left alone in `p` (the test fails, printing the plan, when it was not).
pub fn skip_reason<'a>(p: &'a crate::decision::Plan, vm: &str) -> &'a str {
    p.skipped
        .iter()
        .find(|s| s.vm == vm)
        .map(|s| s.reason.as_str())
        .unwrap_or_else(|| panic!("no skip for {vm}: {:#?}", p.lines()))
}

/// One cycle of the policy on `sample`'s view (the daemon builds it once per sample).
pub fn plan_of(
    sample: &Sample,
    history: &crate::history::History,
    cfg: &crate::config::Config,
    state: &crate::state::State,
) -> crate::decision::Plan {
    crate::plan::plan(
        &memwarden_analysis::view::View::of(sample.clone()),
        history,
        cfg,
        state,
    )
}

/// [`crate::guest::judge_with`] on `vm` as the view shows it.
pub fn judge_vm(
    vm: &VmSample,
    history: &crate::history::History,
    cfg: &crate::config::Config,
    record: Option<&crate::state::VmRecord>,
) -> Result<crate::guest::GuestView, String> {
    crate::guest::judge_with(
        &memwarden_analysis::vm::VmReport::new(vm),
        history,
        cfg,
        record,
    )
}
