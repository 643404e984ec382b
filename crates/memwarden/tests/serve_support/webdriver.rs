//! Just enough WebDriver (W3C, over chromedriver) to drive headless Chromium from a test: a
//! session, navigation, running a script, the browser's console log and a screenshot. It
//! speaks JSON over the std HTTP client in `super`: no browser-automation crate, nothing to
//! download. chromedriver runs in its own process group, so the guard kills Chromium and every
//! helper it started with it, even when the test panics.

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};

use super::{free_port, http, wait_for, Proc};

/// The key of an element reference in W3C WebDriver.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A chromedriver with one headless Chromium session.
#[derive(Debug)]
pub struct Browser {
    driver: Proc,
    port: u16,
    session: String,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts chromedriver (Debian `chromium-driver`) and a headless Chromium session whose
    /// console is logged at every level.
    pub fn start(log: &Path) -> Browser {
        let port = free_port();
        let mut cmd = Command::new("chromedriver");
        cmd.arg(format!("--port={port}")).process_group(0);
        let mut driver = Proc::spawn("chromedriver", cmd, log);
        wait_for(
            "chromedriver to answer /status",
            Duration::from_secs(20),
            || {
                driver.assert_running();
                http("GET", port, "/status", &[], None)
                    .ok()
                    .filter(|r| r.status == 200)
            },
        );
        let profile = tempfile::tempdir().expect("profile dir");
        let caps = json!({"capabilities": {"alwaysMatch": {
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--window-size=1280,1400",
                         "--disable-crash-reporter", "--no-first-run",
                         format!("--user-data-dir={}", profile.path().display())]
            },
            "goog:loggingPrefs": {"browser": "ALL"}
        }}});
        let mut b = Browser {
            driver,
            port,
            session: String::new(),
            _profile: profile,
        };
        let v = b.call("POST", "/session", Some(caps));
        b.session = v["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {v}"))
            .to_string();
        b
    }

    /// One WebDriver command; its `value`. Panics on an error answer, with it.
    fn call(&mut self, method: &str, path: &str, body: Option<Value>) -> Value {
        self.driver.assert_running();
        let body = body.map(|b| b.to_string());
        let r = http(
            method,
            self.port,
            path,
            &[("Content-Type", "application/json")],
            body.as_deref().map(str::as_bytes),
        )
        .unwrap_or_else(|e| panic!("WebDriver {method} {path}: {e}"));
        let v = r.json();
        assert_eq!(r.status, 200, "WebDriver {method} {path}: {v}");
        v["value"].clone()
    }

    fn session_call(&mut self, method: &str, what: &str, body: Option<Value>) -> Value {
        let path = format!("/session/{}/{what}", self.session);
        self.call(method, &path, body)
    }

    pub fn goto(&mut self, url: &str) {
        self.session_call("POST", "url", Some(json!({ "url": url })));
    }

    /// Runs `script` (a function body; `return` gives the value) in the page.
    pub fn eval(&mut self, script: &str) -> Value {
        self.session_call(
            "POST",
            "execute/sync",
            Some(json!({ "script": script, "args": [] })),
        )
    }

    /// The browser console entries since the last call: (level, message).
    pub fn console(&mut self) -> Vec<(String, String)> {
        let v = self.session_call("POST", "se/log", Some(json!({ "type": "browser" })));
        v.as_array()
            .into_iter()
            .flatten()
            .map(|e| {
                (
                    e["level"].as_str().unwrap_or("").to_string(),
                    e["message"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect()
    }

    /// The WebDriver reference of the first element `css` selects (panics when none does).
    pub fn find(&mut self, css: &str) -> Value {
        let v = self.session_call(
            "POST",
            "element",
            Some(json!({ "using": "css selector", "value": css })),
        );
        let id = v[ELEMENT].clone();
        assert!(id.is_string(), "no element for {css}: {v}");
        let mut r = serde_json::Map::new();
        r.insert(ELEMENT.to_string(), id);
        Value::Object(r)
    }

    /// Moves the mouse to `(x, y)` CSS pixels from the centre of `element` (from [`find`]),
    /// pressing the left button there when `down`, releasing it when `up`: a hover, or with a
    /// press, a move and a release, a drag.
    ///
    /// [`find`]: Browser::find
    pub fn mouse(&mut self, element: &Value, steps: &[(i64, i64, &str)]) {
        let mut actions = Vec::new();
        for &(x, y, button) in steps {
            actions.push(
                json!({"type": "pointerMove", "duration": 50, "origin": element,
                                "x": x, "y": y}),
            );
            match button {
                "down" => actions.push(json!({"type": "pointerDown", "button": 0})),
                "up" => actions.push(json!({"type": "pointerUp", "button": 0})),
                _ => {}
            }
        }
        self.session_call(
            "POST",
            "actions",
            Some(json!({"actions": [{"type": "pointer", "id": "mouse",
                "parameters": {"pointerType": "mouse"}, "actions": actions}]})),
        );
    }

    /// Resizes the browser window so that the page's viewport is `width` × `height` CSS
    /// pixels (the window's own frame, measured once, is added).
    pub fn viewport(&mut self, width: i64, height: i64) {
        self.session_call(
            "POST",
            "window/rect",
            Some(json!({ "width": width, "height": height })),
        );
        let v = self.eval("return [innerWidth, innerHeight];");
        let (iw, ih) = (
            v[0].as_i64().unwrap_or(width),
            v[1].as_i64().unwrap_or(height),
        );
        if (iw, ih) != (width, height) {
            self.session_call(
                "POST",
                "window/rect",
                Some(json!({ "width": 2 * width - iw, "height": 2 * height - ih })),
            );
        }
    }

    /// Makes the page see `prefers-color-scheme: dark` (or `light`): Chromium's DevTools
    /// command, through chromedriver.
    pub fn color_scheme(&mut self, scheme: &str) {
        self.session_call(
            "POST",
            "goog/cdp/execute",
            Some(json!({"cmd": "Emulation.setEmulatedMedia", "params": {
                "features": [{"name": "prefers-color-scheme", "value": scheme}]}})),
        );
    }

    /// A PNG of the viewport.
    pub fn screenshot(&mut self) -> Vec<u8> {
        let v = self.session_call("GET", "screenshot", None);
        base64_decode(v.as_str().expect("base64 screenshot")).expect("valid base64")
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            // Quits Chromium cleanly; the process-group kill below catches what it leaves.
            let path = format!("/session/{}", self.session);
            let _ = http("DELETE", self.port, &path, &[], None);
        }
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.driver.pid())])
            .status();
    }
}

/// Standard base64 (with padding), as WebDriver sends screenshots.
pub fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let val = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let bytes: Vec<u8> = s.bytes().filter(|c| !c.is_ascii_whitespace()).collect();
    let mut out = Vec::with_capacity(bytes.len() / 4 * 3);
    for chunk in bytes.chunks(4) {
        let pad = chunk.iter().rev().take_while(|&&c| c == b'=').count();
        let mut n = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            n |= if c == b'=' { 0 } else { val(c)? } << (18 - 6 * i);
        }
        let b = n.to_be_bytes();
        out.extend_from_slice(&b[1..4 - pad]);
    }
    Some(out)
}
