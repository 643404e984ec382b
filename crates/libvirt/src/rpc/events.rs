//! libvirt's domain events over the RPC protocol: a channel of its own registers for the
//! lifecycle and reboot events of every domain (`CONNECT_DOMAIN_EVENT_CALLBACK_REGISTER_ANY`,
//! no domain named), and the backend drains what libvirtd pushed on it once per sample.
//!
//! Why: a guest that panics and is restarted (`on_crash` restart or destroy), or resets itself
//! (`panic=N`, a reboot from inside), between two samples is otherwise seen only later, through
//! its balloon counters starting again, and a crash then looks like any reboot. libvirtd
//! queues the events on our socket while we are not reading, so nothing is missed between two
//! samples as long as the channel stays open; when it is (re)opened, the backend says that the
//! interval before is not covered.
//!
//! Bounds: a drain reads what is already there (it never waits for more), at most
//! [`DRAIN_MAX`] packets, each under the sample's deadline and libvirt's message cap.

use std::time::Instant;

use memwarden_model::vm::VmEventKind;

use super::proto::DomRef;
use super::wire::{self, kind};
use super::xdr::{Dec, Enc, XResult};
use super::{wire_error, Channel, R};

/// Procedure numbers (`remote_procedure` in remote_protocol.x).
pub const CONNECT_DOMAIN_EVENT_CALLBACK_REGISTER_ANY: i32 = 316;
pub const DOMAIN_EVENT_CALLBACK_LIFECYCLE: i32 = 318;
pub const DOMAIN_EVENT_CALLBACK_REBOOT: i32 = 319;

/// `virDomainEventID` (libvirt-domain.h).
pub const EVENT_ID_LIFECYCLE: i32 = 0;
pub const EVENT_ID_REBOOT: i32 = 1;

/// `virDomainEventType` (libvirt-domain.h).
pub mod lifecycle {
    pub const DEFINED: i32 = 0;
    pub const UNDEFINED: i32 = 1;
    pub const STARTED: i32 = 2;
    pub const SUSPENDED: i32 = 3;
    pub const RESUMED: i32 = 4;
    pub const STOPPED: i32 = 5;
    pub const SHUTDOWN: i32 = 6;
    pub const PMSUSPENDED: i32 = 7;
    pub const CRASHED: i32 = 8;
    /// `VIR_DOMAIN_EVENT_STOPPED_CRASHED`: the detail of a STOPPED event for a crash.
    pub const STOPPED_CRASHED: i32 = 2;
    /// `VIR_DOMAIN_EVENT_CRASHED_PANICKED` / `_CRASHLOADED`.
    pub const CRASHED_PANICKED: i32 = 0;
    pub const CRASHED_CRASHLOADED: i32 = 1;
}

/// Packets read by one drain at most; the rest wait for the next sample.
pub const DRAIN_MAX: usize = 4096;

/// `remote_connect_domain_event_callback_register_any_args`: an event id, and no domain (all).
pub fn register_any_args(event_id: i32) -> Vec<u8> {
    let mut e = Enc::new();
    e.i32(event_id).u32(0); // remote_domain is an optional pointer: absent
    e.buf
}

/// One event as libvirtd sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawEvent {
    pub callback_id: i32,
    pub dom: DomRef,
    /// `(event, detail)` of a lifecycle event; `None` for a reboot event.
    pub lifecycle: Option<(i32, i32)>,
}

/// Decodes the body of a `DOMAIN_EVENT_CALLBACK_LIFECYCLE` or `_REBOOT` message; `None` for
/// any other procedure (libvirtd sends only what was registered, but a reader keeps going).
pub fn decode_event(proc_: i32, body: &[u8]) -> XResult<Option<RawEvent>> {
    let mut d = Dec::new(body);
    let lifecycle = match proc_ {
        DOMAIN_EVENT_CALLBACK_LIFECYCLE => true,
        DOMAIN_EVENT_CALLBACK_REBOOT => false,
        _ => return Ok(None),
    };
    let callback_id = d.i32("event callback id")?;
    let dom = DomRef::decode(&mut d)?;
    let lifecycle = if lifecycle {
        Some((d.i32("lifecycle event")?, d.i32("lifecycle detail")?))
    } else {
        None
    };
    d.finish("domain event")?;
    Ok(Some(RawEvent {
        callback_id,
        dom,
        lifecycle,
    }))
}

