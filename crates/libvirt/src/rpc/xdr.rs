//! XDR (RFC 4506), the small part libvirt's RPC uses: 32- and 64-bit integers, doubles,
//! strings and fixed opaques padded to 4 bytes, optional values, counted arrays.
//!
//! Hand-written rather than a crate: the two on crates.io do not fit (`serde-xdr` is GPL-3.0;
//! `xdr-codec` was last released in 2017 and pulls in `error-chain`), and this subset is
//! ~150 lines. The decoder never trusts a length it reads: every string and array length is
//! checked against the limit the `.x` files declare *and* against the bytes actually left, before
//! anything is allocated, so a hostile or broken reply costs at most its own size.

/// A decoding failure: what was being read, where, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XdrError(pub String);

impl std::fmt::Display for XdrError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

pub type XResult<T> = Result<T, XdrError>;

fn pad(n: usize) -> usize {
    (4 - n % 4) % 4
}

/// An XDR encoder into a growing buffer.
#[derive(Debug, Default)]
pub struct Enc {
    pub buf: Vec<u8>,
}

impl Enc {
    pub fn new() -> Enc {
        Enc::default()
    }
    pub fn u32(&mut self, v: u32) -> &mut Enc {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }
    pub fn i32(&mut self, v: i32) -> &mut Enc {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }
    pub fn u64(&mut self, v: u64) -> &mut Enc {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }
    /// A counted string (`string<>`): length, bytes, zero padding to 4.
    pub fn str(&mut self, s: &str) -> &mut Enc {
        // Callers pass names and commands far below u32::MAX bytes; saturate rather than panic.
        self.u32(u32::try_from(s.len()).unwrap_or(u32::MAX));
        self.buf.extend_from_slice(s.as_bytes());
        self.buf.extend(std::iter::repeat_n(0u8, pad(s.len())));
        self
    }
    /// An optional string (`string *`): a presence flag, then the string.
    pub fn opt_str(&mut self, s: Option<&str>) -> &mut Enc {
        match s {
            Some(s) => self.u32(1).str(s),
            None => self.u32(0),
        }
    }
    /// Fixed-size opaque (`opaque[N]`): the bytes, zero padding to 4.
    pub fn opaque_fixed(&mut self, b: &[u8]) -> &mut Enc {
        self.buf.extend_from_slice(b);
        self.buf.extend(std::iter::repeat_n(0u8, pad(b.len())));
        self
    }
}

