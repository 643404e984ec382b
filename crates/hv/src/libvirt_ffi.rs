//! The two libvirt calls the `virt` crate 0.5.0 does not wrap safely, and nothing else:
//!
//! - `virConnectGetAllDomainStats`: the crate's `all_domain_stats` hands back raw record
//!   pointers and never frees them (a leak per sample). We copy each record's typed parameters
//!   into owned Rust values, take our own reference on its domain, then free the list with
//!   `virDomainStatsRecordListFree`.
//! - closing a connection without the crate's panic-on-failure `Drop` ([`Conn`]).
//!
//! `unsafe_code` is denied workspace-wide; it is allowed in this one module because these are
//! C calls. Every pointer read here comes straight from libvirt and is read before it is freed.
#![allow(unsafe_code)]

use std::ffi::CStr;
use std::mem::ManuallyDrop;
use std::os::raw::c_uint;

use virt::connect::Connect;
use virt::domain::Domain;
use virt::sys;

/// A typed parameter's value, owned.
#[derive(Debug, Clone, PartialEq)]
pub enum Param {
    Int(i64),
    Uint(u64),
    Double(f64),
    Bool(bool),
    Str(String),
}

/// One domain's record from the bulk stats call, owned.
#[derive(Debug)]
pub struct Record {
    pub domain: Domain,
    pub params: Vec<(String, Param)>,
}

/// `virConnectGetAllDomainStats(conn, stats, flags)`, copied into owned records and freed.
pub fn all_domain_stats(
    conn: &Connect,
    stats: c_uint,
    flags: c_uint,
) -> Result<Vec<Record>, virt::error::Error> {
    let mut list: *mut sys::virDomainStatsRecordPtr = std::ptr::null_mut();
    // SAFETY: conn is a live connection; list receives a NULL-terminated array libvirt allocates.
    let n = unsafe { sys::virConnectGetAllDomainStats(conn.as_ptr(), stats, &mut list, flags) };
    if n < 0 {
        return Err(virt::error::Error::last_error());
    }
    let mut out = Vec::with_capacity(n as usize);
    for i in 0..n as usize {
        // SAFETY: i < n records, each non-NULL, valid until the list is freed below.
        let rec = unsafe { &**list.add(i) };
        // SAFETY: rec.dom is a valid domain; the extra reference is owned by the Domain wrapper.
        let domain = unsafe {
            sys::virDomainRef(rec.dom);
            Domain::from_ptr(rec.dom)
        };
        let mut params = Vec::with_capacity(rec.nparams.max(0) as usize);
        for j in 0..rec.nparams.max(0) as usize {
            // SAFETY: j < nparams, the array holds nparams parameters.
            let p = unsafe { &*rec.params.add(j) };
            // SAFETY: field is a NUL-terminated string within its 80 bytes.
            let name = unsafe { CStr::from_ptr(p.field.as_ptr()) }
                .to_string_lossy()
                .into_owned();
            // SAFETY: the union member read matches type_.
            let value = unsafe {
                match p.type_ as c_uint {
                    sys::VIR_TYPED_PARAM_INT => Param::Int(p.value.i.into()),
                    sys::VIR_TYPED_PARAM_UINT => Param::Uint(p.value.ui.into()),
                    sys::VIR_TYPED_PARAM_LLONG => Param::Int(p.value.l),
                    sys::VIR_TYPED_PARAM_ULLONG => Param::Uint(p.value.ul),
                    sys::VIR_TYPED_PARAM_DOUBLE => Param::Double(p.value.d),
                    sys::VIR_TYPED_PARAM_BOOLEAN => Param::Bool(p.value.b != 0),
                    sys::VIR_TYPED_PARAM_STRING if !p.value.s.is_null() => {
                        Param::Str(CStr::from_ptr(p.value.s).to_string_lossy().into_owned())
                    }
                    _ => continue,
                }
            };
            params.push((name, value));
        }
        out.push(Record { domain, params });
    }
    if !list.is_null() {
        // SAFETY: list came from virConnectGetAllDomainStats and is freed exactly once.
        unsafe { sys::virDomainStatsRecordListFree(list) };
    }
    Ok(out)
}

/// A connection whose close ignores failure instead of panicking as `Connect`'s `Drop` does.
#[derive(Debug)]
pub struct Conn(ManuallyDrop<Connect>);

impl Conn {
    pub fn new(c: Connect) -> Self {
        Conn(ManuallyDrop::new(c))
    }
}

impl std::ops::Deref for Conn {
    type Target = Connect;
    fn deref(&self) -> &Connect {
        &self.0
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        // SAFETY: we own this reference; the ManuallyDrop is never dropped or used again.
        unsafe {
            sys::virConnectClose(self.0.as_ptr());
        }
    }
}
