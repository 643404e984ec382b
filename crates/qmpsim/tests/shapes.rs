//! The simulator's replies have the shapes of real QEMU 7.2's: every request captured from a
//! real QEMU (tests/data/*.jsonl, see its README) is replayed against a simulator set up like
//! that QEMU, and each reply is compared: keys and their order, JSON types, array element
//! shapes, and error classes and texts exactly. Events (`BALLOON_CHANGE`) are compared too.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use memwarden_qmpsim::{Behaviour, Endpoint, GuestState, Simulator};
use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

/// A JSON value with its object keys in wire order.
#[derive(Debug, Clone, PartialEq)]
enum J {
    Obj(Vec<(String, J)>),
    Arr(Vec<J>),
    Str(String),
    Num(serde_json::Number),
    Bool(bool),
    Null,
}

impl<'de> Deserialize<'de> for J {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<J, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = J;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("JSON")
            }
            fn visit_bool<E>(self, b: bool) -> Result<J, E> {
                Ok(J::Bool(b))
            }
            fn visit_u64<E>(self, n: u64) -> Result<J, E> {
                Ok(J::Num(n.into()))
            }
            fn visit_i64<E>(self, n: i64) -> Result<J, E> {
                Ok(J::Num(n.into()))
            }
            fn visit_f64<E: serde::de::Error>(self, n: f64) -> Result<J, E> {
                serde_json::Number::from_f64(n)
                    .map(J::Num)
                    .ok_or_else(|| E::custom("NaN"))
            }
            fn visit_str<E>(self, s: &str) -> Result<J, E> {
                Ok(J::Str(s.to_string()))
            }
            fn visit_unit<E>(self) -> Result<J, E> {
                Ok(J::Null)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<J, A::Error> {
                let mut v = Vec::new();
                while let Some(x) = a.next_element()? {
                    v.push(x);
                }
                Ok(J::Arr(v))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<J, A::Error> {
                let mut v = Vec::new();
                while let Some((k, x)) = m.next_entry::<String, J>()? {
                    v.push((k, x));
                }
                Ok(J::Obj(v))
            }
        }
        d.deserialize_any(V)
    }
}

/// The shape: keys in order and types; error objects and `qom-list` entries kept whole
/// (their texts are part of the protocol).
fn shape(v: &J) -> String {
    match v {
        J::Obj(pairs) if pairs.iter().any(|(k, _)| k == "class") => format!("{v:?}"),
        J::Obj(pairs) if pairs.len() == 2 && pairs[0].0 == "name" && pairs[1].0 == "type" => {
            format!("{v:?}")
        }
        J::Obj(pairs) => {
            let inner: Vec<String> = pairs
                .iter()
                .map(|(k, x)| format!("{k}: {}", shape(x)))
                .collect();
            format!("{{{}}}", inner.join(", "))
        }
        J::Arr(items) => {
            let mut s: Vec<String> = items.iter().map(shape).collect();
            s.sort();
            s.dedup();
            format!("[{}]", s.join(" | "))
        }
        J::Str(_) => "string".into(),
        J::Num(n) if n.is_u64() => "uint".into(),
        J::Num(_) => "number".into(),
        J::Bool(_) => "bool".into(),
        J::Null => "null".into(),
    }
}

fn parse(line: &str) -> J {
    serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"))
}

fn is_event(v: &J) -> bool {
    matches!(v, J::Obj(p) if p.iter().any(|(k, _)| k == "event"))
}

/// Replays `fixture` against an endpoint behaving as `guest`; returns how many replies and
/// events were compared.
fn replay(fixture: &str, guest: GuestState) -> (usize, usize) {
    let text = std::fs::read_to_string(Path::new("tests/data").join(fixture)).expect("fixture");
    let dir = tempfile::tempdir().expect("tempdir");
    let sim = Simulator::start(
        dir.path(),
        &[Endpoint {
            name: "q".into(),
            behaviour: Behaviour::Healthy(guest),
        }],
    )
    .expect("simulator");
    let s = UnixStream::connect(&sim.socket_paths()[0]).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut w = s.try_clone().expect("clone");
    let mut r = BufReader::new(s);
    let mut read = || {
        let mut l = String::new();
        r.read_line(&mut l).expect("read a line");
        assert!(l.ends_with('\n'), "no newline: {l:?}");
        l
    };
    let (mut replies, mut events) = (0, 0);
    let mut real_event: Option<String> = None;
    let mut sim_events = Vec::new();
    for rec in text.lines() {
        let rec: serde_json::Value = serde_json::from_str(rec).expect("record");
        let recv: Vec<J> = rec["recv"]
            .as_array()
            .expect("recv")
            .iter()
            .map(|l| parse(l.as_str().expect("line")))
            .collect();
        for e in recv.iter().filter(|v| is_event(v)) {
            real_event = Some(shape(e));
        }
        let Some(real) = recv.iter().find(|v| !is_event(v)) else {
            continue;
        };
        if let Some(send) = rec["send"].as_str() {
            w.write_all(format!("{send}\n").as_bytes()).expect("send");
        }
        let ours = loop {
            let v = parse(&read());
            if is_event(&v) {
                sim_events.push(shape(&v));
                continue;
            }
            break v;
        };
        assert_eq!(
            shape(&ours),
            shape(real),
            "{fixture}: reply to {}",
            rec["send"]
        );
        replies += 1;
    }
    if let Some(real) = real_event {
        assert!(
            !sim_events.is_empty(),
            "{fixture}: QEMU sent events, we none"
        );
        for e in &sim_events {
            assert_eq!(e, &real, "{fixture}: event shape");
            events += 1;
        }
    }
    (replies, events)
}

fn lab_guest() -> GuestState {
    let mut g = GuestState::new("lab-sim-cap");
    g.uuid = None; // plain QEMU without -uuid
    g
}

#[test]
fn healthy_replies_have_qemu_72_shapes() {
    let (n, e) = replay("qemu-7.2-balloon.jsonl", lab_guest());
    assert_eq!(n, 28);
    assert!(e >= 2, "{e} events compared");
}

#[test]
fn deflate_on_oom_and_free_page_reporting_shapes() {
    let mut g = lab_guest();
    if let Some(b) = g.balloon.as_mut() {
        b.deflate_on_oom = true;
        b.free_page_reporting = true;
    }
    let (n, _) = replay("qemu-7.2-balloon-dof-fpr.jsonl", g);
    assert_eq!(n, 28);
}

#[test]
fn no_balloon_device_shapes() {
    let mut g = lab_guest();
    g.balloon = None;
    let (n, _) = replay("qemu-7.2-no-balloon.jsonl", g);
    assert_eq!(n, 28);
}
