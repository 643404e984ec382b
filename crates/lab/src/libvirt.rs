//! A real libvirtd (`lab/start-libvirtd.sh`) and lab guests as its domains
//! (`lab/start-domain.sh`), reached with `virsh -c qemu:///system`.

use crate::console::{Console, DEFAULT_TIMEOUT};
use crate::error::{Error, Result};
use crate::lock::{slot, Slot};
use crate::qemu::{pid_alive, wait_ready};
use crate::{keep_run_dirs, run, Lab};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// The libvirt URI the lab uses.
pub const URI: &str = "qemu:///system";

/// A running libvirtd + virtlogd (left running when dropped: other tests share it).
#[derive(Debug, Clone, Copy)]
pub struct Libvirtd {
    _private: (),
}

impl Libvirtd {
    /// Starts virtlogd and libvirtd unless they run; idempotent and safe to call
    /// from parallel tests (the script holds a flock). ~8 s the first time, ~0.1 s after.
    pub fn ensure(lab: &Lab) -> Result<Libvirtd> {
        run(&mut Command::new(lab.script("start-libvirtd.sh")))?;
        Ok(Libvirtd { _private: () })
    }

    /// The connection URI: `qemu:///system`.
    pub fn uri(&self) -> &'static str {
        URI
    }
}

/// Runs `virsh -q -c qemu:///system ARGS...`; its stdout.
pub fn virsh(args: &[&str]) -> Result<String> {
    run(Command::new("virsh").args(["-q", "-c", URI]).args(args))
}

/// How to start a [`Domain`].
#[derive(Debug, Clone)]
pub struct DomainOpts {
    /// The domain is called `mwlab-<name>-<test process id>` (see [`Domain::name`]),
    /// so that concurrent runs of the same test do not clash; give each test its own name.
    pub name: String,
    /// `<memory>` and `<currentMemory>` in MiB.
    pub mem_mib: u64,
    /// `<memballoon><stats period='N'/>` in seconds; 0 = no polling.
    pub stats_period: u64,
    /// A virtio balloon (`true`) or `<memballoon model='none'/>` (`false`).
    pub balloon: bool,
    /// `virsh define` + `start` (persistent; undefined on drop) instead of `create`.
    pub persist: bool,
    /// Appended to the kernel command line.
    pub extra_append: String,
    /// Time allowed from start to `LAB-READY`.
    pub boot_timeout: Duration,
    /// Time allowed to wait for a free guest slot.
    pub slot_timeout: Duration,
}

impl Default for DomainOpts {
    fn default() -> Self {
        DomainOpts {
            name: "guest".into(),
            mem_mib: 512,
            stats_period: 2,
            balloon: true,
            persist: false,
            extra_append: String::new(),
            boot_timeout: Duration::from_secs(120),
            slot_timeout: Duration::from_secs(600),
        }
    }
}

/// A running libvirt domain; dropping it destroys it (and undefines it if persistent).
#[derive(Debug)]
pub struct Domain {
    name: String,
    pid: u32,
    persist: bool,
    console: Console,
    boot_time: Duration,
    _slot: Slot,
}

/// Destroys and undefines lab domains (`mwlab-*-<pid>`) whose test process is gone
/// (left over by a crashed or killed run).
fn remove_stale() {
    let Ok(names) = virsh(&["list", "--all", "--name"]) else {
        return;
    };
    for name in names
        .lines()
        .map(str::trim)
        .filter(|n| n.starts_with("mwlab-"))
    {
        let owner = name.rsplit('-').next().and_then(|p| p.parse::<u32>().ok());
        if owner.is_some_and(|p| !Path::new(&format!("/proc/{p}")).exists()) {
            let _ = virsh(&["destroy", name]);
            let _ = virsh(&["undefine", name]);
        }
    }
}

