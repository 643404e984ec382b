#![no_main]
//! What a QEMU QMP socket sends, as the client reads it: the greeting, replies (with
//! `REPLY_CAP` on a line), events, garbage. A fake endpoint on a Unix socket sends the input
//! and hangs up; the client (`QmpClient::connect`) reads the greeting and negotiates, finds
//! the balloon device (`qmp::balloon_device`: `qom-list`, `qom-get`), reads `query-balloon`
//! and `qom-get guest-stats` (`parse_guest_stats`), and the statistics go to a VM sample whose
//! figures must keep their bounds. Never a panic; an error stays a short sentence whatever
//! was sent (`quote`/`clip`).
//!
//! Input: one flag byte (exactly [`FLOOD`]: after the rest, send `REPLY_CAP` + 1 bytes without
//! a newline), then the bytes the endpoint sends.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use memwarden_hv::qmp::{self, QmpClient, REPLY_CAP};
use memwarden_hv::tags;
use memwarden_model::vm::VmSample;
use serde_json::json;

#[path = "common/mod.rs"]
mod common;

/// Generous for a socket in the same process; the endpoint hangs up after its input, so an
/// execution waits for it only when the input is cut in the middle of nothing.
const DEADLINE: Duration = Duration::from_millis(500);

/// The flag byte that adds the flood. One value of 256, not a bit: a flooded execution costs
/// hundreds of ordinary ones (~330 ms against ~0.7 ms: the client reads the 1 MiB in 16 KiB
/// reads and looks for the newline in all it holds after each), and with a bit half of all
/// executions paid it. libFuzzer finds the value from the comparison; a seed has it. Still
/// most of the cost: inputs with it collect in the corpus (12 % of it after 10 minutes).
const FLOOD: u8 = 0x01;

fn endpoint() -> &'static common::FakeQmp {
    static E: OnceLock<common::FakeQmp> = OnceLock::new();
    E.get_or_init(common::FakeQmp::new)
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, script)) = data.split_first() else {
        return;
    };
    let flood = if flags == FLOOD { REPLY_CAP + 1 } else { 0 };
    let r = endpoint().serve(script, flood, |path| {
        let mut c = QmpClient::connect(path, Instant::now() + DEADLINE)?;
        let dev = qmp::balloon_device(&mut c)?;
        let actual = qmp::as_u64(&c.execute("query-balloon", None)?["actual"]);
        let path = dev
            .path
            .clone()
            .unwrap_or_else(|| "/machine/peripheral/balloon0".into());
        let (raw, last) = qmp::parse_guest_stats(&c.execute(
            "qom-get",
            Some(json!({"path": path, "property": "guest-stats"})),
        )?);
        let vm = VmSample {
            device: dev,
            balloon: tags::balloon_from_tags(tags::qmp_to_tags(actual, &raw, last, None)),
            ..VmSample::default()
        };
        common::check_vm_figures(&vm);
        Ok::<_, memwarden_hv::Error>(())
    });
    if let Err(e) = r {
        let msg = e.to_string();
        let head: String = msg.chars().take(200).collect();
        assert!(msg.len() < 1024, "a {}-byte error: {head}", msg.len());
        let _ = e.read_status();
    }
});
