//! The screen drawn on ratatui's TestBackend, on a View built from captured data: the host
//! of the captured tree `fixtures/host-6.18-sandbox` and VMs whose balloon statistics are the
//! captured `virsh dommemstat` (crates/hv/tests/data), each guest having allocated a
//! different amount on top of it, and one VM whose QEMU did not answer.

use std::path::PathBuf;
use std::sync::Arc;

use memwarden_analysis::procs::{self, SortBy};
use memwarden_hv::tags::{self, LIBVIRT_TAGS};
use memwarden_model::units::MIB;
use memwarden_model::vm::{BalloonDevice, VmRead, VmSample, VmState};
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
