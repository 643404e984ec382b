//! `memwarden top`'s screen, as a pure function of the view: what to show (the host summary,
//! the VMs in the chosen order, the processes by PSS), at the size given, with columns dropped
//! or truncated to fit. No terminal, no clock, no I/O: the command passes the time and the
//! status line, and the tests draw it on ratatui's `TestBackend`.

use memwarden_analysis::procs::{ProcRow, ProcTable};
use memwarden_analysis::view::View;
use memwarden_analysis::vm::VmReport;
use memwarden_model::units::format_bytes;
use memwarden_model::vm::ReadStatus;
use ratatui::style::{Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::Paragraph;

/// The key the VM table is ordered by (`s` cycles through them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum VmSort {
    /// Largest guest used first.
    #[default]
    GuestUsed,
    /// Largest QEMU RSS first.
    QemuRss,
    /// Most host-backed idle memory (what a shrink could take) first.
    HostIdle,
    /// Smallest usable share (usable / (used + usable), the controller's pressure figure) first.
    UsableShare,
}

impl VmSort {
    pub fn next(self) -> VmSort {
        match self {
            VmSort::GuestUsed => VmSort::QemuRss,
            VmSort::QemuRss => VmSort::HostIdle,
            VmSort::HostIdle => VmSort::UsableShare,
            VmSort::UsableShare => VmSort::GuestUsed,
        }
    }

    /// The words the VM block's title shows.
    pub fn label(self) -> &'static str {
        match self {
            VmSort::GuestUsed => "guest used ↓",
            VmSort::QemuRss => "QEMU RSS ↓",
            VmSort::HostIdle => "host idle ↓",
            VmSort::UsableShare => "usable share ↑",
        }
    }
}

/// Everything one frame shows.
#[derive(Debug, Clone, Copy)]
pub struct Screen<'a> {
    pub view: &'a View,
    /// Every process by PSS, from the last sample that read PSS (`procs_age_s` old); `None`
    /// before one has (a daemon reads PSS every `[record] pss_every`).
    pub procs: Option<&'a ProcTable>,
    pub procs_age_s: Option<u64>,
    pub sort: VmSort,
    /// Case-insensitive part of a VM's or process's name; empty: everything.
    pub filter: &'a str,
    /// The filter prompt is open (`/` pressed, Enter or Esc closes it).
    pub editing_filter: bool,
    /// Where the data comes from: "this host", "http://...".
    pub source: &'a str,
    /// The wall clock of this frame (ms since the epoch) and how many frames were drawn.
    pub now_unix_ms: u64,
    pub refreshes: u64,
    /// Refresh interval, seconds.
    pub interval_s: f64,
    /// The last error (a daemon that does not answer, bad JSON), shown until data comes again.
    pub error: Option<&'a str>,
}

/// `HH:MM:SS` (UTC) of a Unix time in ms.
pub fn clock(unix_ms: u64) -> String {
    let s = unix_ms / 1000;
    format!("{:02}:{:02}:{:02}", s / 3600 % 24, s / 60 % 60, s % 60)
}

/// A size, or `-` when unknown.
fn size(v: Option<u64>) -> String {
    v.map(format_bytes).unwrap_or_else(|| "-".into())
}

/// usable / (used + usable), as the balloon controller judges a guest.
fn usable_share(r: &VmReport) -> Option<f64> {
    let used = r.figures.guest_used_bytes?;
    let usable = r.figures.guest_usable_bytes?;
    let total = used.saturating_add(usable);
    (total > 0).then(|| usable as f64 / total as f64)
}