/// An XDR decoder over a borrowed reply body.
#[derive(Debug)]
pub struct Dec<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Dec<'a> {
    pub fn new(buf: &'a [u8]) -> Dec<'a> {
        Dec { buf, pos: 0 }
    }

    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn take(&mut self, n: usize, what: &str) -> XResult<&'a [u8]> {
        if self.remaining() < n {
            return Err(XdrError(format!(
                "{what}: needs {n} bytes at offset {}, only {} left",
                self.pos,
                self.remaining()
            )));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn word(&mut self, what: &str) -> XResult<[u8; 4]> {
        let b = self.take(4, what)?;
        Ok([b[0], b[1], b[2], b[3]])
    }

    pub fn u32(&mut self, what: &str) -> XResult<u32> {
        self.word(what).map(u32::from_be_bytes)
    }
    pub fn i32(&mut self, what: &str) -> XResult<i32> {
        self.word(what).map(i32::from_be_bytes)
    }
    pub fn u64(&mut self, what: &str) -> XResult<u64> {
        let hi = u64::from(self.u32(what)?);
        let lo = u64::from(self.u32(what)?);
        Ok(hi << 32 | lo)
    }
    pub fn i64(&mut self, what: &str) -> XResult<i64> {
        self.u64(what).map(|v| v as i64)
    }
    pub fn f64(&mut self, what: &str) -> XResult<f64> {
        self.u64(what).map(f64::from_bits)
    }
    /// XDR booleans are a word that must be 0 or 1.
    pub fn bool(&mut self, what: &str) -> XResult<bool> {
        match self.u32(what)? {
            0 => Ok(false),
            1 => Ok(true),
            v => Err(XdrError(format!("{what}: boolean word is {v}, not 0 or 1"))),
        }
    }

    /// A counted string of at most `max` bytes. libvirt sends UTF-8; anything else is kept,
    /// lossily, rather than failing the whole reply.
    pub fn string(&mut self, max: u32, what: &str) -> XResult<String> {
        let n = self.u32(what)?;
        if n > max {
            return Err(XdrError(format!(
                "{what}: string of {n} bytes is over the protocol's limit of {max}"
            )));
        }
        let n = n as usize;
        let bytes = self.take(n, what)?;
        self.take(pad(n), what)?;
        Ok(String::from_utf8_lossy(bytes).into_owned())
    }

    /// An optional string (`string *`).
    pub fn opt_string(&mut self, max: u32, what: &str) -> XResult<Option<String>> {
        if self.bool(what)? {
            self.string(max, what).map(Some)
        } else {
            Ok(None)
        }
    }

    pub fn opaque_fixed<const N: usize>(&mut self, what: &str) -> XResult<[u8; N]> {
        let b = self.take(N, what)?;
        self.take(pad(N), what)?;
        let mut out = [0u8; N];
        out.copy_from_slice(b);
        Ok(out)
    }

    /// A counted array of at most `max` elements, each at least `min_elem` bytes on the wire:
    /// the count is checked against both before any element is read or allocated.
    pub fn array<T>(
        &mut self,
        max: u32,
        min_elem: usize,
        what: &str,
        mut elem: impl FnMut(&mut Dec<'a>) -> XResult<T>,
    ) -> XResult<Vec<T>> {
        let n = self.u32(what)?;
        if n > max {
            return Err(XdrError(format!(
                "{what}: {n} elements is over the protocol's limit of {max}"
            )));
        }
        let n = n as usize;
        if n.saturating_mul(min_elem.max(1)) > self.remaining() {
            return Err(XdrError(format!(
                "{what}: {n} elements cannot fit in the {} bytes left",
                self.remaining()
            )));
        }
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            out.push(elem(self)?);
        }
        Ok(out)
    }

    /// The body must end here: trailing bytes mean we and the server disagree on the layout.
    pub fn finish(&self, what: &str) -> XResult<()> {
        match self.remaining() {
            0 => Ok(()),
            n => Err(XdrError(format!(
                "{what}: {n} unexpected bytes after the reply"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let mut e = Enc::new();
        e.u32(7)
            .i32(-2)
            .u64(1 << 40)
            .str("abcde")
            .opt_str(None)
            .opt_str(Some("x"));
        e.opaque_fixed(&[1, 2, 3]);
        assert_eq!(e.buf.len() % 4, 0);
        let mut d = Dec::new(&e.buf);
        assert_eq!(d.u32("a").expect("must decode"), 7);
        assert_eq!(d.i32("b").expect("must decode"), -2);
        assert_eq!(d.u64("c").expect("must decode"), 1 << 40);
        assert_eq!(d.string(10, "d").expect("must decode"), "abcde");
        assert_eq!(d.opt_string(10, "e").expect("must decode"), None);
        assert_eq!(
            d.opt_string(10, "f").expect("must decode").as_deref(),
            Some("x")
        );
        assert_eq!(d.opaque_fixed::<3>("g").expect("must decode"), [1, 2, 3]);
        d.finish("all").expect("must decode");
    }

    #[test]
    fn limits_are_checked_before_allocating() {
        let mut e = Enc::new();
        e.u32(u32::MAX);
        let err = Dec::new(&e.buf)
            .string(4_194_304, "name")
            .expect_err("must fail");
        assert!(err.0.contains("over the protocol's limit"), "{err}");
        let err = Dec::new(&e.buf)
            .array(u32::MAX, 8, "list", |d| d.u64("x"))
            .expect_err("must fail");
        assert!(err.0.contains("cannot fit"), "{err}");
        let err = Dec::new(&[0, 0]).u32("short").expect_err("must fail");
        assert!(err.0.contains("needs 4 bytes"), "{err}");
    }
}
