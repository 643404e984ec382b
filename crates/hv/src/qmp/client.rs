//! A small synchronous QMP client over a Unix socket: greeting, `qmp_capabilities`, commands
//! with ids; events and unknown fields are skipped. One JSON message per line, as QEMU sends.
//!
//! Every exchange runs under **one deadline** fixed when the session starts: the connect, the
//! greeting and every command share it, so an endpoint that answers one byte at a time cannot
//! stretch a read forever. A reply line longer than [`REPLY_CAP`] is refused without being
//! kept, so nothing an endpoint sends can make us hold more than about that much for it.

use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rustix::net::{AddressFamily, SocketAddrUnix, SocketFlags, SocketType};
use serde_json::{json, Value};

use crate::Error;

/// The largest reply line accepted: 1 MiB. QEMU's largest replies to the commands we send
/// (`qom-list` of a busy machine, `guest-stats`) are a few KiB.
pub const REPLY_CAP: usize = 1 << 20;

/// One QMP session (QEMU's monitor accepts one client per socket at a time).
#[derive(Debug)]
pub struct QmpClient {
    path: PathBuf,
    stream: UnixStream,
    /// Bytes received and not yet consumed (at most one partial line, bounded by the cap).
    buf: Vec<u8>,
    deadline: Instant,
    next_id: u64,
    /// QEMU's pid from SO_PEERCRED (the process at the other end of the socket).
    pub peer_pid: Option<u32>,
    /// `QMP.version.qemu` from the greeting, e.g. (7, 2, 22).
    pub qemu_version: Option<(u64, u64, u64)>,
}

impl QmpClient {
    /// Connects, reads the greeting and leaves capabilities negotiation mode, all before
    /// `deadline`.
    pub fn connect(path: &Path, deadline: Instant) -> Result<Self, Error> {
        Self::open(path, deadline)?.handshake()
    }

    /// Connects only: the peer's pid is known (SO_PEERCRED), nothing has been read. A QEMU
    /// that accepts and then never greets is still identified by it.
    pub fn open(path: &Path, deadline: Instant) -> Result<Self, Error> {
        let stream = connect_by(path, deadline)?;
        let peer_pid = rustix::net::sockopt::socket_peercred(&stream)
            .ok()
            .and_then(|c| u32::try_from(c.pid.as_raw_nonzero().get()).ok());
        Ok(QmpClient {
            path: path.to_path_buf(),
            stream,
            buf: Vec::new(),
            deadline,
            next_id: 1,
            peer_pid,
            qemu_version: None,
        })
    }

    /// Reads the greeting and leaves capabilities negotiation mode, before the deadline.
    pub fn handshake(mut self) -> Result<Self, Error> {
        let c = &mut self;
        let greeting = c.read_message("the QMP greeting")?;
        let Some(qmp) = greeting.get("QMP") else {
            return Err(c.protocol(format!(
                "expected a QMP greeting, got {}",
                quote(&greeting.to_string())
            )));
        };
        let v = &qmp["version"]["qemu"];
        c.qemu_version = match (
            v["major"].as_u64(),
            v["minor"].as_u64(),
            v["micro"].as_u64(),
        ) {
            (Some(a), Some(b), Some(m)) => Some((a, b, m)),
            _ => None,
        };
        c.execute("qmp_capabilities", None)?;
        Ok(self)
    }

    /// The socket this session talks to.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs one command and returns its `return` value; events arriving meanwhile are skipped.
    pub fn execute(&mut self, command: &str, arguments: Option<Value>) -> Result<Value, Error> {
        let id = self.next_id;
        self.next_id += 1;
        let mut msg = json!({ "execute": command, "id": id });
        if let Some(a) = arguments {
            msg["arguments"] = a;
        }
        let mut line = msg.to_string();
        line.push('\n');
        self.write_all(line.as_bytes(), command)?;
        loop {
            let m = self.read_message(command)?;
            if m.get("event").is_some() {
                continue;
            }
            if m.get("id").and_then(Value::as_u64).is_some_and(|i| i != id) {
                continue;
            }
            if let Some(r) = m.get("return") {
                return Ok(r.clone());
            }
            if let Some(e) = m.get("error") {
                return Err(Error::QmpCommand {
                    socket: self.path.clone(),
                    command: command.to_string(),
                    class: clip(e["class"].as_str().unwrap_or("?")),
                    desc: clip(e["desc"].as_str().unwrap_or("")),
                });
            }
            return Err(self.protocol(format!(
                "reply to {command} has neither return nor error: {}",
                quote(&m.to_string())
            )));
        }
    }

