//! libvirt's RPC packet (`src/rpc/virnetprotocol.x`): a 4-byte big-endian length that counts
//! itself, a 24-byte header (program, version, procedure, type, serial, status), an XDR body.
//!
//! [`read_packet`] reads one packet under a deadline and refuses a length past libvirt's own
//! `VIR_NET_MESSAGE_MAX` before allocating; [`split`] is the pure half, fuzzed by the tests.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Instant;

use super::xdr::{Dec, Enc, XdrError};

/// `REMOTE_PROGRAM` (remote_protocol.x).
pub const REMOTE_PROGRAM: u32 = 0x2000_8086;
/// `QEMU_PROGRAM` (qemu_protocol.x).
pub const QEMU_PROGRAM: u32 = 0x2000_8087;
/// `KEEPALIVE_PROGRAM` ("keep", virkeepaliveprotocol.x).
pub const KEEPALIVE_PROGRAM: u32 = 0x6b65_6570;
pub const PROTOCOL_VERSION: u32 = 1;

/// Largest packet, length word excluded (`VIR_NET_MESSAGE_MAX`, 32 MiB since libvirt 8.x; a
/// 9.0 server never sends more).
pub const MESSAGE_MAX: usize = 32 * 1024 * 1024;
const LEN_BYTES: usize = 4;
pub const HEADER_BYTES: usize = 24;

/// `virNetMessageType`.
pub mod kind {
    pub const CALL: i32 = 0;
    pub const REPLY: i32 = 1;
    pub const MESSAGE: i32 = 2;
    pub const STREAM: i32 = 3;
}

/// `virNetMessageStatus`.
pub mod status {
    pub const OK: i32 = 0;
    pub const ERROR: i32 = 1;
    pub const CONTINUE: i32 = 2;
}

/// `virNetMessageHeader`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub prog: u32,
    pub vers: u32,
    pub proc_: i32,
    pub kind: i32,
    pub serial: u32,
    pub status: i32,
}

impl Header {
    pub fn call(prog: u32, proc_: i32, serial: u32) -> Header {
        Header {
            prog,
            vers: PROTOCOL_VERSION,
            proc_,
            kind: kind::CALL,
            serial,
            status: status::OK,
        }
    }
}

/// Why a packet could not be read or made sense of, in words a log can carry.
#[derive(Debug)]
pub enum WireError {
    /// The socket failed or the deadline passed (`TimedOut`/`WouldBlock`).
    Io {
        during: &'static str,
        source: std::io::Error,
    },
    /// libvirtd closed the connection, `got` bytes into a packet.
    Closed { got: usize },
    /// Bytes that are not a libvirt packet, or one larger than libvirt ever sends.
    Malformed(String),
}

impl std::fmt::Display for WireError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WireError::Io { during, source } => write!(f, "{during}: {source}"),
            WireError::Closed { got: 0 } => f.write_str("libvirtd closed the connection"),
            WireError::Closed { got } => write!(
                f,
                "libvirtd closed the connection in the middle of a reply ({got} bytes in)"
            ),
            WireError::Malformed(why) => f.write_str(why),
        }
    }
}

impl From<XdrError> for WireError {
    fn from(e: XdrError) -> WireError {
        WireError::Malformed(e.0)
    }
}

/// One whole packet, length word included, ready to send.
pub fn frame(h: &Header, body: &[u8]) -> Vec<u8> {
    let len = LEN_BYTES + HEADER_BYTES + body.len();
    let mut e = Enc::new();
    e.u32(u32::try_from(len).unwrap_or(u32::MAX))
        .u32(h.prog)
        .u32(h.vers)
        .i32(h.proc_)
        .i32(h.kind)
        .u32(h.serial)
        .i32(h.status);
    e.buf.extend_from_slice(body);
    e.buf
}

