//! The procedures memwarden calls, from libvirt's `remote_protocol.x` and `qemu_protocol.x`:
//! their numbers, how their arguments are encoded and how their replies are decoded.
//!
//! Each reply decoder reads the whole body and fails on trailing bytes, so a layout we got
//! wrong shows up as an error on the first call, not as a silently shifted number.

use super::xdr::{Dec, Enc, XResult, XdrError};
use crate::conn::{sys, Param};

/// A domain's typed parameters from the bulk stats call, in the server's order.
pub type Params = Vec<(String, Param)>;

/// `REMOTE_STRING_MAX` (also `VIR_NET_MESSAGE_STRING_MAX`).
pub const STRING_MAX: u32 = 4_194_304;
/// `REMOTE_DOMAIN_LIST_MAX`.
pub const DOMAIN_LIST_MAX: u32 = 16_384;
/// `REMOTE_AUTH_TYPE_LIST_MAX`.
pub const AUTH_TYPE_LIST_MAX: u32 = 20;
/// `REMOTE_DOMAIN_MEMORY_STATS_MAX`.
pub const MEMORY_STATS_MAX: u32 = 1024;
/// `REMOTE_CONNECT_GET_ALL_DOMAIN_STATS_MAX`: 4096 in older `.x` files, raised since; we take
/// the larger bound (the 32 MiB message cap still bounds what a reply can cost).
pub const ALL_DOMAIN_STATS_MAX: u32 = 262_144;

/// Procedure numbers of `REMOTE_PROGRAM`.
pub mod remote {
    pub const CONNECT_OPEN: i32 = 1;
    pub const CONNECT_CLOSE: i32 = 2;
    pub const DOMAIN_GET_XML_DESC: i32 = 14;
    pub const DOMAIN_GET_MAX_MEMORY: i32 = 17;
    pub const DOMAIN_LOOKUP_BY_NAME: i32 = 23;
    pub const AUTH_LIST: i32 = 66;
    pub const AUTH_POLKIT: i32 = 70;
    pub const DOMAIN_MEMORY_STATS: i32 = 159;
    pub const DOMAIN_SET_MEMORY_FLAGS: i32 = 204;
    pub const DOMAIN_GET_STATE: i32 = 212;
    pub const CONNECT_LIST_ALL_DOMAINS: i32 = 273;
    pub const DOMAIN_SET_MEMORY_STATS_PERIOD: i32 = 308;
    pub const CONNECT_GET_ALL_DOMAIN_STATS: i32 = 344;
}

/// `QEMU_PROC_MONITOR_COMMAND` of `QEMU_PROGRAM`.
pub const QEMU_MONITOR_COMMAND: i32 = 1;
/// `KEEPALIVE_PROC_PING` / `_PONG`.
pub const KEEPALIVE_PING: i32 = 1;
pub const KEEPALIVE_PONG: i32 = 2;

/// `remote_auth_type`.
pub mod auth {
    pub const NONE: i32 = 0;
    pub const SASL: i32 = 1;
    pub const POLKIT: i32 = 2;
}

/// `remote_nonnull_domain`: what the server sends for a domain and wants back to name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomRef {
    pub name: String,
    pub uuid: [u8; 16],
    /// -1 when the domain is not running.
    pub id: i32,
}

/// A domain reference's smallest wire size: empty name (4) + uuid (16) + id (4).
const DOMREF_MIN: usize = 24;

impl DomRef {
    /// The UUID in its usual 8-4-4-4-12 lowercase form.
    pub fn uuid_string(&self) -> String {
        let h: String = self.uuid.iter().map(|b| format!("{b:02x}")).collect();
        format!(
            "{}-{}-{}-{}-{}",
            &h[0..8],
            &h[8..12],
            &h[12..16],
            &h[16..20],
            &h[20..32]
        )
    }

    pub fn encode(&self, e: &mut Enc) {
        e.str(&self.name).opaque_fixed(&self.uuid).i32(self.id);
    }
    pub fn decode(d: &mut Dec<'_>) -> XResult<DomRef> {
        Ok(DomRef {
            name: d.string(STRING_MAX, "domain name")?,
            uuid: d.opaque_fixed::<16>("domain uuid")?,
            id: d.i32("domain id")?,
        })
    }
}