/// The VMs whose name contains `filter` (case-insensitive), ordered by `sort`; VMs without
/// the figure go last, ties by name.
pub fn vm_order<'v>(view: &'v View, sort: VmSort, filter: &str) -> Vec<VmReport<'v>> {
    let needle = filter.to_lowercase();
    let mut vms: Vec<VmReport> = view
        .vms()
        .filter(|r| r.vm.name.to_lowercase().contains(&needle))
        .collect();
    // Descending keys are negated so that one ascending order serves every key.
    let key = |r: &VmReport| -> Option<f64> {
        let f = &r.figures;
        let neg = |v: Option<u64>| v.map(|b| -(b as f64));
        match sort {
            VmSort::GuestUsed => neg(f.guest_used_bytes.or(f.guest_used_legacy_bytes)),
            VmSort::QemuRss => neg(f.host_rss_bytes),
            VmSort::HostIdle => neg(f.host_backed_idle_bytes),
            VmSort::UsableShare => usable_share(r),
        }
    };
    vms.sort_by(|a, b| match (key(a), key(b)) {
        (Some(x), Some(y)) => x.total_cmp(&y).then_with(|| a.vm.name.cmp(&b.vm.name)),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => a.vm.name.cmp(&b.vm.name),
    });
    vms
}

/// The processes whose name contains `filter` (case-insensitive), in the table's order (PSS).
pub fn proc_order<'p>(procs: &'p ProcTable, filter: &str) -> Vec<&'p ProcRow> {
    let needle = filter.to_lowercase();
    procs
        .rows
        .iter()
        .filter(|p| p.name.to_lowercase().contains(&needle))
        .collect()
}

/// A column: header, width, right-aligned or not, and how badly it is wanted (lower: kept
/// longer when the screen is narrow). The last column of a table takes what is left.
struct Col {
    head: &'static str,
    width: usize,
    right: bool,
    rank: u8,
}

const SIZE_W: usize = 8; // "1023 MiB", "28.3 MiB"

const VM_COLS: [Col; 10] = [
    Col {
        head: "NAME",
        width: 10,
        right: false,
        rank: 0,
    },
    Col {
        head: "STATE",
        width: 9,
        right: false,
        rank: 0,
    },
    Col {
        head: "ACTUAL",
        width: SIZE_W,
        right: true,
        rank: 3,
    },
    Col {
        head: "USED",
        width: SIZE_W,
        right: true,
        rank: 0,
    },
    Col {
        head: "CACHE",
        width: SIZE_W,
        right: true,
        rank: 4,
    },
    Col {
        head: "USABLE",
        width: SIZE_W,
        right: true,
        rank: 2,
    },
    Col {
        head: "QEMU RSS",
        width: SIZE_W,
        right: true,
        rank: 1,
    },
    Col {
        head: "IDLE",
        width: SIZE_W,
        right: true,
        rank: 2,
    },
    Col {
        head: "FPR/DOO",
        width: 7,
        right: false,
        rank: 5,
    },
    Col {
        head: "DIAGNOSIS",
        width: 12,
        right: false,
        rank: 1,
    },
];

const PROC_COLS: [Col; 7] = [
    Col {
        head: "PID",
        width: 7,
        right: true,
        rank: 0,
    },
    Col {
        head: "NAME",
        width: 15,
        right: false,
        rank: 0,
    },
    Col {
        head: "USS",
        width: SIZE_W,
        right: true,
        rank: 2,
    },
    Col {
        head: "PSS",
        width: SIZE_W,
        right: true,
        rank: 0,
    },
    Col {
        head: "RSS",
        width: SIZE_W,
        right: true,
        rank: 1,
    },
    Col {
        head: "SWAP",
        width: SIZE_W,
        right: true,
        rank: 1,
    },
    Col {
        head: "COMMAND",
        width: 8,
        right: false,
        rank: 3,
    },
];

/// Which columns fit in `width` (one space between columns), and each one's width: columns
/// are dropped from the least wanted rank up until the rest fit; the name column grows by at
/// most `name_grow`, the last column that is kept takes whatever remains.
fn fit(cols: &[Col], width: usize, name_col: usize, name_grow: usize) -> Vec<(usize, usize)> {
    let need = |keep: &[usize]| -> usize {
        keep.iter().map(|&i| cols[i].width).sum::<usize>() + keep.len().saturating_sub(1)
    };
    let mut keep: Vec<usize> = (0..cols.len()).collect();
    let mut rank = cols.iter().map(|c| c.rank).max().unwrap_or(0);
    while need(&keep) > width && rank > 0 {
        // Drop the rightmost column of the least wanted rank first.
        match keep.iter().rposition(|&i| cols[i].rank == rank) {
            Some(p) => {
                keep.remove(p);
            }
            None => rank -= 1,
        }
    }
    let mut widths: Vec<(usize, usize)> = keep.iter().map(|&i| (i, cols[i].width)).collect();
    let mut spare = width.saturating_sub(need(&keep));
    if let Some(n) = widths.iter_mut().find(|(i, _)| *i == name_col) {
        let grow = spare.min(name_grow);
        n.1 += grow;
        spare -= grow;
    }
    if let Some(last) = widths.last_mut() {
        last.1 += spare;
    }
    widths
}

