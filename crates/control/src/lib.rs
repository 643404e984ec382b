//! Control: the thin adapters that act on what a pure policy decided. Nothing here decides;
//! every function takes a plan (or a list of settings) and reports, per item, what was done and
//! what failed, so that one VM or one knob that refuses is reported as exactly that and the
//! rest still happen.

pub mod balloon;
pub mod ksm;
