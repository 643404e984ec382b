//! The built-in libvirt RPC client's decoders on replies captured from the real libvirtd 9.0
//! (`tests/data/README.md`), and fuzzed: any bytes decode to Ok or Err, never a panic.

use memwarden_libvirt::rpc::{classify, proto, wire, Reply};
use memwarden_libvirt::Param;
use proptest::prelude::*;

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../hv/tests/data/libvirt-rpc");

fn packet(name: &str) -> Vec<u8> {
    std::fs::read(format!("{DIR}/{name}")).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// The reply's body, checked as a reply to the call it answered.
fn body(name: &str, proc_: i32) -> Vec<u8> {
    let p = packet(name);
    let (h, _) = wire::split(&p).expect("header");
    assert_eq!((h.prog, h.proc_, h.kind), (wire::REMOTE_PROGRAM, proc_, 1));
    match classify(&p, &wire::Header::call(h.prog, proc_, h.serial)).expect(name) {
        Reply::Ok(b) => b.to_vec(),
        other => panic!("{name}: {other:?}"),
    }
}

#[test]
fn auth_list_says_none_for_root() {
    let b = body("auth_list.bin", proto::remote::AUTH_LIST);
    assert_eq!(proto::auth_list(&b).expect("decode"), [proto::auth::NONE]);
}

#[test]
fn unknown_domain_is_libvirts_no_domain_error() {
    let p = packet("lookup_no_such_domain.bin");
    let (h, _) = wire::split(&p).expect("header");
    let want = wire::Header::call(h.prog, proto::remote::DOMAIN_LOOKUP_BY_NAME, h.serial);
    let Reply::Err(e) = classify(&p, &want).expect("reply") else {
        panic!("not an error reply")
    };
    assert_eq!(e.code, 42); // VIR_ERR_NO_DOMAIN
    let msg = e.message.expect("message");
    assert!(
        msg.contains("no domain with matching name 'no-such-domain'"),
        "{msg}"
    );
}

#[test]
fn domain_calls_decode() {
    let dom = proto::domain(&body(
        "lookup_by_name.bin",
        proto::remote::DOMAIN_LOOKUP_BY_NAME,
    ))
    .expect("lookup");
    assert!(dom.name.starts_with("mwlab-rpc-capture-"), "{}", dom.name);
    assert!(dom.id > 0);
    let all = proto::list_all_domains(&body(
        "list_all_domains.bin",
        proto::remote::CONNECT_LIST_ALL_DOMAINS,
    ))
    .expect("list");
    assert!(all.contains(&dom), "{all:?}");
    let (state, _) =
        proto::state(&body("get_state.bin", proto::remote::DOMAIN_GET_STATE)).expect("state");
    assert_eq!(state, 1); // running
    let max = proto::u64_ret(
        &body("get_max_memory.bin", proto::remote::DOMAIN_GET_MAX_MEMORY),
        "max",
    )
    .expect("max");
    assert_eq!(max, 256 * 1024);
    let xml = proto::string(
        &body("get_xml_desc.bin", proto::remote::DOMAIN_GET_XML_DESC),
        "xml",
    )
    .expect("xml");
    assert!(xml.contains(&format!("<name>{}</name>", dom.name)), "{xml}");
    let stats = proto::memory_stats(&body(
        "memory_stats.bin",
        proto::remote::DOMAIN_MEMORY_STATS,
    ))
    .expect("stats");
    // VIR_DOMAIN_MEMORY_STAT_ACTUAL_BALLOON (6) is the balloon size: 256 MiB, nothing inflated.
    assert!(stats.contains(&(6, 256 * 1024)), "{stats:?}");
    assert!(stats.len() >= 8, "guest stats present: {stats:?}");
}

#[test]
fn bulk_stats_decode_with_typed_params() {
    let recs = proto::all_domain_stats(&body(
        "get_all_domain_stats.bin",
        proto::remote::CONNECT_GET_ALL_DOMAIN_STATS,
    ))
    .expect("bulk");
    let (dom, params) = recs
        .iter()
        .find(|(d, _)| d.name.starts_with("mwlab-rpc-capture-"))
        .expect("the captured domain");
    assert!(dom.id > 0);
    let get = |k: &str| params.iter().find(|(f, _)| f == k).map(|(_, v)| v.clone());
    assert_eq!(get("state.state"), Some(Param::Int(1)));
    assert_eq!(get("balloon.current"), Some(Param::Uint(256 * 1024)));
    assert_eq!(get("balloon.maximum"), Some(Param::Uint(256 * 1024)));
    assert!(get("balloon.rss").is_some(), "{params:?}");
}

/// Every decoder memwarden has, on the same bytes: none may panic.
fn decode_everything(bytes: &[u8]) {
    if bytes.len() >= 4 {
        let _ = wire::packet_len([bytes[0], bytes[1], bytes[2], bytes[3]]);
    }
    let want = wire::Header::call(wire::REMOTE_PROGRAM, 23, 3);
    let _ = classify(bytes, &want);
    let _ = proto::remote_error(bytes);
    let _ = proto::auth_list(bytes);
    let _ = proto::domain(bytes);
    let _ = proto::list_all_domains(bytes);
    let _ = proto::all_domain_stats(bytes);
    let _ = proto::memory_stats(bytes);
    let _ = proto::state(bytes);
    let _ = proto::string(bytes, "s");
    let _ = proto::u64_ret(bytes, "u");
    let _ = proto::int(bytes, "i");
    let _ = proto::void(bytes);
}

const FIXTURES: [&str; 9] = [
    "auth_list.bin",
    "get_all_domain_stats.bin",
    "get_max_memory.bin",
    "get_state.bin",
    "get_xml_desc.bin",
    "list_all_domains.bin",
    "lookup_by_name.bin",
    "lookup_no_such_domain.bin",
    "memory_stats.bin",
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn any_bytes_decode_without_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        decode_everything(&bytes);
    }

    /// Real replies, cut short and with a byte changed: the shapes a broken stream produces.
    #[test]
    fn damaged_real_replies_decode_without_panic(
        which in 0..FIXTURES.len(),
        cut in any::<prop::sample::Index>(),
        at in any::<prop::sample::Index>(),
        byte in any::<u8>(),
    ) {
        let mut p = packet(FIXTURES[which]);
        let i = at.index(p.len());
        p[i] = byte;
        p.truncate(cut.index(p.len() + 1));
        decode_everything(&p);
        decode_everything(p.get(wire::HEADER_BYTES..).unwrap_or(&[]));
    }
}
