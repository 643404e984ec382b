//! libvirt, called through its C API loaded at run time ([`api`]): a connection, a domain,
//! libvirt's error, and the bulk stats call, each wrapped so that the rest of the crate holds
//! no raw pointer.
//!
//! - [`Connect`] closes on drop and ignores a failing close (a dead libvirtd).
//! - [`Domain`] holds its own reference (`virDomainRef` on clone, `virDomainFree` on drop).
//! - [`all_domain_stats`] copies each record's typed parameters into owned values, takes its
//!   own reference on each domain, and frees libvirt's list.
//!
//! `unsafe_code` is denied workspace-wide and allowed in this module only: these are C calls.
//! Every pointer read here comes straight from libvirt and is read before it is freed.
#![allow(unsafe_code)]

pub mod api;

use std::ffi::{CStr, CString};
use std::os::raw::{c_char, c_int, c_uint};

use api::{api, Api, ConnPtr, DomPtr, MemoryStat};

pub use crate::conn::{LvError, Param};

/// `virTypedParameterType` (libvirt's headers; stable ABI).
use crate::conn::sys;

/// libvirt could not be loaded at all.
fn unloadable(why: String) -> LvError {
    LvError::new(sys::VIR_ERR_NO_CONNECT, 0, why)
}

/// The calling thread's last libvirt error (libvirt keeps it per thread).
fn last_error(api: &Api) -> LvError {
    // SAFETY: virGetLastError returns NULL or this thread's error, valid until reset.
    let e = unsafe { (api.virGetLastError)() };
    if e.is_null() {
        return LvError::new(0, 0, "libvirt failed without saying why".into());
    }
    // SAFETY: non-NULL, and its message is NULL or a NUL-terminated string.
    let err = unsafe {
        let e = &*e;
        LvError::new(
            e.code,
            e.domain,
            if e.message.is_null() {
                format!("libvirt error {}", e.code)
            } else {
                CStr::from_ptr(e.message).to_string_lossy().into_owned()
            },
        )
    };
    // SAFETY: clears this thread's error so that a later failure is not mistaken for it.
    unsafe { (api.virResetLastError)() };
    err
}

type R<T> = Result<T, LvError>;

/// libvirt's convention: a negative return is a failure, described by the thread's last error.
fn checked(api: &Api, rc: c_int) -> R<c_int> {
    if rc < 0 {
        Err(last_error(api))
    } else {
        Ok(rc)
    }
}

fn loaded() -> R<&'static Api> {
    api().map_err(unloadable)
}

fn cstring(s: &str) -> R<CString> {
    CString::new(s).map_err(|_| LvError::new(0, 0, format!("{s:?} contains a NUL byte")))
}

/// Takes a string libvirt allocated (malloc) for the caller, and frees it.
fn owned_string(p: *mut c_char) -> String {
    // SAFETY: p is non-NULL, NUL-terminated and ours to free (callers check NULL first).
    unsafe {
        let s = CStr::from_ptr(p).to_string_lossy().into_owned();
        libc::free(p.cast());
        s
    }
}

/// libvirt's default event loop (for keepalives): register it; then run
/// [`event_run_default_impl`] on a thread of its own.
pub fn event_register_default_impl() -> R<()> {
    let api = loaded()?;
    // SAFETY: no arguments; registers libvirt's own implementation.
    match unsafe { (api.virEventRegisterDefaultImpl)() } {
        0 => Ok(()),
        _ => Err(last_error(api)),
    }
}

/// One iteration of libvirt's default event loop.
pub fn event_run_default_impl() -> R<()> {
    let api = loaded()?;
    // SAFETY: called only after a successful registration.
    match unsafe { (api.virEventRunDefaultImpl)() } {
        0 => Ok(()),
        _ => Err(last_error(api)),
    }
}

/// An open connection; closed on drop (a failing close is ignored: libvirtd may be gone).
#[derive(Debug)]
pub struct Connect {
    ptr: ConnPtr,
    api: &'static Api,
}

// SAFETY: libvirt connections are thread-safe (libvirt serialises calls on one connection).
unsafe impl Send for Connect {}
// SAFETY: as above.
unsafe impl Sync for Connect {}

impl Connect {
    pub fn open(uri: &str) -> R<Connect> {
        let api = loaded()?;
        let c = cstring(uri)?;
        // SAFETY: c is a valid C string for the call's duration.
        let ptr = unsafe { (api.virConnectOpen)(c.as_ptr()) };
        if ptr.is_null() {
            return Err(last_error(api));
        }
        Ok(Connect { ptr, api })
    }

    fn check(&self, rc: c_int) -> R<c_int> {
        checked(self.api, rc)
    }

    pub fn set_keep_alive(&self, interval: i32, count: u32) -> R<()> {
        // SAFETY: self.ptr is a live connection.
        self.check(unsafe { (self.api.virConnectSetKeepAlive)(self.ptr, interval, count) })
            .map(drop)
    }

    pub fn is_alive(&self) -> R<bool> {
        // SAFETY: self.ptr is a live connection.
        self.check(unsafe { (self.api.virConnectIsAlive)(self.ptr) })
            .map(|v| v == 1)
    }

