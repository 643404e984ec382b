//! A process frozen with SIGSTOP for as long as the guard lives: how the tests make a QEMU
//! stop answering (its monitor and its vCPUs stop, the socket stays open).

/// Sends SIGCONT on drop, so that a failing test never leaves a frozen QEMU behind.
#[derive(Debug)]
pub struct Frozen(u32);

impl Frozen {
    /// Freezes `pid` (panics if it cannot be signalled: the test would prove nothing).
    pub fn new(pid: u32) -> Frozen {
        signal(pid, "-STOP");
        Frozen(pid)
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        signal(self.0, "-CONT");
    }
}

/// Sends `sig` (as `kill` spells it: `-STOP`, `-KILL`) to `pid`; panics if it cannot.
pub fn signal(pid: u32, sig: &str) {
    let ok = std::process::Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "kill {sig} {pid}");
}
