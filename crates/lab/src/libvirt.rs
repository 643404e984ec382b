//! A real libvirtd (`lab/start-libvirtd.sh`) and lab guests as its domains
//! (`lab/start-domain.sh`), reached with `virsh -c qemu:///system`.

use crate::console::{Console, DEFAULT_TIMEOUT};
use crate::error::{Error, Result};
use crate::lock::{shared_or_exclusive, slot, FileLock, Mode, Slot};
use crate::qemu::{pid_alive, wait_ready};
use crate::{keep_run_dirs, run, Lab};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The libvirt URI the lab uses.
pub const URI: &str = "qemu:///system";

/// Where tests say they use the shared libvirtd: a shared flock while they do, an exclusive
/// one for a test that stops or restarts it (so it never pulls libvirtd from under another).
const USERS_LOCK: &str = "/run/lock/memwarden-lab/libvirtd-users.lock";

/// A running libvirtd + virtlogd (left running when dropped: other tests share it), and this
/// test's hold on it: shared ([`Libvirtd::ensure`]) or exclusive ([`Libvirtd::exclusive`]).
#[derive(Debug, Clone)]
pub struct Libvirtd {
    hold: Arc<FileLock>,
    exclusive: bool,
    start_script: PathBuf,
}

impl Libvirtd {
    /// Starts virtlogd and libvirtd unless they run; idempotent and safe to call
    /// from parallel tests (the script holds a flock). ~8 s the first time, ~0.1 s after.
    /// Holds libvirtd shared while this value (or a domain started on it) lives; waits up
    /// to 10 minutes while a test holds it exclusively.
    pub fn ensure(lab: &Lab) -> Result<Libvirtd> {
        Self::hold(lab, Mode::Shared)
    }

    /// Like [`Libvirtd::ensure`], but waits (up to 10 minutes) until no other test uses
    /// libvirtd and keeps it that way: for tests that stop or restart it.
    pub fn exclusive(lab: &Lab) -> Result<Libvirtd> {
        Self::hold(lab, Mode::Exclusive)
    }

    fn hold(lab: &Lab, mode: Mode) -> Result<Libvirtd> {
        let path = Path::new(USERS_LOCK);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(crate::io("create lock dir", dir))?;
        }
        let hold = shared_or_exclusive(path, mode, Duration::from_secs(600))?;
        let d = Libvirtd {
            hold: Arc::new(hold),
            exclusive: mode == Mode::Exclusive,
            start_script: lab.script("start-libvirtd.sh"),
        };
        d.start()?;
        Ok(d)
    }

    /// Starts libvirtd (and virtlogd) unless they run.
    pub fn start(&self) -> Result<()> {
        run(&mut Command::new(&self.start_script)).map(drop)
    }

    /// Stops libvirtd (SIGTERM by its pid file, waits up to 10 s); running domains keep
    /// running and libvirtd finds them again when it starts. Only with an exclusive hold.
    pub fn stop(&self) -> Result<()> {
        if !self.exclusive {
            return Err(Error::Script {
                command: "Libvirtd::stop".into(),
                status: "refused".into(),
                stderr: "libvirtd is shared with other tests: take Libvirtd::exclusive".into(),
            });
        }
        let pid_file = Path::new("/run/libvirtd.pid");
        let pid = std::fs::read_to_string(pid_file).map_err(crate::io("read", pid_file))?;
        let pid: u32 = pid.trim().parse().map_err(|_| Error::Script {
            command: "read /run/libvirtd.pid".into(),
            status: "not a pid".into(),
            stderr: pid.clone(),
        })?;
        run(Command::new("kill").arg(pid.to_string()))?;
        let start = Instant::now();
        while pid_alive(pid) {
            if start.elapsed() > Duration::from_secs(10) {
                return Err(Error::Timeout {
                    what: format!("libvirtd ({pid}) to exit after SIGTERM"),
                    secs: 10,
                    run_dir: pid_file.to_path_buf(),
                    log_tail: String::new(),
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    /// The connection URI: `qemu:///system`.
    pub fn uri(&self) -> &'static str {
        URI
    }

    /// Keeps this hold alive as long as `_hold` (a domain started on it).
    fn share(&self) -> Arc<FileLock> {
        self.hold.clone()
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
    /// Extra `<memballoon>` attributes, e.g. `freePageReporting='on' autodeflate='on'`.
    pub balloon_attrs: String,
    /// `virsh define` + `start` (persistent; undefined on drop) instead of `create`.
    pub persist: bool,
    /// Appended to the kernel command line.
    pub extra_append: String,
    /// Extra XML inside `<devices>`, e.g. `<panic model='isa'/>` (a pvpanic device).
    pub devices: String,
    /// `<on_crash>`: `destroy` (default), `restart` or `preserve` (kept as crashed).
    pub on_crash: String,
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
            balloon_attrs: String::new(),
            persist: false,
            extra_append: String::new(),
            devices: String::new(),
            on_crash: "destroy".into(),
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
    // Last: the domain is destroyed (in Drop) before libvirtd is let go.
    _libvirtd: Arc<FileLock>,
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
        Self::start_on(&Libvirtd::ensure(lab)?, lab, opts)
    }

    /// [`Domain::start`] on a libvirtd this test already holds (e.g. exclusively).
    pub fn start_on(libvirtd: &Libvirtd, lab: &Lab, opts: DomainOpts) -> Result<Domain> {
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
            .env("BALLOON_ATTRS", &opts.balloon_attrs)
            .env("PERSIST", if opts.persist { "1" } else { "0" })
            .env("EXTRA_APPEND", &opts.extra_append)
            .env("DEVICES", &opts.devices)
            .env("ON_CRASH", &opts.on_crash))?;
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
            _libvirtd: libvirtd.share(),
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
