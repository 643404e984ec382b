//! Captures libvirtd's replies to the calls memwarden's RPC client makes, as fixtures for the
//! decoder tests (`crates/hv/tests/data/libvirt-rpc/`): starts a lab domain, sends each call
//! on a fresh connection and writes each reply packet (length word excluded) to a file.
//!
//! `MEMWARDEN_LAB_DIR=/work/lab-shared cargo run -p memwarden-libvirt --example rpc_capture [DIR]`

use std::path::PathBuf;
use std::time::Duration;

use memwarden_lab::{Domain, DomainOpts, Lab, URI};
use memwarden_libvirt::rpc::{proto, wire, Connect};

fn main() {
    let out = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("crates/hv/tests/data/libvirt-rpc"));
    std::fs::create_dir_all(&out).expect("output dir");
    let lab = Lab::new().expect("lab");
    let d = Domain::start(
        &lab,
        DomainOpts {
            name: "rpc-capture".into(),
            mem_mib: 256,
            stats_period: 1,
            ..DomainOpts::default()
        },
    )
    .expect("domain");
    std::thread::sleep(Duration::from_secs(3)); // one stats period and then some
    let path = memwarden_libvirt::rpc::socket_for(URI).expect("a local URI");
    let c = Connect::open(
        URI,
        &memwarden_libvirt::rpc::Endpoint::Socket(path),
        Duration::from_secs(10),
    )
    .expect("connect");
    let p = wire::REMOTE_PROGRAM;
    let save = |name: &str, proc_: i32, args: &[u8]| {
        let packet = c.raw_call(p, proc_, args).expect(name);
        std::fs::write(out.join(name), &packet).expect("write");
        packet
    };
    save("auth_list.bin", proto::remote::AUTH_LIST, &[]);
    save(
        "lookup_no_such_domain.bin",
        proto::remote::DOMAIN_LOOKUP_BY_NAME,
        &proto::lookup_by_name_args("no-such-domain"),
    );
    let found = save(
        "lookup_by_name.bin",
        proto::remote::DOMAIN_LOOKUP_BY_NAME,
        &proto::lookup_by_name_args(d.name()),
    );
    let dom = proto::domain(&found[wire::HEADER_BYTES..]).expect("domain");
    save(
        "list_all_domains.bin",
        proto::remote::CONNECT_LIST_ALL_DOMAINS,
        &proto::list_all_domains_args(1),
    );
    save(
        "get_all_domain_stats.bin",
        proto::remote::CONNECT_GET_ALL_DOMAIN_STATS,
        &proto::all_domain_stats_args(1 | 4, 1 | 1 << 29),
    );
    save(
        "memory_stats.bin",
        proto::remote::DOMAIN_MEMORY_STATS,
        &proto::dom_args(&dom, &[32, 0]),
    );
    save(
        "get_state.bin",
        proto::remote::DOMAIN_GET_STATE,
        &proto::dom_args(&dom, &[0]),
    );
    save(
        "get_max_memory.bin",
        proto::remote::DOMAIN_GET_MAX_MEMORY,
        &proto::dom_args(&dom, &[]),
    );
    save(
        "get_xml_desc.bin",
        proto::remote::DOMAIN_GET_XML_DESC,
        &proto::dom_args(&dom, &[0]),
    );
    println!("captured into {}", out.display());
}
