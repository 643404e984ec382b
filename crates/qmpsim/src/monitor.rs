//! The healthy QMP protocol of QEMU 7.2: greeting, capabilities negotiation, the commands a
//! memory collector uses, QEMU's error classes and texts, `id` echo, and `BALLOON_CHANGE`
//! events. Every reply's shape (key order included) follows the captures in
//! `tests/data/qemu-7.2-*.jsonl`.

use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::Value;

use crate::json::{obj, s, Q};
use crate::state::GuestState;

/// QEMU's greeting, as 7.2 prints it (one line, no newline).
pub(crate) fn greeting() -> String {
    let v = obj([(
        "QMP",
        obj([
            (
                "version",
                obj([
                    (
                        "qemu",
                        obj([("micro", Q::U(0)), ("minor", Q::U(2)), ("major", Q::U(7))]),
                    ),
                    ("package", s("memwarden-qmpsim (QEMU 7.2 shapes)")),
                ]),
            ),
            ("capabilities", Q::Arr(vec![s("oob")])),
        ]),
    )]);
    v.render()
}

/// One client session on a healthy endpoint.
#[derive(Debug)]
pub(crate) struct Session {
    state: Arc<Mutex<GuestState>>,
    negotiated: bool,
    replies: u32,
    /// Events to send before the next reply (what the guest did since).
    pending: Vec<String>,
    /// Events to send right after the current reply.
    after_reply: Vec<String>,
}

/// A command's outcome before it is wrapped with the id.
enum Outcome {
    Return(Q),
    Error(&'static str, String),
}

fn generic(desc: impl Into<String>) -> Outcome {
    Outcome::Error("GenericError", desc.into())
}

impl Session {
    pub(crate) fn new(state: Arc<Mutex<GuestState>>) -> Session {
        Session {
            state,
            negotiated: false,
            replies: 0,
            pending: Vec::new(),
            after_reply: Vec::new(),
        }
    }

    fn guest(&self) -> MutexGuard<'_, GuestState> {
        // A panic elsewhere cannot leave the plain-data state inconsistent: go on with it.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The lines (events, then the reply) that answer one input line.
    pub(crate) fn handle(&mut self, line: &[u8]) -> Vec<String> {
        let mut out = std::mem::take(&mut self.pending);
        let (id, outcome) = self.dispatch(line);
        self.replies += 1;
        let every = self.guest().event_every;
        if out.is_empty() && every > 0 && self.negotiated && self.replies % every == 0 {
            if let Some(e) = self.balloon_event() {
                out.push(e);
            }
        }
        let reply = match outcome {
            Outcome::Return(v) => {
                let mut pairs = vec![("return".to_string(), v)];
                if let Some(id) = id {
                    pairs.push(("id".to_string(), id));
                }
                Q::Obj(pairs)
            }
            Outcome::Error(class, desc) => {
                let mut pairs = Vec::new();
                if let Some(id) = id {
                    pairs.push(("id".to_string(), id));
                }
                pairs.push((
                    "error".to_string(),
                    obj([("class", s(class)), ("desc", s(desc))]),
                ));
                Q::Obj(pairs)
            }
        };
        out.push(reply.render());
        // What the guest does right after a `balloon` reply comes out after it.
        out.append(&mut self.after_reply);
        out
    }

    fn dispatch(&mut self, line: &[u8]) -> (Option<Q>, Outcome) {
        let msg: Value = match serde_json::from_slice(line) {
            Ok(v) => v,
            Err(_) => {
                let first = line
                    .iter()
                    .find(|b| !b.is_ascii_whitespace())
                    .map(|&b| b as char)
                    .unwrap_or(' ');
                return (None, generic(format!("JSON parse error, stray '{first}'")));
            }
        };
        let Some(m) = msg.as_object() else {
            return (None, generic("QMP input must be a JSON object"));
        };
        let id = m.get("id").map(Q::from_value);
        let command = match m.get("execute").or_else(|| m.get("exec-oob")) {
            Some(Value::String(c)) => c.as_str(),
            Some(_) => return (id, generic("QMP input member 'execute' must be a string")),
            None => return (id, generic("QMP input lacks member 'execute'")),
        };
        let args = m.get("arguments").cloned().unwrap_or(Value::Null);
        if !self.negotiated {
            if command == "qmp_capabilities" {
                self.negotiated = true;
                return (id, Outcome::Return(obj([])));
            }
            return (
                id,
                Outcome::Error(
                    "CommandNotFound",
                    "Expecting capabilities negotiation with 'qmp_capabilities'".into(),
                ),
            );
        }
        (id, self.command(command, &args))
    }

