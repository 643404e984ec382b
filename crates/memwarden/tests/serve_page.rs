//! memwarden serve's page in a real browser: headless Chromium (driven over WebDriver by
//! chromedriver) against a daemon recording a real lab guest, with the balloon controller on as
//! a dry run and a host target no host meets, so that it plans a shrink of the guest each cycle
//! (changing nothing). The page must load without a console error; list the VM in its table
//! with the diagnosis the API gives; draw its chart with the planned shrink as a marker; show,
//! under the pointer, values the API recorded, at the same time on every chart (the shared
//! cursor); put a zoom by drag in the URL; and use the page's width at 1280×720 and at a phone's
//! 390×844. Screenshots at both sizes (and of the VMs at 1280×720) are kept as
//! `target/test-artifacts/serve-page-*.png`.
//!
//! Why WebDriver rather than `chromium --headless --dump-dom`: the page fills itself in with
//! fetches after load, so a dump can catch it half-drawn, and `--enable-logging` output is
//! Chromium's internal log, whose format is not an interface; chromedriver waits for load,
//! runs our checks in the page, moves the mouse and returns console entries with their level.

mod serve_support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use memwarden_lab::{GuestOpts, Lab, QemuGuest};
use serde_json::Value;
use serve_support::webdriver::Browser;
use serve_support::{get, lab_guest_name, wait_for, Serve};

const BIN: &str = env!("CARGO_BIN_EXE_memwarden");

fn artifacts_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    target.join("test-artifacts")
}

/// What the page shows for VM `NAME`, read in the page itself.
const INSPECT: &str = r##"
const name = NAME;
const box = [...document.querySelectorAll("#vm-charts [data-vm]")].find(b => b.dataset.vm === name);
const chart = box ? box.querySelector(".chart") : null;
const row = [...document.querySelectorAll("#vm-table tbody tr")]
  .find(r => r.cells[0].textContent === name);
const legend = sel => Object.fromEntries([...document.querySelectorAll(sel + " .u-legend .u-series")]
  .map(s => [s.querySelector(".u-label").textContent, s.querySelector(".u-value").textContent]));
return {
  drawn: document.body.dataset.drawn || null,
  stamp: document.getElementById("stamp").textContent,
  error: document.getElementById("error").textContent,
  title: box ? box.querySelector("h3").textContent : null,
  canvas: chart ? chart.querySelectorAll("canvas").length : 0,
  marks: chart ? Number(chart.dataset.marks || 0) : 0,
  marksText: box ? box.querySelector(".marks").textContent : null,
  row: row ? [...row.cells].map(c => c.textContent) : null,
  head: [...document.querySelectorAll("#vm-table thead th")].map(c => c.textContent),
  vmLegend: legend("#vm-charts .vm"),
  hostLegend: legend("#host-chart"),
  hash: location.hash,
  window: document.getElementById("window").textContent,
  innerWidth: innerWidth,
  scrollWidth: document.documentElement.scrollWidth,
  chartWidths: [...document.querySelectorAll(".chart .uplot")].map(u => u.getBoundingClientRect().width),
  text: document.body.innerText,
};
"##;