/// `text` cut to `w` characters (an ellipsis marks the cut), padded on the side `right` says.
fn cell(text: &str, w: usize, right: bool) -> String {
    let n = text.chars().count();
    let t: String = if n > w && w > 0 {
        text.chars().take(w - 1).chain(['…']).collect()
    } else {
        text.chars().take(w).collect()
    };
    if right {
        format!("{t:>w$}")
    } else {
        format!("{t:<w$}")
    }
}

/// One table line from the cells of every column (`cells[i]` for column `i`).
fn row(cols: &[Col], fitted: &[(usize, usize)], cells: &[String]) -> String {
    fitted
        .iter()
        .map(|&(i, w)| cell(&cells[i], w, cols[i].right))
        .collect::<Vec<_>>()
        .join(" ")
        .trim_end()
        .to_string()
}

fn header(cols: &[Col], fitted: &[(usize, usize)]) -> String {
    let heads: Vec<String> = cols.iter().map(|c| c.head.to_string()).collect();
    row(cols, fitted, &heads)
}

/// One VM's cells, in [`VM_COLS`]' order.
fn vm_cells(r: &VmReport) -> Vec<String> {
    let f = &r.figures;
    let diagnosis = crate::render::vm::diagnosis(r);
    vec![
        r.vm.name.clone(),
        crate::render::vm::state(r.vm),
        size(f.actual_bytes),
        size(f.guest_used_bytes.or(f.guest_used_legacy_bytes)),
        size(f.guest_cache_bytes),
        size(f.guest_usable_bytes),
        size(f.host_rss_bytes),
        size(f.host_backed_idle_bytes),
        crate::render::vm::levers(r.vm),
        diagnosis,
    ]
}

/// The host summary: two lines.
pub fn host_lines(view: &View) -> [String; 2] {
    let m = &view.sample().host.meminfo;
    let total = m.get("MemTotal");
    let avail = m.get("MemAvailable");
    let share = total
        .zip(avail)
        .filter(|(t, _)| *t > 0)
        .map(|(t, a)| format!(" ({:.0}%)", a as f64 * 100.0 / t as f64))
        .unwrap_or_default();
    let x = match view.accounting.black_hole_bytes {
        Some(x) if x < 0 => format!("−{}", format_bytes(x.unsigned_abs() as u64)),
        Some(x) => format_bytes(x as u64),
        None => "-".into(),
    };
    let psi = match view.sample().host.psi {
        Some(p) => format!(
            "some {:.2} full {}",
            p.some.avg10,
            p.full.map_or("-".into(), |f| format!("{:.2}", f.avg10))
        ),
        None => "-".into(),
    };
    let ksm = if view.ksm.available {
        size(view.ksm.saved_bytes)
    } else {
        "off".into()
    };
    [
        format!(
            "MemTotal {}  MemAvailable {}{share}  X {x}",
            size(total),
            size(avail)
        ),
        format!("PSI avg10 {psi}  KSM saved {ksm}"),
    ]
}

