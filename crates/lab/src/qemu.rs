//! A guest under plain QEMU (`lab/boot-qemu.sh`), with QMP and console sockets.

use crate::console::{log_tail, Console, DEFAULT_TIMEOUT};
use crate::error::{Error, Result};
use crate::lock::{slot, Slot};
use crate::{keep_run_dirs, run, Lab};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// A QEMU other than the system's, e.g. [`crate::Lab::qemu10`]'s.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Qemu {
    /// What `boot-qemu.sh` runs (`QEMU=`): fetch-qemu.sh's wrapper, which passes its own
    /// firmware (`-L`), modules and libraries.
    pub binary: PathBuf,
    /// First line of its `--version`, e.g. `QEMU emulator version 10.0.2 (Debian ...)`.
    pub version: String,
}

/// How to boot a [`QemuGuest`].
#[derive(Debug, Clone)]
pub struct GuestOpts {
    /// Short name, used for the run dir and QEMU's `-name` (letters, digits, `-`).
    pub name: String,
    /// Guest RAM in MiB (`-m`). Keep it <= 512 on the 2-core machines; THP needs > 512.
    pub mem_mib: u64,
    /// Balloon `guest-stats-polling-interval` at start, in seconds (`None` = off).
    pub stats_polling: Option<u64>,
    /// Appended to the kernel command line (e.g. `hugepages=16`, `lab.fill=64`).
    pub extra_append: String,
    /// Size of a swap disk the guest turns on at boot, in MiB (0 = none).
    pub swap_mib: u64,
    /// Whether the guest has a virtio-balloon device at all (default true).
    pub balloon: bool,
    /// Extra properties for the virtio-balloon device, e.g. `deflate-on-oom=on` (empty = none).
    pub balloon_opts: String,
    /// Size of the raw "capture" disk for the guest's `capture` command, in MiB (0 = none).
    pub capture_mib: u64,
    /// Size of a raw disk with serial "data" that the guest leaves alone (`disk data` in a
    /// `run` line names its device; e.g. a ZFS pool's vdev), in MiB (0 = none).
    pub data_mib: u64,
    /// A pvpanic device, with QEMU told to pause the guest when it panics (query-status
    /// `guest-panicked`) rather than let `panic=-1` reboot it (default false).
    pub pvpanic: bool,
    /// The QEMU to run (`None`: the system's `qemu-system-x86_64`, 7.2 on Debian 12).
    pub qemu: Option<Qemu>,
    /// Time allowed from start to `LAB-READY`.
    pub boot_timeout: Duration,
    /// Time allowed to wait for a free guest slot.
    pub slot_timeout: Duration,
}

impl Default for GuestOpts {
    fn default() -> Self {
        GuestOpts {
            name: "guest".into(),
            mem_mib: 512,
            stats_polling: None,
            extra_append: String::new(),
            swap_mib: 0,
            balloon: true,
            balloon_opts: String::new(),
            capture_mib: 0,
            data_mib: 0,
            pvpanic: false,
            qemu: None,
            boot_timeout: Duration::from_secs(120),
            slot_timeout: Duration::from_secs(600),
        }
    }
}

/// A running QEMU guest; dropping it kills QEMU.
#[derive(Debug)]
pub struct QemuGuest {
    pid: u32,
    console: Console,
    boot_time: Duration,
    _slot: Slot,
}

