//! The `qmp-sim` binary: READY once every socket listens, then serves until killed.

use std::io::{BufRead, BufReader, Read};
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};

#[test]
fn qmp_sim_prints_ready_and_serves() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut child = Command::new(env!("CARGO_BIN_EXE_qmp-sim"))
        .arg(dir.path())
        .args(["--healthy", "3", "--misbehave", "close-after-greeting:shy"])
        .args(["--misbehave", "liar:fibber"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn qmp-sim");
    let mut out = BufReader::new(child.stdout.take().expect("stdout"));
    let mut ready = String::new();
    out.read_line(&mut ready).expect("READY line");
    assert_eq!(ready, "READY 5\n");
    let mut names: Vec<String> = std::fs::read_dir(dir.path())
        .expect("dir")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["fibber.qmp", "shy.qmp", "vm0.qmp", "vm1.qmp", "vm2.qmp"]
    );
    let mut s = UnixStream::connect(dir.path().join("shy.qmp")).expect("connect");
    let mut all = String::new();
    s.read_to_string(&mut all).expect("greeting then EOF");
    assert!(
        all.starts_with("{\"QMP\": ") && all.ends_with("}\n"),
        "{all}"
    );
    child.kill().expect("kill");
    child.wait().expect("wait");

    let bad = Command::new(env!("CARGO_BIN_EXE_qmp-sim"))
        .arg(dir.path())
        .args(["--misbehave", "sulk:x"])
        .output()
        .expect("run");
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("unknown misbehaviour"));
}
