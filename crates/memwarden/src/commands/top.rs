//! `memwarden top`: the live terminal view. This file owns the loop, the keys and where the
//! data comes from (the collector, or a daemon's `/api/v1/latest`); what the screen shows is
//! `tui`'s pure function of the view.
//!
//! Sampling runs on a thread of its own and publishes each view; the screen redraws every
//! interval from the last one published, so a VM that stops answering (its QEMU frozen) costs
//! the sampler its deadline, never the screen a refresh.

use std::io::Write as _;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use ratatui::crossterm::event::{self, Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use ratatui::DefaultTerminal;
use serde::Deserialize;

use memwarden_analysis::procs::{self, ProcTable, SortBy};
use memwarden_analysis::view::View;
use memwarden_collector::Collector;
use memwarden_model::clock::now_unix_ms;
use memwarden_model::Sample;
use memwarden_procfs::HostReader;

use super::settings;
use crate::cli::TopArgs;
use crate::tui::{self as screen, Screen, VmSort};

/// The collector reads every process's smaps_rollup (PSS) on one sample in this many: PSS is
/// the costly read, and the process table keeps the last one meanwhile (its age shown).
const PSS_EVERY: u64 = 5;

/// The largest `/api/v1/latest` answer read (a host with thousands of processes is a few MiB).
const MAX_LATEST_BYTES: u64 = 256 << 20;

pub fn top(root: Option<&Path>, a: &TopArgs) -> Result<()> {
    if !(a.delay.is_finite() && a.delay >= 0.1) {
        bail!("-d must be at least 0.1 seconds, got {}", a.delay);
    }
    let interval = Duration::from_secs_f64(a.delay);
    let (source, label) = match &a.from {
        Some(url) => (Source::daemon(url, interval), url.clone()),
        None => {
            let vms = settings::vms(&a.hv, a.config.as_deref(), false)?;
            let reader = root.map_or_else(HostReader::live, HostReader::at_root);
            let collector = Collector::new(vms.collector(true, true), reader)
                .context("starting the collector")?;
            let label = match root {
                Some(r) => r.display().to_string(),
                None => "this host".to_string(),
            };
            (
                Source::Collector {
                    collector: Box::new(collector),
                    n: 0,
                },
                label,
            )
        }
    };
    let shared = Arc::new(Mutex::new(Latest::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (shared, stop) = (shared.clone(), stop.clone());
        std::thread::Builder::new()
            .name("top-sampler".into())
            .spawn(move || sample_loop(source, interval, &shared, &stop))
            .context("starting the sampling thread")?
    };
    let mut ui = Ui {
        shared,
        label,
        interval,
        sort: VmSort::default(),
        filter: String::new(),
        editing: false,
        refreshes: 0,
    };
    let result = if a.batch {
        ui.batch(a.iterations)
    } else {
        let mut terminal = ratatui::try_init().context("setting up the terminal")?;
        let r = ui.interactive(&mut terminal, a.iterations);
        ratatui::restore();
        r
    };
    stop.store(true, Ordering::Relaxed);
    // The sampler may be inside a VM's exchange (at most its deadline): it is not waited for.
    drop(sampler);
    result
}

/// What the sampler publishes.
#[derive(Default)]
struct Latest {
    view: Option<Arc<View>>,
    /// Every process by PSS, from the last sample that read PSS, and when it was taken.
    procs: Option<Arc<ProcTable>>,
    procs_at_unix_ms: u64,
    /// The last error, until a sample succeeds again.
    error: Option<String>,
    /// Bumped on every publication (a view or an error), so the screen redraws at once.
    generation: u64,
}

enum Source {
    Daemon {
        url: String,
        agent: ureq::Agent,
    },
    /// `n`: samples taken (PSS is read on one in [`PSS_EVERY`]).
    Collector {
        collector: Box<Collector>,
        n: u64,
    },
}

/// The part of `/api/v1/latest` top reads: the sample as the daemon read it (the view is
/// derived from it again here, by the same code the daemon runs).
#[derive(Deserialize)]
struct LatestJson {
    sample: Sample,
}

impl Source {
    fn daemon(url: &str, interval: Duration) -> Source {
        let base = url.trim_end_matches('/');
        let url = if base.ends_with("/api/v1/latest") {
            base.to_string()
        } else {
            format!("{base}/api/v1/latest")
        };
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(interval.max(Duration::from_secs(2))))
            .http_status_as_error(false)
            .build()
            .new_agent();
        Source::Daemon { url, agent }
    }

    /// The next view, carrying slow-cadence figures from `previous`.
    fn next(&mut self, previous: Option<&View>) -> Result<View> {
        let sample = match self {
            Source::Collector { collector, n } => {
                collector.set_full(*n % PSS_EVERY == 0);
                *n += 1;
                collector.collect().context("sampling")?
            }
            Source::Daemon { url, agent } => fetch(agent, url)?,
        };
        Ok(View::new(Arc::new(sample), previous))
    }
}

/// `GET url` (a daemon's `/api/v1/latest`), the sample in it.
fn fetch(agent: &ureq::Agent, url: &str) -> Result<Sample> {
    let mut resp = agent
        .get(url)
        .call()
        .with_context(|| format!("asking {url}"))?;
    let status = resp.status();
    let body = resp
        .body_mut()
        .with_config()
        .limit(MAX_LATEST_BYTES)
        .read_to_string()
        .with_context(|| format!("reading {url}'s answer"))?;
    if !status.is_success() {
        let head: String = body.chars().take(200).collect();
        bail!("{url} answered {status}: {head}");
    }
    let latest: LatestJson = serde_json::from_str(&body).with_context(|| {
        let head: String = body.chars().take(80).collect();
        format!("{url} did not answer with memwarden's view JSON (starts {head:?})")
    })?;
    Ok(latest.sample)
}

/// Samples every `interval` until `stop`, publishing each view (or error) in `shared`.
fn sample_loop(mut source: Source, interval: Duration, shared: &Mutex<Latest>, stop: &AtomicBool) {
    let lock = || shared.lock().unwrap_or_else(|p| p.into_inner());
    while !stop.load(Ordering::Relaxed) {
        let started = Instant::now();
        let previous = lock().view.clone();
        let result = source.next(previous.as_deref());
        let mut l = lock();
        match result {
            Ok(view) => {
                let host = &view.sample().host;
                if host.processes.iter().any(|p| p.smaps.is_some()) {
                    l.procs = Some(Arc::new(procs::table(host, SortBy::Pss, usize::MAX)));
                    l.procs_at_unix_ms = view.sample().taken_at_unix_ms;
                }
                l.view = Some(Arc::new(view));
                l.error = None;
            }
            Err(e) => l.error = Some(format!("{e:#}")),
        }
        l.generation += 1;
        drop(l);
        while started.elapsed() < interval && !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(50).min(interval));
        }
    }
}