/// Waits for `LAB-READY` in the serial log while `alive()` holds.
pub(crate) fn wait_ready(
    console: &Console,
    timeout: Duration,
    alive: impl Fn() -> bool,
) -> Result<()> {
    let start = Instant::now();
    let log = console.log();
    loop {
        if std::fs::read(&log).is_ok_and(|b| String::from_utf8_lossy(&b).contains("LAB-READY")) {
            return Ok(());
        }
        if !alive() {
            return Err(Error::Timeout {
                what: "LAB-READY (QEMU exited)".into(),
                secs: start.elapsed().as_secs(),
                run_dir: console.run_dir.clone(),
                log_tail: log_tail(&log, 15),
            });
        }
        if start.elapsed() > timeout {
            return Err(Error::Timeout {
                what: "LAB-READY".into(),
                secs: timeout.as_secs(),
                run_dir: console.run_dir.clone(),
                log_tail: log_tail(&log, 15),
            });
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Whether `pid` exists and is not a zombie.
pub(crate) fn pid_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // "pid (comm) S ...": the state follows the last ')'.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

impl QemuGuest {
    /// Takes a guest slot, boots the lab guest and waits until its init is ready.
    pub fn boot(lab: &Lab, opts: GuestOpts) -> Result<QemuGuest> {
        let slot = slot(lab.dir(), opts.slot_timeout)?;
        let run_dir = lab.new_run_dir(&opts.name)?;
        let start = Instant::now();
        let mut cmd = Command::new(lab.script("boot-qemu.sh"));
        if let Some(q) = &opts.qemu {
            cmd.env("QEMU", &q.binary);
        }
        let out = run(cmd
            .arg(&run_dir)
            .arg(lab.guest_dir())
            .env("WAIT", "0")
            .env("MEM_MIB", opts.mem_mib.to_string())
            .env("STATS_POLL", opts.stats_polling.unwrap_or(0).to_string())
            .env("EXTRA_APPEND", &opts.extra_append)
            .env("SWAP_MIB", opts.swap_mib.to_string())
            .env("BALLOON_OPTS", &opts.balloon_opts)
            .env("BALLOON", if opts.balloon { "virtio" } else { "none" })
            .env("CAPTURE_MIB", opts.capture_mib.to_string())
            .env("DATA_MIB", opts.data_mib.to_string())
            .env("PANIC", if opts.pvpanic { "pause" } else { "none" }))?;
        let pid: u32 = out.trim().parse().map_err(|_| Error::Parse {
            what: "QEMU pid from boot-qemu.sh",
            detail: out.clone(),
            run_dir: run_dir.clone(),
        })?;
        let mut guest = QemuGuest {
            pid,
            console: Console::new(run_dir),
            boot_time: Duration::ZERO,
            _slot: slot,
        };
        wait_ready(&guest.console, opts.boot_timeout, || pid_alive(pid))?;
        guest.boot_time = start.elapsed();
        Ok(guest)
    }

    /// QEMU's PID on the host.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The VM's name, as QMP's `query-name` gives it (`-name lab-<run dir>`).
    pub fn name(&self) -> String {
        let dir = self.run_dir().file_name().unwrap_or_default();
        format!("lab-{}", dir.to_string_lossy())
    }

    /// The QMP unix socket (`-qmp unix:...,server`; one client at a time).
    pub fn qmp_socket(&self) -> PathBuf {
        self.console.run_dir.join("qmp.sock")
    }

    /// The run directory: `qmp.sock`, `serial.sock`, `serial.log`, `qemu.pid`, disks.
    pub fn run_dir(&self) -> &Path {
        &self.console.run_dir
    }

    /// The serial log (everything the guest printed).
    pub fn serial_log(&self) -> PathBuf {
        self.console.log()
    }

    /// Wall time from start to `LAB-READY`.
    pub fn boot_time(&self) -> Duration {
        self.boot_time
    }

    /// Runs a guest console command (see `lab/guest-init.sh`: `fill N`, `drop`,
    /// `hog MIB [-H|-m|-l] [-p zero|random|same]`, `run SHELL`, ...) and returns its
    /// output; fails with [`Error::Command`] if the guest reports failure.
    pub fn console(&self, cmd: &str) -> Result<String> {
        self.console.run(cmd, DEFAULT_TIMEOUT)
    }

    /// [`QemuGuest::console`] with a custom timeout.
    pub fn console_timeout(&self, cmd: &str, timeout: Duration) -> Result<String> {
        self.console.run(cmd, timeout)
    }

    /// The guest's /proc/meminfo, freshly printed: key -> value as printed (kB,
    /// or a count for `HugePages_*`).
    pub fn meminfo(&self) -> Result<BTreeMap<String, u64>> {
        self.console.meminfo()
    }
}

impl Drop for QemuGuest {
    fn drop(&mut self) {
        if let Some(pid) = rustix::process::Pid::from_raw(self.pid as i32) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
            let start = Instant::now();
            while pid_alive(self.pid) && start.elapsed() < Duration::from_secs(10) {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        if !keep_run_dirs() {
            let _ = std::fs::remove_dir_all(&self.console.run_dir);
        }
    }
}
