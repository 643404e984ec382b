//! memwarden's VM lab for end-to-end tests: real Linux guests under QEMU, bare
//! or as libvirt domains, built and started by the scripts in `lab/`.
//!
//! ```no_run
//! use memwarden_lab::{Domain, DomainOpts, GuestOpts, Lab, QemuGuest};
//! # fn main() -> memwarden_lab::Result<()> {
//! let lab = Lab::new()?; // packages, guest kernel + initramfs (built once, cached)
//! let g = QemuGuest::boot(&lab, GuestOpts { name: "balloon".into(), stats_polling: Some(2), ..Default::default() })?;
//! let qmp = g.qmp_socket(); // talk QMP yourself (one client at a time)
//! g.console("fill 64")?; // guest commands: see lab/guest-init.sh
//! let kb = g.meminfo()?["MemTotal"]; // the guest's own /proc/meminfo, kB as printed
//! # let _ = (qmp, kb);
//! let d = Domain::start(&lab, DomainOpts { name: "stats".into(), ..Default::default() })?;
//! let stats = d.dommemstat()?; // `virsh dommemstat`, KiB
//! # let _ = stats;
//! # Ok(()) }
//! ```
//!
//! * [`Lab::new`] runs `scripts/setup.sh --test` (once per process) and
//!   `lab/build-guest.sh` into `$MEMWARDEN_LAB_DIR` or `<repo>/.lab` when the guest is
//!   missing or older than the lab scripts, under a file lock (parallel tests wait).
//!   [`Lab::with_kernel`] picks the Debian 6.12 kernel instead of 6.1.
//! * [`Lab::zfs`] builds OpenZFS (Debian's zfs-dkms) for the guest kernel once (`lab/build-zfs.sh`,
//!   ~5 min, cached) and gives a lab whose guests carry spl/zfs and zpool/zfs;
//!   [`GuestOpts::data_mib`] adds a raw disk for a pool.
//! * [`Lab::qemu10`] unpacks bookworm-backports' QEMU 10 into the lab dir (`lab/fetch-qemu.sh`,
//!   once: 4-5 s, then 0.05 s) for [`GuestOpts::qemu`]; the system's QEMU 7.2 stays the default.
//! * [`QemuGuest::boot`] / [`Domain::start`] first take one of
//!   `MEMWARDEN_LAB_SLOTS` (default 2) guest slots (flock on `.lab/guest-slot-N`,
//!   shared by every test binary), so no more than 2 guests run at once; they wait
//!   up to [`GuestOpts::slot_timeout`] for one.
//! * Dropping a guest kills QEMU (or destroys/undefines the domain), frees the slot
//!   and removes its run dir (kept when `MEMWARDEN_LAB_KEEP=1`).
//! * Under TCG (no vmx/svm, as on the project's machines) a guest is ready in ~4-5 s.
//! * Every wait has a timeout; errors name the run dir and the serial log tail.
//!
//! Runs as root on Debian 12 (apt-get, libvirtd, QEMU). Unix socket paths are
//! limited to 107 bytes: keep `$MEMWARDEN_LAB_DIR` short.

mod console;
mod error;
mod frozen;
mod libvirt;
mod lock;
mod qemu;

pub use console::DEFAULT_TIMEOUT as CONSOLE_TIMEOUT;
pub use error::{Error, Result};
pub use frozen::{signal, Frozen};
pub use libvirt::{virsh, Domain, DomainOpts, Libvirtd, URI};
pub use lock::slots;

/// See [`Lab::multi_guest`]; released on drop.
#[derive(Debug)]
pub struct MultiGuest {
    _lock: lock::FileLock,
}
pub use qemu::{GuestOpts, Qemu, QemuGuest};

use error::io;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::SystemTime;

/// Which Debian kernel the guests run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Kernel {
    /// bookworm's `linux-image-cloud-amd64` (6.1).
    #[default]
    Debian6_1,
    /// `linux-image-6.12-cloud-amd64` (bookworm-security / backports).
    Debian6_12,
}

