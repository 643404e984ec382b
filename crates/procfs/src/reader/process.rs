//! The process table: every /proc/PID's status, smaps_rollup (or smaps on kernels before
//! 4.14) and KSM counters, with processes that exit mid-read counted, not failed.

use std::fs;
use std::path::Path;

use memwarden_model::host::{ProcKsm, ProcessMem, ProcessReadError, SmapsRollup};

use super::io::{read_bytes_cut, read_text};
use super::{caps, HostReader, ReadOptions};
use crate::error::{Error, Result};
use crate::{ksm, smaps_rollup, status};

impl HostReader {
    /// The numeric directories of /proc, ascending.
    pub fn pids(&self) -> Result<Vec<u32>> {
        let entries = fs::read_dir(&self.proc_root).map_err(|e| Error::io(&self.proc_root, e))?;
        let mut pids: Vec<u32> = entries
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
            .collect();
        pids.sort_unstable();
        Ok(pids)
    }

    /// One process. An error for which [`Error::is_gone`] holds means it exited meanwhile.
    pub fn read_process(&self, pid: u32) -> Result<ProcessMem> {
        self.read_process_with(pid, ReadOptions::default())
    }

    /// One process, read as `opts` says (`smaps: None` when not asked for).
    pub fn read_process_with(&self, pid: u32, opts: ReadOptions) -> Result<ProcessMem> {
        self.read_process_noted(pid, opts, &mut Vec::new())
    }

    /// One process. status is required; a cmdline, smaps or ksm file that cannot be read
    /// while the process is still there leaves that part empty and one line in `notes`.
    fn read_process_noted(
        &self,
        pid: u32,
        opts: ReadOptions,
        notes: &mut Vec<String>,
    ) -> Result<ProcessMem> {
        let dir = self.proc_root.join(pid.to_string());
        let parsed = self.parse_file(&dir.join("status"), caps::SMALL, status::parse)?;
        let mut partial = |what: &str, e: Error| -> Result<()> {
            still_there(&dir)?;
            notes.push(format!("{what}: {}", e.with_cause()));
            Ok(())
        };
        let cmdline = match read_bytes_cut(&dir.join("cmdline"), caps::CMDLINE) {
            Ok(b) => String::from_utf8_lossy(&b)
                .trim_end_matches('\0')
                .replace('\0', " "),
            Err(e) => {
                partial("cmdline", e)?;
                String::new()
            }
        };
        let smaps = if opts.smaps {
            match self.read_smaps(&dir) {
                Ok(s) => s,
                Err(e) => {
                    partial("smaps", e)?;
                    None
                }
            }
        } else {
            None
        };
        let ksm = match self.read_proc_ksm(&dir) {
            Ok(k) => k,
            Err(e) => {
                partial("ksm", e)?;
                None
            }
        };
        Ok(ProcessMem {
            pid,
            name: parsed.status.name.clone(),
            cmdline,
            uid: parsed.uid,
            status: parsed.status,
            smaps,
            ksm,
        })
    }

    /// smaps_rollup, or summed smaps when the kernel has no rollup (before 4.14); `None` for
    /// kernel threads and zombies (no mm: `ESRCH` or an empty file) and when permission is
    /// denied.
    fn read_smaps(&self, dir: &Path) -> Result<Option<SmapsRollup>> {
        let rollup = dir.join("smaps_rollup");
        let (path, text, parse): (_, _, fn(&str) -> Result<SmapsRollup>) =
            match read_text(&rollup, caps::SMALL) {
                Ok(text) => (rollup, text, smaps_rollup::parse),
                Err(e) if e.is_not_found() => {
                    let smaps = dir.join("smaps");
                    match read_text(&smaps, caps::SMAPS) {
                        Ok(text) => (smaps, text, smaps_rollup::parse_smaps),
                        Err(e) if e.is_permission_denied() => return Ok(None),
                        // Neither file while the process is still there: a kernel without
                        // CONFIG_PROC_PAGE_MONITOR, or a capture that left them out.
                        Err(e) if e.is_gone() => return still_there(dir).map(|()| None),
                        Err(e) => return Err(e),
                    }
                }
                Err(e) if e.is_permission_denied() => return Ok(None),
                // A kernel thread's smaps_rollup fails with ESRCH although the thread lives.
                Err(e) if e.is_gone() => return still_there(dir).map(|()| None),
                Err(e) => return Err(e),
            };
        if text.trim().is_empty() {
            return Ok(None);
        }
        parse(&text).map(Some).map_err(|e| e.at(&path))
    }