    fn command(&mut self, command: &str, args: &Value) -> Outcome {
        let arg = |k: &str| args.get(k);
        match command {
            "qmp_capabilities" => Outcome::Error(
                "CommandNotFound",
                "Capabilities negotiation is already complete, command ignored".into(),
            ),
            "query-name" => Outcome::Return(match &self.guest().name {
                Some(n) => obj([("name", s(n.clone()))]),
                None => obj([]),
            }),
            "query-uuid" => {
                let u = self.guest().uuid.clone();
                let u = u.unwrap_or_else(|| "00000000-0000-0000-0000-000000000000".into());
                Outcome::Return(obj([("UUID", s(u))]))
            }
            "query-status" => {
                let st = self.guest().status.clone();
                let running = st == "running";
                Outcome::Return(obj([
                    ("status", s(st)),
                    ("singlestep", Q::B(false)),
                    ("running", Q::B(running)),
                ]))
            }
            "query-memory-size-summary" => Outcome::Return(obj([
                ("base-memory", Q::U(self.guest().ram_bytes)),
                ("plugged-memory", Q::U(0)),
            ])),
            "query-balloon" => match &self.guest().balloon {
                Some(b) => Outcome::Return(obj([("actual", Q::U(b.actual_bytes))])),
                None => no_balloon(),
            },
            "balloon" => self.balloon(arg("value")),
            "qom-list" => match arg("path").and_then(Value::as_str) {
                Some(p) => self.qom_list(p),
                None => generic("Parameter 'path' is missing"),
            },
            "qom-get" | "qom-set" => {
                let (Some(path), Some(prop)) = (
                    arg("path").and_then(Value::as_str),
                    arg("property").and_then(Value::as_str),
                ) else {
                    return generic("Parameter 'path' is missing");
                };
                if command == "qom-get" {
                    self.qom_get(path, prop)
                } else {
                    self.qom_set(path, prop, arg("value"))
                }
            }
            other => Outcome::Error(
                "CommandNotFound",
                format!("The command {other} has not been found"),
            ),
        }
    }

    fn balloon(&mut self, value: Option<&Value>) -> Outcome {
        if self.guest().balloon.is_none() {
            return no_balloon();
        }
        let Some(target) = value.and_then(Value::as_i64).filter(|&t| t > 0) else {
            return generic("Parameter 'target' expects a size");
        };
        let (before, after) = {
            let mut g = self.guest();
            let before = g.balloon.as_ref().map(|b| b.actual_bytes).unwrap_or(0);
            g.set_balloon_target(target as u64);
            (
                before,
                g.balloon.as_ref().map(|b| b.actual_bytes).unwrap_or(0),
            )
        };
        if before != after {
            // QEMU reports the driver's progress, then the end: one event just after the
            // reply (a first page batch), one before the next reply.
            let step = if after < before {
                (before - (1 << 20)).max(after)
            } else {
                (before + (1 << 20)).min(after)
            };
            if step != after {
                self.after_reply.push(event(step));
            }
            self.pending.push(event(after));
        }
        Outcome::Return(obj([]))
    }

    fn balloon_event(&self) -> Option<String> {
        let actual = self.guest().balloon.as_ref()?.actual_bytes;
        Some(event(actual))
    }

