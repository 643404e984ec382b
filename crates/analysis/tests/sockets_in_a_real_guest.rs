//! Ground truth for the socket-buffer figure. In a real guest (Debian's 6.1 kernel), eight TCP
//! connections over loopback whose receivers never read hold data in their queues; the guest's
//! own /proc/net/sockstat charges it (`TCP mem`, pages). memwarden names that charge inside X,
//! at most, and does not subtract it (accounting/consumers.rs: part of it is Slab, part page
//! frags no meminfo field counts, part reservation). What is checked, all read on the guest's
//! console:
//!
//! - the inside-X figure is exactly sockstat's `TCP mem` × 4 KiB;
//! - the unaccounted rest of meminfo grew by no more than that figure (plus the 4 MiB a guest's
//!   X is allowed): the bound holds;
//! - and by most of it: X less the named figure is back where it was, within the 4 MiB. On
//!   loopback the data sits in the senders' page frags (order-3 pages from the page allocator,
//!   in no meminfo field) and only the sk_buff heads are Slab, so the figure is nearly all X.
//!
//! Measured (6.1.0-57, two runs): TCP mem 11,095 and 11,077 pages (45.4 MB); X grew by 47.3 MB,
//! 1.8 MB more than the charge (the eight full pipes behind the receivers, 64 KiB each, are
//! pages no meminfo field counts either, and the forty helper processes' kernel allocations).
//!
//! The lab's guests are shared: run these one at a time (`--test-threads=1`) on small machines.

mod guest_common;

use memwarden_analysis::accounting::{consumers, decompositions};
use memwarden_lab::{GuestOpts, Lab, QemuGuest};
use memwarden_model::host::HostSample;
use memwarden_model::units::MIB;

use guest_common::{base_sample, cat, run, x};

const TOL: i128 = 4 * MIB as i128;
/// Connections, each with a receiver that never reads.
const PAIRS: u32 = 8;

/// The guest's sample as the reader would take it (without processes), and its sockstat text.
fn sample(g: &QemuGuest) -> (HostSample, String) {
    let sockstat = cat(g, "/proc/net/sockstat");
    let entries =
        memwarden_procfs::sockstat::parse("/proc/net/sockstat", &sockstat).expect("sockstat");
    let s = HostSample {
        sockstat: Some(memwarden_model::host::Sockstat {
            entries,
            ipv6: false,
        }),
        ..base_sample(g)
    };
    (s, sockstat)
}

/// `TCP: ... mem N` read from the text, independently of the parser.
fn tcp_mem_pages(text: &str) -> u64 {
    let line = text
        .lines()
        .find(|l| l.starts_with("TCP:"))
        .unwrap_or_else(|| panic!("no TCP line in {text}"));
    let w: Vec<&str> = line.split_whitespace().collect();
    let i = w
        .iter()
        .position(|x| *x == "mem")
        .unwrap_or_else(|| panic!("{line}"));
    w[i + 1].parse().expect("pages")
}

#[test]
fn unread_tcp_data_is_inside_x_as_sockstat_charges_it_6_1() {
    let lab = Lab::new().expect("lab");
    let g = QemuGuest::boot(
        &lab,
        GuestOpts {
            name: "bh-sock-61".into(),
            mem_mib: 512,
            ..Default::default()
        },
    )
    .expect("boot");
    // Loopback up; large default buffers, so that each connection holds MiBs before the
    // sender blocks (the receive buffer only autotunes when the application reads).
    run(
        &g,
        "ip link set lo up; sysctl -qw net.ipv4.tcp_rmem='4096 4194304 8388608' \
         net.ipv4.tcp_wmem='4096 4194304 8388608'",
    );
    let (before, text0) = sample(&g);
    assert_eq!(tcp_mem_pages(&text0), 0, "{text0}");
    // Each receiver: busybox nc with a stdin that never ends (EOF would close the connection)
    // and a stdout nobody reads, so the pipe fills and nc stops reading the socket.
    for i in 0..PAIRS {
        let port = 5000 + i;
        run(
            &g,
            &format!(
                "(sleep 100000 | nc -l -p {port} | sleep 100000) >/dev/null 2>&1 & sleep 0.3; \
                 (dd if=/dev/zero bs=1M count=64 2>/dev/null | nc 127.0.0.1 {port}) \
                 >/dev/null 2>&1 &"
            ),
        );
    }
    // Until the queues stop growing: two equal readings a second apart.
    let mut last = u64::MAX;
    for _ in 0..60 {
        let pages = tcp_mem_pages(&cat(&g, "/proc/net/sockstat"));
        if pages == last && pages > 0 {
            break;
        }
        last = pages;
        run(&g, "sleep 1");
    }
    let (after, text1) = sample(&g);
    let charged = i128::from(tcp_mem_pages(&text1)) * 4096;
    let named = decompositions::by_lru(&after)
        .within_x
        .iter()
        .find(|p| p.label == consumers::SOCKET_BUFFERS)
        .map(|p| i128::from(p.bytes));
    let (x0, x1) = (x(&before), x(&after));
    eprintln!(
        "sockets {}: sockstat {:?}; TCP mem {charged} bytes; X before {x0}, after {x1} \
         (grew {}), less the named figure {}",
        lab.kernel_release(),
        text1.lines().find(|l| l.starts_with("TCP:")),
        x1 - x0,
        x1 - charged
    );
    assert!(
        charged >= 16 * i128::from(MIB),
        "{PAIRS} connections charge {charged} only"
    );
    assert_eq!(named, Some(charged), "the inside-X figure is sockstat's");
    assert!(
        x1 - x0 <= charged + TOL,
        "X grew by {} for {charged} charged",
        x1 - x0
    );
    assert!(
        (x1 - charged - x0).abs() <= TOL,
        "X less the figure moved by {}",
        x1 - charged - x0
    );
}