    /// ksm_stat and ksm_merging_pages; `None` when the kernel has neither, or the process has
    /// no mm (kernel threads read both as empty).
    fn read_proc_ksm(&self, dir: &Path) -> Result<Option<ProcKsm>> {
        let stat = match read_text(&dir.join("ksm_stat"), caps::SMALL) {
            Ok(t) if t.trim().is_empty() => None,
            Ok(t) => Some(ksm::parse_stat(&t).map_err(|e| e.at(&dir.join("ksm_stat")))?),
            Err(e) if e.is_gone() || e.is_permission_denied() => None,
            Err(e) => return Err(e),
        };
        let merging_path = dir.join("ksm_merging_pages");
        let merging = match read_text(&merging_path, caps::SMALL) {
            Ok(t) if t.trim().is_empty() => None,
            Ok(t) => Some(ksm::parse_merging_pages(&t).map_err(|e| e.at(&merging_path))?),
            Err(e) if e.is_gone() || e.is_permission_denied() => None,
            Err(e) => return Err(e),
        };
        // Missing because this kernel lacks the files, or because the process just exited?
        still_there(dir)?;
        Ok(match (stat, merging) {
            (None, None) => None,
            (stat, merging) => {
                let mut k = stat.unwrap_or_default();
                k.merging_pages = merging.or(k.merging_pages);
                Some(k)
            }
        })
    }

    /// Every process: those read (in part or whole), those that could not be read and why,
    /// and how many exited while being read (their /proc/PID directory is gone).
    pub fn read_processes(&self, opts: ReadOptions, degraded: &mut Vec<String>) -> ProcessScan {
        let mut scan = ProcessScan::default();
        let pids = match self.pids() {
            Ok(p) => p,
            Err(e) => {
                degraded.push(format!("processes: {}", e.with_cause()));
                return scan;
            }
        };
        scan.processes.reserve(pids.len());
        for pid in pids {
            let mut notes = Vec::new();
            match self.read_process_noted(pid, opts, &mut notes) {
                Ok(p) => scan.processes.push(p),
                Err(e) if e.is_gone() && !self.proc_root.join(pid.to_string()).exists() => {
                    scan.exited += 1;
                    continue;
                }
                Err(e) => scan.errors.push(ProcessReadError {
                    pid,
                    dropped: true,
                    why: e.with_cause(),
                }),
            }
            scan.errors
                .extend(notes.into_iter().map(|why| ProcessReadError {
                    pid,
                    dropped: false,
                    why,
                }));
        }
        scan
    }
}

/// What [`HostReader::read_processes`] found.
#[derive(Debug, Clone, Default)]
pub struct ProcessScan {
    pub processes: Vec<ProcessMem>,
    /// Processes left out (`dropped`) or read in part, with why.
    pub errors: Vec<ProcessReadError>,
    /// Processes that exited while being read.
    pub exited: u64,
}

/// `Ok` while the process's directory still has its status file; the `NotFound` error (which
/// [`Error::is_gone`] reports) once it has exited.
fn still_there(dir: &Path) -> Result<()> {
    let status = dir.join("status");
    fs::metadata(&status)
        .map(|_| ())
        .map_err(|e| Error::io(&status, e))
}
