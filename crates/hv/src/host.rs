//! The host's view of a QEMU process (RSS, PSS, swap, hugetlb, KSM), read through
//! `memwarden-procfs` — the one place that parses /proc.

use memwarden_model::host::ProcessMem;
use memwarden_procfs::HostReader;

use crate::Error;

/// Reads QEMU process `pid` with `reader` (live, or a captured tree in tests).
pub fn read_process(reader: &HostReader, pid: u32) -> Result<ProcessMem, Error> {
    reader
        .read_process(pid)
        .map_err(|source| Error::Procfs { pid, source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let me = std::process::id();
        let p = read_process(&HostReader::live(), me).expect("own /proc entry");
        assert_eq!(p.pid, me);
        assert!(p.status.vm_rss.unwrap_or(0) > 0);
    }

    #[test]
    fn gone_process_is_gone() {
        let e = read_process(&HostReader::live(), u32::MAX - 1).expect_err("no such pid");
        assert!(e.is_gone(), "{e}");
    }
}
