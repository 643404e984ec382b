#![no_main]
//! End to end on the VM side: a mutated QMP conversation → the collector (`Collector` with a
//! QMP source: `QmpBackend::read_endpoint`, the QEMU process joined by its SO_PEERCRED pid) →
//! the VM sample and its figures → the balloon policy's `plan`, for one cycle or two (the
//! second with the first's history and the state it left). A fake QEMU on a Unix socket sends
//! the transcript and hangs up; the QEMU process's /proc files come from the input too. Never
//! a panic, and:
//!
//! - every planned balloon target is within [0, the VM's max memory], and grows go up and
//!   shrinks down from the balloon's size now;
//! - every guest's exposure keeps its balloon within its maximum;
//! - the VM's derived figures keep their bounds (`common::check_vm_figures`).
//!
//! Input: one flag byte (bit 0: the host is the swapping guest-6.1-swap tree, under pressure;
//! else the idle guest-6.1-idle), then NUL-separated: the first cycle's transcript (what the
//! endpoint sends, greeting first), the QEMU process's `status`, its `smaps_rollup`, and the
//! second cycle's transcript (empty: one cycle).

use std::fs;
use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use memwarden_collector::{Collector, Config as CollectorConfig, VmSource};
use memwarden_model::host::HostSample;
use memwarden_model::Sample;
use memwarden_policy::{plan, Config, Direction, HarmKind, History, Plan, State, View};
use memwarden_procfs::HostReader;

#[path = "common/mod.rs"]
mod common;

/// One VM's whole exchange; the endpoint hangs up after its transcript, so this is waited
/// for only by a transcript cut in the middle of a line.
const DEADLINE: Duration = Duration::from_millis(500);
const T0_MS: u64 = 1_795_000_000_000;

struct World {
    qemu: common::FakeQmp,
    /// Where the QEMU process's /proc files go (`proc/<this process's pid>/`).
    tree: tempfile::TempDir,
    hosts: [HostSample; 2],
}

fn world() -> &'static World {
    static W: OnceLock<World> = OnceLock::new();
    W.get_or_init(|| {
        let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures");
        // What the policy reads of the host (meminfo, PSI; vmstat for the history), without
        // the process table that every execution would otherwise clone.
        let host = |name: &str| {
            let h = HostReader::at_root(fixtures.join(name))
                .read_host()
                .unwrap_or_else(|e| panic!("fixture {name}: {e}"));
            HostSample {
                meminfo: h.meminfo,
                psi: h.psi,
                vmstat: h.vmstat,
                page_size_bytes: h.page_size_bytes,
                ..HostSample::default()
            }
        };
        World {
            qemu: common::FakeQmp::new(),
            tree: tempfile::Builder::new()
                .prefix("mw-fuzz-qemu-proc")
                .tempdir_in(common::shm())
                .expect("a temporary directory"),
            hosts: [host("guest-6.1-idle"), host("guest-6.1-swap")],
        }
    })
}

/// One sample: the VM read through the collector, the host from the chosen fixture.
fn cycle(w: &World, host: &HostSample, script: &[u8], taken_at_unix_ms: u64) -> Sample {
    let cfg = CollectorConfig {
        host: false,
        full: true,
        require_meminfo: true,
        vms: VmSource::Qmp {
            patterns: vec![w.qemu.path.display().to_string()],
        },
        deadline: DEADLINE,
        parallelism: 1,
    };
    let mut sample = w.qemu.serve(script, 0, |_| {
        let mut c =
            Collector::new(cfg, HostReader::at_root(w.tree.path())).expect("the socket exists");
        c.collect().expect("no host read, nothing required")
    });
    assert_eq!(sample.vms.len(), 1, "one socket, one row");
    sample.taken_at_unix_ms = taken_at_unix_ms;
    sample.host = host.clone();
    for vm in &sample.vms {
        common::check_vm_figures(vm);
        let _ = memwarden_analysis::vm::target::floor(vm, 64 << 20);
    }
    sample
}

fn check_plan(sample: &Sample, p: &Plan) {
    for a in &p.actions {
        let vm = sample
            .vms
            .iter()
            .find(|v| v.name == a.vm)
            .unwrap_or_else(|| panic!("an action for {:?}, which is not in the sample", a.vm));
        let max = vm
            .max_memory_bytes
            .unwrap_or_else(|| panic!("an action on {:?} whose maximum is unknown", a.vm));
        assert!(
            a.target_bytes <= max,
            "{}: target {} above max memory {max} ({})",
            a.vm,
            a.target_bytes,
            a.reason
        );
        match a.direction {
            // A grow goes up, except the answer to a reboot at the maximum: QEMU keeps its
            // balloon target across a guest reboot, so the maximum is set again even though
            // `actual` reads as there (policy::plan::answer_harm). Found by this target.
            Direction::Grow => {
                let reboot = p
                    .harm
                    .iter()
                    .any(|h| h.vm == a.vm && h.kind == HarmKind::Reboot);
                assert!(
                    a.target_bytes > a.from_bytes || (reboot && a.target_bytes == a.from_bytes),
                    "grow down: {a:?}"
                );
            }
            Direction::Shrink => assert!(a.target_bytes < a.from_bytes, "shrink up: {a:?}"),
        }
    }
    for e in &p.exposure {
        assert!(e.balloon_bytes <= e.max_bytes, "exposure {e:?}");
    }
    let _ = p.lines();
    serde_json::to_string(p).expect("the plan serializes (/api/v1/balloon)");
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let w = world();
    let host = &w.hosts[usize::from(flags & 1)];
    let mut sections = rest.split(|b| *b == 0);
    let script1 = sections.next().unwrap_or_default();
    let status = sections.next().unwrap_or_default();
    let smaps = sections.next().unwrap_or_default();
    let script2 = sections.next().unwrap_or_default();

    let pid_dir = w.tree.path().join(format!("proc/{}", std::process::id()));
    let _ = fs::remove_dir_all(&pid_dir);
    if !status.is_empty() {
        fs::create_dir_all(&pid_dir).expect("the QEMU process's directory");
        fs::write(pid_dir.join("status"), status).expect("status");
        fs::write(
            pid_dir.join("cmdline"),
            b"qemu-system-x86_64\0-name\0vm-fuzz\0",
        )
        .expect("cmd");
        if !smaps.is_empty() {
            fs::write(pid_dir.join("smaps_rollup"), smaps).expect("smaps_rollup");
        }
    }

    let cfg = Config {
        enabled: true,
        ..Config::default()
    };
    let v1 = View::of(cycle(w, host, script1, T0_MS));
    let s1 = v1.sample();
    let p1 = plan(&v1, &History::default(), &cfg, &State::default());
    check_plan(s1, &p1);
    if script2.is_empty() {
        return;
    }
    let state = State::default().after(&p1, T0_MS);
    let history = History::from_samples(std::slice::from_ref(s1));
    let v2 = View::of(cycle(w, host, script2, T0_MS + 10_000));
    let p2 = plan(&v2, &history, &cfg, &state);
    check_plan(v2.sample(), &p2);
});