    pub fn lookup_domain_by_name(&self, name: &str) -> R<Domain> {
        let c = cstring(name)?;
        // SAFETY: live connection, valid C string; the returned reference is ours.
        let ptr = unsafe { (self.api.virDomainLookupByName)(self.ptr, c.as_ptr()) };
        if ptr.is_null() {
            return Err(last_error(self.api));
        }
        Ok(Domain { ptr, api: self.api })
    }

    pub fn list_all_domains(&self, flags: u32) -> R<Vec<Domain>> {
        let mut list: *mut DomPtr = std::ptr::null_mut();
        // SAFETY: live connection; list receives an array of n domain references we own.
        let n =
            self.check(unsafe { (self.api.virConnectListAllDomains)(self.ptr, &mut list, flags) })?;
        let mut out = Vec::with_capacity(n as usize);
        for i in 0..n as usize {
            // SAFETY: i < n; each element is a domain reference now owned by the wrapper.
            out.push(Domain {
                ptr: unsafe { *list.add(i) },
                api: self.api,
            });
        }
        if !list.is_null() {
            // SAFETY: the array (not its elements, now owned above) is ours to free.
            unsafe { libc::free(list.cast()) };
        }
        Ok(out)
    }
}

impl Drop for Connect {
    fn drop(&mut self) {
        // SAFETY: we own this reference and drop it exactly once.
        unsafe { (self.api.virConnectClose)(self.ptr) };
    }
}

/// A domain reference.
#[derive(Debug)]
pub struct Domain {
    ptr: DomPtr,
    api: &'static Api,
}

// SAFETY: domain objects are reference-counted and thread-safe in libvirt.
unsafe impl Send for Domain {}
// SAFETY: as above.
unsafe impl Sync for Domain {}

impl Clone for Domain {
    fn clone(&self) -> Domain {
        // SAFETY: adds a reference, dropped by the clone's Drop.
        unsafe { (self.api.virDomainRef)(self.ptr) };
        Domain {
            ptr: self.ptr,
            api: self.api,
        }
    }
}

impl Drop for Domain {
    fn drop(&mut self) {
        // SAFETY: drops the one reference this value owns.
        unsafe { (self.api.virDomainFree)(self.ptr) };
    }
}

impl Domain {
    fn check(&self, rc: c_int) -> R<c_int> {
        checked(self.api, rc)
    }

    pub fn name(&self) -> R<String> {
        // SAFETY: the name belongs to the domain object, valid while we hold it; copied now.
        let p = unsafe { (self.api.virDomainGetName)(self.ptr) };
        if p.is_null() {
            return Err(last_error(self.api));
        }
        // SAFETY: non-NULL, NUL-terminated.
        Ok(unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned())
    }

    /// The running domain's id; `None` when it is not running.
    pub fn id(&self) -> Option<u32> {
        // SAFETY: live domain reference.
        let id = unsafe { (self.api.virDomainGetID)(self.ptr) };
        (id != c_uint::MAX).then_some(id)
    }

    pub fn uuid_string(&self) -> R<String> {
        let mut buf = [0 as c_char; 37];
        // SAFETY: buf holds VIR_UUID_STRING_BUFLEN (37) bytes, as the call requires.
        self.check(unsafe { (self.api.virDomainGetUUIDString)(self.ptr, buf.as_mut_ptr()) })?;
        // SAFETY: libvirt wrote a NUL-terminated string into buf.
        Ok(unsafe { CStr::from_ptr(buf.as_ptr()) }
            .to_string_lossy()
            .into_owned())
    }

    pub fn xml_desc(&self, flags: u32) -> R<String> {
        // SAFETY: live domain; the returned string is ours to free.
        let p = unsafe { (self.api.virDomainGetXMLDesc)(self.ptr, flags) };
        if p.is_null() {
            return Err(last_error(self.api));
        }
        Ok(owned_string(p))
    }

    /// Maximum memory, KiB.
    #[allow(clippy::useless_conversion)] // c_ulong is u32 on 32-bit targets
    pub fn max_memory(&self) -> R<u64> {
        // SAFETY: live domain reference.
        match unsafe { (self.api.virDomainGetMaxMemory)(self.ptr) } {
            0 => Err(last_error(self.api)),
            v => Ok(u64::from(v)),
        }
    }

    /// `(state, reason)` as libvirt numbers them.
    pub fn state(&self) -> R<(u32, i32)> {
        let (mut st, mut reason) = (0, 0);
        // SAFETY: live domain; both out-pointers are valid.
        self.check(unsafe { (self.api.virDomainGetState)(self.ptr, &mut st, &mut reason, 0) })?;
        Ok((u32::try_from(st).unwrap_or(0), reason))
    }

