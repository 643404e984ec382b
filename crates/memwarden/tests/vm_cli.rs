//! `memwarden vms`, `dommemstat`, `stats-period`, `setmem` against a real libvirtd domain.

use std::process::Command;
use std::time::{Duration, Instant};

use assert_cmd::cargo::CommandCargoExt;
use memwarden_lab::{Domain, DomainOpts, Lab, URI};

fn memwarden(args: &[&str]) -> (bool, String, String) {
    let out = Command::cargo_bin("memwarden")
        .expect("binary")
        .args(args)
        .args(["--connect", URI])
        .output()
        .expect("runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn virsh_text(args: &[&str]) -> String {
    let out = Command::new("virsh")
        .args(["-c", URI])
        .args(args)
        .output()
        .expect("virsh");
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The text without its `rss` line (QEMU's RSS moves between two reads), and the rss value.
fn split_rss(t: &str) -> (String, u64) {
    let mut rss = 0;
    let rest = t
        .lines()
        .filter(|l| match l.strip_prefix("rss ") {
            Some(v) => {
                rss = v.parse().unwrap_or(0);
                false
            }
            None => true,
        })
        .collect::<Vec<_>>()
        .join("\n");
    (rest, rss)
}

#[test]
fn vm_commands_against_libvirt() {
    let lab = Lab::new().expect("lab");
    let d = Domain::start(
        &lab,
        DomainOpts {
            name: "cli-vm".into(),
            stats_period: 0,
            ..DomainOpts::default()
        },
    )
    .expect("domain");
    let name = d.name();

    // dommemstat: the same text as virsh (keys, order, units, trailing blank line).
    let mut same = false;
    for _ in 0..10 {
        let v0 = virsh_text(&["dommemstat", name]);
        let (ok, ours, err) = memwarden(&["dommemstat", name]);
        assert!(ok, "{err}");
        let v1 = virsh_text(&["dommemstat", name]);
        let ((a, r0), (b, r), (c, r1)) = (split_rss(&v0), split_rss(&ours), split_rss(&v1));
        if a != c {
            continue;
        }
        assert_eq!(b, a);
        assert!(ours.ends_with("\n\n") && v0.ends_with("\n\n"));
        assert!(r0.min(r1) * 99 / 100 <= r && r <= r0.max(r1) * 101 / 100);
        same = true;
        break;
    }
    assert!(same, "virsh output kept changing");

    // vms --json: the domain, diagnosed as polling-off.
    let (ok, out, err) = memwarden(&["vms", "--json"]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    let me = v
        .as_array()
        .and_then(|a| a.iter().find(|x| x["name"] == name))
        .expect("listed")
        .clone();
    assert_eq!(me["qemu_pid"], d.pid());
    assert!(me["diagnosis"]
        .as_array()
        .is_some_and(|a| a.iter().any(|f| f["kind"] == "polling_off")));
    // Its memory cgroup: on a cgroup v2 host with the memory controller (a systemd Debian 12),
    // the domain's cgroup is read and names KVM's page tables (0 under TCG); on a host whose
    // memory controller is on cgroup v1 (this sandbox: libvirt's
    // /sys/fs/cgroup/memory/machine/<domain>.libvirt-qemu), there is nothing to read.
    let v2_memory = std::fs::read_to_string("/sys/fs/cgroup/cgroup.controllers")
        .is_ok_and(|c| c.split_whitespace().any(|w| w == "memory"));
    if v2_memory {
        let path = me["cgroup"]["path"].as_str().unwrap_or_default();
        assert!(
            std::path::Path::new("/sys/fs/cgroup")
                .join(path.trim_start_matches('/'))
                .join("memory.stat")
                .is_file(),
            "{me}"
        );
        assert!(me["cgroup"]["sec_pagetables_bytes"].is_u64(), "{me}");
    } else {
        assert!(me["cgroup"].is_null(), "{me}");
    }
    let (ok, table, _) = memwarden(&["vms"]);
    assert!(
        ok && table.contains(name) && table.contains("polling is off"),
        "{table}"
    );

    // setmem refuses while stats are stale, and above max.
    let (ok, _, err) = memwarden(&["setmem", name, "300M"]);
    assert!(!ok && err.contains("refusing"), "{err}");
    let (ok, _, err) = memwarden(&["setmem", name, "1G"]);
    assert!(!ok && err.contains("maximum"), "{err}");

    // stats-period makes them live; then setmem's floor applies.
    let (ok, _, err) = memwarden(&["stats-period", name, "1"]);
    assert!(ok, "{err}");
    let t0 = Instant::now();
    loop {
        let (_, out, _) = memwarden(&["vms", "--json"]);
        let v: serde_json::Value = serde_json::from_str(&out).expect("json");
        let fresh = v.as_array().is_some_and(|a| {
            a.iter()
                .any(|x| x["name"] == name && x["diagnosis"].as_array().is_some_and(Vec::is_empty))
        });
        if fresh {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "never became live: {out}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let (ok, _, err) = memwarden(&["setmem", name, "40M"]);
    assert!(!ok && err.contains("below the safety floor"), "{err}");
    let (ok, out, err) = memwarden(&["setmem", name, "400M"]);
    assert!(ok, "{err}");
    assert!(out.contains("409600 KiB"), "{out}");
    // actual follows as the guest driver gives pages back.
    let t0 = Instant::now();
    while d.dommemstat().expect("virsh")["actual"] != 409_600 {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "actual never reached 400 MiB"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}