/// `remote_error`: the fields memwarden keeps (the rest is read and checked, then dropped).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteError {
    pub code: i32,
    pub domain: i32,
    pub message: Option<String>,
}

pub fn remote_error(body: &[u8]) -> XResult<RemoteError> {
    let mut d = Dec::new(body);
    let code = d.i32("error code")?;
    let domain = d.i32("error domain")?;
    let message = d.opt_string(STRING_MAX, "error message")?;
    d.i32("error level")?;
    if d.bool("error domain present")? {
        DomRef::decode(&mut d)?;
    }
    for what in ["error str1", "error str2", "error str3"] {
        d.opt_string(STRING_MAX, what)?;
    }
    d.i32("error int1")?;
    d.i32("error int2")?;
    if d.bool("error network present")? {
        d.string(STRING_MAX, "error network name")?;
        d.opaque_fixed::<16>("error network uuid")?;
    }
    d.finish("remote_error")?;
    Ok(RemoteError {
        code,
        domain,
        message,
    })
}

// ---- arguments ----

pub fn open_args(uri: &str) -> Vec<u8> {
    let mut e = Enc::new();
    e.opt_str(Some(uri)).u32(0);
    e.buf
}

pub fn lookup_by_name_args(name: &str) -> Vec<u8> {
    let mut e = Enc::new();
    e.str(name);
    e.buf
}

/// Arguments that are a domain followed by 32-bit words (flags, counts, periods).
pub fn dom_args(dom: &DomRef, words: &[u32]) -> Vec<u8> {
    let mut e = Enc::new();
    dom.encode(&mut e);
    for w in words {
        e.u32(*w);
    }
    e.buf
}

pub fn set_memory_flags_args(dom: &DomRef, kib: u64, flags: u32) -> Vec<u8> {
    let mut e = Enc::new();
    dom.encode(&mut e);
    e.u64(kib).u32(flags);
    e.buf
}

pub fn list_all_domains_args(flags: u32) -> Vec<u8> {
    let mut e = Enc::new();
    e.i32(1).u32(flags); // need_results: yes, we want the list, not only its length
    e.buf
}

/// No domains named: the server answers for all of them (filtered by `flags`).
pub fn all_domain_stats_args(stats: u32, flags: u32) -> Vec<u8> {
    let mut e = Enc::new();
    e.u32(0).u32(stats).u32(flags);
    e.buf
}

pub fn monitor_command_args(dom: &DomRef, cmd: &str, flags: u32) -> Vec<u8> {
    let mut e = Enc::new();
    dom.encode(&mut e);
    e.str(cmd).u32(flags);
    e.buf
}

// ---- replies ----

/// A reply body that must be empty (calls that return nothing).
pub fn void(body: &[u8]) -> XResult<()> {
    Dec::new(body).finish("reply with no result")
}

pub fn auth_list(body: &[u8]) -> XResult<Vec<i32>> {
    let mut d = Dec::new(body);
    let v = d.array(AUTH_TYPE_LIST_MAX, 4, "auth types", |d| d.i32("auth type"))?;
    d.finish("auth_list")?;
    Ok(v)
}

/// `auth_polkit_ret { int complete; }` (also `supports_feature_ret`): one int.
pub fn int(body: &[u8], what: &str) -> XResult<i32> {
    let mut d = Dec::new(body);
    let v = d.i32(what)?;
    d.finish(what)?;
    Ok(v)
}

pub fn u64_ret(body: &[u8], what: &str) -> XResult<u64> {
    let mut d = Dec::new(body);
    let v = d.u64(what)?;
    d.finish(what)?;
    Ok(v)
}

/// One `remote_nonnull_string` result (XML, monitor reply).
pub fn string(body: &[u8], what: &str) -> XResult<String> {
    let mut d = Dec::new(body);
    let v = d.string(STRING_MAX, what)?;
    d.finish(what)?;
    Ok(v)
}