struct Ui {
    shared: Arc<Mutex<Latest>>,
    label: String,
    interval: Duration,
    sort: VmSort,
    filter: String,
    editing: bool,
    refreshes: u64,
}

/// What a key does.
#[derive(Debug, PartialEq, Eq)]
enum Key {
    Quit,
    Redraw,
    Nothing,
}

impl Ui {
    /// The screen's lines for `width` × `height` from the last published view; before the
    /// first one, a line saying what is awaited.
    fn lines(&self, width: u16, height: u16) -> Vec<String> {
        let l = self.shared.lock().unwrap_or_else(|p| p.into_inner());
        let now = now_unix_ms();
        let Some(view) = l.view.clone() else {
            let why = l
                .error
                .clone()
                .unwrap_or_else(|| "waiting for the first sample".into());
            return vec![
                format!("memwarden top · {} · {}", self.label, screen::clock(now)),
                why,
            ];
        };
        let procs = l.procs.clone();
        let error = l
            .error
            .clone()
            .or_else(|| view.sample().degraded.first().cloned());
        let procs_age_s = procs.as_ref().map(|_| {
            view.sample()
                .taken_at_unix_ms
                .saturating_sub(l.procs_at_unix_ms)
                / 1000
        });
        drop(l);
        screen::lines(
            &Screen {
                view: &view,
                procs: procs.as_deref(),
                procs_age_s,
                sort: self.sort,
                filter: &self.filter,
                editing_filter: self.editing,
                source: &self.label,
                now_unix_ms: now,
                refreshes: self.refreshes,
                interval_s: self.interval.as_secs_f64(),
                error: error.as_deref(),
            },
            width,
            height,
        )
    }

