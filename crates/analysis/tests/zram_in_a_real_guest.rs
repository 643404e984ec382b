//! Ground truth for the zram term: zsmalloc's pages are in no meminfo field. In a real guest
//! (Debian's 6.1 and 6.12 kernels), a 64 MiB zram device written with 16 MiB of random data and 16 MiB of
//! repeated text must make the unaccounted rest of meminfo alone grow by what the device's own
//! mm_stat says it holds (`mem_used_total`); memwarden, reading mm_stat, must name exactly that
//! as its zram row and leave X where it was, within the 4 MiB the accounting allows a guest's
//! X (`accounting_on_real_trees.rs`, and the balloon test beside this one). Everything is read
//! on the guest's own console.
//!
//! The lab's guests are shared: run these one at a time (`--test-threads=1`) on small machines.

mod guest_common;

use std::time::Duration;

use memwarden_analysis::accounting::{consumers, decompositions};
use memwarden_lab::{GuestOpts, Kernel, Lab, QemuGuest};
use memwarden_model::host::HostSample;
use memwarden_model::units::MIB;

use guest_common::{base_sample, cat, run, x};

const TOL: i128 = 4 * MIB as i128;

/// The guest's sample as the reader would take it (without processes), zram as given.
fn sample(g: &QemuGuest, zram_mm_stat: Option<&str>) -> HostSample {
    HostSample {
        zram: zram_mm_stat.map(|t| {
            vec![memwarden_procfs::zram::parse("zram0", t).expect("guest mm_stat parses")]
        }),
        ..base_sample(g)
    }
}

#[test]
fn zram_pages_are_named_not_left_in_the_black_hole_6_1() {
    zram_pages_are_named(Kernel::Debian6_1, "bh-zram-61");
}

#[test]
fn zram_pages_are_named_not_left_in_the_black_hole_6_12() {
    zram_pages_are_named(Kernel::Debian6_12, "bh-zram-612");
}

fn zram_pages_are_named(kernel: Kernel, name: &str) {
    let lab = Lab::with_kernel(kernel).expect("lab");
    let g = QemuGuest::boot(
        &lab,
        GuestOpts {
            name: name.into(),
            mem_mib: 512,
            ..Default::default()
        },
    )
    .expect("boot");
    let before = sample(&g, None);
    let loaded = run(
        &g,
        "while read -r m; do insmod /modules/$m.ko || echo \"insmod $m failed\"; done \
         < /modules/zram.order",
    );
    assert!(!loaded.contains("failed"), "{loaded}");
    run(&g, "echo 64M > /sys/block/zram0/disksize");
    g.console_timeout(
        "run dd if=/dev/urandom of=/dev/zram0 bs=1M count=16 2>/dev/null; yes memwarden-zram-test \
         | head -c 16777216 | dd of=/dev/zram0 bs=1M seek=16 2>/dev/null; sync",
        Duration::from_secs(300),
    )
    .expect("guest writes zram0");
    // The writes went through the block device's page cache (Buffers): drop it, so that what
    // moved is zsmalloc's pages alone.
    run(&g, "echo 3 > /proc/sys/vm/drop_caches");
    let mm_stat = cat(&g, "/sys/block/zram0/mm_stat");
    // mem_used_total, the third field, read here from the text, independently of the parser.
    let held: u64 = mm_stat
        .split_whitespace()
        .nth(2)
        .and_then(|w| w.parse().ok())
        .unwrap_or_else(|| panic!("mm_stat {mm_stat:?}"));
    let after = sample(&g, Some(&mm_stat));
    let mut after_without = after.clone();
    after_without.zram = None;

    let zram_row = decompositions::by_lru(&after)
        .parts
        .iter()
        .find(|p| p.label == consumers::ZRAM)
        .map(|p| p.bytes);
    let (x0, x1, x1_bare) = (x(&before), x(&after), x(&after_without));
    eprintln!(
        "zram {}: mm_stat {:?}; mem_used_total {held}; X before {x0}, after without the term \
         {x1_bare}, with it {x1}",
        lab.kernel_release(),
        mm_stat.trim()
    );
    // zsmalloc counts its pages in the zone counter NR_ZSPAGES, which meminfo does not print
    // (the guest has no swap, so zswap holds nothing: the counter is zram's pool alone).
    let zspages = after
        .vmstat
        .as_ref()
        .and_then(|v| v.get("nr_zspages"))
        .expect("vmstat nr_zspages");
    assert_eq!(zspages * 4096, held, "nr_zspages is zram's pool");
    assert!(
        held >= 16 * MIB,
        "16 MiB of random data is incompressible: {held}"
    );
    assert_eq!(
        zram_row,
        Some(held),
        "the zram row is the guest's own mem_used_total"
    );
    assert_eq!(
        x1_bare - x1,
        i128::from(held),
        "X falls by the row, exactly"
    );
    assert!(
        ((x1_bare - x0) - i128::from(held)).abs() <= TOL,
        "meminfo alone: X grew by {} for {held} held by zram",
        x1_bare - x0
    );
    assert!((x1 - x0).abs() <= TOL, "X moved by {}", x1 - x0);
    assert!(x1.abs() <= TOL, "X after is {x1}");
}