    /// (QOM type, children) of a container path.
    fn qom_list(&self, path: &str) -> Outcome {
        let g = self.guest();
        let mut items = vec![obj([("name", s("type")), ("type", s("string"))])];
        let place = g.balloon.as_ref().map(|b| b.qom_place());
        match path.trim_end_matches('/') {
            base @ ("/machine/peripheral" | "/machine/peripheral-anon") => {
                if let Some((_, child)) = place.filter(|(b, _)| *b == base) {
                    items.push(obj([
                        ("name", s(child)),
                        ("type", s("child<virtio-balloon-pci>")),
                    ]));
                }
            }
            p if self.balloon_at(&g, p) => {
                for (name, ty) in BALLOON_PROPERTIES {
                    items.push(obj([("name", s(*name)), ("type", s(*ty))]));
                }
            }
            p => return not_found(p),
        }
        Outcome::Return(Q::Arr(items))
    }

    fn balloon_at(&self, g: &GuestState, path: &str) -> bool {
        let Some((base, child)) = g.balloon.as_ref().map(|b| b.qom_place()) else {
            return false;
        };
        // QOM resolves a partial path (`balloon0`) when it is unambiguous.
        path == format!("{base}/{child}") || path == child
    }

    fn qom_get(&self, path: &str, prop: &str) -> Outcome {
        let g = self.guest();
        if !self.balloon_at(&g, path) {
            return not_found(path);
        }
        let Some(b) = g.balloon.as_ref() else {
            return not_found(path);
        };
        Outcome::Return(match prop {
            "guest-stats-polling-interval" => Q::U(b.polling_interval_s),
            "guest-stats" => obj([
                (
                    "stats",
                    Q::Obj(
                        b.stats
                            .qemu_order()
                            .into_iter()
                            .map(|(k, v)| (k.to_string(), Q::U(v)))
                            .collect(),
                    ),
                ),
                ("last-update", Q::U(b.last_update())),
            ]),
            "deflate-on-oom" => Q::B(b.deflate_on_oom),
            "free-page-reporting" => Q::B(b.free_page_reporting),
            "type" => s("virtio-balloon-pci"),
            other => return no_property(other),
        })
    }

    fn qom_set(&mut self, path: &str, prop: &str, value: Option<&Value>) -> Outcome {
        let mut g = self.guest();
        if !self.balloon_at(&g, path) {
            return not_found(path);
        }
        let Some(b) = g.balloon.as_mut() else {
            return not_found(path);
        };
        match prop {
            "guest-stats-polling-interval" => {
                let Some(v) = value
                    .and_then(Value::as_u64)
                    .filter(|&v| v <= u64::from(u32::MAX))
                else {
                    return generic("Parameter 'value' expects uint32");
                };
                b.polling_interval_s = v;
                Outcome::Return(obj([]))
            }
            "deflate-on-oom" | "free-page-reporting" => {
                let id = b.id.clone().unwrap_or_else(|| "device[0]".into());
                generic(format!(
                    "Attempt to set property '{prop}' on device '{id}' (type 'virtio-balloon-pci') after it was realized"
                ))
            }
            p if BALLOON_PROPERTIES.iter().any(|(n, _)| *n == p) => {
                generic(format!("Property '{p}' is not writable"))
            }
            other => no_property(other),
        }
    }
}

/// The balloon's properties `qom-list` shows (a subset of QEMU 7.2's, the ones that matter).
const BALLOON_PROPERTIES: &[(&str, &str)] = &[
    ("guest-stats-polling-interval", "int"),
    ("guest-stats", "guest-stats"),
    ("deflate-on-oom", "bool"),
    ("free-page-reporting", "bool"),
    ("free-page-hint", "bool"),
    ("qemu-4-0-config-size", "bool"),
];

fn no_balloon() -> Outcome {
    Outcome::Error(
        "DeviceNotActive",
        "No balloon device has been activated".into(),
    )
}

fn not_found(path: &str) -> Outcome {
    Outcome::Error("DeviceNotFound", format!("Device '{path}' not found"))
}

fn no_property(prop: &str) -> Outcome {
    generic(format!("Property 'virtio-balloon-pci.{prop}' not found"))
}

/// A `BALLOON_CHANGE` event line, stamped now.
fn event(actual: u64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    obj([
        (
            "timestamp",
            obj([
                ("seconds", Q::U(now.as_secs())),
                ("microseconds", Q::U(u64::from(now.subsec_micros()))),
            ]),
        ),
        ("event", s("BALLOON_CHANGE")),
        ("data", obj([("actual", Q::U(actual))])),
    ])
    .render()
}