/// What an event means for the guest, and libvirt's words for it.
pub fn classify(lifecycle: Option<(i32, i32)>) -> (VmEventKind, String) {
    use lifecycle::*;
    let Some((event, detail)) = lifecycle else {
        return (VmEventKind::Reset, "reset (libvirt reboot event)".into());
    };
    let stopped = [
        "shut down",
        "destroyed",
        "crashed",
        "migrated",
        "saved",
        "failed",
        "from snapshot",
    ];
    let started = ["booted", "migrated", "restored", "from snapshot", "wakeup"];
    let word = |names: &[&str]| {
        usize::try_from(detail)
            .ok()
            .and_then(|i| names.get(i).copied())
            .map_or_else(|| format!("detail {detail}"), str::to_string)
    };
    match event {
        CRASHED => (
            VmEventKind::Crashed,
            format!("crashed ({})", word(&["panicked", "crashloaded"])),
        ),
        STOPPED if detail == STOPPED_CRASHED => (VmEventKind::Crashed, "stopped (crashed)".into()),
        STOPPED => (
            VmEventKind::Stopped,
            format!("stopped ({})", word(&stopped)),
        ),
        STARTED => (
            VmEventKind::Started,
            format!("started ({})", word(&started)),
        ),
        DEFINED => (VmEventKind::Other, "defined".into()),
        UNDEFINED => (VmEventKind::Other, "undefined".into()),
        SUSPENDED => (VmEventKind::Other, format!("suspended (detail {detail})")),
        RESUMED => (VmEventKind::Other, format!("resumed (detail {detail})")),
        SHUTDOWN => (
            VmEventKind::Other,
            format!("shutting down (detail {detail})"),
        ),
        PMSUSPENDED => (VmEventKind::Other, "suspended by the guest".into()),
        e => (VmEventKind::Other, format!("event {e}, detail {detail}")),
    }
}

/// A channel registered for every domain's lifecycle and reboot events.
#[derive(Debug)]
pub struct EventWatch {
    ch: Channel,
}

/// What one drain found.
#[derive(Debug, Default)]
pub struct Drained {
    pub events: Vec<RawEvent>,
    /// Packets that were not events we registered for (keepalive pongs, others).
    pub skipped: usize,
    /// True when [`DRAIN_MAX`] packets were read and more may be waiting.
    pub truncated: bool,
}

impl EventWatch {
    /// Opens a channel to `at` for `uri` and registers for the two events, before `deadline`.
    pub fn open(uri: &str, at: &super::Endpoint, deadline: Instant) -> R<EventWatch> {
        let mut ch = Channel::open(at, uri, deadline)?;
        for id in [EVENT_ID_LIFECYCLE, EVENT_ID_REBOOT] {
            ch.call(
                wire::REMOTE_PROGRAM,
                CONNECT_DOMAIN_EVENT_CALLBACK_REGISTER_ANY,
                &register_any_args(id),
                deadline,
                |b| super::proto::int(b, "event callback id"),
            )?;
        }
        Ok(EventWatch { ch })
    }

    /// Reads every event libvirtd has queued on the channel so far, never waiting for more.
    /// An error means the channel is broken (libvirtd restarted): open a new one.
    pub fn drain(&mut self, deadline: Instant) -> R<Drained> {
        let mut out = Drained::default();
        for _ in 0..DRAIN_MAX {
            if !self.pending()? {
                return Ok(out);
            }
            self.ch.broken = true; // until the packet is wholly read
            let packet = wire::read_packet(&mut self.ch.sock, deadline).map_err(wire_error)?;
            self.ch.broken = false;
            let (h, body) = wire::split(&packet).map_err(wire_error)?;
            if h.prog == wire::KEEPALIVE_PROGRAM && h.proc_ == super::proto::KEEPALIVE_PING {
                self.ch.pong(deadline)?;
                out.skipped += 1;
                continue;
            }
            let ours = h.prog == wire::REMOTE_PROGRAM && h.kind == kind::MESSAGE;
            match ours
                .then(|| decode_event(h.proc_, body))
                .transpose()
                .map_err(|e| wire_error(e.into()))?
                .flatten()
            {
                Some(ev) => out.events.push(ev),
                None => out.skipped += 1,
            }
        }
        out.truncated = true;
        Ok(out)
    }

