//! `qmp-sim DIR --healthy N [--misbehave KIND:NAME]...`: serves `DIR/vm0.qmp`..`DIR/vm{N-1}.qmp`
//! (healthy QEMU 7.2 monitors) and one `DIR/NAME.qmp` per misbehaviour, prints `READY <count>`
//! once every socket listens, and runs until killed.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use memwarden_qmpsim::{raise_fd_limit, Endpoint, Simulator, KINDS};

const USAGE: &str = "usage: qmp-sim DIR [--healthy N] [--misbehave KIND:NAME]...";

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("qmp-sim: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    let mut args = std::env::args().skip(1);
    let mut dir: Option<PathBuf> = None;
    let mut healthy = 0usize;
    let mut odd = Vec::new();
    while let Some(a) = args.next() {
        match a.as_str() {
            "--healthy" => {
                let n = args.next().ok_or(USAGE)?;
                healthy = n
                    .parse()
                    .map_err(|_| format!("--healthy {n:?}: not a count"))?;
            }
            "--misbehave" => odd.push(Endpoint::parse_misbehave(&args.next().ok_or(USAGE)?)?),
            "-h" | "--help" => {
                println!("{USAGE}\nKIND: {}", KINDS.join(", "));
                return Ok(());
            }
            d if dir.is_none() && !d.starts_with('-') => dir = Some(PathBuf::from(d)),
            other => return Err(format!("unexpected {other:?}\n{USAGE}")),
        }
    }
    let dir = dir.ok_or(USAGE)?;
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut endpoints = Endpoint::fleet(healthy);
    endpoints.extend(odd);
    let want = 2 * endpoints.len() as u64 + 64;
    match raise_fd_limit() {
        Ok(l) if l < want => eprintln!(
            "qmp-sim: warning: open-file limit {l} < {want}: not every socket can have a client at once"
        ),
        Ok(_) => {}
        Err(e) => eprintln!("qmp-sim: warning: cannot raise the open-file limit: {e}"),
    }
    let sim = Simulator::start(&dir, &endpoints).map_err(|e| format!("{e}"))?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "READY {}", sim.socket_paths().len())
        .and_then(|()| out.flush())
        .map_err(|e| format!("stdout: {e}"))?;
    drop(out);
    sim.wait();
    Ok(())
}
