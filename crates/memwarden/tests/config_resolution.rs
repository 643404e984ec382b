//! Every command resolves its flags over the configuration file the same way: `vms` reads the
//! [vms] section `serve` reads, and a flag replaces the file's choice of VM source whole.

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_memwarden");

fn vms(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN)
        .arg("vms")
        .args(args)
        .env_remove("LIBVIRT_DEFAULT_URI")
        .output()
        .expect("memwarden runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn vms_reads_the_files_vm_source_and_a_flag_replaces_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let nowhere = dir.path().join("none-here");
    let file = dir.path().join("memwarden.toml");
    std::fs::write(
        &file,
        format!(
            "[vms]\nsource = \"qmp\"\nqmp = [\"{}/*.qmp\"]\n",
            nowhere.display()
        ),
    )
    .expect("write config");
    let cfg = file.to_str().expect("utf-8 path");

    let (code, out, err) = vms(&["--config", cfg]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(
        out,
        format!("no QMP socket matches {}/*.qmp\n", nowhere.display()),
        "{err}"
    );

    let other = format!("{}/other-*.qmp", nowhere.display());
    let (code, out, err) = vms(&["--config", cfg, "--qmp", &other]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(out, format!("no QMP socket matches {other}\n"), "{err}");
}

#[test]
fn a_file_that_reads_no_vms_says_so() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("memwarden.toml");
    std::fs::write(&file, "[vms]\nsource = \"none\"\n").expect("write config");
    let (code, out, err) = vms(&["--config", file.to_str().expect("utf-8")]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(
        out,
        "no VM source ([vms] source = \"none\"): give --connect or --qmp\n"
    );
}

#[test]
fn both_vm_flags_at_once_are_refused() {
    let (code, _, err) = vms(&["--connect", "qemu:///system", "--qmp", "/x/*.qmp"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("cannot be used with"), "{err}");
}
