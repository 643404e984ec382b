//! Safe file I/O, the only opening of files in this crate: non-blocking opens of regular files
//! only, every read capped.

use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::caps;
use crate::error::{Error, Result};

/// `O_NONBLOCK` (the same value on every Linux architecture memwarden builds for except
/// alpha, mips, parisc and sparc, which `libc` knows).
const O_NONBLOCK: i32 = libc::O_NONBLOCK;

/// Opens `path` non-blocking (a FIFO without a writer does not hang the open) and refuses
/// anything but a regular file (a FIFO, a device such as /dev/zero, a directory).
pub(super) fn open_regular(path: &Path) -> Result<fs::File> {
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(O_NONBLOCK)
        .open(path)
        .map_err(|e| Error::io(path, e))?;
    let meta = file.metadata().map_err(|e| Error::io(path, e))?;
    if !meta.is_file() {
        let kind = {
            use std::os::unix::fs::FileTypeExt;
            let t = meta.file_type();
            if t.is_fifo() {
                "a FIFO"
            } else if t.is_char_device() {
                "a character device"
            } else if t.is_block_device() {
                "a block device"
            } else if t.is_dir() {
                "a directory"
            } else if t.is_socket() {
                "a socket"
            } else {
                "not a regular file"
            }
        };
        return Err(Error::io(
            path,
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("refused: {kind}, not a regular file"),
            ),
        ));
    }
    Ok(file)
}

/// At most `cap` bytes of `path` and whether there was more.
pub(super) fn read_capped(path: &Path, cap: u64) -> Result<(Vec<u8>, bool)> {
    let file = open_regular(path)?;
    let mut bytes = Vec::new();
    file.take(cap.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|e| Error::io(path, e))?;
    let more = bytes.len() as u64 > cap;
    bytes.truncate(usize::try_from(cap).unwrap_or(usize::MAX));
    Ok((bytes, more))
}

/// The whole file; an error when it is larger than `cap` (no real kernel file is).
pub(super) fn read_bytes(path: &Path, cap: u64) -> Result<Vec<u8>> {
    match read_capped(path, cap)? {
        (_, true) => Err(Error::io(
            path,
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "refused: larger than {} (no kernel prints this file that large)",
                    memwarden_model::units::format_bytes(cap)
                ),
            ),
        )),
        (bytes, false) => Ok(bytes),
    }
}

/// The first `cap` bytes of the file (for text that is only shown).
pub(super) fn read_bytes_cut(path: &Path, cap: u64) -> Result<Vec<u8>> {
    read_capped(path, cap).map(|(b, _)| b)
}

/// The file as text; bytes that are not UTF-8 (process names can hold any) become U+FFFD.
pub(super) fn read_text(path: &Path, cap: u64) -> Result<String> {
    let bytes = read_bytes(path, cap)?;
    Ok(match String::from_utf8(bytes) {
        Ok(s) => s,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    })
}

pub(super) fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Subdirectories of `dir`, sorted by name.
pub(super) fn subdirs(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out: Vec<PathBuf> = fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
        .map(|e| e.path())
        .collect();
    out.sort();
    Ok(out)
}

/// Every regular file of `dir` as `(name, contents)`, sorted by name. A file that cannot be
/// read (write-only, or an attribute that fails on this hardware) is left out.
pub(super) fn read_dir_files(dir: &Path) -> Result<Vec<(String, String)>> {
    let mut out: Vec<(String, String)> = fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().map(|t| t.is_file()).unwrap_or(false))
        .filter_map(|e| {
            Some((
                file_name(&e.path()),
                read_text(&e.path(), caps::SMALL).ok()?,
            ))
        })
        .collect();
    out.sort();
    Ok(out)
}