    fn generation(&self) -> u64 {
        self.shared
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .generation
    }

    /// The live screen until `q` (or Ctrl-C), or after `iterations` refreshes.
    fn interactive(
        &mut self,
        terminal: &mut DefaultTerminal,
        iterations: Option<u64>,
    ) -> Result<()> {
        let mut next_tick = Instant::now();
        let mut drawn_gen = u64::MAX;
        let mut dirty = true;
        loop {
            let now = Instant::now();
            if now >= next_tick {
                if iterations.is_some_and(|n| self.refreshes >= n) {
                    return Ok(());
                }
                self.refreshes += 1;
                next_tick = now + self.interval;
                dirty = true;
            }
            let generation = self.generation();
            if dirty || generation != drawn_gen {
                terminal
                    .draw(|f| {
                        let area = f.area();
                        f.render_widget(
                            screen::paragraph(self.lines(area.width, area.height)),
                            area,
                        );
                    })
                    .context("drawing")?;
                drawn_gen = generation;
                dirty = false;
            }
            let wait = next_tick
                .saturating_duration_since(Instant::now())
                .min(Duration::from_millis(100));
            if event::poll(wait).context("reading the keyboard")? {
                match event::read().context("reading the keyboard")? {
                    Event::Key(k) if k.kind != KeyEventKind::Release => match self.key(k) {
                        Key::Quit => return Ok(()),
                        Key::Redraw => dirty = true,
                        Key::Nothing => {}
                    },
                    Event::Resize(..) => dirty = true,
                    _ => {}
                }
            }
        }
    }

    fn key(&mut self, k: KeyEvent) -> Key {
        if k.modifiers.contains(KeyModifiers::CONTROL) && k.code == KeyCode::Char('c') {
            return Key::Quit;
        }
        if self.editing {
            match k.code {
                KeyCode::Enter => self.editing = false,
                KeyCode::Esc => {
                    self.editing = false;
                    self.filter.clear();
                }
                KeyCode::Backspace => {
                    self.filter.pop();
                }
                KeyCode::Char(c) => self.filter.push(c),
                _ => return Key::Nothing,
            }
            return Key::Redraw;
        }
        match k.code {
            KeyCode::Char('q') => Key::Quit,
            KeyCode::Char('s') => {
                self.sort = self.sort.next();
                Key::Redraw
            }
            KeyCode::Char('/') => {
                self.editing = true;
                self.filter.clear();
                Key::Redraw
            }
            KeyCode::Esc if !self.filter.is_empty() => {
                self.filter.clear();
                Key::Redraw
            }
            _ => Key::Nothing,
        }
    }

