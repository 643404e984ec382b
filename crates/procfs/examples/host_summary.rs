//! Prints a summary of what `HostReader` reads: `cargo run -p memwarden-procfs --example
//! host_summary [ROOT]` (ROOT holds `proc/` and `sys/`; the live host when omitted).

use memwarden_procfs::HostReader;

fn main() -> Result<(), memwarden_procfs::Error> {
    let reader = match std::env::args().nth(1) {
        Some(root) => HostReader::at_root(root),
        None => HostReader::live(),
    };
    let t = std::time::Instant::now();
    let h = reader.read_host()?;
    println!("read in {:?}", t.elapsed());
    println!("kernel {:?}", h.kernel_release);
    println!("meminfo: {} entries", h.meminfo.entries.len());
    println!(
        "vmstat: {:?} pairs",
        h.vmstat.as_ref().map(|v| v.entries.len())
    );
    println!("psi: {:?}", h.psi);
    if let Some(v) = &h.vmalloc {
        println!(
            "vmalloc: pages {} B, size {} B, {} records, ioremap {} vmap {} other {} unpurged {}; \
             VmallocUsed {:?}",
            v.vmalloc_pages_bytes,
            v.vmalloc_size_bytes,
            v.vmalloc_records,
            v.ioremap_bytes,
            v.vmap_bytes,
            v.other_bytes,
            v.unpurged_bytes,
            h.meminfo.get("VmallocUsed")
        );
        for c in v.top_callers.iter().take(5) {
            println!(
                "  {:>10} B  {:>5} records  {}",
                c.bytes, c.records, c.caller
            );
        }
    }
    println!("modules: {:?}", h.modules.as_ref().map(Vec::len));
    let with_smaps = h.processes.iter().filter(|p| p.smaps.is_some()).count();
    println!(
        "processes: {} ({} with smaps)",
        h.processes.len(),
        with_smaps
    );
    println!(
        "ksm: run {:?}, {} files",
        h.ksm.as_ref().and_then(|k| k.run),
        h.ksm.as_ref().map_or(0, |k| k.files.len())
    );
    println!("hugepage pools: {}", h.hugepages.len());
    println!("numa nodes: {}", h.numa_nodes.len());
    println!(
        "thp: enabled {:?}, {} files",
        h.thp.as_ref().and_then(|t| t.enabled.clone()),
        h.thp.as_ref().map_or(0, |t| t.files.len())
    );
    for d in &h.degraded {
        println!("degraded: {d}");
    }
    Ok(())
}
