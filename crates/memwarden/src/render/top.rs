//! `memwarden top`'s screen, as a pure function of the view: what to show (the host summary,
//! the VMs in the chosen order, the processes by PSS), at the size given, with columns dropped
//! or truncated to fit. No terminal, no clock, no I/O: the command passes the time and the
//! status line, and the tests draw it on ratatui's `TestBackend`.

use memwarden_analysis::procs::{ProcRow, ProcTable};
use memwarden_analysis::view::View;
use memwarden_analysis::vm::VmReport;
use memwarden_model::units::format_bytes;
use memwarden_model::vm::{ReadStatus, VmSample, VmState};
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

fn state_word(vm: &VmSample) -> String {
    if vm.read.status != ReadStatus::Ok {
        return vm.read.status.as_str().to_string();
    }
    match &vm.state {
        VmState::Running => "running",
        VmState::Paused => "paused",
        VmState::Shutoff => "shut off",
        VmState::Crashed => "crashed",
        VmState::Suspended => "suspended",
        VmState::Unknown => "unknown",
        VmState::Other(o) => o,
    }
    .to_string()
}

fn levers(vm: &VmSample) -> String {
    let w = |x: Option<bool>| match x {
        Some(true) => "on",
        Some(false) => "off",
        None => "?",
    };
    format!(
        "{}/{}",
        w(vm.device.free_page_reporting),
        w(vm.device.autodeflate)
    )
}

