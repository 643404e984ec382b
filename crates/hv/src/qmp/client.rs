//! A small synchronous QMP client over a Unix socket: greeting, `qmp_capabilities`, commands
//! with ids; events and unknown fields are skipped. One JSON message per line, as QEMU sends.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};

use crate::Error;

/// One QMP session (QEMU's monitor accepts one client per socket at a time).
#[derive(Debug)]
pub struct QmpClient {
    path: PathBuf,
    reader: BufReader<UnixStream>,
    writer: UnixStream,
    next_id: u64,
    /// QEMU's pid from SO_PEERCRED (the process at the other end of the socket).
    pub peer_pid: Option<u32>,
    /// `QMP.version.qemu` from the greeting, e.g. (7, 2, 22).
    pub qemu_version: Option<(u64, u64, u64)>,
}

impl QmpClient {
    /// Connects, reads the greeting and leaves capabilities negotiation mode.
    pub fn connect(path: &Path, timeout: Duration) -> Result<Self, Error> {
        let io = |source| Error::Io {
            path: path.to_path_buf(),
            source,
        };
        let stream = UnixStream::connect(path).map_err(io)?;
        stream.set_read_timeout(Some(timeout)).map_err(io)?;
        stream.set_write_timeout(Some(timeout)).map_err(io)?;
        let peer_pid = rustix::net::sockopt::socket_peercred(&stream)
            .ok()
            .and_then(|c| u32::try_from(c.pid.as_raw_nonzero().get()).ok());
        let writer = stream.try_clone().map_err(io)?;
        let mut c = QmpClient {
            path: path.to_path_buf(),
            reader: BufReader::new(stream),
            writer,
            next_id: 1,
            peer_pid,
            qemu_version: None,
        };
        let greeting = c.read_message()?;
        let Some(qmp) = greeting.get("QMP") else {
            return Err(c.protocol(format!("expected a QMP greeting, got {greeting}")));
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
        Ok(c)
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
        self.writer
            .write_all(line.as_bytes())
            .map_err(|source| Error::Io {
                path: self.path.clone(),
                source,
            })?;
        loop {
            let m = self.read_message()?;
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
                    class: e["class"].as_str().unwrap_or("?").to_string(),
                    desc: e["desc"].as_str().unwrap_or("").to_string(),
                });
            }
        }
    }

    fn read_message(&mut self) -> Result<Value, Error> {
        let mut line = String::new();
        loop {
            line.clear();
            let n = self
                .reader
                .read_line(&mut line)
                .map_err(|source| Error::Io {
                    path: self.path.clone(),
                    source,
                })?;
            if n == 0 {
                return Err(Error::Io {
                    path: self.path.clone(),
                    source: std::io::ErrorKind::UnexpectedEof.into(),
                });
            }
            if line.trim().is_empty() {
                continue;
            }
            return serde_json::from_str(line.trim())
                .map_err(|e| self.protocol(format!("bad JSON from QEMU ({e}): {}", line.trim())));
        }
    }

    fn protocol(&self, why: String) -> Error {
        Error::QmpProtocol {
            socket: self.path.clone(),
            why,
        }
    }
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
