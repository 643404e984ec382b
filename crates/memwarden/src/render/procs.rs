//! The per-process table shared by `memwarden procs` and `memwarden host`.

use comfy_table::Table;
use memwarden_analysis::procs::{ProcRow, ProcTable};
use memwarden_model::units::format_bytes;

use super::table;

/// A command line cut to `max` characters, or `[name]` for a kernel thread.
fn short_cmd(cmdline: &str, name: &str, max: usize) -> String {
    if cmdline.is_empty() {
        return format!("[{name}]");
    }
    if cmdline.chars().count() > max {
        return cmdline.chars().take(max - 1).chain(['…']).collect();
    }
    cmdline.to_string()
}

/// A process's PID, name, USS, PSS, RSS and swap, as both tables (and `top`) show them.
pub fn memory_cells(r: &ProcRow) -> Vec<String> {
    vec![
        r.pid.to_string(),
        r.name.clone(),
        format_bytes(r.uss_bytes),
        format_bytes(r.pss_bytes),
        format_bytes(r.rss_bytes),
        format_bytes(r.swap_bytes),
    ]
}

/// USS/PSS/RSS/swap per process; with `totals`, a last row over every process read, and the
/// command line column.
pub fn process_table(p: &ProcTable, totals: bool) -> Table {
    let mut header = vec!["PID", "Name", "USS", "PSS", "RSS", "Swap"];
    if totals {
        header.push("Command");
    }
    let mut t = table(&header, &[0, 2, 3, 4, 5]);
    for r in &p.rows {
        let mut row = memory_cells(r);
        if totals {
            row.push(short_cmd(&r.cmdline, &r.name, 60));
        }
        t.add_row(row);
    }
    if totals {
        t.add_row(vec![
            String::new(),
            format!("total ({} read)", p.total_processes - p.unreadable),
            format_bytes(p.total_uss_bytes),
            format_bytes(p.total_pss_bytes),
            format_bytes(p.total_rss_bytes),
            format_bytes(p.total_swap_bytes),
            format!(
                "{} processes without readable smaps (kernel threads have none)",
                p.unreadable
            ),
        ]);
    }
    t
}
