//! libvirt's C functions, looked up in `libvirt.so.0` (and `libvirt-qemu.so.0`) when the first
//! connection through the library is opened (URIs the built-in RPC client,
//! [`crate::rpc`], does not serve), not linked at build time.
//!
//! Why not link (as the `virt` crate does): libvirt.so.0 pulls in ~55 shared libraries, and the
//! dynamic loader's relocations for them cost every memwarden command ~7 ms before `main`,
//! whether it talks to libvirt or not (`host` and `procs` never do). Loading on demand keeps
//! their start-up near a C program's and lets memwarden run (QMP, host) where libvirt is not
//! installed at all. Only the ~25 functions memwarden calls are declared here.
#![allow(unsafe_code)]

use std::os::raw::{c_char, c_int, c_uint, c_ulong, c_ulonglong, c_void};
use std::sync::OnceLock;

pub type ConnPtr = *mut c_void;
pub type DomPtr = *mut c_void;

/// `virError`, the fields we read (the struct is longer; we only ever hold a pointer to it).
#[repr(C)]
pub struct VirError {
    pub code: c_int,
    pub domain: c_int,
    pub message: *const c_char,
}

/// `virTypedParameter`: an 80-byte name, a type, an 8-byte union.
#[repr(C)]
pub struct TypedParam {
    pub field: [c_char; 80],
    pub type_: c_int,
    pub value: TypedValue,
}

#[repr(C)]
#[derive(Clone, Copy)]
pub union TypedValue {
    pub i: c_int,
    pub ui: c_uint,
    pub l: i64,
    pub ul: u64,
    pub d: f64,
    pub b: c_char,
    pub s: *const c_char,
}

/// `virDomainStatsRecord`.
#[repr(C)]
pub struct StatsRecord {
    pub dom: DomPtr,
    pub params: *const TypedParam,
    pub nparams: c_int,
}

/// `virDomainMemoryStatStruct`.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct MemoryStat {
    pub tag: c_int,
    pub val: c_ulonglong,
}

pub type ErrorFunc = unsafe extern "C" fn(*mut c_void, *const VirError);

macro_rules! api {
    ($($name:ident: fn($($arg:ty),*) -> $ret:ty;)*) => {
        /// The functions of libvirt.so.0 memwarden uses.
        #[allow(non_snake_case)]
        pub struct Api {
            $(pub $name: unsafe extern "C" fn($($arg),*) -> $ret,)*
        }
        impl std::fmt::Debug for Api {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("libvirt.so.0")
            }
        }
        impl Api {
            fn load(lib: &'static libloading::Library) -> Result<Api, String> {
                // SAFETY: each symbol is declared with the signature libvirt's headers give it
                // (libvirt keeps its ABI stable across versions).
                unsafe {
                    Ok(Api {
                        $($name: *lib
                            .get(concat!(stringify!($name), "\0").as_bytes())
                            .map_err(|e| format!("libvirt.so.0 has no {}: {e}", stringify!($name)))?,)*
                    })
                }
            }
        }
    };
}

api! {
    virConnectOpen: fn(*const c_char) -> ConnPtr;
    virConnectClose: fn(ConnPtr) -> c_int;
    virConnectIsAlive: fn(ConnPtr) -> c_int;
    virConnectSetKeepAlive: fn(ConnPtr, c_int, c_uint) -> c_int;
    virConnectListAllDomains: fn(ConnPtr, *mut *mut DomPtr, c_uint) -> c_int;
    virConnectGetAllDomainStats: fn(ConnPtr, c_uint, *mut *mut *mut StatsRecord, c_uint) -> c_int;
    virDomainStatsRecordListFree: fn(*mut *mut StatsRecord) -> ();
    virDomainLookupByName: fn(ConnPtr, *const c_char) -> DomPtr;
    virDomainRef: fn(DomPtr) -> c_int;
    virDomainFree: fn(DomPtr) -> c_int;
    virDomainGetName: fn(DomPtr) -> *const c_char;
    virDomainGetID: fn(DomPtr) -> c_uint;
    virDomainGetUUIDString: fn(DomPtr, *mut c_char) -> c_int;
    virDomainGetXMLDesc: fn(DomPtr, c_uint) -> *mut c_char;
    virDomainGetMaxMemory: fn(DomPtr) -> c_ulong;
    virDomainGetState: fn(DomPtr, *mut c_int, *mut c_int, c_uint) -> c_int;
    virDomainMemoryStats: fn(DomPtr, *mut MemoryStat, c_uint, c_uint) -> c_int;
    virDomainSetMemoryFlags: fn(DomPtr, c_ulong, c_uint) -> c_int;
    virDomainSetMemoryStatsPeriod: fn(DomPtr, c_int, c_uint) -> c_int;
    virEventRegisterDefaultImpl: fn() -> c_int;
    virEventRunDefaultImpl: fn() -> c_int;
    virGetLastError: fn() -> *const VirError;
    virResetLastError: fn() -> ();
    virSetErrorFunc: fn(*mut c_void, Option<ErrorFunc>) -> ();
}

/// `virDomainQemuMonitorCommand` from libvirt-qemu.so.0.
pub type QemuMonitorCommand =
    unsafe extern "C" fn(DomPtr, *const c_char, *mut *mut c_char, c_uint) -> c_int;

fn open(name: &str) -> Result<&'static libloading::Library, String> {
    // SAFETY: libvirt's initialisers are safe to run at any time (it initialises lazily).
    unsafe { libloading::Library::new(name) }
        .map(|l| &*Box::leak(Box::new(l)))
        .map_err(|e| {
            format!("cannot load {name} (install Debian's libvirt0 package for the libvirt backend): {e}")
        })
}

/// libvirt's error printer, replaced: errors are returned, not printed on stderr.
unsafe extern "C" fn quiet(_: *mut c_void, _: *const VirError) {}

/// The libvirt API, loaded once; an error (saying what to install) when it cannot be.
pub fn api() -> Result<&'static Api, String> {
    static API: OnceLock<Result<Api, String>> = OnceLock::new();
    API.get_or_init(|| {
        let api = Api::load(open("libvirt.so.0")?)?;
        // SAFETY: a valid handler that ignores its arguments.
        unsafe { (api.virSetErrorFunc)(std::ptr::null_mut(), Some(quiet)) };
        Ok(api)
    })
    .as_ref()
    .map_err(Clone::clone)
}

/// libvirt-qemu's monitor passthrough, loaded once.
pub fn qemu_monitor_command() -> Result<QemuMonitorCommand, String> {
    static F: OnceLock<Result<QemuMonitorCommand, String>> = OnceLock::new();
    F.get_or_init(|| {
        let lib = open("libvirt-qemu.so.0")?;
        // SAFETY: declared as libvirt-qemu.h declares it.
        unsafe { lib.get::<QemuMonitorCommand>(b"virDomainQemuMonitorCommand\0") }
            .map(|s| *s)
            .map_err(|e| format!("libvirt-qemu.so.0 has no virDomainQemuMonitorCommand: {e}"))
    })
    .clone()
}
