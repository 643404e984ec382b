//! The guest console protocol of `lab/guest-init.sh`, spoken over the serial
//! unix socket, with answers read back from the serial log file.
//!
//! We send `@TAG COMMAND ARGS\n`, read the socket until the guest's
//! `LAB-GOT @TAG`, hang up (output printed while a client is attached can come
//! out garbled in the log), then follow the log until `LAB-ACK @TAG rc=N` or
//! `LAB-ERR @TAG ...`. The command's output is what lies between.

use crate::error::{io, Error, Result};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Default time a console command may take.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

static NEXT_TAG: AtomicU64 = AtomicU64::new(0);

/// The console of one guest (its run directory holds `serial.sock` and `serial.log`).
#[derive(Debug)]
pub(crate) struct Console {
    pub(crate) run_dir: PathBuf,
    one_at_a_time: Mutex<()>,
}

/// Last `n` lines of a serial log, for error messages ("" if unreadable).
pub(crate) fn log_tail(log: &Path, n: usize) -> String {
    let text = std::fs::read(log).map(|b| String::from_utf8_lossy(&b).replace('\r', ""));
    match text {
        Ok(t) => {
            let lines: Vec<&str> = t.lines().collect();
            lines[lines.len().saturating_sub(n)..].join("\n")
        }
        Err(e) => format!("(cannot read {}: {e})", log.display()),
    }
}

impl Console {
    pub(crate) fn new(run_dir: PathBuf) -> Self {
        Console {
            run_dir,
            one_at_a_time: Mutex::new(()),
        }
    }

    pub(crate) fn log(&self) -> PathBuf {
        self.run_dir.join("serial.log")
    }

    pub(crate) fn socket(&self) -> PathBuf {
        self.run_dir.join("serial.sock")
    }

    fn timeout(&self, what: String, secs: u64) -> Error {
        Error::Timeout {
            what,
            secs,
            run_dir: self.run_dir.clone(),
            log_tail: log_tail(&self.log(), 15),
        }
    }

