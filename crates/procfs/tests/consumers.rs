//! The readers of zram, sockstat and DMA-buf on handwritten trees laid out as the kernel lays
//! them out (/sys/block entries are symlinks into /sys/devices; DMA-bufs are directories named
//! by inode): values found, absence kept apart from failure, a bad file named with its line,
//! and non-regular files refused.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;

use memwarden_model::host::DmaBufSource;
use memwarden_procfs::HostReader;

fn write(root: &Path, rel: &str, text: &str) {
    let p = root.join(rel);
    fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
    fs::write(p, text).expect("write");
}

fn tree() -> tempfile::TempDir {
    let t = tempfile::tempdir().expect("tempdir");
    let r = t.path();
    write(
        r,
        "proc/meminfo",
        "MemTotal: 524288 kB\nMemFree: 100000 kB\n",
    );
    write(
        r,
        "sys/devices/virtual/block/zram0/mm_stat",
        "67108864 16384000 16777216        0 16777216      100        0       12       12\n",
    );
    write(r, "sys/devices/virtual/block/vda/size", "0\n");
    fs::create_dir_all(r.join("sys/block")).expect("mkdir");
    symlink("../devices/virtual/block/zram0", r.join("sys/block/zram0")).expect("symlink");
    symlink("../devices/virtual/block/vda", r.join("sys/block/vda")).expect("symlink");
    write(
        r,
        "proc/net/sockstat",
        "sockets: used 5\nTCP: inuse 1 orphan 0 tw 0 alloc 1 mem 3\nUDP: inuse 0 mem 0\n\
         FRAG: inuse 0 memory 0\n",
    );
    for (ino, exporter, size) in [("18", "system", "4096"), ("19", "udmabuf", "65536")] {
        write(
            r,
            &format!("sys/kernel/dmabuf/buffers/{ino}/size"),
            &format!("{size}\n"),
        );
        write(
            r,
            &format!("sys/kernel/dmabuf/buffers/{ino}/exporter_name"),
            &format!("{exporter}\n"),
        );
    }
    t
}

#[test]
fn reads_each_consumer_as_the_kernel_lays_it_out() {
    let t = tree();
    let h = HostReader::at_root(t.path()).read_host().expect("host");
    let zram = h.zram.as_ref().expect("zram read");
    assert_eq!(zram.len(), 1, "vda is not a zram device");
    assert_eq!(zram[0].device, "zram0");
    assert_eq!(zram[0].mem_used_total_bytes, 16 << 20);
    let st = h.sockstat.as_ref().expect("sockstat");
    assert_eq!(st.get("TCP", "mem"), Some(3));
    assert!(!st.ipv6, "no sockstat6: IPv6 off, not an error");
    let d = h.dmabuf.as_ref().expect("dmabuf");
    assert_eq!(d.source, DmaBufSource::Sysfs);
    assert_eq!((d.total_bytes(), d.buffers()), (69632, 2));
    assert!(
        !h.degraded
            .iter()
            .any(|d| d.contains("zram") || d.contains("sockstat") || d.contains("dma")),
        "{:?}",
        h.degraded
    );
}

#[test]
fn a_host_without_them_has_none_and_no_complaint_but_for_sockstat() {
    let t = tempfile::tempdir().expect("tempdir");
    write(
        t.path(),
        "proc/meminfo",
        "MemTotal: 524288 kB\nMemFree: 100000 kB\n",
    );
    let h = HostReader::at_root(t.path()).read_host().expect("host");
    assert!(h.zram.is_none() && h.dmabuf.is_none() && h.sockstat.is_none());
    let about: Vec<&String> = h
        .degraded
        .iter()
        .filter(|d| d.contains("zram") || d.contains("sockstat") || d.contains("dma"))
        .collect();
    assert_eq!(about.len(), 1, "{about:?}");
    assert!(about[0].contains("net/sockstat: not present"), "{about:?}");
}

#[test]
fn a_bad_file_is_named_with_its_line_and_the_rest_is_read() {
    let t = tree();
    let r = t.path();
    write(r, "sys/devices/virtual/block/zram0/mm_stat", "1 2 3\n");
    write(r, "proc/net/sockstat", "sockets: used 5\nTCP: inuse\n");
    let h = HostReader::at_root(r).read_host().expect("host");
    assert!(h.zram.is_none() && h.sockstat.is_none());
    let zram = r.join("sys/block/zram0/mm_stat");
    assert!(
        h.degraded
            .iter()
            .any(|d| d.contains(&format!("{} line 1: expected 7 to 9", zram.display()))),
        "{:?}",
        h.degraded
    );
    let sockstat = r.join("proc/net/sockstat");
    assert!(
        h.degraded
            .iter()
            .any(|d| d.contains(&format!("{} line 2:", sockstat.display()))),
        "{:?}",
        h.degraded
    );
    assert!(
        h.dmabuf.is_some(),
        "one consumer's failure leaves the others"
    );
}

#[test]
fn a_fifo_in_place_of_mm_stat_is_refused_not_waited_on() {
    let t = tree();
    let p = t.path().join("sys/devices/virtual/block/zram0/mm_stat");
    fs::remove_file(&p).expect("rm");
    let ok = std::process::Command::new("mkfifo")
        .arg(&p)
        .status()
        .expect("mkfifo");
    assert!(ok.success());
    let h = HostReader::at_root(t.path()).read_host().expect("host");
    assert!(h.zram.is_none());
    assert!(
        h.degraded.iter().any(|d| d.contains("a FIFO")),
        "{:?}",
        h.degraded
    );
}

#[test]
fn bufinfo_is_read_when_the_sysfs_statistics_are_absent() {
    let t = tree();
    let r = t.path();
    fs::remove_dir_all(r.join("sys/kernel/dmabuf")).expect("rm");
    write(
        r,
        "sys/kernel/debug/dma_buf/bufinfo",
        "\nDma-buf Objects:\nsize    \tflags   \tmode    \tcount   \texp_name\tino     \tname\n\
         00008192\t00000002\t00000005\t00000001\tsystem\t00000018\t<none>\n\
         \tAttached Devices:\nTotal 0 devices attached\n\nTotal 1 objects, 8192 bytes\n",
    );
    let h = HostReader::at_root(r).read_host().expect("host");
    let d = h.dmabuf.as_ref().expect("bufinfo");
    assert_eq!(d.source, DmaBufSource::DebugfsBufinfo);
    assert_eq!(d.total_bytes(), 8192);
}
