//! `memwarden balance` against a real libvirt guest: with a host target no host meets, the
//! dry run plans a shrink of the idle guest (JSON: name, target_bytes, reason) and changes
//! nothing; `--apply` sets it, as `virsh dommemstat` then says; `--reclaim` answers in plain
//! words; `--vm` keeps other tests' domains out of it.

use std::process::Command;

use assert_cmd::cargo::CommandCargoExt;
use memwarden_lab::{Domain, DomainOpts, Lab, URI};

fn balance(cfg: &std::path::Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::cargo_bin("memwarden")
        .expect("binary")
        .arg("balance")
        .args(["--connect", URI, "--db", "/nonexistent/history.db"])
        .arg("--config")
        .arg(cfg)
        .args(args)
        .output()
        .expect("runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn actual_kib(d: &Domain) -> u64 {
    d.dommemstat().expect("dommemstat")["actual"]
}

#[test]
fn balance_plans_applies_and_answers_reclaim_on_a_real_guest() {
    let lab = Lab::new().expect("lab");
    let d = Domain::start(
        &lab,
        DomainOpts {
            name: "balcli".into(),
            mem_mib: 512,
            stats_period: 1,
            ..DomainOpts::default()
        },
    )
    .expect("domain");
    // Touch and free 200 MiB so that QEMU holds memory a shrink can give back.
    d.console_timeout("fill 200", std::time::Duration::from_secs(120))
        .expect("fill");
    d.console("drop").expect("drop");
    std::thread::sleep(std::time::Duration::from_secs(3));
    let dir = tempfile::tempdir().expect("tmp");
    let cfg = dir.path().join("memwarden.toml");
    std::fs::write(
        &cfg,
        "[balloon]\nhost_min_available_bytes = 1152921504606846976\n",
    )
    .expect("config");
    let name = d.name().to_string();
    let before = actual_kib(&d);

    let (ok, out, err) = balance(&cfg, &["--vm", &name, "--json"]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    let a = &v["plan"]["actions"][0];
    assert_eq!(a["name"], name.as_str(), "{out}");
    assert_eq!(a["direction"], "shrink", "{out}");
    let target = a["target_bytes"].as_u64().expect("target_bytes");
    assert!(target < before * 1024, "{out}");
    assert!(a["reason"].as_str().is_some_and(|r| !r.is_empty()), "{out}");
    assert_eq!(v["dry_run"], true);
    assert_eq!(actual_kib(&d), before, "a dry run changed the balloon");

    // A new look plans afresh (the guest's figures moved): what was applied is in the report.
    let (ok, out, err) = balance(&cfg, &["--vm", &name, "--apply", "--json"]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    let applied = &v["applied"][0];
    assert_eq!(applied["action"]["name"], name.as_str(), "{out}");
    assert_eq!(applied["outcome"], "applied", "{out}");
    assert!(applied["error"].is_null(), "{out}");
    let target = applied["action"]["target_bytes"].as_u64().expect("target");
    std::thread::sleep(std::time::Duration::from_secs(2));
    // libvirt takes KiB, rounding up.
    assert_eq!(
        actual_kib(&d),
        target.div_ceil(1024),
        "virsh does not see the new target"
    );

    let (ok, out, err) = balance(&cfg, &["--vm", &name, "--reclaim", "64G"]);
    assert!(ok, "{err}");
    assert!(
        out.starts_with("cannot reclaim 64.0 GiB safely: at most"),
        "{out}"
    );

    let (ok, _, err) = balance(&cfg, &["--vm", "no-such-vm"]);
    assert!(
        !ok && err.contains("--vm no-such-vm: no such running VM"),
        "{err}"
    );
}
