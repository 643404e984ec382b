//! What `memwarden top` costs while it runs, next to `top` (and `virt-top` when installed) run
//! the same way, in the same run: CPU time per refresh and peak RSS, as ratios.
//!
//! Each tool runs for N refreshes 1 s apart against this host (memwarden: the host, every
//! process, and the VMs of its default source, libvirt's qemu:///system; PSS read on one
//! refresh in five), under GNU time (user + system CPU, peak RSS), twice:
//!
//! - batch: `memwarden top -b -d 1 -n N` and `top -b -d 1 -n N`, stdout to a pipe;
//! - on a terminal: `memwarden top -d 1 -n N` and `top -d 1 -n N` in an 80×24 tmux pane
//!   (ratatui / ncurses drawing included).
//!
//! CPU per refresh is the marginal cost: (CPU for N refreshes − CPU for 1) / (N − 1), so that
//! start-up is not spread over the refreshes (start-up is printed on its own). Prints; asserts
//! nothing about speed. Run: `cargo bench -p memwarden --bench top_cost` (as root, to read
//! every process's smaps_rollup; needs GNU time and tmux: scripts/setup.sh --test). N is
//! `TOP_COST_N` (default 20).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_memwarden");

/// GNU time's figures for one run.
#[derive(Debug, Clone, Copy)]
struct Run {
    wall_s: f64,
    cpu_s: f64,
    peak_rss_kib: u64,
}

/// bash's `times` gives the children's CPU to the millisecond (GNU time's %U and %S are
/// rounded to 10 ms); GNU time gives the wall time and the peak RSS.
fn parse(time: &str, times: &str) -> Option<Run> {
    let line = time.lines().find(|l| l.starts_with("MW_TIME "))?;
    let f: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let [wall_s, rss] = f[..] else {
        return None;
    };
    // "0m0.012s 0m0.004s": the second line is the children's user and system time.
    let secs = |t: &str| -> Option<f64> {
        let (m, s) = t.strip_suffix('s')?.split_once('m')?;
        Some(m.parse::<f64>().ok()? * 60.0 + s.parse::<f64>().ok()?)
    };
    let children = times.lines().nth(1)?;
    let cpu_s = children.split_whitespace().map(secs).sum::<Option<f64>>()?;
    Some(Run {
        wall_s,
        cpu_s,
        peak_rss_kib: rss as u64,
    })
}

/// The shell line that runs `cmd` under GNU time and then records the children's CPU.
fn shell_line(cmd: &[String], dir: &Path, tag: &str) -> (String, PathBuf, PathBuf) {
    let (t, c) = (
        dir.join(format!("{tag}.time")),
        dir.join(format!("{tag}.times")),
    );
    let quoted: Vec<String> = cmd.iter().map(|a| format!("'{a}'")).collect();
    let line = format!(
        "/usr/bin/time -o '{}' -f 'MW_TIME %e %M' {}; times > '{}'",
        t.display(),
        quoted.join(" "),
        c.display()
    );
    (line, t, c)
}

fn read_run(t: &Path, c: &Path) -> Option<Run> {
    parse(
        &std::fs::read_to_string(t).ok()?,
        &std::fs::read_to_string(c).ok()?,
    )
}

