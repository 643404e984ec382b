//! The leak finder on trends recorded by the real daemon: a host process that grows, a guest
//! whose used memory grows, and kernel memory (tmpfs inodes: unreclaimable slab) that grows;
//! each must be ranked first in its own run by `memwarden leaks`.

mod serve_support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use memwarden_lab::{GuestOpts, Lab, QemuGuest};
use serve_support::{Proc, Serve, Tmpfs};

const T: Duration = Duration::from_secs(60);

/// `python3 -c CODE`, killed when the returned guard drops.
fn python(code: &str, log_dir: &Path) -> Proc {
    let mut cmd = Command::new("python3");
    cmd.args(["-c", code]);
    Proc::spawn("python3", cmd, &log_dir.join("python.log"))
}

/// `memwarden leaks --json` over what `d` recorded: the ranked list.
fn leaks(db: &Path) -> Vec<serde_json::Value> {
    let out = Command::new(env!("CARGO_BIN_EXE_memwarden"))
        .args([
            "leaks",
            "--since",
            "1h",
            "--min-span",
            "5s",
            "--json",
            "--db",
        ])
        .arg(db)
        .output()
        .expect("memwarden leaks");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let list = v.as_array().cloned().expect("a list");
    for (i, l) in list.iter().take(5).enumerate() {
        eprintln!(
            "{}. {} {} +{} B, {:.0} B/h, r2 {:.2}",
            i + 1,
            l["kind"],
            l["what"],
            l["growth_bytes"],
            l["slope_bytes_per_hour"].as_f64().unwrap_or(0.0),
            l["r2"].as_f64().unwrap_or(0.0)
        );
    }
    list
}

/// One recording at a time: each run's grower must not show up in another run's ranking (the
/// tests run in parallel, and kernel and process series are host-wide).
fn one_at_a_time() -> std::fs::File {
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(std::env::temp_dir().join("memwarden-serve-leaks.lock"))
        .expect("lock file");
    f.lock().expect("flock");
    f
}

/// Records host (and `extra`'s VMs) every 500 ms while `run` runs; `memwarden leaks` then.
fn record(extra: &[&str], run: impl FnOnce()) -> Vec<serde_json::Value> {
    // PSS every sample, so process series are one kind of figure throughout.
    let cfg = "interval = \"500ms\"\ndeadline = \"400ms\"\n[record]\npss_every = \"500ms\"\n";
    let mut d = Serve::start_with_config(Path::new(env!("CARGO_BIN_EXE_memwarden")), cfg, extra);
    let h = d.wait_samples(2, T);
    run();
    let n = h["samples_total"].as_u64().unwrap_or(0);
    d.wait_samples(n + 2, T);
    let found = leaks(&d.db);
    // The ranking, for the record (the closing notes quote it).
    for (i, l) in found.iter().take(3).enumerate() {
        eprintln!(
            "#{} {} {} grew {} MiB, r2 {:.3}, {}",
            i + 1,
            l["kind"],
            l["what"],
            l["growth_bytes"].as_i64().unwrap_or(0) >> 20,
            l["r2"].as_f64().unwrap_or(0.0),
            l["shape"]
        );
    }
    found
}

#[test]
fn a_growing_host_process_is_ranked_first() {
    let _one = one_at_a_time();
    let dir = tempfile::tempdir().expect("tempdir");
    let found = record(&["--no-vms"], || {
        // 4 MiB touched every 100 ms for 8 s: a steady ~40 MiB/s grower.
        let _kid = python(
            "import time\nb=[]\nfor i in range(80):\n    b.append(b'x'*(4<<20))\n    time.sleep(0.1)\ntime.sleep(60)",
            dir.path(),
        );
        std::thread::sleep(Duration::from_secs(9));
    });
    let first = found.first().expect("something grew");
    assert_eq!(first["kind"], "process", "{first}");
    assert_eq!(first["what"]["process"], "python3", "{first}");
    assert!(
        first["growth_bytes"].as_i64().unwrap_or(0) > 200 << 20,
        "{first}"
    );
}

#[test]
fn growing_kernel_slab_is_ranked_first() {
    let _one = one_at_a_time();
    let dir = tempfile::tempdir().expect("tempdir");
    // nr_inodes=0: no inode limit, only the kernel's slab bounds the file count.
    let mnt = Tmpfs::mount(&dir.path().join("files"), "size=64m,nr_inodes=0");
    let found = record(&["--no-vms"], || {
        // Empty tmpfs files: each pins a shmem inode (unreclaimable slab) and a dentry.
        let code = format!(
            "import os,time\nd={:?}\nt=time.time()\ni=0\nwhile time.time()-t<8:\n    for _ in range(2000):\n        os.close(os.open(d+'/f%d'%i, os.O_CREAT|os.O_WRONLY)); i+=1\n    time.sleep(0.05)\ntime.sleep(60)",
            mnt.0.to_str().expect("utf-8")
        );
        let _kid = python(&code, dir.path());
        std::thread::sleep(Duration::from_secs(9));
    });
    let first = found.first().expect("something grew");
    assert_eq!(first["kind"], "kernel", "{first}");
    let name = first["what"]["name"].as_str().unwrap_or_default();
    assert!(
        ["meminfo.SUnreclaim", "meminfo.Slab"].contains(&name),
        "slab ranked first: {first}"
    );
}

#[test]
fn a_guest_whose_used_memory_grows_is_ranked_first() -> memwarden_lab::Result<()> {
    let _one = one_at_a_time();
    let lab = Lab::new()?;
    let g = QemuGuest::boot(
        &lab,
        GuestOpts {
            name: "leaky".into(),
            mem_mib: 384,
            stats_polling: Some(1),
            ..Default::default()
        },
    )?;
    let sock = g.qmp_socket();
    let found = record(&["--qmp", sock.to_str().expect("utf-8")], || {
        for _ in 0..12 {
            g.console("fill 12").expect("fill");
            std::thread::sleep(Duration::from_millis(500));
        }
        std::thread::sleep(Duration::from_secs(2));
    });
    let first = found.first().expect("something grew");
    assert_eq!(first["kind"], "vm", "{first}");
    assert!(
        first["what"]["vm"]
            .as_str()
            .is_some_and(|v| v.contains("leaky")),
        "{first}"
    );
    Ok(())
}
