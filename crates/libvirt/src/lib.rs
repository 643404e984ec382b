//! A libvirt client of memwarden's own: libvirt's RPC protocol spoken on libvirtd's socket
//! (`rpc`: XDR, packets, the calls memwarden makes and the domain event stream), libvirt.so
//! loaded at run time for the URIs the RPC client does not reach (`ffi`: `qemu+ssh://`,
//! `qemu+tls://`), the connection that picks one of the two ([`Transport`], in `conn`), and the
//! domain XML reader (`domain_xml`). It knows libvirt, not memwarden: `memwarden-hv`'s libvirt
//! backend turns what it returns into VM samples.
//!
//! libvirt's constants (error codes, typed-parameter kinds, procedure and event numbers) are
//! written once here and checked in tests against libvirt's own headers (`libvirt-dev`) and
//! `remote_protocol.x`.

mod conn;
pub mod domain_xml;
mod ffi;
pub mod rpc;

pub use conn::*;