    /// `-b`: every refresh printed as plain text (`COLUMNS` × `LINES`, else 80 × 24), then a
    /// blank line, `iterations` times (or until killed), as `top -b` does.
    fn batch(&mut self, iterations: Option<u64>) -> Result<()> {
        let dim = |var: &str, default: u16| {
            std::env::var(var)
                .ok()
                .and_then(|v| v.parse().ok())
                .filter(|&v: &u16| v > 0)
                .unwrap_or(default)
        };
        let (w, h) = (dim("COLUMNS", 80), dim("LINES", 24));
        // The first frame waits for the first sample (or its error), at most a few intervals.
        let first = Instant::now();
        while self.generation() == 0 && first.elapsed() < self.interval * 5 + Duration::from_secs(5)
        {
            std::thread::sleep(Duration::from_millis(20));
        }
        let mut next_tick = Instant::now();
        let mut out = std::io::stdout().lock();
        while iterations.is_none_or(|n| self.refreshes < n) {
            std::thread::sleep(next_tick.saturating_duration_since(Instant::now()));
            next_tick += self.interval;
            self.refreshes += 1;
            let mut text = self.lines(w, h).join("\n");
            text.push_str("\n\n");
            out.write_all(text.as_bytes())?;
            out.flush()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    //! The daemon source against a real socket: a small HTTP server thread answers what each
    //! test needs (the view of a captured tree, bad JSON, an error status, nothing at all).

    use std::io::{BufRead, BufReader};
    use std::net::TcpListener;
    use std::path::PathBuf;

    use super::*;

    fn fixture_sample() -> Sample {
        let root =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/host-6.18-sandbox");
        Sample {
            taken_at_unix_ms: 1_795_426_935_000,
            host: HostReader::at_root(root)
                .read_host()
                .expect("the captured tree reads"),
            ..Sample::default()
        }
    }

    /// Serves `answers` (status, body) one per connection, the last one for every later
    /// connection; `None` accepts and never answers. Returns the base URL.
    fn server(answers: Vec<Option<(u16, String)>>) -> String {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}", l.local_addr().expect("addr"));
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for (i, conn) in l.incoming().enumerate() {
                let Ok(mut c) = conn else { continue };
                let mut r = BufReader::new(c.try_clone().expect("clone"));
                let mut line = String::new();
                while r.read_line(&mut line).is_ok_and(|n| n > 0) && line != "\r\n" {
                    line.clear();
                }
                match &answers[i.min(answers.len() - 1)] {
                    Some((status, body)) => {
                        let _ = write!(
                            c,
                            "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\n\
                             content-length: {}\r\nconnection: close\r\n\r\n{body}",
                            body.len()
                        );
                    }
                    None => held.push(c),
                }
            }
        });
        url
    }

    #[test]
    fn a_daemons_view_is_read_and_derived_again_to_the_same_figures() {
        let served = View::of(fixture_sample());
        let url = server(vec![Some((
            200,
            serde_json::to_string(&served).expect("json"),
        ))]);
        let mut src = Source::daemon(&url, Duration::from_secs(1));
        let view = src.next(None).expect("read");
        let (a, b) = (&view.sample().host.meminfo, &served.sample().host.meminfo);
        assert_eq!(a.get("MemTotal"), b.get("MemTotal"));
        assert_eq!(
            view.accounting.black_hole_bytes,
            served.accounting.black_hole_bytes
        );
        assert_eq!(view.ksm.saved_bytes, served.ksm.saved_bytes);
        assert_eq!(
            view.sample().host.processes.len(),
            served.sample().host.processes.len()
        );
    }

    #[test]
    fn bad_answers_are_errors_that_say_what_came() {
        let url = server(vec![
            Some((200, "<html>not the API</html>".into())),
            Some((
                503,
                r#"{"error":"no sample yet: the first one is being taken"}"#.into(),
            )),
        ]);
        let mut src = Source::daemon(&url, Duration::from_secs(1));
        let e = format!("{:#}", src.next(None).expect_err("bad JSON is an error"));
        assert!(
            e.contains("did not answer with memwarden's view JSON") && e.contains("<html>"),
            "{e}"
        );
        let e = format!("{:#}", src.next(None).expect_err("503 is an error"));
        assert!(e.contains("503") && e.contains("no sample yet"), "{e}");
    }

    #[test]
    fn a_daemon_that_does_not_answer_costs_the_deadline_and_no_more() {
        let url = server(vec![None]);
        let mut src = Source::daemon(&url, Duration::from_millis(100));
        let t0 = Instant::now();
        let e = format!("{:#}", src.next(None).expect_err("no answer is an error"));
        let took = t0.elapsed();
        assert!(e.contains(&url), "{e}");
        // The deadline is the interval, at least 2 s.
        assert!(
            took >= Duration::from_secs(2) && took < Duration::from_secs(4),
            "{took:?}: {e}"
        );
    }

    #[test]
    fn keys_sort_filter_and_quit() {
        let mut ui = Ui {
            shared: Arc::new(Mutex::new(Latest::default())),
            label: "test".into(),
            interval: Duration::from_secs(1),
            sort: VmSort::default(),
            filter: String::new(),
            editing: false,
            refreshes: 0,
        };
        let press = |ui: &mut Ui, code: KeyCode| ui.key(KeyEvent::new(code, KeyModifiers::NONE));
        assert_eq!(press(&mut ui, KeyCode::Char('s')), Key::Redraw);
        assert_eq!(ui.sort, VmSort::GuestUsed.next());
        // `/` opens the prompt: letters (even `q` and `s`) go to the filter, Enter keeps it.
        press(&mut ui, KeyCode::Char('/'));
        for c in "qsx".chars() {
            press(&mut ui, KeyCode::Char(c));
        }
        press(&mut ui, KeyCode::Backspace);
        assert_eq!(press(&mut ui, KeyCode::Enter), Key::Redraw);
        assert_eq!((ui.filter.as_str(), ui.editing), ("qs", false));
        assert_eq!(ui.sort, VmSort::GuestUsed.next());
        // Esc clears it, in the prompt or out of it.
        assert_eq!(press(&mut ui, KeyCode::Esc), Key::Redraw);
        assert!(ui.filter.is_empty());
        press(&mut ui, KeyCode::Char('/'));
        press(&mut ui, KeyCode::Char('a'));
        press(&mut ui, KeyCode::Esc);
        assert!(ui.filter.is_empty() && !ui.editing);
        assert_eq!(press(&mut ui, KeyCode::Char('x')), Key::Nothing);
        assert_eq!(press(&mut ui, KeyCode::Char('q')), Key::Quit);
        let ctrl_c = KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL);
        press(&mut ui, KeyCode::Char('/'));
        assert_eq!(ui.key(ctrl_c), Key::Quit);
    }

    #[test]
    fn the_last_good_view_stays_while_errors_are_shown() {
        let good = serde_json::to_string(&View::of(fixture_sample())).expect("json");
        let url = server(vec![Some((200, good)), Some((200, "{".into()))]);
        let shared = Arc::new(Mutex::new(Latest::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let t = {
            let (shared, stop) = (shared.clone(), stop.clone());
            let src = Source::daemon(&url, Duration::from_millis(100));
            std::thread::spawn(move || sample_loop(src, Duration::from_millis(100), &shared, &stop))
        };
        let t0 = Instant::now();
        while shared.lock().expect("lock").generation < 3 {
            assert!(t0.elapsed() < Duration::from_secs(10), "no samples");
            std::thread::sleep(Duration::from_millis(20));
        }
        stop.store(true, Ordering::Relaxed);
        t.join().expect("sampler ends when stopped");
        let l = shared.lock().expect("lock");
        assert!(l.view.is_some(), "the good view was dropped");
        let e = l
            .error
            .as_deref()
            .expect("the error is kept for the status line");
        assert!(
            e.contains("did not answer with memwarden's view JSON"),
            "{e}"
        );
        // The captured processes' PSS came with the good view: their table is kept too.
        let with_pss = fixture_sample()
            .host
            .processes
            .iter()
            .filter(|p| p.smaps.is_some())
            .count();
        assert_eq!(l.procs.as_ref().map(|p| p.rows.len()), Some(with_pss));
    }
}