#[test]
fn page_shows_the_lab_guest_with_a_chart_and_no_console_errors() {
    let lab = Lab::new().expect("lab");
    let g = QemuGuest::boot(
        &lab,
        GuestOpts {
            name: "page".into(),
            stats_polling: Some(2),
            ..Default::default()
        },
    )
    .expect("guest");
    let name = lab_guest_name(&g);
    // A dry run changes nothing; a MemAvailable target of 1 EiB puts any host under pressure.
    let cfg = "[balloon]\nenabled = true\ndry_run = true\n\
               host_min_available_bytes = 1152921504606846976\n";
    let mut serve = Serve::start_with_config(
        Path::new(BIN),
        cfg,
        &[
            "--qmp",
            &g.qmp_socket().display().to_string(),
            "--interval",
            "1s",
        ],
    );
    serve.wait_samples(3, Duration::from_secs(60));

    // uPlot comes from the daemon itself, as built into it.
    for (path, file, ty) in [
        (
            "/vendor/uPlot.iife.min.js",
            "uPlot.iife.min.js",
            "text/javascript",
        ),
        ("/vendor/uPlot.min.css", "uPlot.min.css", "text/css"),
    ] {
        let r = get(serve.port, path);
        let disk = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../daemon/page/vendor")
            .join(file);
        assert_eq!(
            r.body,
            std::fs::read(&disk).expect("vendored file"),
            "{path}"
        );
        assert!(
            r.header("content-type").is_some_and(|t| t.starts_with(ty)),
            "{path}: {:?}",
            r.headers
        );
    }

    // A line needs recorded points of the VM's guest used figure, and a marker a planned action.
    let vm_q = serve_support::urlencode(&name);
    let q = format!("/api/v1/series?since=1h&field=vm.guest_used&vm={vm_q}");
    wait_for(
        "three recorded guest-used points",
        Duration::from_secs(30),
        || {
            let v = get(serve.port, &q).json();
            Some(()).filter(|()| {
                v["series"][0]["points"]
                    .as_array()
                    .is_some_and(|p| p.len() >= 3)
            })
        },
    );
    let planned = wait_for(
        "the dry-run controller to plan an action for the guest",
        Duration::from_secs(60),
        || {
            let v = get(
                serve.port,
                &format!("/api/v1/balloon/events?since=1h&vm={vm_q}"),
            )
            .json();
            v["events"]
                .as_array()
                .and_then(|e| e.first().cloned())
                .filter(|e| e["outcome"] == "planned")
        },
    );
    assert_eq!(planned["name"], name.as_str(), "{planned}");
    assert_eq!(planned["kind"], "shrink", "{planned}");

    let dir = artifacts_dir();
    std::fs::create_dir_all(&dir).expect("artifacts dir");
    let mut b = Browser::start(&dir.join("serve-page-chromedriver.log"));
    b.viewport(1280, 720);
    b.goto(&format!("http://127.0.0.1:{}/#range=1h", serve.port));
    // The page draws after its fetches: wait until the VM's chart is drawn with its marker.
    let script = INSPECT.replace("NAME", &serde_json::to_string(&name).expect("json"));
    let view: Value = wait_for(
        "the page to draw the VM's chart and its marker",
        Duration::from_secs(30),
        || {
            let v = b.eval(&script);
            Some(v).filter(|v| v["canvas"].as_u64() > Some(0) && v["marks"].as_u64() > Some(0))
        },
    );
    let latest = get(serve.port, "/api/v1/latest").json();
    let vm = latest["vms"]
        .as_array()
        .and_then(|v| v.iter().find(|v| v["name"] == name.as_str()))
        .unwrap_or_else(|| panic!("{name} not in /api/v1/latest"));

    assert_eq!(view["error"], "", "the page reported an error: {view}");
    assert_eq!(view["title"], name.as_str(), "the VM's chart: {view}");
    assert!(
        view["stamp"].as_str().is_some_and(|s| s.contains("1 VM")),
        "{view}"
    );
    // The table: the VM, its state and the diagnosis the API gives (or "ok").
    let head: Vec<&str> = view["head"]
        .as_array()
        .expect("head")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let row: Vec<&str> = view["row"]
        .as_array()
        .unwrap_or_else(|| panic!("no table row for {name}: {view}"))
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let cell = |h: &str| {
        row[head
            .iter()
            .position(|x| *x == h)
            .unwrap_or_else(|| panic!("no {h} column: {head:?}"))]
    };
    let diagnosis: Vec<&str> = vm["diagnosis"]
        .as_array()
        .expect("diagnosis")
        .iter()
        .filter_map(|d| d["text"].as_str())
        .collect();
    let want = if diagnosis.is_empty() {
        "ok".to_string()
    } else {
        diagnosis.join("; ")
    };
    assert_eq!(cell("diagnosis"), want, "{view}");
    assert_eq!(cell("state"), "running", "{view}");
    // The last cycle's decision: a planned shrink, or why it waits (a dry run's shrink is
    // believed, then measured, before the next).
    let decision = cell("controller");
    assert!(
        (decision.starts_with("shrink ") && decision.contains("dry run"))
            || decision.starts_with("left alone: "),
        "the controller's decision for the VM: {view}"
    );
    assert!(
        view["marksText"]
            .as_str()
            .is_some_and(|t| t.contains("controller event")),
        "{view}"
    );
    // Charts use the page's width.
    let widths: Vec<f64> = view["chartWidths"]
        .as_array()
        .expect("widths")
        .iter()
        .filter_map(Value::as_f64)
        .collect();
    assert!(
        !widths.is_empty() && widths.iter().all(|w| *w > 1000.0),
        "chart widths at 1280: {view}"
    );
    let shot = |b: &mut Browser, file: &str| {
        let png = b.screenshot();
        assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "screenshot is a PNG");
        let path = dir.join(file);
        std::fs::write(&path, &png).expect("write screenshot");
        println!(
            "screenshot: {}",
            path.canonicalize().unwrap_or(path.clone()).display()
        );
    };
    shot(&mut b, "serve-page-1280x720.png");
    b.eval("document.getElementById('vm-table').scrollIntoView(); return null;");
    shot(&mut b, "serve-page-1280x720-vms.png");

    // Values under the pointer: hover the left part of the VM's chart; its legend then shows
    // an earlier time than the latest, and a guest-used value the API recorded; the host chart's
    // legend follows to the same time (the shared cursor).
    let before = view["vmLegend"]["Time"].clone();
    let over = b.find("#vm-charts .vm .u-over");
    let w = b
        .eval("return document.querySelector('#vm-charts .vm .u-over').clientWidth;")
        .as_i64()
        .expect("width");
    b.mouse(&over, &[(-w / 2 + 3, 0, "")]);
    let hovered = wait_for(
        "the legend to follow the pointer",
        Duration::from_secs(15),
        || {
            let v = b.eval(&script);
            Some(v).filter(|v| v["vmLegend"]["Time"] != before)
        },
    );
    let points = get(
        serve.port,
        &format!("/api/v1/series?since=1h&field=vm.guest_used&vm={vm_q}"),
    )
    .json();
    let values: Vec<f64> = points["series"][0]["points"]
        .as_array()
        .expect("points")
        .iter()
        .filter_map(|p| p[1].as_f64())
        .collect();
    let shown: Vec<String> = serde_json::from_value(b.eval(&format!(
        "return {}.map(bytes);",
        serde_json::to_string(&values).expect("json")
    )))
    .expect("formatted values");
    let used = hovered["vmLegend"]["guest used"].as_str().unwrap_or("");
    assert!(
        shown.iter().any(|s| s == used),
        "guest used under the pointer {used:?}, recorded {shown:?}"
    );
    assert_eq!(
        hovered["hostLegend"]["Time"], hovered["vmLegend"]["Time"],
        "shared cursor: {hovered}"
    );
    // A marker pointed at is said in words: the planned shrink and its reason. (Each cycle of
    // this dry run plans one, but the newest sample's may not be recorded yet: a few places.)
    let said = [0, -w / 8, w / 8, -w / 4, w / 4].into_iter().find_map(|x| {
        b.mouse(&over, &[(x, 0, "")]);
        let t = b.eval(&script)["marksText"]
            .as_str()
            .unwrap_or("")
            .to_string();
        Some(t).filter(|t| t.contains(" shrink ") && t.contains(" (planned): "))
    });
    assert!(
        said.is_some(),
        "no marker said in words under the pointer: {}",
        b.eval(&script)
    );

    // Zoom by drag: the window goes into the URL.
    b.mouse(&over, &[(-w / 4, 0, "down"), (w / 4, 0, "up")]);
    let zoomed = wait_for("the zoom in the URL", Duration::from_secs(15), || {
        let v = b.eval(&script);
        Some(v).filter(|v| {
            v["hash"]
                .as_str()
                .is_some_and(|h| h.starts_with("#from=") && h.contains("&to="))
        })
    });
    println!("zoomed: {}", zoomed["hash"]);
    // The link holds the window: loaded afresh, the page shows it.
    let link = format!(
        "http://127.0.0.1:{}/{}",
        serve.port,
        zoomed["hash"].as_str().unwrap_or("")
    );
    b.goto("about:blank");
    b.goto(&link);
    wait_for("the shared link's window", Duration::from_secs(10), || {
        let v = b.eval(&script);
        Some(()).filter(|()| {
            v["hash"] == zoomed["hash"]
                && v["window"].as_str().is_some_and(|w| !w.is_empty())
                && v["canvas"].as_u64() > Some(0)
        })
    });

    // A phone: the charts fit its width, nothing scrolls sideways.
    b.viewport(390, 844);
    let phone = wait_for(
        "the charts at a phone's width",
        Duration::from_secs(10),
        || {
            let v = b.eval(&script);
            let inner = v["innerWidth"].as_f64()?;
            let widths = v["chartWidths"]
                .as_array()?
                .iter()
                .filter_map(Value::as_f64)
                .collect::<Vec<_>>();
            Some(v.clone()).filter(|_| {
                inner < 500.0 && !widths.is_empty() && widths.iter().all(|w| *w <= inner)
            })
        },
    );
    assert!(
        phone["scrollWidth"].as_f64() <= phone["innerWidth"].as_f64(),
        "the page scrolls sideways at {}: {}",
        phone["innerWidth"],
        phone["scrollWidth"]
    );
    shot(&mut b, "serve-page-390x844.png");

    // Dark: the page follows the system's colour scheme.
    let lightness = "const c = getComputedStyle(document.documentElement).backgroundColor\
        .match(/\\d+/g).slice(0, 3).map(Number); return (c[0] + c[1] + c[2]) / 3;";
    let light = b.eval(lightness).as_f64().expect("background");
    let drawn = b.eval("return document.body.dataset.drawn;");
    b.color_scheme("dark");
    let dark = wait_for("the dark colour scheme", Duration::from_secs(15), || {
        b.eval(lightness).as_f64().filter(|d| *d < 128.0)
    });
    assert!(light > 128.0, "light background {light}, dark {dark}");
    // The charts are drawn again in its colours.
    wait_for("the page drawn again", Duration::from_secs(20), || {
        Some(()).filter(|()| b.eval("return document.body.dataset.drawn;") != drawn)
    });
    shot(&mut b, "serve-page-390x844-dark.png");

    let console = b.console();
    for (level, msg) in &console {
        println!("console {level}: {msg}");
    }
    let errors: Vec<_> = console.iter().filter(|(l, _)| l == "SEVERE").collect();
    assert!(errors.is_empty(), "console errors: {errors:?}");
    let text = phone["text"].as_str().unwrap_or("");
    assert!(text.contains(&name), "the VM's name on the page: {text}");
    for bad in ["undefined", "NaN", "[object Object]", "null"] {
        assert!(!text.contains(bad), "the page shows {bad:?}:\n{text}");
    }
}

#[test]
fn webdriver_base64_decodes_known_values() {
    use serve_support::webdriver::base64_decode;
    assert_eq!(base64_decode("TWFu").as_deref(), Some(&b"Man"[..]));
    assert_eq!(base64_decode("TWE=").as_deref(), Some(&b"Ma"[..]));
    assert_eq!(base64_decode("TQ==").as_deref(), Some(&b"M"[..]));
    assert_eq!(
        base64_decode("iVBORw0KGgo=").as_deref(),
        Some(&b"\x89PNG\r\n\x1a\n"[..])
    );
    assert_eq!(base64_decode("T!=="), None);
}