    /// Runs one command line; returns its output or [`Error::Command`] if it failed.
    pub(crate) fn run(&self, line: &str, timeout: Duration) -> Result<String> {
        let _one = self
            .one_at_a_time
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let tag = format!(
            "p{}n{}",
            std::process::id(),
            NEXT_TAG.fetch_add(1, Ordering::Relaxed)
        );
        let deadline = Instant::now() + timeout;
        let sock = self.socket();
        let got = format!("LAB-GOT @{tag}\n");

        let mut s =
            UnixStream::connect(&sock).map_err(io("connect to the guest console", &sock))?;
        s.set_read_timeout(Some(Duration::from_millis(500)))
            .map_err(io("set console timeout", &sock))?;
        s.set_write_timeout(Some(timeout))
            .map_err(io("set console timeout", &sock))?;
        s.write_all(format!("@{tag} {line}\n").as_bytes())
            .map_err(io("write to the guest console", &sock))?;
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        while !String::from_utf8_lossy(&seen)
            .replace('\r', "")
            .contains(&got)
        {
            if Instant::now() > deadline {
                return Err(self.timeout(format!("LAB-GOT @{tag} for {line:?}"), timeout.as_secs()));
            }
            match s.read(&mut buf) {
                Ok(0) => break, // hung up; the log decides
                Ok(n) => seen.extend_from_slice(&buf[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    // The guest may have answered while we were not looking: check the log too.
                    if self.read_log()?.contains(&got) {
                        break;
                    }
                }
                Err(e) => return Err(io("read the guest console", &sock)(e)),
            }
        }
        drop(s);

        loop {
            let text = self.read_log()?;
            if let Some(answer) = find_answer(&text, &tag) {
                return match answer {
                    Answer::Ack { rc: 0, output } => Ok(output),
                    Answer::Ack { rc, output } => Err(Error::Command {
                        command: line.to_string(),
                        rc,
                        output,
                        run_dir: self.run_dir.clone(),
                    }),
                    Answer::Err(msg) => Err(Error::Command {
                        command: line.to_string(),
                        rc: 255,
                        output: msg,
                        run_dir: self.run_dir.clone(),
                    }),
                };
            }
            if Instant::now() > deadline {
                return Err(self.timeout(format!("LAB-ACK @{tag} for {line:?}"), timeout.as_secs()));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn read_log(&self) -> Result<String> {
        let log = self.log();
        let bytes = std::fs::read(&log).map_err(io("read the serial log", &log))?;
        Ok(String::from_utf8_lossy(&bytes).replace('\r', ""))
    }

    /// Asks the guest for /proc/meminfo and parses the block it prints.
    pub(crate) fn meminfo(&self) -> Result<BTreeMap<String, u64>> {
        let out = self.run("meminfo", DEFAULT_TIMEOUT)?;
        parse_meminfo_block(&out).map_err(|detail| Error::Parse {
            what: "meminfo",
            detail,
            run_dir: self.run_dir.clone(),
        })
    }
}

#[derive(Debug, PartialEq)]
enum Answer {
    Ack { rc: i32, output: String },
    Err(String),
}

/// Finds the answer to `tag` in a (CR-stripped) serial log.
fn find_answer(text: &str, tag: &str) -> Option<Answer> {
    let got = format!("LAB-GOT @{tag}\n");
    let start = text.rfind(&got)? + got.len();
    let rest = &text[start..];
    let mut pos = 0;
    for line in rest.split_inclusive('\n') {
        if !line.ends_with('\n') {
            return None; // the marker line is not complete yet
        }
        let l = line.trim_end();
        if let Some(r) = l.strip_prefix(&format!("LAB-ACK @{tag} rc=")) {
            let rc = r.trim().parse().unwrap_or(-1);
            return Some(Answer::Ack {
                rc,
                output: rest[..pos].to_string(),
            });
        }
        if l.starts_with(&format!("LAB-ERR @{tag} ")) {
            return Some(Answer::Err(l.to_string()));
        }
        pos += line.len();
    }
    None
}

/// Parses the `LAB-MEMINFO-BEGIN`..`END` block: `Key: value [kB]` -> value as printed.
pub(crate) fn parse_meminfo_block(out: &str) -> Result<BTreeMap<String, u64>, String> {
    let mut lines = out
        .lines()
        .skip_while(|l| !l.starts_with("LAB-MEMINFO-BEGIN"));
    if lines.next().is_none() {
        return Err(format!("no LAB-MEMINFO-BEGIN in {out:?}"));
    }
    let mut map = BTreeMap::new();
    for l in lines {
        if l.starts_with("LAB-MEMINFO-END") {
            return if map.contains_key("MemTotal") {
                Ok(map)
            } else {
                Err("no MemTotal in the block".to_string())
            };
        }
        let (key, rest) = l
            .split_once(':')
            .ok_or_else(|| format!("line without ':' {l:?}"))?;
        let value = rest
            .split_whitespace()
            .next()
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| format!("bad value in {l:?}"))?;
        map.insert(key.trim().to_string(), value);
    }
    Err("no LAB-MEMINFO-END".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answer_is_found_after_got_and_tags_do_not_prefix_match() {
        let log =
            "LAB-GOT @p1n1\nhello\nLAB-ACK @p1n1 rc=0\nLAB-GOT @p1n10\nx\nLAB-ACK @p1n10 rc=2\n";
        assert_eq!(
            find_answer(log, "p1n1"),
            Some(Answer::Ack {
                rc: 0,
                output: "hello\n".into()
            })
        );
        assert_eq!(
            find_answer(log, "p1n10"),
            Some(Answer::Ack {
                rc: 2,
                output: "x\n".into()
            })
        );
        assert_eq!(find_answer("LAB-GOT @a\nLAB-ACK @a rc=0", "a"), None);
        assert_eq!(
            find_answer("LAB-GOT @a\nLAB-ERR @a unknown command: x\n", "a"),
            Some(Answer::Err("LAB-ERR @a unknown command: x".into()))
        );
    }

    #[test]
    fn meminfo_block_parses_kb_and_counts() {
        let out = "LAB-MEMINFO-BEGIN @t uptime=3.1\nMemTotal:  480268 kB\nActive(anon):  12 kB\nHugePages_Total:  16\nLAB-MEMINFO-END @t\n";
        let m = parse_meminfo_block(out).expect("parses");
        assert_eq!(m["MemTotal"], 480268);
        assert_eq!(m["Active(anon)"], 12);
        assert_eq!(m["HugePages_Total"], 16);
        assert!(
            parse_meminfo_block("LAB-MEMINFO-BEGIN\nMemTotal: x kB\nLAB-MEMINFO-END\n").is_err()
        );
        assert!(parse_meminfo_block("MemTotal: 1 kB\n").is_err());
    }
}
