//! memwarden serve's page in a real browser: headless Chromium (driven over WebDriver by
//! chromedriver) against a daemon recording a real lab guest. The page must load without a
//! console error, name the VM, and draw its chart from recorded points. A screenshot is kept
//! as `target/test-artifacts/serve-page.png`.
//!
//! Why WebDriver rather than `chromium --headless --dump-dom`: the page fills itself in with
//! fetches after load, so a dump can catch it half-drawn, and `--enable-logging` output is
//! Chromium's internal log, whose format is not an interface; chromedriver waits for load,
//! runs our checks in the page and returns console entries with their level.

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

/// What the page shows for VM `name`, read in the page itself.
const INSPECT: &str = r##"
const name = arguments[0];
const box = [...document.querySelectorAll("#vm-charts [data-vm]")].find(b => b.dataset.vm === name);
const paths = box ? [...box.querySelectorAll("svg path")] : [];
return {
  stamp: document.getElementById("stamp").textContent,
  error: document.getElementById("error").textContent,
  title: box ? box.querySelector("h3").textContent : null,
  paths: paths.map(p => ({series: p.getAttribute("data-series"), d: p.getAttribute("d") || ""})),
  hostPaths: document.querySelectorAll("#host-chart svg path").length,
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
    let mut serve = Serve::start(
        Path::new(BIN),
        &[
            "--qmp",
            &g.qmp_socket().display().to_string(),
            "--interval",
            "1s",
        ],
    );
    serve.wait_samples(3, Duration::from_secs(60));
    // A line needs two recorded points of the VM's guest used figure.
    let q = format!(
        "/api/v1/series?since=1h&field=vm.guest_used&vm={}",
        serve_support::urlencode(&name)
    );
    wait_for(
        "two recorded guest-used points",
        Duration::from_secs(30),
        || {
            let v = get(serve.port, &q).json();
            Some(()).filter(|()| {
                v["series"][0]["points"]
                    .as_array()
                    .is_some_and(|p| p.len() >= 2)
            })
        },
    );

    let dir = artifacts_dir();
    std::fs::create_dir_all(&dir).expect("artifacts dir");
    let mut b = Browser::start(&dir.join("serve-page-chromedriver.log"));
    b.goto(&format!("http://127.0.0.1:{}/", serve.port));
    // The page draws after its fetches: wait until the VM's box has its chart.
    let script = INSPECT.replace("arguments[0]", &serde_json::to_string(&name).expect("json"));
    let view: Value = wait_for(
        "the page to draw the VM's chart",
        Duration::from_secs(30),
        || {
            let v = b.eval(&script);
            Some(v).filter(|v| v["paths"].as_array().is_some_and(|p| !p.is_empty()))
        },
    );
    let png = b.screenshot();
    let shot = dir.join("serve-page.png");
    std::fs::write(&shot, &png).expect("write screenshot");
    println!(
        "screenshot: {}",
        shot.canonicalize().unwrap_or(shot.clone()).display()
    );
    let console = b.console();
    for (level, msg) in &console {
        println!("console {level}: {msg}");
    }

    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "screenshot is a PNG");
    let errors: Vec<_> = console.iter().filter(|(l, _)| l == "SEVERE").collect();
    assert!(errors.is_empty(), "console errors: {errors:?}");
    assert_eq!(view["error"], "", "the page reported an error: {view}");
    assert_eq!(view["title"], name.as_str(), "the VM's box: {view}");
    let text = view["text"].as_str().unwrap_or("");
    assert!(text.contains(&name), "the VM's name on the page: {text}");
    for bad in ["undefined", "NaN", "[object Object]", "null"] {
        assert!(!text.contains(bad), "the page shows {bad:?}:\n{text}");
    }
    assert!(
        view["stamp"].as_str().is_some_and(|s| s.contains("1 VM")),
        "{view}"
    );
    let used = view["paths"]
        .as_array()
        .and_then(|p| p.iter().find(|p| p["series"] == "guest_used"))
        .unwrap_or_else(|| panic!("no guest_used line in the VM's chart: {view}"));
    let d = used["d"].as_str().unwrap_or("");
    // "M x,y L x,y ...": at least two points, every coordinate a finite number.
    assert!(
        d.starts_with('M') && d.contains('L'),
        "guest_used path: {d:?}"
    );
    let coords: Vec<&str> = d[1..].split(['L', ',']).collect();
    assert!(
        coords
            .iter()
            .all(|c| c.trim().parse::<f64>().is_ok_and(f64::is_finite)),
        "guest_used path has a non-number: {d:?}"
    );
    assert!(
        view["hostPaths"].as_u64().is_some_and(|n| n > 0),
        "host chart: {view}"
    );
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
