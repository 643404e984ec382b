//! Hypervisor backends (libvirt, QMP) behind one trait.