impl Kernel {
    /// The series as `build-guest.sh`'s `KSERIES` wants it ("" for the default 6.1).
    fn kseries(self) -> &'static str {
        match self {
            Kernel::Debian6_1 => "",
            Kernel::Debian6_12 => "6.12",
        }
    }
    fn dir_name(self) -> &'static str {
        match self {
            Kernel::Debian6_1 => "guest-6.1",
            Kernel::Debian6_12 => "guest-6.12",
        }
    }
}

/// A built lab: where guests, locks and run directories live.
#[derive(Debug, Clone)]
pub struct Lab {
    repo: PathBuf,
    dir: PathBuf,
    guest: PathBuf,
    kernel_release: String,
}

/// The repository root (this crate lives in `<root>/crates/lab`).
fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Runs a command; its stdout on success, [`Error::Script`] with the stderr tail otherwise.
pub(crate) fn run(cmd: &mut Command) -> Result<String> {
    let shown = format!("{cmd:?}");
    let shown: String = shown.chars().take(300).collect();
    let out = cmd.output().map_err(|e| Error::Script {
        command: shown.clone(),
        status: "not started".into(),
        stderr: e.to_string(),
    })?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        let err = String::from_utf8_lossy(&out.stderr);
        let lines: Vec<&str> = err.lines().collect();
        Err(Error::Script {
            command: shown,
            status: out.status.to_string(),
            stderr: lines[lines.len().saturating_sub(20)..].join("\n"),
        })
    }
}

fn mtime(p: &Path) -> Option<SystemTime> {
    std::fs::metadata(p).and_then(|m| m.modified()).ok()
}

impl Lab {
    /// The default lab: Debian 6.1 cloud kernel. See [`Lab::with_kernel`].
    pub fn new() -> Result<Lab> {
        Lab::with_kernel(Kernel::default())
    }

