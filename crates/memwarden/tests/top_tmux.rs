//! `memwarden top` in a real terminal: tmux (80×24, a private server) runs it against two
//! plain-QEMU lab guests over QMP; the test types keys with `send-keys` and reads the screen
//! with `capture-pane -p`.
//!
//! Checked: each guest's row shows the guest-used figure `memwarden vms --json` gives at about
//! the same moment (within [`USED_TOLERANCE_MIB`]); `s` changes the sort label and the rows
//! follow the QEMU RSS column; with one QEMU frozen (SIGSTOP) the screen keeps refreshing (its
//! clock and refresh counter move) and that guest's row says `timed out`; `q` exits with 0.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use memwarden_lab::{both, wait_for, Frozen, GuestOpts, Lab, QemuGuest};

/// How far the screen's guest used may be from `vms --json`'s: the two are read up to two
/// refreshes apart (the guest's own use moves by a few MiB: its statistics are pushed every
/// second), and the screen rounds to three digits.
const USED_TOLERANCE_MIB: f64 = 8.0;

/// A tmux server of our own (`tmux -L`), killed on drop.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn cmd(&self, args: &[&str]) -> String {
        let out = Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("tmux runs (scripts/setup.sh --test installs it)");
        assert!(
            out.status.success(),
            "tmux {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn screen(&self) -> Vec<String> {
        self.cmd(&["capture-pane", "-p", "-t", "top"])
            .lines()
            .map(str::to_string)
            .collect()
    }

    fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", "top"];
        args.extend_from_slice(keys);
        self.cmd(&args);
    }

    /// Waits until `f` holds on the screen; panics with the last screen after `timeout`.
    fn until(&self, what: &str, timeout: Duration, f: impl Fn(&[String]) -> bool) -> Vec<String> {
        let t0 = Instant::now();
        loop {
            let s = self.screen();
            if f(&s) {
                return s;
            }
            assert!(
                t0.elapsed() < timeout,
                "timed out waiting for {what}; screen:\n{}",
                s.join("\n")
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.socket, "kill-server"])
            .status();
    }
}

/// "28.3 MiB" → bytes; `None` for "-".
fn parse_size(s: &str) -> Option<f64> {
    let (n, unit) = s.trim().split_once(' ')?;
    let k = match unit {
        "B" => 1.0,
        "KiB" => 1024.0,
        "MiB" => 1024.0 * 1024.0,
        "GiB" => 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    Some(n.parse::<f64>().ok()? * k)
}

/// The cell of column `head` in `row`: right-aligned columns end where their header ends.
fn cell(screen: &[String], row: &str, head: &str, width: usize) -> String {
    let header = screen
        .iter()
        .find(|l| l.starts_with("NAME "))
        .expect("VM header");
    let hb = header.find(head).expect("column shown");
    let end = header[..hb].chars().count() + head.chars().count();
    let chars: Vec<char> = row.chars().collect();
    chars[end.saturating_sub(width).min(chars.len())..end.min(chars.len())]
        .iter()
        .collect()
}

/// The row of the VM named `name` (shown truncated: matched on its first 9 characters).
fn row<'a>(screen: &'a [String], name: &str) -> Option<&'a String> {
    let prefix: String = name.chars().take(9).collect();
    screen.iter().find(|l| l.starts_with(&prefix))
}

/// The refresh counter in the title (`#12`).
fn refreshes(screen: &[String]) -> u64 {
    screen[0]
        .split_whitespace()
        .find_map(|w| w.strip_prefix('#')?.parse().ok())
        .expect("refresh counter in the title")
}

/// `memwarden vms --json`: each VM's guest used, by name.
fn vms_json(bin: &Path, sockets: &[PathBuf]) -> Vec<(String, u64)> {
    let mut cmd = Command::new(bin);
    cmd.arg("vms").arg("--json");
    for s in sockets {
        cmd.arg("--qmp").arg(s);
    }
    let out = cmd.output().expect("memwarden vms runs");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("vms --json: {e}: {}", String::from_utf8_lossy(&out.stderr)));
    v.as_array()
        .expect("an array")
        .iter()
        .map(|x| {
            let name = x["name"].as_str().expect("name").to_string();
            let used = x["figures"]["guest_used_bytes"]
                .as_u64()
                .expect("guest used read");
            (name, used)
        })
        .collect()
}