    /// Whether a packet (or part of one) is waiting; an error once libvirtd closed the socket.
    fn pending(&self) -> R<bool> {
        use rustix::net::{recv, RecvFlags};
        let mut b = [0u8; 1];
        match recv(&self.ch.sock, &mut b, RecvFlags::PEEK | RecvFlags::DONTWAIT) {
            Ok((0, _)) => Err(wire_error(wire::WireError::Closed { got: 0 })),
            Ok(_) => Ok(true),
            Err(e) if e == rustix::io::Errno::AGAIN => Ok(false),
            Err(e) => Err(wire_error(wire::WireError::Io {
                during: "reading libvirtd's events",
                source: e.into(),
            })),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dom(name: &str) -> DomRef {
        DomRef {
            name: name.into(),
            uuid: [0x11; 16],
            id: 3,
        }
    }

    fn body(callback: i32, d: &DomRef, words: &[i32]) -> Vec<u8> {
        let mut e = Enc::new();
        e.i32(callback);
        d.encode(&mut e);
        for w in words {
            e.i32(*w);
        }
        e.buf
    }

    #[test]
    fn lifecycle_and_reboot_messages_decode() {
        let d = dom("vm1");
        let ev = decode_event(DOMAIN_EVENT_CALLBACK_LIFECYCLE, &body(7, &d, &[8, 0]))
            .expect("decodes")
            .expect("decodes");
        assert_eq!(ev.callback_id, 7);
        assert_eq!(ev.dom, d);
        assert_eq!(ev.lifecycle, Some((8, 0)));
        assert_eq!(
            classify(ev.lifecycle),
            (VmEventKind::Crashed, "crashed (panicked)".into())
        );
        let ev = decode_event(DOMAIN_EVENT_CALLBACK_REBOOT, &body(8, &d, &[]))
            .expect("decodes")
            .expect("decodes");
        assert_eq!(ev.lifecycle, None);
        assert_eq!(classify(None).0, VmEventKind::Reset);
        assert_eq!(decode_event(320, &body(8, &d, &[])).expect("decodes"), None);
    }

    #[test]
    fn trailing_or_missing_bytes_are_errors_not_shifted_numbers() {
        let d = dom("vm1");
        assert!(decode_event(DOMAIN_EVENT_CALLBACK_LIFECYCLE, &body(7, &d, &[8])).is_err());
        assert!(decode_event(DOMAIN_EVENT_CALLBACK_REBOOT, &body(7, &d, &[1])).is_err());
        assert!(decode_event(DOMAIN_EVENT_CALLBACK_LIFECYCLE, &[]).is_err());
    }

    #[test]
    fn every_lifecycle_event_has_a_kind_and_words() {
        use lifecycle::*;
        assert_eq!(
            classify(Some((STOPPED, STOPPED_CRASHED))).0,
            VmEventKind::Crashed
        );
        assert_eq!(
            classify(Some((STOPPED, 1))),
            (VmEventKind::Stopped, "stopped (destroyed)".into())
        );
        assert_eq!(
            classify(Some((STARTED, 0))),
            (VmEventKind::Started, "started (booted)".into())
        );
        assert_eq!(
            classify(Some((CRASHED, CRASHED_CRASHLOADED))).1,
            "crashed (crashloaded)"
        );
        // Unknown numbers (a newer libvirtd) are kept as numbers, never a panic.
        assert_eq!(classify(Some((STARTED, 99))).1, "started (detail 99)");
        assert_eq!(classify(Some((-1, -7))).0, VmEventKind::Other);
        assert_eq!(
            classify(Some((CRASHED, i32::MIN))).1,
            "crashed (detail -2147483648)"
        );
    }

    #[test]
    fn register_args_name_no_domain() {
        assert_eq!(
            register_any_args(EVENT_ID_REBOOT),
            vec![0, 0, 0, 1, 0, 0, 0, 0]
        );
    }

    /// libvirt's own definitions, as installed by libvirt-dev (scripts/setup.sh --test), and
    /// remote_protocol.x's procedure lines quoted (libvirt does not install the .x file).
    #[test]
    fn constants_match_libvirt() {
        const HEADER: &str = "/usr/include/libvirt/libvirt-domain.h";
        let h = std::fs::read_to_string(HEADER)
            .unwrap_or_else(|e| panic!("{HEADER}: {e} (apt-get install libvirt-dev)"));
        let value = |name: &str| -> i32 {
            let line = h
                .lines()
                .find(|l| l.trim_start().starts_with(&format!("{name} ")))
                .unwrap_or_else(|| panic!("{name} not in {HEADER}"));
            line.split('=')
                .nth(1)
                .expect("decodes")
                .trim()
                .split(',')
                .next()
                .expect("decodes")
                .trim()
                .parse()
                .unwrap_or_else(|e| panic!("{name}: {e} in {line:?}"))
        };
        use lifecycle::*;
        for (name, ours) in [
            ("VIR_DOMAIN_EVENT_ID_LIFECYCLE", EVENT_ID_LIFECYCLE),
            ("VIR_DOMAIN_EVENT_ID_REBOOT", EVENT_ID_REBOOT),
            ("VIR_DOMAIN_EVENT_DEFINED", DEFINED),
            ("VIR_DOMAIN_EVENT_UNDEFINED", UNDEFINED),
            ("VIR_DOMAIN_EVENT_STARTED", STARTED),
            ("VIR_DOMAIN_EVENT_SUSPENDED", SUSPENDED),
            ("VIR_DOMAIN_EVENT_RESUMED", RESUMED),
            ("VIR_DOMAIN_EVENT_STOPPED", STOPPED),
            ("VIR_DOMAIN_EVENT_SHUTDOWN", SHUTDOWN),
            ("VIR_DOMAIN_EVENT_PMSUSPENDED", PMSUSPENDED),
            ("VIR_DOMAIN_EVENT_CRASHED", CRASHED),
            ("VIR_DOMAIN_EVENT_STOPPED_CRASHED", STOPPED_CRASHED),
            ("VIR_DOMAIN_EVENT_CRASHED_PANICKED", CRASHED_PANICKED),
            ("VIR_DOMAIN_EVENT_CRASHED_CRASHLOADED", CRASHED_CRASHLOADED),
            ("VIR_DOMAIN_EVENT_STOPPED_DESTROYED", 1),
            ("VIR_DOMAIN_EVENT_STARTED_BOOTED", 0),
        ] {
            assert_eq!(value(name), ours, "{name}");
        }
        // libvirt 11.3.0 src/remote/remote_protocol.x, `enum remote_procedure`.
        const PROCS: &str = "
    REMOTE_PROC_CONNECT_DOMAIN_EVENT_CALLBACK_REGISTER_ANY = 316,
    REMOTE_PROC_DOMAIN_EVENT_CALLBACK_LIFECYCLE = 318,
    REMOTE_PROC_DOMAIN_EVENT_CALLBACK_REBOOT = 319,
";
        for (name, ours) in [
            (
                "REMOTE_PROC_CONNECT_DOMAIN_EVENT_CALLBACK_REGISTER_ANY",
                CONNECT_DOMAIN_EVENT_CALLBACK_REGISTER_ANY,
            ),
            (
                "REMOTE_PROC_DOMAIN_EVENT_CALLBACK_LIFECYCLE",
                DOMAIN_EVENT_CALLBACK_LIFECYCLE,
            ),
            (
                "REMOTE_PROC_DOMAIN_EVENT_CALLBACK_REBOOT",
                DOMAIN_EVENT_CALLBACK_REBOOT,
            ),
        ] {
            assert!(PROCS.contains(&format!("{name} = {ours},")), "{name}");
        }
    }
}