    fn remaining(&self, what: &str) -> Result<Duration, Error> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(self.timeout(what));
        }
        Ok(left)
    }

    fn write_all(&mut self, mut bytes: &[u8], what: &str) -> Result<(), Error> {
        while !bytes.is_empty() {
            let left = self.remaining(what)?;
            self.stream
                .set_write_timeout(Some(left))
                .map_err(|e| self.io(e))?;
            match self.stream.write(bytes) {
                Ok(0) => return Err(self.closed(what)),
                Ok(n) => bytes = &bytes[n..],
                Err(e) if is_timeout(&e) => return Err(self.timeout(what)),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if is_closed(&e) => return Err(self.closed(what)),
                Err(e) => return Err(self.io(e)),
            }
        }
        Ok(())
    }

    /// The next non-empty line, parsed; `what` names what we wait for, for the error.
    fn read_message(&mut self, what: &str) -> Result<Value, Error> {
        loop {
            let line = self.read_line(what)?;
            let trimmed = line.trim_ascii();
            if trimmed.is_empty() {
                continue;
            }
            let text = std::str::from_utf8(trimmed).map_err(|_| {
                self.protocol(format!(
                    "answered {what} with bytes that are not UTF-8 (not QMP): {}",
                    quote(&String::from_utf8_lossy(trimmed))
                ))
            })?;
            return serde_json::from_str(text).map_err(|e| {
                self.protocol(format!(
                    "answered {what} with a line that is not JSON ({e}): {}",
                    quote(text)
                ))
            });
        }
    }

    /// One line without its newline; never holds more than [`REPLY_CAP`] bytes of it.
    fn read_line(&mut self, what: &str) -> Result<Vec<u8>, Error> {
        let mut chunk = [0u8; 16 * 1024];
        // Bytes before this offset hold no newline: each read is searched once, so a line
        // flooded up to the cap costs linear time, not a search of the whole buffer per read
        // (330 ms a flooded read under the fuzzer's sanitizer before).
        let mut scanned = 0;
        loop {
            if let Some(i) = self.buf[scanned..].iter().position(|b| *b == b'\n') {
                let i = scanned + i;
                let rest = self.buf.split_off(i + 1);
                let mut line = std::mem::replace(&mut self.buf, rest);
                line.pop();
                return Ok(line);
            }
            if self.buf.len() > REPLY_CAP {
                return Err(self.protocol(format!(
                    "sent more than {} KiB for {what} without ending the line (QEMU's replies \
                     are a few KiB): refused",
                    REPLY_CAP / 1024
                )));
            }
            scanned = self.buf.len();
            let left = self.remaining(what)?;
            self.stream
                .set_read_timeout(Some(left))
                .map_err(|e| self.io(e))?;
            match self.stream.read(&mut chunk) {
                Ok(0) => return Err(self.closed(what)),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if is_timeout(&e) => return Err(self.timeout(what)),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if is_closed(&e) => return Err(self.closed(what)),
                Err(e) => return Err(self.io(e)),
            }
        }
    }

    fn protocol(&self, why: String) -> Error {
        Error::QmpProtocol {
            socket: self.path.clone(),
            why,
        }
    }

    fn timeout(&self, what: &str) -> Error {
        Error::Timeout {
            socket: self.path.clone(),
            waiting_for: what.to_string(),
        }
    }

    fn closed(&self, what: &str) -> Error {
        Error::Closed {
            socket: self.path.clone(),
            during: what.to_string(),
        }
    }

    fn io(&self, source: std::io::Error) -> Error {
        Error::Io {
            path: self.path.clone(),
            source,
        }
    }
}

fn is_timeout(e: &std::io::Error) -> bool {
    matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)
}

fn is_closed(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        ErrorKind::ConnectionReset | ErrorKind::BrokenPipe | ErrorKind::UnexpectedEof
    )
}

/// Connects without blocking past `deadline`: a Unix socket whose listen backlog is full (a
/// QEMU that stopped accepting) makes a blocking connect() wait forever; a non-blocking one
/// says EAGAIN, and we try again until the deadline.
fn connect_by(path: &Path, deadline: Instant) -> Result<UnixStream, Error> {
    let io = |source: std::io::Error| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let addr = SocketAddrUnix::new(path).map_err(|e| io(e.into()))?;
    let fd = rustix::net::socket_with(
        AddressFamily::UNIX,
        SocketType::STREAM,
        SocketFlags::NONBLOCK | SocketFlags::CLOEXEC,
        None,
    )
    .map_err(|e| io(e.into()))?;
    loop {
        match rustix::net::connect(&fd, &addr) {
            Ok(()) => break,
            Err(rustix::io::Errno::AGAIN) | Err(rustix::io::Errno::INPROGRESS) => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(Error::Timeout {
                        socket: path.to_path_buf(),
                        waiting_for: "the connection to be accepted".into(),
                    });
                }
                std::thread::sleep(left.min(Duration::from_millis(5)));
            }
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(io(e.into())),
        }
    }
    let stream = UnixStream::from(fd);
    stream.set_nonblocking(false).map_err(io)?;
    Ok(stream)
}

/// At most ~100 characters of `s`, unquoted.
pub fn clip(s: &str) -> String {
    if s.chars().count() <= 100 {
        return s.to_string();
    }
    let head: String = s.chars().take(100).collect();
    format!("{head}… ({} bytes in all)", s.len())
}

/// At most ~100 characters of something a peer sent, quoted, for an error message.
pub fn quote(s: &str) -> String {
    const MAX: usize = 100;
    if s.chars().count() <= MAX {
        return format!("{s:?}");
    }
    let head: String = s.chars().take(MAX).collect();
    format!("{head:?}… ({} bytes in all)", s.len())
}

/// A QMP number as u64: QEMU prints unset stats as 2^64−1; a signed -1 is read the same way.
pub fn as_u64(v: &Value) -> Option<u64> {
    v.as_u64().or_else(|| v.as_i64().map(|i| i as u64))
}

/// `qom-get guest-stats` → (`stat-*` name, raw value) in QEMU's order, and `last-update`.
pub fn parse_guest_stats(v: &Value) -> (Vec<(String, u64)>, Option<u64>) {
    let stats = v
        .get("stats")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), as_u64(v)?)))
                .collect()
        })
        .unwrap_or_default();
    (stats, v.get("last-update").and_then(as_u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quote_cuts_long_input() {
        let long = "x".repeat(10_000);
        let q = quote(&long);
        assert!(q.len() < 160, "{q}");
        assert!(q.contains("10000 bytes"), "{q}");
        assert_eq!(quote("abc"), "\"abc\"");
    }
}