#[test]
fn top_shows_the_guests_sorts_and_keeps_refreshing_with_a_frozen_qemu() {
    let lab = Lab::new().expect("lab");
    let _two = lab.multi_guest().expect("multi-guest lock");
    let opts = |name: &str| GuestOpts {
        name: name.into(),
        mem_mib: 384,
        stats_polling: Some(1),
        ..GuestOpts::default()
    };
    let (a, b) = both(
        || QemuGuest::boot(&lab, opts("topa")).expect("guest a boots"),
        || QemuGuest::boot(&lab, opts("topb")).expect("guest b boots"),
    );
    // a holds 100 MiB (guest used and QEMU RSS grow); b touches 200 MiB and frees it (its use
    // falls back, its QEMU keeps the pages: no free page reporting): by guest used a comes
    // first, by QEMU RSS b does.
    both(
        || a.console("hog 100").expect("hog in a"),
        || {
            b.console("hog 200").expect("hog in b");
            b.console("killhogs").expect("killhogs in b")
        },
    );
    let (na, nb) = (a.name(), b.name());
    let sockets = [a.qmp_socket(), b.qmp_socket()];
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_memwarden"));
    let dir = tempfile::tempdir().expect("tempdir");
    let status = dir.path().join("status");
    let qmp: Vec<String> = sockets
        .iter()
        .map(|s| format!("--qmp '{}'", s.display()))
        .collect();
    let line = format!(
        "'{}' top {} -d 1; echo $? > '{}'; sleep 600",
        bin.display(),
        qmp.join(" "),
        status.display()
    );
    let tmux = Tmux {
        socket: format!("memwarden-top-{}", std::process::id()),
    };
    tmux.cmd(&[
        "new-session",
        "-d",
        "-s",
        "top",
        "-x",
        "80",
        "-y",
        "24",
        &line,
    ]);

    // Both rows, read, with their figures.
    let read = |s: &[String], n: &str| {
        row(s, n)
            .is_some_and(|r| r.contains("running") && parse_size(&cell(s, r, "USED", 8)).is_some())
    };
    let first = tmux.until("both guests' rows", Duration::from_secs(30), |s| {
        read(s, &na) && read(s, &nb)
    });
    println!("screen with both guests:\n{}", first.join("\n"));
    // b's next statistics push shows its memory freed.
    let fig = |s: &[String], n: &str, head: &str| {
        parse_size(&cell(s, row(s, n).expect("row"), head, 8)).expect("a size")
    };
    tmux.until("b's use below a's", Duration::from_secs(20), |s| {
        read(s, &na) && read(s, &nb) && fig(s, &nb, "USED") < fig(s, &na, "USED")
    });
    assert!(first.iter().all(|l| l.chars().count() <= 80));

    // Guest used as `vms --json` gives it, read between two screens.
    let before = tmux.screen();
    let json = vms_json(&bin, &sockets);
    let after = tmux.screen();
    for (name, used) in &json {
        let mib = |s: &[String]| {
            let r = row(s, name).expect("row");
            parse_size(&cell(s, r, "USED", 8)).expect("a size") / 1048576.0
        };
        let want = *used as f64 / 1048576.0;
        let (x, y) = (mib(&before), mib(&after));
        println!(
            "{name}: vms --json guest used {want:.1} MiB; top shows {x:.1} MiB before, {y:.1} MiB after"
        );
        let nearest = if (x - want).abs() < (y - want).abs() {
            x
        } else {
            y
        };
        assert!(
            (nearest - want).abs() <= USED_TOLERANCE_MIB,
            "{name}: top {nearest:.1} MiB, vms --json {want:.1} MiB (tolerance {USED_TOLERANCE_MIB} MiB)"
        );
    }
    assert_eq!(json.len(), 2);

    // `s` cycles the sort key: each time the label changes and the rows follow that key's
    // column(s) on the same screen; the guests were made so that not every key orders them
    // alike.
    let order = |s: &[String]| -> Vec<String> {
        let mut rows: Vec<(usize, String)> = [&na, &nb]
            .iter()
            .filter_map(|n| {
                let prefix: String = n.chars().take(9).collect();
                s.iter()
                    .position(|l| l.starts_with(&prefix))
                    .map(|i| (i, n.to_string()))
            })
            .collect();
        rows.sort();
        rows.into_iter().map(|(_, n)| n).collect()
    };
    // Sort key as the screen's own figures give it, larger first.
    type Key = fn(&dyn Fn(&str) -> f64) -> f64;
    let keys: [(&str, Key); 4] = [
        ("sort guest used", |f| f("USED")),
        ("sort QEMU RSS", |f| f("QEMU RSS")),
        ("sort host idle", |f| f("IDLE")),
        // Least usable share first: its negation, larger first.
        ("sort usable share", |f| {
            -f("USABLE") / (f("USED") + f("USABLE"))
        }),
    ];
    let mut orders = Vec::new();
    for (i, (label, key)) in keys.iter().enumerate() {
        if i > 0 {
            tmux.keys(&["s"]);
        }
        let s = tmux.until(label, Duration::from_secs(5), |s| s[3].contains(label));
        let shown = order(&s);
        let k = |n: &str| key(&|head: &str| fig(&s, n, head));
        println!(
            "{label}: {:?} (keys {:.3e}, {:.3e})",
            shown,
            k(&shown[0]),
            k(&shown[1])
        );
        assert!(k(&shown[0]) >= k(&shown[1]), "{label}:\n{}", s.join("\n"));
        orders.push(shown);
    }
    orders.dedup();
    assert!(
        orders.len() > 1,
        "every key ordered the guests alike (b's QEMU kept the 200 MiB it freed?): {orders:?}"
    );
    tmux.keys(&["s"]);
    tmux.until(
        "the cycle back to guest used",
        Duration::from_secs(5),
        |s| s[3].contains("sort guest used"),
    );

    // `/` and part of a's name: b's row goes, a's stays; Esc brings b back.
    let part: String = na.chars().take(8).collect();
    tmux.keys(&["/"]);
    for c in part.chars() {
        tmux.keys(&["-l", &c.to_string()]);
    }
    tmux.keys(&["Enter"]);
    let filtered = tmux.until("the filter", Duration::from_secs(5), |s| {
        s[3].contains(&format!("filter \"{part}\""))
    });
    assert!(
        row(&filtered, &na).is_some() && row(&filtered, &nb).is_none(),
        "{}",
        filtered.join("\n")
    );
    tmux.keys(&["Escape"]);
    tmux.until("the filter cleared", Duration::from_secs(5), |s| {
        !s[3].contains("filter") && row(s, &na).is_some() && row(s, &nb).is_some()
    });

    // b's QEMU frozen: the screen keeps refreshing, b's row says it was not read.
    let frozen = Frozen::new(b.pid());
    let t0 = Instant::now();
    let stuck = tmux.until("b timed out", Duration::from_secs(15), |s| {
        row(s, &nb).is_some_and(|r| r.contains("timed out"))
    });
    println!(
        "{:.1} s after SIGSTOP:\n{}",
        t0.elapsed().as_secs_f64(),
        stuck.join("\n")
    );
    let (n0, c0) = (refreshes(&stuck), stuck[0].clone());
    std::thread::sleep(Duration::from_secs(3));
    let later = tmux.screen();
    let n1 = refreshes(&later);
    println!("refreshes {n0} → {n1} in 3 s with b frozen");
    assert!(n1 >= n0 + 2, "{c0}\n{}", later[0]);
    assert_ne!(c0, later[0]);
    assert!(
        row(&later, &nb).is_some_and(|r| r.contains("timed out")),
        "{}",
        later.join("\n")
    );
    assert!(
        row(&later, &na).is_some_and(|r| r.contains("running")),
        "{}",
        later.join("\n")
    );
    drop(frozen);

    // `q` quits, with status 0.
    tmux.keys(&["q"]);
    wait_for("top's exit status", Duration::from_secs(10), || {
        std::fs::read_to_string(&status).is_ok_and(|s| !s.trim().is_empty())
    });
    let code = std::fs::read_to_string(&status).expect("status");
    println!("exit status {}", code.trim());
    assert_eq!(code.trim(), "0");
}