/// `cmd` with stdout to a pipe.
fn batch(cmd: &[String], dir: &Path, tag: &str) -> Option<Run> {
    let (line, t, c) = shell_line(cmd, dir, tag);
    let out = Command::new("bash").arg("-c").arg(&line).output().ok()?;
    if !out.status.success() {
        eprintln!(
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        return None;
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    if let Some(vms) = stdout.lines().rev().find(|l| l.starts_with("VMs ")) {
        println!("    ({tag}, its last frame: {vms})");
    }
    read_run(&t, &c)
}

/// `cmd` in an 80×24 tmux pane of a private server.
fn on_terminal(cmd: &[String], dir: &Path, tag: &str) -> Option<Run> {
    let (line, t, c) = shell_line(cmd, dir, tag);
    let socket = format!("memwarden-top-cost-{}", std::process::id());
    let ok = Command::new("tmux")
        .args(["-L", &socket, "new-session", "-d", "-x", "80", "-y", "24"])
        .arg(format!("bash -c \"{}\"", line.replace('"', "\\\"")))
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        return None;
    }
    let t0 = Instant::now();
    let run = loop {
        if let Some(r) = read_run(&t, &c) {
            break Some(r);
        }
        if t0.elapsed() > Duration::from_secs(600) {
            break None;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let _ = Command::new("tmux")
        .args(["-L", &socket, "kill-server"])
        .stderr(std::process::Stdio::null())
        .status();
    run
}

fn installed(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// One tool's figures: start-up (1 refresh) and N refreshes.
#[derive(Debug, Clone, Copy)]
struct Cost {
    one: Run,
    many: Run,
}

impl Cost {
    fn per_refresh_ms(&self, n: u32) -> f64 {
        (self.many.cpu_s - self.one.cpu_s).max(0.0) * 1e3 / f64::from(n - 1)
    }
}

fn measure(run: impl Fn(u32) -> Option<Run>, n: u32) -> Option<Cost> {
    Some(Cost {
        one: run(1)?,
        many: run(n)?,
    })
}

fn print(name: &str, c: &Cost, n: u32) {
    println!(
        "  {name:<14} CPU {:>7.2} ms/refresh  start-up CPU {:>6.0} ms  peak RSS {:>7} KiB  ({n} refreshes: {:.1} s wall, {:.2} s CPU)",
        c.per_refresh_ms(n),
        c.one.cpu_s * 1e3,
        c.many.peak_rss_kib,
        c.many.wall_s,
        c.many.cpu_s
    );
}

fn ratio(ours: &Cost, peer: &Cost, peer_name: &str, n: u32) {
    println!(
        "  memwarden/{peer_name}: CPU per refresh {:.1}x, peak RSS {:.1}x",
        ours.per_refresh_ms(n) / peer.per_refresh_ms(n).max(0.01),
        ours.many.peak_rss_kib as f64 / peer.many.peak_rss_kib.max(1) as f64
    );
}

/// Each tool's figures, then memwarden's against each peer's.
fn report(ours: Option<&Cost>, theirs: Option<&Cost>, virt: Option<&Cost>, n: u32) {
    for (name, c) in [("memwarden top", ours), ("top", theirs), ("virt-top", virt)] {
        if let Some(c) = c {
            print(name, c, n);
        }
    }
    for (name, peer) in [("top", theirs), ("virt-top", virt)] {
        if let (Some(o), Some(p)) = (ours, peer) {
            ratio(o, p, name, n);
        }
    }
}

fn main() {
    let n: u32 = std::env::var("TOP_COST_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&v| v >= 2)
        .unwrap_or(20);
    if !Path::new("/usr/bin/time").exists() {
        println!("GNU time missing (/usr/bin/time): install it with scripts/setup.sh --test");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let procs = std::fs::read_dir("/proc")
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().parse::<u32>().is_ok())
                .count()
        })
        .unwrap_or(0);
    let guests = std::fs::read_dir("/proc")
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|e| {
                    std::fs::read_to_string(e.path().join("comm"))
                        .is_ok_and(|c| c.starts_with("qemu-system"))
                })
                .count()
        })
        .unwrap_or(0);
    println!(
        "top_cost: {n} refreshes 1 s apart; this host: {procs} processes, {guests} QEMU processes, {} cores",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );

    let mw = |extra: &[&str], k: u32| -> Vec<String> {
        let mut v = vec![BIN.to_string(), "top".into()];
        v.extend(extra.iter().map(|s| s.to_string()));
        v.extend(["-d".into(), "1".into(), "-n".into(), k.to_string()]);
        v
    };
    let top = |extra: &[&str], k: u32| -> Vec<String> {
        let mut v = vec!["top".to_string()];
        v.extend(extra.iter().map(|s| s.to_string()));
        v.extend(["-d".into(), "1".into(), "-n".into(), k.to_string()]);
        v
    };
    let virt_top = installed("virt-top");

    println!("batch (stdout to a pipe):");
    let d = dir.path();
    let ours = measure(|k| batch(&mw(&["-b"], k), d, &format!("bmw{k}")), n);
    let theirs = measure(|k| batch(&top(&["-b"], k), d, &format!("btop{k}")), n);
    let virt = virt_top
        .then(|| {
            measure(
                |k| {
                    let cmd: Vec<String> =
                        ["virt-top", "--stream", "-d", "1", "-n", &k.to_string()]
                            .iter()
                            .map(|s| s.to_string())
                            .collect();
                    batch(&cmd, d, &format!("bvt{k}"))
                },
                n,
            )
        })
        .flatten();
    report(ours.as_ref(), theirs.as_ref(), virt.as_ref(), n);

    if installed("tmux") {
        println!("on an 80x24 terminal (tmux):");
        let ours = measure(
            |k| on_terminal(&mw(&[], k), dir.path(), &format!("mw{k}")),
            n,
        );
        let theirs = measure(
            |k| on_terminal(&top(&[], k), dir.path(), &format!("top{k}")),
            n,
        );
        let virt = virt_top
            .then(|| {
                measure(
                    |k| {
                        let cmd: Vec<String> = ["virt-top", "-d", "1", "-n", &k.to_string()]
                            .iter()
                            .map(|s| s.to_string())
                            .collect();
                        on_terminal(&cmd, dir.path(), &format!("vt{k}"))
                    },
                    n,
                )
            })
            .flatten();
        report(ours.as_ref(), theirs.as_ref(), virt.as_ref(), n);
    } else {
        println!(
            "tmux missing: the terminal runs were skipped (scripts/setup.sh --test installs it)"
        );
    }
    if !virt_top {
        println!("virt-top is not installed: no virt-top figures (Debian package virt-top)");
    }
}