/// One VM's cells, in [`VM_COLS`]' order.
fn vm_cells(r: &VmReport) -> Vec<String> {
    let f = &r.figures;
    let diagnosis = if r.diagnosis.is_empty() {
        "ok".to_string()
    } else {
        r.diagnosis
            .iter()
            .map(|d| d.text.as_str())
            .collect::<Vec<_>>()
            .join("; ")
    };
    vec![
        r.vm.name.clone(),
        state_word(r.vm),
        size(f.actual_bytes),
        size(f.guest_used_bytes.or(f.guest_used_legacy_bytes)),
        size(f.guest_cache_bytes),
        size(f.guest_usable_bytes),
        size(f.host_rss_bytes),
        size(f.host_backed_idle_bytes),
        levers(r.vm),
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
            let cells = [
                p.pid.to_string(),
                p.name.clone(),
                format_bytes(p.uss_bytes),
                format_bytes(p.pss_bytes),
                format_bytes(p.rss_bytes),
                format_bytes(p.swap_bytes),
                p.cmdline.clone(),
            ];
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
mod tests {
    //! The screen drawn on ratatui's TestBackend, on a View built from captured data: the host
    //! of the captured tree `fixtures/host-6.18-sandbox` and VMs whose balloon statistics are the
    //! captured `virsh dommemstat` (crates/hv/tests/data), each guest having allocated a
    //! different amount on top of it, and one VM whose QEMU did not answer.

    use std::path::PathBuf;
    use std::sync::Arc;

    use memwarden_analysis::procs::{self, SortBy};
    use memwarden_hv::tags::{self, LIBVIRT_TAGS};
    use memwarden_model::units::MIB;
    use memwarden_model::vm::{BalloonDevice, VmRead};
    use memwarden_model::Sample;
    use memwarden_procfs::HostReader;
    use ratatui::backend::TestBackend;
    use ratatui::Terminal;

    use super::*;

    fn repo() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
    }

    /// The captured dommemstat, with `used_mib` more allocated in the guest (out of both
    /// `unused` and `usable`) and QEMU's RSS at `rss_mib`.
    fn vm(name: &str, used_mib: u64, rss_mib: u64, fpr: bool) -> VmSample {
        let captured = include_str!("../../../hv/tests/data/virsh-dommemstat.txt");
        let parsed: Vec<_> = captured
            .lines()
            .filter_map(|l| {
                let (k, v) = l.split_once(' ')?;
                let n = LIBVIRT_TAGS.iter().position(|(t, _)| *t == k)?;
                Some(tags::libvirt_tag(n as u32, v.parse().ok()?))
            })
            .collect();
        let mut balloon = tags::balloon_from_tags(parsed);
        let less = |v: Option<u64>| v.map(|b| b - used_mib * MIB);
        balloon.unused_bytes = less(balloon.unused_bytes);
        balloon.usable_bytes = less(balloon.usable_bytes);
        balloon.rss_bytes = Some(rss_mib * MIB);
        VmSample {
            name: name.into(),
            state: VmState::Running,
            max_memory_bytes: Some(512 * MIB),
            read_at_unix_s: balloon.last_update_unix_s.unwrap_or(0) + 1,
            balloon,
            device: BalloonDevice {
                present: true,
                stats_period_s: Some(2),
                free_page_reporting: Some(fpr),
                autodeflate: Some(false),
                ..BalloonDevice::default()
            },
            ..VmSample::default()
        }
    }

    fn sample() -> Sample {
        let host = HostReader::at_root(repo().join("fixtures/host-6.18-sandbox"))
            .read_host()
            .expect("the captured tree reads");
        let mut frozen = vm("delta-frozen", 0, 0, false);
        frozen.balloon = Default::default();
        frozen.read = VmRead {
            status: ReadStatus::TimedOut,
            reason: Some("no answer in time: still waiting for query-balloon".into()),
            duration_ms: 2000,
        };
        Sample {
            taken_at_unix_ms: 1_795_426_935_000,
            host,
            vms: vec![
                vm("alpha", 200, 250, true),
                vm("bravo", 50, 400, false),
                vm("charlie", 120, 300, true),
                frozen,
            ],
            ..Sample::default()
        }
    }

    /// The screen as text, drawn through the terminal adapter's own path.
    fn drawn(view: &View, sort: VmSort, filter: &str, w: u16, h: u16) -> Vec<String> {
        let procs = procs::table(&view.sample().host, SortBy::Pss, usize::MAX);
        drawn_with(view, Some(&procs), sort, filter, w, h)
    }

    fn drawn_with(
        view: &View,
        procs: Option<&ProcTable>,
        sort: VmSort,
        filter: &str,
        w: u16,
        h: u16,
    ) -> Vec<String> {
        let s = Screen {
            view,
            procs,
            procs_age_s: Some(0),
            sort,
            filter,
            editing_filter: false,
            source: "test",
            now_unix_ms: view.sample().taken_at_unix_ms + 3_000,
            refreshes: 7,
            interval_s: 2.0,
            error: None,
        };
        let mut t = Terminal::new(TestBackend::new(w, h)).expect("test terminal");
        t.draw(|f| f.render_widget(paragraph(lines(&s, w, h)), f.area()))
            .expect("draws");
        let buf = t.backend().buffer();
        (0..h)
            .map(|y| {
                let l: String = (0..w).map(|x| buf[(x, y)].symbol()).collect();
                l.trim_end().to_string()
            })
            .collect()
    }

    /// The row of VM `name` (its line starts with the name), and its index on the screen.
    fn vm_row<'a>(screen: &'a [String], name: &str) -> Option<(usize, &'a String)> {
        screen
            .iter()
            .enumerate()
            .find(|(_, l)| l.split_whitespace().next() == Some(name))
    }

    /// The VMs' names in screen order.
    fn order(screen: &[String], view: &View) -> Vec<String> {
        let mut rows: Vec<(usize, String)> = view
            .sample()
            .vms
            .iter()
            .filter_map(|v| vm_row(screen, &v.name).map(|(i, _)| (i, v.name.clone())))
            .collect();
        rows.sort();
        rows.into_iter().map(|(_, n)| n).collect()
    }

    /// The names ordered as the test computes it from the view's figures.
    fn expected(view: &View, key: impl Fn(&VmReport) -> Option<f64>) -> Vec<String> {
        let mut v: Vec<(f64, String)> = view
            .vms()
            .map(|r| (key(&r).unwrap_or(f64::INFINITY), r.vm.name.clone()))
            .collect();
        v.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        v.into_iter().map(|(_, n)| n).collect()
    }

    #[test]
    fn at_80x24_every_vm_row_shows_its_guest_used_and_state_and_nothing_overflows() {
        let view = View::new(Arc::new(sample()), None);
        let screen = drawn(&view, VmSort::GuestUsed, "", 80, 24);
        assert_eq!(screen.len(), 24);
        assert!(
            screen.iter().all(|l| l.chars().count() <= 80),
            "{screen:#?}"
        );
        assert!(
            screen[0].contains("#7") && screen[0].contains("data 3s old"),
            "{}",
            screen[0]
        );
        let total = view
            .sample()
            .host
            .meminfo
            .get("MemTotal")
            .expect("MemTotal");
        assert!(
            screen[1].contains(&format!("MemTotal {}", format_bytes(total))),
            "{}",
            screen[1]
        );
        let x = view
            .accounting
            .black_hole_bytes
            .expect("X computed on the fixture");
        assert!(
            screen[1].contains(&format!("X {}", format_bytes(x as u64))),
            "{}",
            screen[1]
        );
        for r in view.vms() {
            let (_, row) = vm_row(&screen, &r.vm.name).expect("every VM has a row");
            match r.figures.guest_used_bytes {
                Some(u) => {
                    assert!(row.contains(&format_bytes(u)), "{row}");
                    assert!(row.contains("running") && row.contains(" ok"), "{row}");
                }
                None => assert!(row.contains("timed out"), "{row}"),
            }
        }
        // Processes by PSS fill the rest, largest first, and the key help is the last line.
        let procs = procs::table(&view.sample().host, SortBy::Pss, 1);
        let top = &procs.rows[0];
        let first = screen
            .iter()
            .position(|l| l.trim_start().starts_with("PID "))
            .expect("process header");
        assert!(
            screen[first + 1].contains(&top.name),
            "{}",
            screen[first + 1]
        );
        assert!(screen[23].starts_with("q quit"), "{}", screen[23]);
    }

    #[test]
    fn s_changes_the_order_and_the_label() {
        let view = View::new(Arc::new(sample()), None);
        let neg = |v: Option<u64>| v.map(|b| -(b as f64));
        let by_used = drawn(&view, VmSort::GuestUsed, "", 80, 24);
        assert_eq!(
            order(&by_used, &view),
            expected(&view, |r| neg(r.figures.guest_used_bytes))
        );
        let next = VmSort::GuestUsed.next();
        let by_rss = drawn(&view, next, "", 80, 24);
        assert_eq!(
            order(&by_rss, &view),
            expected(&view, |r| neg(r.figures.host_rss_bytes))
        );
        assert_ne!(order(&by_used, &view), order(&by_rss, &view));
        assert!(by_rss.iter().any(|l| l.contains("sort QEMU RSS")));
        let by_idle = drawn(&view, next.next(), "", 80, 24);
        assert_eq!(
            order(&by_idle, &view),
            expected(&view, |r| neg(r.figures.host_backed_idle_bytes))
        );
        let by_share = drawn(&view, next.next().next(), "", 80, 24);
        assert_eq!(order(&by_share, &view), expected(&view, usable_share));
        assert_eq!(next.next().next().next(), VmSort::GuestUsed);
    }

    #[test]
    fn a_filter_keeps_the_vms_and_processes_whose_name_holds_it() {
        let view = View::new(Arc::new(sample()), None);
        let screen = drawn(&view, VmSort::GuestUsed, "AV", 80, 24);
        assert_eq!(order(&screen, &view), ["bravo"]);
        assert!(screen.iter().any(|l| l.contains("filter \"AV\"")));
        let procs = procs::table(&view.sample().host, SortBy::Pss, usize::MAX);
        let title = screen
            .iter()
            .find(|l| l.starts_with("Processes by PSS"))
            .expect("process block");
        let matching = procs
            .rows
            .iter()
            .filter(|p| p.name.to_lowercase().contains("av"));
        assert!(title.starts_with(&format!("Processes by PSS: {} ", matching.count())));
        // A process's name: its rows only, and no VM.
        let name = procs
            .rows
            .last()
            .expect("the fixture has processes")
            .name
            .clone();
        let only = drawn(&view, VmSort::GuestUsed, &name, 80, 24);
        assert!(order(&only, &view).is_empty());
        let i = only
            .iter()
            .position(|l| l.trim_start().starts_with("PID "))
            .expect("process header");
        let rows: Vec<&String> = only[i + 1..].iter().take_while(|l| !l.is_empty()).collect();
        let want = procs
            .rows
            .iter()
            .filter(|p| p.name.to_lowercase().contains(&name.to_lowercase()));
        assert_eq!(rows.len(), want.count(), "{only:#?}");
        assert!(rows.iter().all(|l| l.contains(&name)), "{rows:#?}");
    }

    #[test]
    fn at_120x40_the_wide_columns_and_the_diagnosis_show() {
        let view = View::new(Arc::new(sample()), None);
        let narrow = drawn(&view, VmSort::GuestUsed, "", 80, 24);
        let wide = drawn(&view, VmSort::GuestUsed, "", 120, 40);
        let head = |s: &[String]| {
            s.iter()
                .find(|l| l.starts_with("NAME "))
                .cloned()
                .expect("VM header")
        };
        assert!(!head(&narrow).contains("FPR/DOO") && !head(&narrow).contains("CACHE"));
        assert!(head(&wide).contains("FPR/DOO") && head(&wide).contains("CACHE"));
        let (_, alpha) = vm_row(&wide, "alpha").expect("alpha");
        assert!(alpha.contains("on/off"), "{alpha}");
        let frozen = view
            .vms()
            .find(|r| r.vm.name == "delta-frozen")
            .expect("frozen VM");
        let words: String = frozen.diagnosis[0].text.chars().take(20).collect();
        let (_, row) = vm_row(&wide, "delta-frozen").expect("frozen row");
        assert!(row.contains(&words), "{row}");
        assert!(wide.iter().all(|l| l.chars().count() <= 120));
    }

    #[test]
    fn vms_that_do_not_fit_are_counted_and_more_room_shows_them() {
        let mut s = sample();
        let one = s.vms[0].clone();
        s.vms = (0..14)
            .map(|i| VmSample {
                name: format!("vm-{i:02}"),
                ..one.clone()
            })
            .collect();
        let view = View::new(Arc::new(s), None);
        let narrow = drawn(&view, VmSort::GuestUsed, "", 80, 24);
        let shown = order(&narrow, &view).len();
        assert!(shown < 14, "{narrow:#?}");
        let more = format!("{} more below", 14 - shown);
        assert!(narrow
            .iter()
            .any(|l| l.starts_with("VMs ") && l.contains(&more)));
        // Processes keep some room below the VMs.
        assert!(narrow.iter().any(|l| l.starts_with("Processes by PSS")));
        let wide = drawn(&view, VmSort::GuestUsed, "", 120, 40);
        assert_eq!(order(&wide, &view).len(), 14);
    }

    #[test]
    fn before_any_pss_read_the_process_block_says_so() {
        let view = View::new(Arc::new(sample()), None);
        let screen = drawn_with(&view, None, VmSort::GuestUsed, "", 80, 24);
        assert!(screen
            .iter()
            .any(|l| l.starts_with("Processes by PSS: none read yet")));
        assert_eq!(order(&screen, &view).len(), view.sample().vms.len());
    }

    #[test]
    fn tiny_terminals_are_drawn_without_overflow() {
        let view = View::new(Arc::new(sample()), None);
        for (w, h) in [(20, 5), (40, 10), (1, 1), (80, 3)] {
            let screen = drawn(&view, VmSort::HostIdle, "a", w, h);
            assert_eq!(screen.len(), h as usize);
            assert!(screen.iter().all(|l| l.chars().count() <= w as usize));
        }
    }
}
