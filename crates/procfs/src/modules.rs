//! /proc/modules: loaded kernel modules (the file is absent on kernels built without modules).
//!
//! A line is `name size refcount deps state address [taint]`; `refcount` and `deps` are `-` on
//! kernels without module unloading.

use memwarden_model::host::Module;

use crate::error::{Error, Result};
use crate::text::{numbered_lines, parse_i64, parse_u64};

const PATH: &str = "/proc/modules";
const EXPECTED: &str = "\"name size refcount deps state address\"";

/// Parses /proc/modules.
pub fn parse(text: &str) -> Result<Vec<Module>> {
    let mut modules = Vec::new();
    for (n, line) in numbered_lines(text) {
        let bad = || Error::parse(PATH, n, EXPECTED, line);
        let words: Vec<&str> = line.split_whitespace().collect();
        let [name, size, refcount, _deps, state, ..] = words[..] else {
            return Err(bad());
        };
        let size_bytes = parse_u64(size).ok_or_else(bad)?;
        let refcount = match refcount {
            "-" => None,
            // `%i`: a negative count (seen mid-unload) carries no usable number.
            r => match parse_i64(r).ok_or_else(bad)? {
                r if r < 0 => None,
                r => Some(r.unsigned_abs()),
            },
        };
        modules.push(Module {
            name: name.to_string(),
            size_bytes,
            refcount,
            state: state.to_string(),
        });
    }
    Ok(modules)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lines as a Debian 12 kernel (6.1) prints them to root. This machine's 6.18 kernel has no
    /// module support, so there is no live /proc/modules to copy from here.
    const TEXT: &str = "\
floppy 69417 0 - Live 0xffffffffc0a5b000
virtio_net 57344 0 - Live 0xffffffffc0a3e000
net_failover 20480 1 virtio_net, Live 0xffffffffc0a35000
failover 16384 1 net_failover, Live 0xffffffffc0a2c000
vboxdrv 532480 0 - Loading 0xffffffffc0b00000 (OE)
";

    #[test]
    fn parses_lines() {
        let m = parse(TEXT).expect("parses");
        assert_eq!(m.len(), 5);
        assert_eq!(m[0].name, "floppy");
        assert_eq!(m[0].size_bytes, 69417);
        assert_eq!(m[2].refcount, Some(1));
        assert_eq!(m[4].state, "Loading");
    }

    #[test]
    fn unload_disabled_and_bad_lines() {
        let m = parse("floppy 69417 - - Live 0x0000000000000000\n").expect("parses");
        assert_eq!(m[0].refcount, None);
        assert!(parse("floppy 69417\n").is_err());
        assert!(parse("floppy big 0 - Live 0x0\n").is_err());
    }
}
