//! `HostReader::live()` on this machine's real /proc and /sys.

mod common;

use std::fs;
use std::path::Path;

use memwarden_procfs::{parse_meminfo, HostReader};

#[test]
fn live_host_reads_and_keeps_invariants() {
    let host = HostReader::live().read_host().expect("live /proc reads");
    common::check_sample("live", Path::new("/proc"), Path::new("/sys"), &host);

    // Re-read meminfo: same keys in the same order (values move, the set of lines does not).
    let again =
        parse_meminfo(&fs::read_to_string("/proc/meminfo").expect("meminfo")).expect("parses");
    let keys = |m: &memwarden_model::host::Meminfo| {
        m.entries.iter().map(|e| e.key.clone()).collect::<Vec<_>>()
    };
    assert_eq!(keys(&host.meminfo), keys(&again));

    let release = fs::read_to_string("/proc/sys/kernel/osrelease").expect("osrelease");
    assert_eq!(host.kernel_release.as_deref(), Some(release.trim()));

    assert!(
        host.processes
            .iter()
            .any(|p| p.smaps.as_ref().is_some_and(|s| s.pss > 0)),
        "some process has smaps with pss > 0"
    );
    let me = std::process::id();
    let mine = host
        .processes
        .iter()
        .find(|p| p.pid == me)
        .expect("this test process");
    assert!(mine.cmdline.contains("live"), "cmdline {:?}", mine.cmdline);
    assert!(mine.status.vm_rss.unwrap_or(0) > 0);
}

/// Regression: a kernel thread's smaps_rollup read fails with ESRCH ("No such process") although
/// the thread lives, and its ksm files are empty; the reader took that for an exited process and
/// skipped every kernel thread (then, on captured trees, failed on the empty ksm_merging_pages).
#[test]
fn regression_kernel_threads_skipped_as_gone() {
    let host = HostReader::live().read_host().expect("live /proc reads");
    // kthreadd is pid 2 outside a PID namespace.
    let kthreadd = host
        .processes
        .iter()
        .find(|p| p.pid == 2)
        .expect("pid 2 listed");
    assert_eq!(kthreadd.name, "kthreadd");
    assert!(kthreadd.smaps.is_none() && kthreadd.ksm.is_none() && kthreadd.cmdline.is_empty());
    let kernel_threads = host
        .processes
        .iter()
        .filter(|p| p.status.vm_rss.is_none())
        .count();
    assert!(kernel_threads > 1, "kernel threads are kept, not skipped");
    let direct = HostReader::live().read_process(2).expect("kthreadd reads");
    assert!(direct.smaps.is_none());
}

#[test]
fn live_vmalloc_pages_match_vmalloc_used() {
    let r = HostReader::live();
    let (Ok(v), Ok(m)) = (r.read_vmallocinfo(), r.read_meminfo()) else {
        eprintln!("vmallocinfo not readable here: nothing to compare");
        return;
    };
    let used = m.get("VmallocUsed").expect("VmallocUsed");
    let diff = used.abs_diff(v.vmalloc_pages_bytes);
    assert!(
        diff <= 8 << 20,
        "vmallocinfo pages {} vs VmallocUsed {used}",
        v.vmalloc_pages_bytes
    );
    assert!(v.vmalloc_size_bytes >= v.vmalloc_pages_bytes);
    assert!(v.top_callers.len() <= 20);
    let sum: u64 = v.top_callers.iter().map(|c| c.bytes).sum();
    assert!(sum <= v.vmalloc_pages_bytes);
    assert!(v.top_callers.iter().all(|c| !c.caller.contains("+0x")));
}

#[test]
fn live_process_of_self_and_a_vanished_pid() {
    let r = HostReader::live();
    let me = r.read_process(std::process::id()).expect("self");
    let smaps = me.smaps.expect("own smaps_rollup");
    assert!(smaps.pss > 0 && !smaps.from_smaps);
    assert!(smaps.fields.iter().any(|(k, _)| k == "Rss"));
    // A pid above pid_max cannot exist: reads as gone, not as some other failure.
    let err = r.read_process(u32::MAX).expect_err("no such pid");
    assert!(err.is_gone(), "{err}");
}

#[test]
fn live_ksm_keeps_every_file() {
    let r = HostReader::live();
    match r.read_ksm() {
        Ok(k) => {
            let n = fs::read_dir("/sys/kernel/mm/ksm").expect("dir").count();
            assert_eq!(k.files.len(), n);
            assert!(k.run.is_some() && k.pages_sharing.is_some());
        }
        Err(e) => assert!(e.is_not_found(), "{e}"),
    }
}

/// ksmd is found both ways (from the process table and by searching /proc), and its CPU time
/// is the kernel's: the same as /proc/PID/stat's fields 14 and 15 read here by hand.
#[test]
fn live_ksmd_cpu_is_found_and_matches_its_stat() {
    let r = HostReader::live();
    if r.read_ksm().is_err() {
        assert!(r.read_ksmd(None).expect("search").is_none());
        return;
    }
    let host = r.read_host().expect("live host");
    let from_table = host.ksmd.expect("ksmd read with the host");
    let searched = r.read_ksmd(None).expect("search").expect("ksmd found");
    assert_eq!(from_table.pid, searched.pid);
    assert!(searched.total_ms() >= from_table.total_ms(), "a counter");
    let stat = fs::read_to_string(format!("/proc/{}/stat", searched.pid)).expect("stat");
    let after_comm: Vec<u64> = stat
        .rsplit_once(')')
        .expect("comm")
        .1
        .split_whitespace()
        .skip(11)
        .take(2)
        .map(|v| v.parse().expect("ticks"))
        .collect();
    let by_hand_ms = (after_comm[0] + after_comm[1]) * 10;
    assert!(
        by_hand_ms >= searched.total_ms() && by_hand_ms - searched.total_ms() < 1000,
        "{by_hand_ms} vs {searched:?}"
    );
    // Not ksmd: a pid whose comm differs gives None, not someone else's CPU time.
    assert!(r
        .read_ksmd(Some(std::process::id()))
        .expect("self")
        .is_none());
}

#[test]
fn meminfo_missing_is_an_error_other_sources_degrade() {
    let dir = tempfile::tempdir().expect("tempdir");
    let r = HostReader::at_root(dir.path());
    let e = r.read_host().expect_err("no meminfo");
    assert!(
        e.is_not_found() && e.path().ends_with("proc/meminfo"),
        "{e}"
    );

    fs::create_dir_all(dir.path().join("proc")).expect("mkdir");
    fs::write(
        dir.path().join("proc/meminfo"),
        "MemTotal: 1024 kB\nMemFree 12\n",
    )
    .expect("write");
    let e = r.read_host().expect_err("malformed meminfo");
    assert!(e.to_string().contains("meminfo line 2"), "{e}");

    fs::write(
        dir.path().join("proc/meminfo"),
        "MemTotal: 1024 kB\nMemFree: 12 kB\n",
    )
    .expect("write");
    let host = r.read_host().expect("meminfo alone is enough");
    assert!(host.psi.is_none() && host.ksm.is_none() && host.vmstat.is_none());
    assert!(host
        .degraded
        .iter()
        .any(|d| d.contains("pressure/memory: not present")));
    assert!(host
        .degraded
        .iter()
        .any(|d| d.contains("kernel/mm/ksm: not present")));
    assert!(host.processes.is_empty());
}
