//! Applying a balloon [`memwarden_policy::Plan`] through the `Hypervisor` trait.