    /// `virDomainMemoryStats`: `(tag, value)` pairs, at most 32 (libvirt 9 defines 13 tags).
    pub fn memory_stats(&self, flags: u32) -> R<Vec<(u32, u64)>> {
        let mut buf = [MemoryStat::default(); 32];
        // SAFETY: buf holds 32 entries and we say so.
        let n = self.check(unsafe {
            (self.api.virDomainMemoryStats)(self.ptr, buf.as_mut_ptr(), buf.len() as c_uint, flags)
        })?;
        Ok(buf[..(n as usize).min(buf.len())]
            .iter()
            .map(|s| (u32::try_from(s.tag).unwrap_or(u32::MAX), s.val))
            .collect())
    }

    /// Sets the balloon target, KiB.
    pub fn set_memory_flags(&self, kib: u64, flags: u32) -> R<()> {
        let kib = std::os::raw::c_ulong::try_from(kib).unwrap_or(std::os::raw::c_ulong::MAX);
        // SAFETY: live domain reference.
        self.check(unsafe { (self.api.virDomainSetMemoryFlags)(self.ptr, kib, flags) })
            .map(drop)
    }

    pub fn set_memory_stats_period(&self, secs: i32, flags: u32) -> R<()> {
        // SAFETY: live domain reference.
        self.check(unsafe { (self.api.virDomainSetMemoryStatsPeriod)(self.ptr, secs, flags) })
            .map(drop)
    }

    /// A QMP command through libvirt-qemu's monitor passthrough; the raw reply.
    pub fn qemu_monitor_command(&self, cmd: &str, flags: u32) -> R<String> {
        let f = api::qemu_monitor_command().map_err(unloadable)?;
        let c = cstring(cmd)?;
        let mut out: *mut c_char = std::ptr::null_mut();
        // SAFETY: live domain, valid C string; out receives a string that is ours to free.
        self.check(unsafe { f(self.ptr, c.as_ptr(), &mut out, flags) })?;
        if out.is_null() {
            return Ok(String::new());
        }
        Ok(owned_string(out))
    }
}

/// One domain's record from the bulk stats call, owned.
#[derive(Debug)]
pub struct Record {
    pub domain: Domain,
    pub params: Vec<(String, Param)>,
}

/// `virConnectGetAllDomainStats(conn, stats, flags)`, copied into owned records and freed.
pub fn all_domain_stats(conn: &Connect, stats: u32, flags: u32) -> R<Vec<Record>> {
    let api = conn.api;
    let mut list: *mut *mut api::StatsRecord = std::ptr::null_mut();
    // SAFETY: conn is live; list receives a NULL-terminated array libvirt allocates.
    let n = conn
        .check(unsafe { (api.virConnectGetAllDomainStats)(conn.ptr, stats, &mut list, flags) })?;
    let mut out = Vec::with_capacity(n as usize);
    for i in 0..n as usize {
        // SAFETY: i < n records, each non-NULL, valid until the list is freed below.
        let rec = unsafe { &**list.add(i) };
        // SAFETY: rec.dom is a valid domain; the extra reference is owned by the wrapper.
        unsafe { (api.virDomainRef)(rec.dom) };
        let domain = Domain { ptr: rec.dom, api };
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
                match p.type_ {
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
        unsafe { (api.virDomainStatsRecordListFree)(list) };
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conn::sys;

    /// Every declared function exists in the installed libvirt (scripts/setup.sh installs it):
    /// a misspelt or private symbol fails here, not at a user's first libvirt call.
    #[test]
    fn every_declared_symbol_resolves() {
        api().expect("libvirt.so.0 and all its declared functions");
        api::qemu_monitor_command().expect("libvirt-qemu.so.0");
    }

    /// libvirt's test driver needs no daemon: a whole round trip through the loaded API.
    #[test]
    fn test_driver_round_trip() {
        let c = Connect::open("test:///default").expect("open test:///default");
        assert!(c.is_alive().expect("is_alive"));
        let d = c
            .lookup_domain_by_name("test")
            .expect("the test driver's domain");
        assert_eq!(d.name().expect("name"), "test");
        assert_eq!(d.uuid_string().expect("uuid").len(), 36);
        assert!(d.xml_desc(0).expect("xml").contains("<domain"));
        assert!(d.max_memory().expect("max") > 0);
        assert_eq!(d.state().expect("state").0, sys::VIR_DOMAIN_RUNNING);
        d.set_memory_flags(512 * 1024, sys::VIR_DOMAIN_AFFECT_LIVE)
            .expect("setmem");
        let names: Vec<String> = c
            .list_all_domains(sys::VIR_CONNECT_LIST_DOMAINS_ACTIVE)
            .expect("list")
            .iter()
            .map(|d| d.name().expect("name"))
            .collect();
        assert_eq!(names, ["test"]);
        let recs = all_domain_stats(&c, sys::VIR_DOMAIN_STATS_STATE, 0).expect("bulk");
        assert_eq!(recs.len(), 1);
        assert!(recs[0].params.iter().any(|(k, _)| k == "state.state"));
        let e = c
            .lookup_domain_by_name("no-such")
            .expect_err("no such domain");
        assert_eq!(e.code(), sys::VIR_ERR_NO_DOMAIN, "{e}");
        assert!(e.message().contains("not found"), "{e}");
    }
}