/// The screen's lines, top to bottom, `width` × `height` (the tests read them; [`draw`]
/// styles them). Layout: title, two host lines, the VM block (title, header, rows: at most
/// half of what is left when processes wait below), the process block, the key help and
/// status line last.
pub fn lines(s: &Screen, width: u16, height: u16) -> Vec<String> {
    let (w, h) = (width as usize, height as usize);
    let mut out = Vec::with_capacity(h);
    let age = s
        .now_unix_ms
        .saturating_sub(s.view.sample().taken_at_unix_ms)
        / 1000;
    out.push(format!(
        "memwarden top · {} · {} #{} every {}s · data {}s old",
        s.source,
        clock(s.now_unix_ms),
        s.refreshes,
        s.interval_s,
        age
    ));
    out.extend(host_lines(s.view));

    let vms = vm_order(s.view, s.sort, s.filter);
    let procs = s.procs.map(|p| proc_order(p, s.filter)).unwrap_or_default();
    // What is left between the host lines and the status line; each block has a title and a
    // header line.
    let body = h.saturating_sub(out.len() + 1);
    let vm_rows_max = if procs.is_empty() {
        body.saturating_sub(2)
    } else {
        (body / 2).saturating_sub(2).max(1)
    };
    let filter = if s.filter.is_empty() {
        String::new()
    } else {
        format!(" · filter \"{}\"", s.filter)
    };
    let total_vms = s.view.sample().vms.len();
    let unread = s
        .view
        .sample()
        .vms
        .iter()
        .filter(|v| v.read.status != ReadStatus::Ok)
        .count();
    let shown_vms = vms.len().min(vm_rows_max);
    let more = if shown_vms < vms.len() {
        format!(" · {} more below", vms.len() - shown_vms)
    } else {
        String::new()
    };
    out.push(format!(
        "VMs {}/{total_vms} ({unread} not read) · sort {} (s){filter}{more}",
        vms.len(),
        s.sort.label()
    ));
    let fitted = fit(&VM_COLS, w, 0, 10);
    out.push(header(&VM_COLS, &fitted));
    for r in vms.iter().take(shown_vms) {
        out.push(row(&VM_COLS, &fitted, &vm_cells(r)));
    }

    let left = h.saturating_sub(out.len() + 1);
    if let (Some(table), true) = (s.procs, left >= 3) {
        let carried = match s.procs_age_s {
            Some(a) if a > 0 => format!(" (PSS {a}s old)"),
            _ => String::new(),
        };
        out.push(format!(
            "Processes by PSS: {} (of {}, {} without smaps) · Σ PSS {}{carried}",
            procs.len(),
            table.total_processes,
            table.unreadable,
            format_bytes(table.total_pss_bytes)
        ));
        let fitted = fit(&PROC_COLS, w, 1, 10);
        out.push(header(&PROC_COLS, &fitted));
        for p in procs.iter().take(left - 2) {
            let mut cells = crate::render::procs::memory_cells(p);
            cells.push(p.cmdline.clone());
            out.push(row(&PROC_COLS, &fitted, &cells));
        }
    } else if s.procs.is_none() && left >= 1 {
        out.push(
            "Processes by PSS: none read yet (a daemon reads PSS every [record] pss_every)".into(),
        );
    }
    while out.len() + 1 < h {
        out.push(String::new());
    }
    let status = if s.editing_filter {
        format!("filter: {}▏ (Enter keeps it, Esc clears it)", s.filter)
    } else {
        match s.error {
            Some(e) => format!("q quit · s sort · / filter · {e}"),
            None => "q quit · s sort · / filter".to_string(),
        }
    };
    out.push(status);
    out.truncate(h);
    out.iter()
        .map(|l| cell(l, w, false).trim_end().to_string())
        .collect()
}

/// The screen's lines styled: block titles bold, column headers and the status line reversed.
pub fn paragraph(text: Vec<String>) -> Paragraph<'static> {
    let last = text.len().saturating_sub(1);
    let styled: Vec<Line> = text
        .into_iter()
        .enumerate()
        .map(|(i, l)| {
            let title = i == 0 || l.starts_with("VMs ") || l.starts_with("Processes by PSS");
            let head = l.starts_with("NAME ") || l.trim_start().starts_with("PID ") || i == last;
            let style = if title {
                Style::new().add_modifier(Modifier::BOLD)
            } else if head {
                Style::new().add_modifier(Modifier::REVERSED)
            } else {
                Style::new()
            };
            Line::styled(l, style)
        })
        .collect();
    Paragraph::new(styled)
}

#[cfg(test)]
mod tests;
