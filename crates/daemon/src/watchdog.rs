//! systemd's notify protocol (`Type=notify`, `WatchdogSec=`): READY once the port is bound
//! and sampling has started, RELOADING/READY around a SIGHUP, STOPPING at the end, and a
//! watchdog ping only while the recorder makes progress, so that systemd restarts a daemon
//! whose sampling is wedged (not only one whose process died). Without `NOTIFY_SOCKET` (not
//! under systemd) every call is a no-op.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sd_notify::NotifyState;
use tracing::{debug, info, warn};

/// When the recorder last finished a cycle (ms since the daemon started).
#[derive(Debug)]
pub struct Heartbeat {
    start: Instant,
    last_ms: AtomicU64,
}

impl Default for Heartbeat {
    fn default() -> Self {
        Heartbeat {
            start: Instant::now(),
            last_ms: AtomicU64::new(0),
        }
    }
}

impl Heartbeat {
    /// The recorder calls this at the end of every cycle, whatever the cycle's outcome: a
    /// sample that failed is still progress (the failure is logged and counted).
    pub fn beat(&self) {
        self.last_ms.store(self.now_ms(), Ordering::Relaxed);
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// How long since the last beat (since start when there was none yet).
    pub fn silent_for(&self) -> Duration {
        Duration::from_millis(
            self.now_ms()
                .saturating_sub(self.last_ms.load(Ordering::Relaxed)),
        )
    }
}

/// How long the recorder may go without finishing a cycle before it counts as wedged: a cycle
/// waits up to one interval, and its sample ends within the deadline (< interval); the store
/// and the controller add a little. Three intervals and 10 s leave room for a slow disk.
pub fn allowance(interval: Duration) -> Duration {
    interval.saturating_mul(3) + Duration::from_secs(10)
}

/// Whether to ping systemd's watchdog now.
pub fn alive(silent_for: Duration, allowance: Duration) -> bool {
    silent_for <= allowance
}

fn send(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(states) {
        // Once per state change; the watchdog logs its own failures at debug.
        warn!(error = %e, "telling systemd (NOTIFY_SOCKET) failed");
    }
}

pub fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

pub fn reloading() {
    match NotifyState::monotonic_usec_now() {
        Ok(now) => send(&[NotifyState::Reloading, now]),
        Err(_) => send(&[NotifyState::Reloading]),
    }
}

pub fn stopping() {
    send(&[NotifyState::Stopping]);
}

/// Pings the watchdog at half its period while the recorder beats; returns at once when
/// systemd set no watchdog. Runs on the HTTP runtime, so a wedged runtime stops the pings too.
/// `interval` gives the running configuration's sampling interval (a SIGHUP may change it).
pub async fn run(heartbeat: Arc<Heartbeat>, interval: impl Fn() -> Duration) {
    let Some(period) = sd_notify::watchdog_enabled() else {
        return;
    };
    info!(watchdog = ?period, allowance = ?allowance(interval()), "systemd watchdog: pinged while sampling goes on");
    let mut tick = tokio::time::interval(period / 2);
    let mut wedged = false;
    loop {
        tick.tick().await;
        let silent = heartbeat.silent_for();
        if alive(silent, allowance(interval())) {
            if wedged {
                info!("sampling goes on again; watchdog pings resumed");
                wedged = false;
            }
            if let Err(e) = sd_notify::notify(&[NotifyState::Watchdog]) {
                debug!(error = %e, "watchdog ping failed");
            }
        } else if !wedged {
            warn!(silent_s = silent.as_secs(), "sampling has made no progress: watchdog pings stopped, systemd will restart the daemon");
            wedged = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pings_stop_only_past_the_allowance() {
        let a = allowance(Duration::from_secs(10));
        assert_eq!(a, Duration::from_secs(40));
        assert!(alive(Duration::from_secs(12), a));
        assert!(alive(a, a));
        assert!(!alive(a + Duration::from_millis(1), a));
    }

    #[test]
    fn a_beat_resets_the_silence() {
        let h = Heartbeat::default();
        std::thread::sleep(Duration::from_millis(30));
        assert!(h.silent_for() >= Duration::from_millis(30));
        h.beat();
        assert!(h.silent_for() < Duration::from_millis(30));
    }
}