impl Domain {
    /// Ensures libvirtd, takes a guest slot, starts the domain and waits until the
    /// guest's init is ready. Lab domains left by dead test processes are removed first.
    pub fn start(lab: &Lab, opts: DomainOpts) -> Result<Domain> {
        Libvirtd::ensure(lab)?;
        let slot = slot(lab.dir(), opts.slot_timeout)?;
        let short = format!("{}-{}", opts.name, std::process::id());
        let name = format!("mwlab-{short}");
        remove_stale();
        let run_dir = lab.new_run_dir(&opts.name)?;
        let start = Instant::now();
        let out = run(Command::new(lab.script("start-domain.sh"))
            .arg(&short)
            .arg(&run_dir)
            .arg(lab.guest_dir())
            .env("WAIT", "0")
            .env("MEM_MIB", opts.mem_mib.to_string())
            .env("STATS_PERIOD", opts.stats_period.to_string())
            .env("BALLOON", if opts.balloon { "virtio" } else { "none" })
            .env("PERSIST", if opts.persist { "1" } else { "0" })
            .env("EXTRA_APPEND", &opts.extra_append))?;
        let pid = out.trim().parse().map_err(|_| Error::Parse {
            what: "QEMU pid from start-domain.sh",
            detail: out.clone(),
            run_dir: run_dir.clone(),
        });
        let mut dom = Domain {
            name,
            pid: 0,
            persist: opts.persist,
            console: Console::new(run_dir),
            boot_time: Duration::ZERO,
            _slot: slot,
        };
        dom.pid = pid?; // on error, `dom` drops and destroys the domain
        let pid = dom.pid;
        wait_ready(&dom.console, opts.boot_timeout, || pid_alive(pid))?;
        dom.boot_time = start.elapsed();
        Ok(dom)
    }

    /// The libvirt domain name (`mwlab-<name>-<test process id>`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// QEMU's PID on the host.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The run directory: `domain.xml`, `serial.sock`, `serial.log`.
    pub fn run_dir(&self) -> &Path {
        &self.console.run_dir
    }

    /// The serial log (written by virtlogd).
    pub fn serial_log(&self) -> PathBuf {
        self.console.log()
    }

    /// Wall time from `virsh create` to `LAB-READY`.
    pub fn boot_time(&self) -> Duration {
        self.boot_time
    }

    /// Runs a guest console command; see [`crate::QemuGuest::console`].
    pub fn console(&self, cmd: &str) -> Result<String> {
        self.console.run(cmd, DEFAULT_TIMEOUT)
    }

    /// [`Domain::console`] with a custom timeout.
    pub fn console_timeout(&self, cmd: &str, timeout: Duration) -> Result<String> {
        self.console.run(cmd, timeout)
    }

    /// The guest's /proc/meminfo, freshly printed (values as printed, kB or counts).
    pub fn meminfo(&self) -> Result<BTreeMap<String, u64>> {
        self.console.meminfo()
    }

    /// `virsh dommemstat <name>`: tag -> value (KiB; `last_update` in epoch seconds).
    pub fn dommemstat(&self) -> Result<BTreeMap<String, u64>> {
        let out = virsh(&["dommemstat", &self.name])?;
        let mut map = BTreeMap::new();
        for line in out.lines().filter(|l| !l.trim().is_empty()) {
            let mut it = line.split_whitespace();
            match (it.next(), it.next().and_then(|v| v.parse().ok())) {
                (Some(k), Some(v)) => {
                    map.insert(k.to_string(), v);
                }
                _ => {
                    return Err(Error::Parse {
                        what: "virsh dommemstat",
                        detail: line.to_string(),
                        run_dir: self.console.run_dir.clone(),
                    })
                }
            }
        }
        Ok(map)
    }
}

impl Drop for Domain {
    fn drop(&mut self) {
        let _ = virsh(&["destroy", &self.name]);
        if self.persist {
            let _ = virsh(&["undefine", &self.name]);
        }
        let start = Instant::now();
        while self.pid != 0 && pid_alive(self.pid) && start.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(50));
        }
        if !keep_run_dirs() {
            let _ = std::fs::remove_dir_all(&self.console.run_dir);
        }
    }
}