    /// Ensures packages and a built guest for `kernel`; cheap when already built.
    pub fn with_kernel(kernel: Kernel) -> Result<Lab> {
        let repo = repo_root();
        let dir = std::env::var_os("MEMWARDEN_LAB_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| repo.join(".lab"));
        std::fs::create_dir_all(dir.join("run")).map_err(io("create the lab dir", &dir))?;
        let dir = dir
            .canonicalize()
            .map_err(io("resolve the lab dir", &dir))?;
        let repo = repo
            .canonicalize()
            .map_err(io("resolve the repo root", &repo))?;
        let _build = lock::lock(&dir.join("build.lock"))?;

        static SETUP: OnceLock<Result<(), String>> = OnceLock::new();
        SETUP
            .get_or_init(|| {
                run(Command::new(repo.join("scripts/setup.sh")).arg("--test"))
                    .map(drop)
                    .map_err(|e| e.to_string())
            })
            .clone()
            .map_err(|stderr| Error::Script {
                command: "scripts/setup.sh --test".into(),
                status: "failed".into(),
                stderr,
            })?;

        let guest = dir.join(kernel.dir_name());
        let built = mtime(&guest.join("initramfs.cpio.gz"));
        let sources = [
            "build-guest.sh",
            "guest-init.sh",
            "memhog.c",
            "capture-tree.sh",
        ]
        .iter()
        .filter_map(|f| mtime(&repo.join("lab").join(f)))
        .max();
        let fresh = matches!((built, sources), (Some(b), Some(s)) if b >= s)
            && guest.join("vmlinuz").is_file();
        if !fresh {
            run(Command::new(repo.join("lab/build-guest.sh"))
                .arg(&guest)
                .env("KSERIES", kernel.kseries()))?;
        }
        let rel_path = guest.join("kernel-release");
        let kernel_release = std::fs::read_to_string(&rel_path)
            .map_err(io("read the guest's kernel release", &rel_path))?
            .trim()
            .to_string();
        Ok(Lab {
            repo,
            dir,
            guest,
            kernel_release,
        })
    }

    /// To be held, from before its first guest, by a test that runs more than one guest at
    /// once: two such tests holding one slot each while waiting for a second would wait for
    /// each other until the slot timeout. Tests with one guest do not take it.
    pub fn multi_guest(&self) -> Result<MultiGuest> {
        Ok(MultiGuest {
            _lock: lock::lock(&self.dir.join("multi-guest.lock"))?,
        })
    }

    /// The newer QEMU of bookworm-backports (10.0 today), unpacked into `<lab dir>/qemu-10` by
    /// `lab/fetch-qemu.sh` on first use (apt-get update if backports were off, download + unpack:
    /// 4-5 s; 0.05 s when present). Plain-QEMU guests boot with it when [`GuestOpts::qemu`] names it; nothing is installed over the
    /// system's QEMU 7.2.
    pub fn qemu10(&self) -> Result<Qemu> {
        let dest = self.dir.join("qemu-10");
        let out = run(Command::new(self.script("fetch-qemu.sh")).arg(&dest))?;
        Ok(Qemu {
            binary: dest.join("qemu-system-x86_64"),
            version: out.lines().last().unwrap_or_default().trim().to_string(),
        })
    }

    /// This lab's guest with OpenZFS: Debian's zfs-dkms built for the guest kernel by
    /// `lab/build-zfs.sh` (dkms build once per kernel release and ZFS version, cached in
    /// `<lab dir>/zfs-cache`; minutes the first time, see lab/README.md), and an initramfs that
    /// adds spl/zfs (`/modules/zfs.order`) and zpool/zfs to this guest's. Under the build lock.
    pub fn zfs(&self) -> Result<Lab> {
        let _build = lock::lock(&self.dir.join("build.lock"))?;
        let name = format!(
            "{}-zfs",
            self.guest
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        );
        let guest = self.dir.join(name);
        run(Command::new(self.script("build-zfs.sh"))
            .arg(&self.guest)
            .arg(&guest)
            .env("MEMWARDEN_LAB_DIR", &self.dir))?;
        Ok(Lab {
            guest,
            ..self.clone()
        })
    }

    /// The lab directory (`$MEMWARDEN_LAB_DIR` or `<repo>/.lab`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The built guest: `vmlinuz`, `initramfs.cpio.gz`, `kernel-release`.
    pub fn guest_dir(&self) -> &Path {
        &self.guest
    }

    /// The guest kernel's release, e.g. `6.1.0-56-cloud-amd64`.
    pub fn kernel_release(&self) -> &str {
        &self.kernel_release
    }

    /// A lab script, e.g. `script("boot-qemu.sh")`.
    pub fn script(&self, name: &str) -> PathBuf {
        self.repo.join("lab").join(name)
    }

    /// A fresh, unique run directory for a guest called `name`.
    pub(crate) fn new_run_dir(&self, name: &str) -> Result<PathBuf> {
        static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let p = self
            .dir
            .join("run")
            .join(format!("{name}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).map_err(io("create the run dir", &p))?;
        Ok(p)
    }
}

/// Whether run dirs should be kept after a guest is dropped (`MEMWARDEN_LAB_KEEP=1`).
pub(crate) fn keep_run_dirs() -> bool {
    std::env::var("MEMWARDEN_LAB_KEEP").is_ok_and(|v| v == "1")
}

/// Runs `a` and `b` at once and returns both results: for a test with two guests, so that they
/// boot (or fill) side by side, each TCG guest on a host core of its own, rather than one after
/// the other. A panic in either is raised again here, with its own message.
pub fn both<A, B: Send>(a: impl FnOnce() -> A, b: impl FnOnce() -> B + Send) -> (A, B) {
    std::thread::scope(|s| {
        let second = s.spawn(b);
        let first = a();
        let second = second
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p));
        (first, second)
    })
}

/// Polls `f` every 500 ms until it holds; panics naming `what` after `timeout`. For tests that
/// wait on a guest (a stats push, a balloon reaching its target).
pub fn wait_for(what: &str, timeout: std::time::Duration, mut f: impl FnMut() -> bool) {
    let t0 = std::time::Instant::now();
    while !f() {
        assert!(
            t0.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
}