/// The length word's value checked: the packet's size after the length word.
pub fn packet_len(word: [u8; 4]) -> Result<usize, WireError> {
    let len = u32::from_be_bytes(word) as usize;
    let rest = len.saturating_sub(LEN_BYTES);
    if len < LEN_BYTES + HEADER_BYTES {
        return Err(WireError::Malformed(format!(
            "packet length {len} is shorter than a header"
        )));
    }
    if rest > MESSAGE_MAX {
        return Err(WireError::Malformed(format!(
            "packet of {rest} bytes is larger than libvirt's maximum message ({MESSAGE_MAX} bytes)"
        )));
    }
    Ok(rest)
}

/// Splits a packet (length word excluded) into its header and body.
pub fn split(packet: &[u8]) -> Result<(Header, &[u8]), WireError> {
    let mut d = Dec::new(packet);
    let h = Header {
        prog: d.u32("header program")?,
        vers: d.u32("header version")?,
        proc_: d.i32("header procedure")?,
        kind: d.i32("header type")?,
        serial: d.u32("header serial")?,
        status: d.i32("header status")?,
    };
    Ok((h, &packet[HEADER_BYTES..]))
}

/// Sends `bytes`, giving up at `deadline`.
pub fn write_all(s: &mut UnixStream, bytes: &[u8], deadline: Instant) -> Result<(), WireError> {
    let io = |source| WireError::Io {
        during: "sending to libvirtd",
        source,
    };
    s.set_write_timeout(Some(left(deadline).map_err(io)?))
        .map_err(io)?;
    s.write_all(bytes).map_err(io)
}

/// Reads one packet (length word excluded), giving up at `deadline`.
pub fn read_packet(s: &mut UnixStream, deadline: Instant) -> Result<Vec<u8>, WireError> {
    let mut word = [0u8; 4];
    fill(s, &mut word, deadline, 0)?;
    let n = packet_len(word)?;
    let mut packet = vec![0u8; n];
    fill(s, &mut packet, deadline, LEN_BYTES)?;
    Ok(packet)
}

/// Time left before `deadline`, or a `TimedOut` error once it has passed (a zero timeout
/// would mean "block forever" to the socket).
fn left(deadline: Instant) -> std::io::Result<std::time::Duration> {
    let d = deadline.saturating_duration_since(Instant::now());
    if d.is_zero() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "the deadline passed",
        ));
    }
    Ok(d)
}

fn fill(
    s: &mut UnixStream,
    buf: &mut [u8],
    deadline: Instant,
    already: usize,
) -> Result<(), WireError> {
    let io = |source| WireError::Io {
        during: "waiting for libvirtd's reply",
        source,
    };
    let mut got = 0;
    while got < buf.len() {
        s.set_read_timeout(Some(left(deadline).map_err(io)?))
            .map_err(io)?;
        match s.read(&mut buf[got..]) {
            Ok(0) => return Err(WireError::Closed { got: already + got }),
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(io(e)),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_then_split() {
        let h = Header::call(REMOTE_PROGRAM, 23, 9);
        let p = frame(&h, &[0, 0, 0, 1]);
        let n = packet_len([p[0], p[1], p[2], p[3]]).expect("must decode");
        assert_eq!(n, p.len() - 4);
        let (h2, body) = split(&p[4..]).expect("must decode");
        assert_eq!(h2, h);
        assert_eq!(body, [0, 0, 0, 1]);
    }

    #[test]
    fn refuses_oversized_and_undersized_lengths() {
        let big = u32::try_from(MESSAGE_MAX + 5)
            .expect("must decode")
            .to_be_bytes();
        assert!(packet_len(big)
            .expect_err("must fail")
            .to_string()
            .contains("larger"));
        assert!(packet_len(8u32.to_be_bytes())
            .expect_err("must fail")
            .to_string()
            .contains("shorter"));
        let max = u32::try_from(MESSAGE_MAX + 4)
            .expect("must decode")
            .to_be_bytes();
        assert_eq!(packet_len(max).expect("must decode"), MESSAGE_MAX);
    }
}
