#![no_main]
//! libvirt's RPC replies as the built-in client reads them off libvirtd's socket.
//!
//! Input: one byte choosing the call the client waits for (the calls `libvirt_rpc::Connect`
//! and `Domain` make), then the bytes the server sends: packets, each a length word and a
//! packet (events, keepalive pings, then the reply). Each packet's length is checked as
//! `wire::read_packet` does, classified against the call (`classify`), and a successful body
//! goes through that call's decoder and on to what the backend makes of it (bulk typed
//! parameters → tags, memory-stat records → tags, the domain XML, a monitor reply), then
//! into a VM sample whose derived figures must keep their bounds; an event goes through the
//! event watch's decoder. Never a panic.

use libfuzzer_sys::fuzz_target;
use memwarden_libvirt::rpc::events;
use memwarden_libvirt::rpc::proto::{self, remote};
use memwarden_libvirt::rpc::{classify, wire, Reply};
use memwarden_hv::{libvirt, tags};
use memwarden_libvirt::domain_xml;
use memwarden_model::units::KIB;
use memwarden_model::vm::VmSample;

#[path = "common/mod.rs"]
mod common;

/// (program, procedure, the serial it has on a fresh channel: AUTH_LIST 1, CONNECT_OPEN 2,
/// then the call; the captured replies in crates/hv/tests/data/libvirt-rpc have these).
const CALLS: [(u32, i32, u32); 14] = [
    (wire::REMOTE_PROGRAM, remote::AUTH_LIST, 1),
    (wire::REMOTE_PROGRAM, remote::AUTH_POLKIT, 2),
    (wire::REMOTE_PROGRAM, remote::CONNECT_OPEN, 2),
    (wire::REMOTE_PROGRAM, remote::DOMAIN_LOOKUP_BY_NAME, 3),
    (wire::REMOTE_PROGRAM, remote::CONNECT_LIST_ALL_DOMAINS, 3),
    (
        wire::REMOTE_PROGRAM,
        remote::CONNECT_GET_ALL_DOMAIN_STATS,
        3,
    ),
    (wire::REMOTE_PROGRAM, remote::DOMAIN_GET_XML_DESC, 3),
    (wire::REMOTE_PROGRAM, remote::DOMAIN_GET_MAX_MEMORY, 3),
    (wire::REMOTE_PROGRAM, remote::DOMAIN_GET_STATE, 3),
    (wire::REMOTE_PROGRAM, remote::DOMAIN_MEMORY_STATS, 3),
    (wire::REMOTE_PROGRAM, remote::DOMAIN_SET_MEMORY_FLAGS, 3),
    (
        wire::REMOTE_PROGRAM,
        remote::DOMAIN_SET_MEMORY_STATS_PERIOD,
        3,
    ),
    (wire::QEMU_PROGRAM, proto::QEMU_MONITOR_COMMAND, 3),
    (wire::REMOTE_PROGRAM, remote::CONNECT_CLOSE, 3),
];

fuzz_target!(|data: &[u8]| {
    let Some((&which, mut stream)) = data.split_first() else {
        return;
    };
    let (prog, proc_, serial) = CALLS[usize::from(which) % CALLS.len()];
    let want = wire::Header::call(prog, proc_, serial);
    // As Channel::exchange: read packets until the reply, answering pings, skipping events.
    while stream.len() >= 4 {
        let word = [stream[0], stream[1], stream[2], stream[3]];
        let Ok(n) = wire::packet_len(word) else {
            return;
        };
        assert!(n <= wire::MESSAGE_MAX, "packet of {n} bytes accepted");
        let Some(packet) = stream.get(4..4 + n) else {
            return; // the server closed mid-packet
        };
        stream = &stream[4 + n..];
        match classify(packet, &want) {
            Ok(Reply::Ping) => continue,
            Ok(Reply::Skip) => {
                event(packet);
                continue;
            }
            Ok(Reply::Ok(body)) => {
                assert!(body.len() + wire::HEADER_BYTES == packet.len());
                decode(proc_, prog, body);
                return;
            }
            Ok(Reply::Err(e)) => {
                let _ = e.message.map(|m| memwarden_hv::qmp::clip(&m));
                return;
            }
            Err(e) => {
                let _ = e.to_string();
                return;
            }
        }
    }
});

/// A packet that is not the reply, as the event watch reads it (`events::EventWatch::drain`).
fn event(packet: &[u8]) {
    if let Ok((h, body)) = wire::split(packet) {
        if let Ok(Some(ev)) = events::decode_event(h.proc_, body) {
            let (_, detail) = events::classify(ev.lifecycle);
            assert!(!detail.is_empty());
            let _ = ev.dom.uuid_string();
        }
    }
}

/// The reply body through the decoder its call uses, and on as far as the backend takes it.
fn decode(proc_: i32, prog: u32, body: &[u8]) {
    if prog == wire::QEMU_PROGRAM {
        if let Ok(reply) = proto::string(body, "monitor reply") {
            let mut vm = VmSample::default();
            let _ = libvirt::merge_extra(&mut vm, &reply);
            common::check_vm_figures(&vm);
        }
        return;
    }
    match proc_ {
        remote::AUTH_LIST => {
            if let Ok(v) = proto::auth_list(body) {
                assert!(v.len() <= proto::AUTH_TYPE_LIST_MAX as usize);
            }
        }
        remote::AUTH_POLKIT => {
            let _ = proto::int(body, "auth_polkit");
        }
        remote::DOMAIN_LOOKUP_BY_NAME => {
            let _ = proto::domain(body);
        }
        remote::CONNECT_LIST_ALL_DOMAINS => {
            if let Ok(v) = proto::list_all_domains(body) {
                assert!(v.len() <= proto::DOMAIN_LIST_MAX as usize);
            }
        }
        remote::CONNECT_GET_ALL_DOMAIN_STATS => {
            let Ok(records) = proto::all_domain_stats(body) else {
                return;
            };
            for (dom, params) in records {
                let f = libvirt::bulk_fields(&params);
                let vm = VmSample {
                    name: dom.name,
                    max_memory_bytes: f.max_memory_bytes,
                    state: f.state,
                    balloon: tags::balloon_from_tags(f.tags),
                    ..VmSample::default()
                };
                common::check_vm_figures(&vm);
            }
        }
        remote::DOMAIN_GET_XML_DESC => {
            if let Ok(xml) = proto::string(body, "domain XML") {
                let _ = domain_xml::parse(&xml);
            }
        }
        remote::DOMAIN_GET_MAX_MEMORY => {
            if let Ok(kib) = proto::u64_ret(body, "max memory") {
                let _ = kib.checked_mul(KIB);
            }
        }
        remote::DOMAIN_GET_STATE => {
            let _ = proto::state(body);
        }
        remote::DOMAIN_MEMORY_STATS => {
            let Ok(v) = proto::memory_stats(body) else {
                return;
            };
            assert!(v.len() <= proto::MEMORY_STATS_MAX as usize);
            // As Domain::memory_stats and the backend: numbers → virsh's tag names.
            let tags_ = v
                .into_iter()
                .map(|(t, v)| tags::libvirt_tag(u32::try_from(t).unwrap_or(u32::MAX), v))
                .collect();
            let vm = VmSample {
                balloon: tags::balloon_from_tags(tags_),
                ..VmSample::default()
            };
            common::check_vm_figures(&vm);
        }
        _ => {
            let _ = proto::void(body);
        }
    }
}