pub fn domain(body: &[u8]) -> XResult<DomRef> {
    let mut d = Dec::new(body);
    let v = DomRef::decode(&mut d)?;
    d.finish("domain lookup")?;
    Ok(v)
}

pub fn state(body: &[u8]) -> XResult<(i32, i32)> {
    let mut d = Dec::new(body);
    let v = (d.i32("state")?, d.i32("state reason")?);
    d.finish("get_state")?;
    Ok(v)
}

/// `(tag, value)` pairs, as `virDomainMemoryStats` fills them.
pub fn memory_stats(body: &[u8]) -> XResult<Vec<(i32, u64)>> {
    let mut d = Dec::new(body);
    let v = d.array(MEMORY_STATS_MAX, 12, "memory stats", |d| {
        Ok((d.i32("stat tag")?, d.u64("stat value")?))
    })?;
    d.finish("memory_stats")?;
    Ok(v)
}

pub fn list_all_domains(body: &[u8]) -> XResult<Vec<DomRef>> {
    let mut d = Dec::new(body);
    let v = d.array(DOMAIN_LIST_MAX, DOMREF_MIN, "domains", DomRef::decode)?;
    d.u32("domain count")?;
    d.finish("list_all_domains")?;
    Ok(v)
}

/// `remote_typed_param`: a name and a value whose type picks the union arm.
fn typed_param(d: &mut Dec<'_>) -> XResult<(String, Param)> {
    let field = d.string(STRING_MAX, "parameter name")?;
    let value = match d.i32("parameter type")? {
        sys::VIR_TYPED_PARAM_INT => Param::Int(i64::from(d.i32("int parameter")?)),
        sys::VIR_TYPED_PARAM_UINT => Param::Uint(u64::from(d.u32("uint parameter")?)),
        sys::VIR_TYPED_PARAM_LLONG => Param::Int(d.i64("llong parameter")?),
        sys::VIR_TYPED_PARAM_ULLONG => Param::Uint(d.u64("ullong parameter")?),
        sys::VIR_TYPED_PARAM_DOUBLE => Param::Double(d.f64("double parameter")?),
        sys::VIR_TYPED_PARAM_BOOLEAN => Param::Bool(d.i32("boolean parameter")? != 0),
        sys::VIR_TYPED_PARAM_STRING => Param::Str(d.string(STRING_MAX, "string parameter")?),
        // An unknown arm has an unknown size: nothing after it can be read.
        t => {
            return Err(XdrError(format!(
                "parameter {field:?} has type {t}, which this client does not know"
            )))
        }
    };
    Ok((field, value))
}

/// The bulk stats reply: each domain with its typed parameters.
pub fn all_domain_stats(body: &[u8]) -> XResult<Vec<(DomRef, Params)>> {
    let mut d = Dec::new(body);
    let v = d.array(DOMAIN_LIST_MAX, DOMREF_MIN + 4, "stats records", |d| {
        let dom = DomRef::decode(d)?;
        // Smallest parameter: empty name (4) + type (4) + int (4).
        let params = d.array(ALL_DOMAIN_STATS_MAX, 12, "parameters", typed_param)?;
        Ok((dom, params))
    })?;
    d.finish("get_all_domain_stats")?;
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domref_round_trip() {
        let r = DomRef {
            name: "vm-1".into(),
            uuid: [7; 16],
            id: -1,
        };
        let mut e = Enc::new();
        r.encode(&mut e);
        assert_eq!(domain(&e.buf).expect("must decode"), r);
    }

    #[test]
    fn unknown_parameter_type_is_an_error_not_a_guess() {
        let mut e = Enc::new();
        e.u32(1);
        DomRef {
            name: "a".into(),
            uuid: [0; 16],
            id: 1,
        }
        .encode(&mut e);
        e.u32(1).str("x.y").i32(99).u32(0);
        let err = all_domain_stats(&e.buf).expect_err("must fail");
        assert!(err.0.contains("type 99"), "{err}");
    }
}
