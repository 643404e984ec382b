//! Where to look next for each kind of growth, in plain words.

use super::Shape;
use crate::series::SeriesKey;

pub fn look_next(key: &SeriesKey, shape: Shape) -> String {
    let what = match key.name.as_str() {
        "meminfo.SUnreclaim" | "meminfo.Slab" => {
            "slabtop -s c, or /proc/slabinfo sorted by size twice: which cache grows; then that \
             cache's allocation sites (kmemleak, or slub_debug=U and /sys/kernel/slab/<cache>/alloc_calls)"
        }
        "meminfo.VmallocUsed" => {
            "/proc/vmallocinfo: sum pages= by caller in two readings, which caller grows \
             (module loads, BPF programs, driver buffers)"
        }
        "meminfo.PageTables" | "meminfo.SecPageTables" => {
            "which process's VmPTE grows (grep VmPTE /proc/*/status): a process mapping ever more \
             memory; SecPageTables is KVM's own (guest memory mapped by the host)"
        }
        "meminfo.KernelStack" => {
            "the thread count: which process keeps creating threads (Threads: in /proc/*/status, \
             ps -eLf | wc -l)"
        }
        "meminfo.Percpu" => {
            "per-CPU allocations grow with cgroups and per-CPU objects: count memory cgroups, \
             and dying ones (nr_dying_descendants in cgroup.stat)"
        }
        "host.black_hole" => {
            "memory no counter accounts for, so alloc_pages() users: balloon drivers (virtio_balloon, \
             vmw_balloon: /proc/vmstat balloon_inflate/deflate), GPU, RDMA and network drivers; \
             boot with page_owner=on and read /sys/kernel/debug/page_owner for their call sites"
        }
        "host.zram" => {
            "what is stored in zram: swapon --show (zram as swap: which processes swap, \
             VmSwap in /proc/*/status) or the filesystem on it (df); zramctl for the \
             compression ratio"
        }
        "host.socket_buffers" => {
            "sockets with data queued: ss -tunm (skmem r/t per socket, Recv-Q/Send-Q): a reader \
             that stopped reading, or a peer that stopped acknowledging"
        }
        "host.dmabuf" => {
            "who holds DMA-bufs: /sys/kernel/dmabuf/buffers/*/exporter_name, or \
             /sys/kernel/debug/dma_buf/bufinfo, and the processes with dmabuf fds \
             (ls -l /proc/*/fd | grep dmabuf)"
        }
        "host.zfs_arc" => {
            "the ARC grows toward its target c (at most c_max, half of RAM by default on OpenZFS 2.1) and \
             gives memory back only under pressure: arc_summary (or arcstats size, c, c_max); \
             cap it with the zfs_arc_max module parameter if the VMs need the room"
        }
        "meminfo.Shmem" => {
            "tmpfs and shared memory: df -t tmpfs (/dev/shm, /run), ipcs -m: files or segments \
             nobody deletes"
        }
        "meminfo.AnonPages" => {
            "process memory: the process rows say which name grows; if none does, short-lived \
             processes or a memory cgroup's tasks (memory.stat anon per cgroup)"
        }
        "meminfo.Unevictable" => "mlock()ed or ramfs memory: grep VmLck /proc/*/status",
        "vm.guest_used" => {
            "inside the guest: its own memwarden host, slabtop and ps aux --sort=-rss: which \
             process or kernel cache grows there"
        }
        "vm.qemu_rss" => {
            "QEMU on the host: its smaps (pmap -x PID twice): guest RAM touched (compare \
             guest used) or QEMU's own heap, vhost or block-layer buffers"
        }
        _ => "its /proc/PID/smaps (pmap -x PID twice): which mapping grows — [heap] or anonymous \
             mappings are malloc, a file mapping is a cache",
    };
    match shape {
        Shape::Steady => what.to_string(),
        Shape::Step => format!(
            "it grew once and then stayed: a one-off allocation (a cache filled, a job \
             started), not a leak unless it repeats; if it matters: {what}"
        ),
    }
}
